"""Test support for the consent tests: the dbt models replayed in-process, fast.

A full `dbt build` costs seconds, too slow to run after every step of a state machine. So:

1. :func:`build_compiled_project` creates, in a temporary var folder, a warehouse whose raw
   tables are empty but have exactly the columns and types the landing code writes (taken from
   the product's own data contracts: the e-commerce Arrow schemas, the OMS canonical schema and
   the source registry for the SFTP files), runs `dbt build` once on it (which also loads the
   seeds and runs the dbt tests), and reads from dbt's manifest, for every model the consent
   marts and the golden record depend on, its compiled SQL, relation and parents.
2. :class:`Warehouse` copies that warehouse (seeds and empty raw tables) into an in-memory
   DuckDB database named like the file, so the compiled SQL runs unchanged, registers the
   normalisation/HMAC UDFs, and :meth:`Warehouse.rebuild` replays the models in dependency order
   (views as views, tables as `create or replace table`, the incremental erasure tombstones by
   appending new keys, so that they persist within one test case as they do in production).
3. :class:`World` writes source-system rows into the raw tables (upserted by the registry's
   primary keys, as the landing does) and keeps an oracle of people and their consent events
   per channel, from which it says who must be suppressed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

CHANNELS: tuple[str, ...] = ("email", "line", "sms", "dm", "call")
# The consent marts, the golden record, the bridge the tests map oracle records through, and the
# data steward's pick list for the call-centre requests in the queue.
TARGET_MODELS: tuple[str, ...] = (
    "deliverable_customers",
    "dim_customers",
    "bridge_customer_identities",
    "suppressed_contact_keys",
    "consent_build_marks",
    "optout_request_candidates",
)
DBT_SELECT = " ".join(f"+{m}" for m in TARGET_MODELS)
# Seeds a data steward fills (the project ships them empty) and the tests write to.
STEWARD_SEEDS = ("callcenter_request_resolutions",)
APPEND_ONLY_MODELS = frozenset({"erasure_tombstones"})  # incremental: new unique keys appended
TEST_MATCH_KEY = "consent-tests-match-key-0123456789abcdef"  # >= 16 bytes; a test secret, not a credential
JST_OFFSET = timedelta(hours=9)

_REGISTRY_ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


# ---------------------------------------------------------------------------------------------
# The raw schema and the one-off dbt build
# ---------------------------------------------------------------------------------------------


def raw_tables() -> dict[str, tuple[pa.Schema, tuple[str, ...]]]:
    """`raw.<source>__<table>` -> (Arrow schema the landing writes, primary key), for every table
    of the source registry, from the product's own data contracts."""
    from yorisoi.sources import ecommerce, oms
    from yorisoi.sources.registry import load_registry

    registry = load_registry()
    ecommerce_schemas = {
        "customers": ecommerce.CUSTOMERS_SCHEMA,
        "orders": ecommerce.ORDERS_SCHEMA,
        "order_lines": ecommerce.ORDER_LINES_SCHEMA,
        "products": ecommerce.PRODUCTS_SCHEMA,
    }
    tables: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {}
    for source in registry.sources.values():
        for table in source.tables.values():
            if source.kind == "api":
                schema = ecommerce_schemas[table.name]
            elif source.kind == "database":
                schema = oms.entity_schema(table.name)
            else:
                schema = pa.schema([(c.name, _REGISTRY_ARROW_TYPES[c.type]) for c in table.columns])
            tables[table.raw_name] = (schema, table.primary_key)
    return tables


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty raw tables, created the way `yorisoi.sources.landing.Warehouse` creates them on first load."""
    con.execute("create schema if not exists raw")
    for name, (schema, _pk) in raw_tables().items():
        incoming = schema.empty_table()  # noqa: F841 (read by DuckDB's replacement scan)
        con.execute(
            f'create table raw."{name}" as select *, now() as _loaded_at, '
            "null::varchar as _source_file, null::varchar as _batch_id from incoming limit 0"
        )


@dataclass(frozen=True)
class Model:
    unique_id: str
    name: str
    relation: str
    materialized: str
    sql: str
    parents: tuple[str, ...]
    unique_key: str | None = None


@dataclass(frozen=True)
class CompiledProject:
    """What the one dbt build leaves behind: the built warehouse and the models to replay."""

    var_dir: Path
    warehouse: Path
    models: tuple[Model, ...]  # dependency order
    build_seconds: float
    dbt_results: tuple[dict, ...]
    data_tests: dict[str, str] = field(default_factory=dict)  # singular dbt test -> its compiled SQL

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def with_sql(self, name: str, transform: Any) -> CompiledProject:
        """A copy where model `name`'s SQL is `transform(sql)` (to prove the tests can fail)."""
        models = tuple(Model(**{**m.__dict__, "sql": transform(m.sql)}) if m.name == name else m for m in self.models)
        new_sql = next(m.sql for m in models if m.name == name)
        assert new_sql != self.model(name).sql, f"the transform did not change {name}'s SQL"
        return CompiledProject(
            self.var_dir, self.warehouse, models, self.build_seconds, self.dbt_results, self.data_tests
        )


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_compiled_project(var_dir: Path) -> CompiledProject:
    """Empty raw tables in `var_dir`/warehouse.duckdb, one `dbt build`, and the compiled models."""
    from yorisoi.transform import dbt_env, run_dbt

    var_dir.mkdir(parents=True, exist_ok=True)
    warehouse = var_dir / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        create_raw_tables(con)
    finally:
        con.close()
    env = {"YORISOI_VAR": str(var_dir), "YORISOI_MATCH_KEY": TEST_MATCH_KEY}
    with _environ(env):
        os.environ.pop("YORISOI_MATCH_KEY_FILE", None)
        started = time.perf_counter()
        # "cautious": only the tests whose parents are all selected (the default, "eager", also
        # runs e.g. the orders-to-customers relationship tests, whose orders models are not built).
        # Raises DbtFailed on any model error or failing test.
        run = run_dbt(["build", "--select", DBT_SELECT, "--indirect-selection", "cautious"])
        seconds = time.perf_counter() - started
        target = Path(dbt_env()["DBT_TARGET_PATH"])
    manifest = json.loads((target / "manifest.json").read_text("utf-8"))
    return CompiledProject(
        var_dir=var_dir,
        warehouse=warehouse,
        models=_models_in_order(manifest),
        build_seconds=seconds,
        dbt_results=tuple(run.results),
        data_tests=_singular_tests(manifest),
    )


def _singular_tests(manifest: dict) -> dict[str, str]:
    """The compiled SQL of each singular dbt test the build ran (tests/*.sql): the rows it selects
    are its failures (or warnings)."""
    return {
        n["name"]: n["compiled_code"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test" and not n.get("test_metadata") and n.get("compiled_code")
    }


def _models_in_order(manifest: dict) -> tuple[Model, ...]:
    nodes = manifest["nodes"]
    roots = [uid for uid, n in nodes.items() if n["resource_type"] == "model" and n["name"] in TARGET_MODELS]
    assert len(roots) == len(TARGET_MODELS), f"models {TARGET_MODELS} not all in the manifest"
    wanted: set[str] = set()
    stack = list(roots)
    while stack:
        uid = stack.pop()
        if uid in wanted:
            continue
        wanted.add(uid)
        stack += [p for p in nodes[uid]["depends_on"]["nodes"] if p.startswith("model.")]
    ordered: list[str] = []
    done: set[str] = set()

    def visit(uid: str, path: tuple[str, ...] = ()) -> None:
        if uid in done:
            return
        assert uid not in path, f"dependency cycle through {uid}"
        for parent in sorted(nodes[uid]["depends_on"]["nodes"]):
            if parent in wanted:
                visit(parent, (*path, uid))
        done.add(uid)
        ordered.append(uid)

    for uid in sorted(wanted):
        visit(uid)
    models = []
    for uid in ordered:
        node = nodes[uid]
        assert node.get("compiled_code"), f"{uid} was not compiled by the build"
        unique_key = node["config"].get("unique_key")
        models.append(
            Model(
                unique_id=uid,
                name=node["name"],
                relation=node["relation_name"],
                materialized=node["config"]["materialized"],
                sql=node["compiled_code"],
                parents=tuple(p for p in node["depends_on"]["nodes"] if p in wanted),
                unique_key=unique_key if isinstance(unique_key, str) else None,
            )
        )
    return tuple(models)


# ---------------------------------------------------------------------------------------------
# The fast replay
# ---------------------------------------------------------------------------------------------


class Warehouse:
    """An in-memory copy of the built warehouse (seeds, empty raw tables) on which the compiled
    models are replayed. The database is attached under the file's name, so the compiled
    relation names (`"warehouse"."marts"."..."`) resolve unchanged."""

    def __init__(self, project: CompiledProject, secret: bytes = TEST_MATCH_KEY.encode()):
        from yorisoi.privacy import duckdb_udfs

        self.project = project
        self.catalog = project.warehouse.stem
        self.con = duckdb.connect()
        self.con.execute("set TimeZone = 'UTC'")  # the dbt profile's setting
        # What the dbt-duckdb plugin does on each connection: the UDFs, and (when match_key is
        # native SQL HMAC) the key pads as session variables.
        duckdb_udfs.register(self.con, secret)
        if hasattr(duckdb_udfs, "set_match_key"):
            duckdb_udfs.set_match_key(self.con, secret)
        self.con.execute(f"attach '{project.warehouse}' as built (read_only)")
        self.con.execute(f"attach ':memory:' as \"{self.catalog}\"")
        self.con.execute(f'use "{self.catalog}"')
        schemas = [
            r[0]
            for r in self.con.execute(
                "select schema_name from duckdb_schemas() where database_name = 'built' and not internal"
            ).fetchall()
        ]
        for schema in schemas:
            self.con.execute(f'create schema if not exists "{schema}"')
        # Only raw and seed tables are copied: every model is rebuilt by rebuild().
        model_relations = {m.relation for m in project.models}
        for schema, table in self.con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'built'"
        ).fetchall():
            relation = f'"{self.catalog}"."{schema}"."{table}"'
            if relation not in model_relations and schema in ("raw", "reference"):
                self.con.execute(f'create table "{schema}"."{table}" as select * from built."{schema}"."{table}"')
        self.con.execute("detach built")
        self.raw = raw_tables()
        self.rebuild_seconds: list[float] = []
        self._built_once: set[str] = set()

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def replaying(self, project: CompiledProject) -> Iterator[Warehouse]:
        """Replay `project`'s models (e.g. a deliberately broken variant) instead, for a while."""
        assert [m.relation for m in project.models] == [m.relation for m in self.project.models]
        saved = self.project
        self.reset()
        self.project = project
        try:
            yield self
        finally:
            self.reset()
            self.project = saved

    def reset(self) -> None:
        """Empty every raw table and the stewards' seeds a test writes, and drop every model (a
        fresh test case)."""
        for name in self.raw:
            self.con.execute(f'delete from raw."{name}"')
        for seed in STEWARD_SEEDS:
            self.con.execute(f"delete from reference.{seed}")
        for model in reversed(self.project.models):
            kind = "view" if model.materialized == "view" else "table"
            self.con.execute(f"drop {kind} if exists {model.relation}")
        self._built_once.clear()

    def rebuild(self) -> float:
        """Replay every model on the current raw tables; returns the seconds it took."""
        started = time.perf_counter()
        for model in self.project.models:
            self._build(model)
        seconds = time.perf_counter() - started
        self.rebuild_seconds.append(seconds)
        return seconds

    def _build(self, model: Model) -> None:
        sql = model.sql
        try:
            if model.materialized == "view":
                self.con.execute(f"create or replace view {model.relation} as {sql}")
            elif model.materialized == "incremental" and model.relation in self._built_once:
                # The SQL compiled on the first (full) run selects every row; what the model's
                # is_incremental() branch adds is `where <unique_key> not in (select ... from this)`:
                # append the rows with new keys. Earlier rows stay even when the model no longer
                # selects them (the erasure tombstones are append-only).
                assert model.name in APPEND_ONLY_MODELS, f"teach the harness how {model.name} is incremental"
                key = model.unique_key
                self.con.execute(
                    f"insert into {model.relation} by name select * from ({sql}) as incoming "
                    f"where {key} not in (select {key} from {model.relation})"
                )
            else:
                self.con.execute(f"create or replace table {model.relation} as {sql}")
        except duckdb.Error as exc:
            raise RuntimeError(f"replaying {model.unique_id} failed: {exc}") from exc
        self._built_once.add(model.relation)

    # ---- raw rows, upserted by primary key like yorisoi.sources.landing -------------------------------

    def upsert(self, table: str, rows: Iterable[dict[str, Any]], *, source_file: str = "test") -> None:
        schema, pk = self.raw[table]
        rows = list(rows)
        if not rows:
            return
        unknown = {k for r in rows for k in r} - set(schema.names)
        assert not unknown, f"raw.{table} has no columns {sorted(unknown)}"
        incoming = pa.Table.from_pylist(  # noqa: F841 (read by DuckDB's replacement scan)
            [{c: _fit(r.get(c), schema.field(c).type) for c in schema.names} for r in rows], schema=schema
        )
        keys = ", ".join(pk)
        self.con.execute(f'delete from raw."{table}" where ({keys}) in (select ({keys}) from incoming)')
        self.con.execute(
            f'insert into raw."{table}" by name select *, now() as _loaded_at, '
            "? as _source_file, 'test-batch' as _batch_id from incoming",
            [source_file],
        )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def data_test_rows(self, name: str) -> list[tuple]:
        """The rows singular dbt test `name` reports on the models as last rebuilt (none: it passes)."""
        return self.query(self.project.data_tests[name])


# ---------------------------------------------------------------------------------------------
# The oracle: people, their records and their consent events
# ---------------------------------------------------------------------------------------------

LAST_NAMES = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田")
FIRST_NAMES = ("太郎", "花子", "一郎", "陽子", "健", "美咲", "翔", "由美", "大輔", "恵", "拓也", "直美")
# Their readings: a store card carries the kana of its holder's name (identity vetoes a card whose
# kana is no reading of the shop account's kanji name).
KANA = dict(
    zip(
        LAST_NAMES + FIRST_NAMES,
        (
            *("ｻﾄｳ", "ｽｽﾞｷ", "ﾀｶﾊｼ", "ﾀﾅｶ", "ｲﾄｳ", "ﾜﾀﾅﾍﾞ", "ﾔﾏﾓﾄ", "ﾅｶﾑﾗ", "ｺﾊﾞﾔｼ", "ｶﾄｳ", "ﾖｼﾀﾞ", "ﾔﾏﾀﾞ"),
            *("ﾀﾛｳ", "ﾊﾅｺ", "ｲﾁﾛｳ", "ﾖｳｺ", "ｹﾝ", "ﾐｻｷ", "ｼｮｳ", "ﾕﾐ", "ﾀﾞｲｽｹ", "ﾒｸﾞﾐ", "ﾀｸﾔ", "ﾅｵﾐ"),
        ),
        strict=True,
    )
)


@dataclass(frozen=True, order=True)
class Event:
    at: datetime  # aware, UTC
    action: str  # opt_in | opt_out
    source: str  # e.g. "shop", "esp", "callcenter", "line", "oms"
    detail: str = ""
    dated: bool = True  # False: the source gave no date (the oracle dates it when it happened)


@dataclass
class Person:
    idx: int
    last_name: str
    first_name: str
    email: str
    phone: str  # mobile, national format
    postal_code: str
    shop_ids: list[int] = field(default_factory=list)
    oms_codes: list[str] = field(default_factory=list)
    line_user_ids: list[str] = field(default_factory=list)
    pos_cards: list[str] = field(default_factory=list)
    events: dict[str, list[Event]] = field(default_factory=lambda: {c: [] for c in CHANNELS})
    blacklisted: bool = False
    erased: bool = False
    test_account: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.last_name}\u3000{self.first_name}"

    @property
    def name_kana(self) -> str:
        return f"{KANA[self.last_name]} {KANA[self.first_name.rstrip('0123456789')]}"

    def records(self) -> set[str]:
        return (
            {f"ecommerce:{i}" for i in self.shop_ids}
            | {f"oms:{c}" for c in self.oms_codes}
            | {f"line:{u}" for u in self.line_user_ids}
            | {f"pos:{c}" for c in self.pos_cards}
        )

    def latest(self, channel: str) -> tuple[str, list[Event]] | None:
        """The winning action on `channel` and the events at the latest instant (an opt-out wins
        a tie); None without any event."""
        events = self.events[channel]
        if not events:
            return None
        last = max(e.at for e in events)
        at_last = [e for e in events if e.at == last]
        action = "opt_out" if any(e.action == "opt_out" for e in at_last) else "opt_in"
        return action, at_last

    def suppression_reasons(self, channel: str) -> list[str]:
        """Why the person must not be contacted on `channel` (empty: the oracle allows it)."""
        reasons = []
        latest = self.latest(channel)
        if latest is None or not any(e.action == "opt_in" for e in self.events[channel]):
            reasons.append("no_consent")
        elif latest[0] == "opt_out":
            reasons.append("opted_out")
        if self.blacklisted:
            reasons.append("blacklisted")
        if self.erased:
            reasons.append("erased")
        if self.test_account:
            reasons.append("test_account")
        return reasons


class World:
    """The source systems of one test case: writes raw rows through `wh` and records every
    consent event in the oracle. Times come from a logical clock (one hour per event, UTC);
    back-office systems (OMS, call centre) get the same instant as Japan wall-clock time."""

    START = datetime(2024, 4, 1, tzinfo=UTC)

    def __init__(self, wh: Warehouse):
        self.wh = wh
        self.people: list[Person] = []
        self.ticks = 0
        self.requests = 0
        self.sends = 0
        self.oms_rows: dict[str, dict[str, Any]] = {}
        self.shop_rows: dict[int, dict[str, Any]] = {}

    # ---- time ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        self.ticks += 1
        return self.START + timedelta(hours=self.ticks)

    @staticmethod
    def jst(at: datetime) -> datetime:
        """Japan wall-clock time without zone, as the OMS and the call centre write it."""
        return (at.astimezone(UTC) + JST_OFFSET).replace(tzinfo=None)

    # ---- people and records --------------------------------------------------------------------

    def add_person(self, *, test_account: bool = False) -> Person:
        i = len(self.people)
        person = Person(
            idx=i,
            last_name=LAST_NAMES[i % len(LAST_NAMES)],
            first_name=FIRST_NAMES[(i // len(LAST_NAMES)) % len(FIRST_NAMES)] + ("" if i < 144 else str(i)),
            email=f"person{i:04d}@yorisoi-consent.test",
            phone=f"090-7{i // 10000:03d}-{i % 10000:04d}",
            postal_code=f"150-{i:04d}",
            test_account=test_account,
        )
        self.people.append(person)
        return person

    def add_shop_account(
        self, person: Person, *, email_state: str = "not_subscribed", sms_state: str = "not_subscribed"
    ) -> int:
        at = self.now()
        shop_id = 7_000_000 + 10 * person.idx + len(person.shop_ids)
        person.shop_ids.append(shop_id)
        self.shop_rows[shop_id] = {
            "id": shop_id,
            "email": person.email if len(person.shop_ids) == 1 else person.email.upper(),
            "first_name": person.first_name,
            "last_name": person.last_name,
            "phone": person.phone if len(person.shop_ids) == 1 else "+81" + person.phone[1:].replace("-", ""),
            "created_at": at,
            "updated_at": at,
            "state": "enabled",
            "tags": "staff,test" if person.test_account else "",
            "email_marketing_state": email_state,
            "email_marketing_opt_in_level": "single_opt_in" if email_state == "subscribed" else None,
            "email_marketing_updated_at": at if email_state in ("subscribed", "unsubscribed") else None,
            "sms_marketing_state": sms_state,
            "sms_marketing_updated_at": at if sms_state in ("subscribed", "unsubscribed") else None,
            "zip": person.postal_code,
            "province": "東京都",
            "city": "渋谷区",
            "address1": f"神南1-{person.idx}-1",
            "verified_email": True,
        }
        self.wh.upsert("ecommerce__customers", [self.shop_rows[shop_id]])
        for channel, state in (("email", email_state), ("sms", sms_state)):
            if state in ("subscribed", "unsubscribed"):
                action = "opt_in" if state == "subscribed" else "opt_out"
                person.events[channel].append(Event(at, action, "shop", f"new account {shop_id}"))
        return shop_id

    def add_oms_customer(
        self,
        person: Person,
        *,
        email_permission: bool = False,
        dm_permission: bool = False,
        call_permission: bool = False,
        blacklisted: bool = False,
        birth_date: date | None = None,
    ) -> str:
        at = self.now()
        code = f"C{person.idx:05d}{len(person.oms_codes):03d}"
        person.oms_codes.append(code)
        # Keyed in by an operator: full-width space in the name, hyphen-less phone, upper-case email.
        self.oms_rows[code] = {
            "customer_id": code,
            "name": person.full_name,
            "name_kana": None,
            "phone": person.phone.replace("-", ""),
            "email": person.email.upper() if len(person.oms_codes) > 1 else person.email,
            "postal_code": "〒" + person.postal_code,
            "prefecture": "東京都",
            "address": f"渋谷区神南1-{person.idx}-1",
            "birth_date": birth_date,
            "gender": None,
            "email_permission": email_permission,
            "dm_permission": dm_permission,
            "call_permission": call_permission,
            "blacklisted": blacklisted,
            "blacklist_reason": "未払い" if blacklisted else None,
            "registered_at": self.jst(at),
            "updated_at": self.jst(at),
        }
        self.wh.upsert("oms__customers", [self.oms_rows[code]])
        if email_permission:
            person.events["email"].append(Event(at, "opt_in", "oms", f"{code} registered with mail_permission"))
        for channel, flag in (("dm", dm_permission), ("call", call_permission)):
            action = "opt_in" if flag else "opt_out"
            person.events[channel].append(Event(at, action, "oms", f"{code} registered with {channel}={flag}"))
        if blacklisted:
            person.blacklisted = True
        return code

    def add_pos_member(self, person: Person) -> str:
        """A store member card (no consent of its own): kana, birthday, phone and email."""
        at = self.now()
        card = f"M{person.idx:06d}{len(person.pos_cards):02d}"
        person.pos_cards.append(card)
        row = {
            "card_no": card,
            "name_kana": person.name_kana,
            "phone": person.phone,
            "birth_date": date(1980, 1, 1) + timedelta(days=person.idx),
            "postal_code": person.postal_code.replace("-", ""),
            "email": person.email,
            "home_store": "S001",
            "joined_on": self.jst(at).date(),
            "updated_on": self.jst(at).date(),
        }
        self.wh.upsert("sftp__pos_members", [row], source_file=f"members_{at:%Y%m%d}.csv")
        return card

    def add_line_user(self, person: Person, *, follow: bool = True) -> str:
        at = self.now()
        uid = f"U{person.idx:08d}{len(person.line_user_ids):02d}" + "0" * 22
        person.line_user_ids.append(uid)
        self.wh.upsert(
            "sftp__line_friends", [{"line_user_id": uid, "event": "follow" if follow else "unfollow", "event_at": at}]
        )
        person.events["line"].append(Event(at, "opt_in" if follow else "opt_out", "line", f"{uid} first event"))
        if person.shop_ids:
            self.wh.upsert(
                "sftp__line_id_links", [{"line_user_id": uid, "ec_customer_id": person.shop_ids[0], "linked_at": at}]
            )
        return uid

    # ---- consent changes -----------------------------------------------------------------------

    def shop_marketing(
        self, person: Person, channel: str, state: str, *, account: int = 0, at=None, dated: bool = True
    ) -> None:
        """The shop account's email or SMS marketing state changes (the API returns the latest);
        `dated=False`: the API gives no consent date (legacy accounts)."""
        assert channel in ("email", "sms")
        at = at or self.now()
        shop_id = person.shop_ids[account % len(person.shop_ids)]
        row = self.shop_rows[shop_id]
        row.update(
            {
                f"{channel}_marketing_state": state,
                f"{channel}_marketing_updated_at": at if dated else None,
                "updated_at": max(row["updated_at"], at),
            }
        )
        if channel == "email":
            row["email_marketing_opt_in_level"] = "confirmed_opt_in" if state == "subscribed" else None
        self.wh.upsert("ecommerce__customers", [row])
        action = {"subscribed": "opt_in", "unsubscribed": "opt_out"}.get(state)
        if action:
            detail = f"account {shop_id} {state}" + ("" if dated else " without a date")
            person.events[channel].append(Event(at, action, "shop", detail, dated))

    def esp_unsubscribe(self, person: Person, *, account: int = 0, at=None, by_email_only: bool = False) -> None:
        """An unsubscribe-link click in an email campaign (the email provider's send log);
        `by_email_only`: the send names no shop account, only the address."""
        at = at or self.now()
        self.sends += 1
        shop_id = None if by_email_only or not person.shop_ids else person.shop_ids[account % len(person.shop_ids)]
        self.wh.upsert(
            "sftp__esp_sends",
            [
                {
                    "send_id": self.sends,
                    "campaign_id": 1,
                    "ec_customer_id": shop_id,
                    "email": person.email,
                    "variant": "A",
                    "sent_at": at - timedelta(minutes=30),
                    "delivered": True,
                    "bounce_type": None,
                    "opened_at": at - timedelta(minutes=5),
                    "clicked_at": at,
                    "unsubscribed_at": at,
                }
            ],
            source_file=f"sends_{at:%Y%m}.csv",
        )
        person.events["email"].append(Event(at, "opt_out", "esp", f"send {self.sends}"))

    def callcenter_request(
        self, person: Person, request_type: str, channel: str, *, by: str = "email", at=None, name: str | None = None
    ) -> None:
        """A call-centre request (配信停止 / 発送停止 / 架電停止 / 削除依頼), identifying the caller
        by email, OMS customer code, phone, all of them, or (`by="name"`) the name alone; `name`
        is the name as the operator typed it (the person's own by default)."""
        at = at or self.now()
        self.requests += 1
        if by == "code" and not person.oms_codes:
            by = "email"
        # Operators type contact details every which way: vary them (normalisation must match).
        fmt = self.requests % 3
        phone = [person.phone, person.phone.replace("-", ""), _full_width(person.phone)][fmt]
        email = [person.email, person.email.upper(), person.email.replace("@", "＠")][fmt]
        row = {
            "request_no": f"CC{self.requests:07d}",
            "received_at": self.jst(at),
            "customer_code": person.oms_codes[0] if by in ("code", "all") and person.oms_codes else None,
            "name": name or f"{person.last_name} {person.first_name}",
            "phone": phone if by in ("phone", "all") else None,
            "email": email if by in ("email", "all") else None,
            "channel": channel,
            "request_type": request_type,
        }
        self.wh.upsert("sftp__callcenter_requests", [row], source_file=f"requests_{at:%Y%m}.csv")
        stopped = {
            "配信停止": CHANNELS if channel == "all" else (channel,),
            "発送停止": ("dm",),
            "架電停止": ("call",),
            "削除依頼": CHANNELS,
        }[request_type]
        for ch in stopped:
            person.events[ch].append(Event(at, "opt_out", "callcenter", f"{row['request_no']} {request_type}"))
        if request_type == "削除依頼":
            person.erased = True

    def line_event(self, person: Person, follow: bool, *, at=None) -> None:
        at = at or self.now()
        uid = person.line_user_ids[0]
        self.wh.upsert(
            "sftp__line_friends",
            [{"line_user_id": uid, "event": "follow" if follow else "unfollow", "event_at": at}],
            source_file=f"friends_{at:%Y%m}.csv",
        )
        person.events["line"].append(
            Event(at, "opt_in" if follow else "opt_out", "line", "follow" if follow else "block")
        )

    def oms_update(self, person: Person, *, code_index: int = 0, **flags: bool | str) -> None:
        """An operator changes flags of an OMS customer (dm/call/email permission, blacklist)."""
        at = self.now()
        code = person.oms_codes[code_index % len(person.oms_codes)]
        row = self.oms_rows[code]
        for name, value in flags.items():
            row[name] = value
        if "blacklisted" in flags and "blacklist_reason" not in flags:
            row["blacklist_reason"] = "未払い" if flags["blacklisted"] else None
        row["updated_at"] = self.jst(at)
        self.wh.upsert("oms__customers", [row])
        for channel in ("dm", "call"):
            if f"{channel}_permission" in flags:
                action = "opt_in" if flags[f"{channel}_permission"] else "opt_out"
                person.events[channel].append(
                    Event(at, action, "oms", f"{code} {channel}={flags[f'{channel}_permission']}")
                )
        if flags.get("email_permission"):
            person.events["email"].append(Event(at, "opt_in", "oms", f"{code} mail_permission=1"))
        # An email flag switched off is "not given on the order form", not a withdrawal (documented).
        if "blacklisted" in flags:
            person.blacklisted = any(self.oms_rows[c]["blacklisted"] for c in person.oms_codes)

    # ---- what the warehouse says --------------------------------------------------------------

    def person_id(self, person: Person) -> str:
        """The one person_id holding the person's records (after a rebuild)."""
        ids = self.observed().person_ids(person)
        assert len(ids) == 1, f"person {person.idx} should be one person_id, is {sorted(ids)}"
        return ids.pop()

    def deliverable_channels(self, person: Person) -> set[str]:
        """Rebuild, then the channels marts.deliverable_customers lists the person on."""
        self.wh.rebuild()
        rows = self.wh.query(
            "select channel from marts.deliverable_customers where person_id = ?", [self.person_id(person)]
        )
        return {c for (c,) in rows}

    def observed(self) -> Observation:
        wh = self.wh
        bridge = dict(wh.query("select record_key, person_id from marts.bridge_customer_identities"))
        deliverable: dict[str, set[str]] = {c: set() for c in CHANNELS}
        for person_id, channel in wh.query("select person_id, channel from marts.deliverable_customers"):
            deliverable[channel].add(person_id)
        return Observation(bridge, deliverable)


@dataclass
class Observation:
    bridge: dict[str, str]  # record_key -> person_id
    deliverable: dict[str, set[str]]  # channel -> person_ids

    def person_ids(self, person: Person) -> set[str]:
        return {self.bridge[r] for r in person.records() if r in self.bridge}


def violations(world: World, obs: Observation) -> list[str]:
    """docs/reliability.md #1: every oracle person suppressed on a channel is absent from that channel's
    deliverable list, through every person_id that holds one of their records."""
    problems = []
    for person in world.people:
        records = person.records()
        missing = sorted(r for r in records if r not in obs.bridge)
        if missing:
            problems.append(f"person {person.idx}: records {missing} have no person_id in bridge_customer_identities")
        for channel in CHANNELS:
            reasons = person.suppression_reasons(channel)
            if not reasons:
                continue
            leaked = sorted(obs.person_ids(person) & obs.deliverable[channel])
            if leaked:
                problems.append(
                    f"person {person.idx} is deliverable on {channel} as {leaked} although {reasons}; "
                    f"events: {describe_events(person, channel)}"
                )
    return problems


def identity_problems(world: World, obs: Observation) -> list[str]:
    """Each oracle person's records share one person_id, and no two people share one."""
    problems = []
    owner: dict[str, int] = {}
    for person in world.people:
        ids = obs.person_ids(person)
        if len(ids) > 1:
            problems.append(f"person {person.idx} is split into {sorted(ids)}: {sorted(person.records())}")
        for pid in ids:
            if pid in owner and owner[pid] != person.idx:
                problems.append(f"people {owner[pid]} and {person.idx} are merged into {pid}")
            owner[pid] = person.idx
    return problems


def _full_width(text: str) -> str:
    """ASCII digits and hyphens as their full-width forms (０９０－...), as some operators type them."""
    return text.translate({**{ord(d): ord(d) + 0xFEE0 for d in "0123456789"}, ord("-"): 0xFF0D})


def describe_events(person: Person, channel: str) -> str:
    return "; ".join(
        f"{e.at:%m-%d %H:%M} {e.action} via {e.source} ({e.detail})" for e in sorted(person.events[channel])
    )


def late_time(latest: datetime, hours_back: int) -> datetime:
    """A time strictly before `latest`, off the logical clock's whole hours (no accidental ties)."""
    return latest - timedelta(hours=hours_back, minutes=30)


def _fit(value: Any, type_: pa.DataType) -> Any:
    """The harness numbers its records; raw identifiers are text (a brand's IDs may hold letters),
    so a number bound for a text column lands as its decimal string, as the extractors land it."""
    if pa.types.is_string(type_) and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
