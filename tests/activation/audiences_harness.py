"""Test support for the audience tests: a small warehouse file with the marts activation reads,
written by the test, and audience / destination definitions in a temporary folder.

The warehouse has the real column names of marts.dim_customers, marts.deliverable_customers,
marts.fct_orders and the selection marts the sample audiences read (trigger_cart_abandonment,
trigger_second_purchase_nudge, customer_status), so the product code runs unchanged on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from yorisoi.activation.selection.definitions import (
    Audience,
    Destinations,
    load_audience,
    load_destinations,
)
from yorisoi.activation.selection.sendtime import empty_marks

TEST_SECRET = b"audience-tests-secret-0123456789abcdef"
OTHER_SECRET = b"another-secret-for-the-same-people-42"
AS_OF = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo

DIM_COLUMNS = {
    "person_id": "varchar",
    "full_name": "varchar",
    "name_kana": "varchar",
    "email": "varchar",
    "phone": "varchar",
    "postal_code": "varchar",
    "prefecture": "varchar",
    "address": "varchar",
    "birth_date": "date",
    "gender": "varchar",
    "line_user_id": "varchar",
    "is_test_account": "boolean",
    "is_blacklisted": "boolean",
    "is_erased": "boolean",
}


def person(i: int | str, **overrides: Any) -> dict[str, Any]:
    """A golden-record row for person `i` with every contact field filled."""
    n = int(i) if str(i).isdigit() else abs(hash(i)) % 10_000
    pid = f"P{i:05d}" if isinstance(i, int) else str(i)
    row = {
        "person_id": pid,
        "full_name": f"山田花子{n}",
        "name_kana": "ヤマダハナコ",
        "email": f"{pid.lower()}@example.jp",
        "phone": f"+8190{n:08d}",
        "postal_code": "1500041",
        "prefecture": "東京都",
        "address": f"渋谷区神南1-{n}-1",
        "birth_date": None,
        "gender": None,
        "line_user_id": f"U{n:032d}",
        "is_test_account": False,
        "is_blacklisted": False,
        "is_erased": False,
    }
    row.update(overrides)
    return row


@dataclass
class TinyWarehouse:
    """marts.* tables in a DuckDB file; `write` replaces their rows (one writer, then closed,
    as dbt would leave it)."""

    path: Path
    people: list[dict[str, Any]] = field(default_factory=list)
    deliverable: set[tuple[str, str]] = field(default_factory=set)  # (person_id, channel)
    selections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # mart -> rows
    orders: list[dict[str, Any]] = field(default_factory=list)
    esp_events: list[dict[str, Any]] = field(default_factory=list)  # person_id, opened_at, clicked_at

    _memory: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @classmethod
    def in_memory(cls) -> TinyWarehouse:
        """The same tables in an in-memory database (fast enough to rewrite after every step of
        a state machine); read it through `connect()`."""
        wh = cls(Path(":memory:"))
        wh._memory = duckdb.connect()
        # The export keys contact values with UDFs; on an in-memory database they live in the
        # catalog every cursor shares, so they are registered once here, on the connection that
        # outlives the cursors.
        from yorisoi.privacy.duckdb_udfs import register

        register(wh._memory, TEST_SECRET)
        return wh

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to read from: the file read-only (as the product opens it), or a
        cursor on the in-memory database."""
        if self._memory is not None:
            return self._memory.cursor()
        from yorisoi.activation.selection.membership import connect_warehouse

        return connect_warehouse(self.path)

    def write(self) -> None:
        con = self._memory.cursor() if self._memory is not None else duckdb.connect(str(self.path))
        try:
            con.execute("create schema if not exists marts")
            con.execute("create schema if not exists staging")
            cols = ", ".join(f"{c} {t}" for c, t in DIM_COLUMNS.items())
            con.execute(f"create or replace table marts.dim_customers ({cols})")
            if self.people:
                frame = pd.DataFrame(self.people, columns=list(DIM_COLUMNS))
                con.execute("insert into marts.dim_customers select * from frame")
            con.execute(
                "create or replace table marts.deliverable_customers (deliverable_id varchar, person_id varchar, "
                "channel varchar, consented_at timestamptz, consent_source varchar, consent_record varchar, "
                "consent_evidence varchar)"
            )
            rows = sorted(self.deliverable)
            if rows:
                frame = pd.DataFrame(rows, columns=["person_id", "channel"])
                con.execute(
                    "insert into marts.deliverable_customers select person_id || ':' || channel, person_id, channel, "
                    "now(), 'test', 'test', 'test' from frame"
                )
            con.execute(
                "create or replace table marts.fct_orders (order_key varchar, source varchar, order_id varchar, "
                "person_id varchar, status varchar, is_counted boolean, ordered_at timestamptz, total bigint)"
            )
            if self.orders:
                frame = pd.DataFrame(self.orders)
                con.execute("insert into marts.fct_orders by name select * from frame")
            if self.esp_events:
                bridge = pd.DataFrame(  # noqa: F841
                    [
                        {
                            "record_key": f"ecommerce:{i}",
                            "source": "ecommerce",
                            "source_id": str(i),
                            "person_id": e["person_id"],
                        }
                        for i, e in enumerate(self.esp_events)
                    ]
                )
                sends = pd.DataFrame(  # noqa: F841
                    [
                        {
                            "send_id": str(i),
                            "ec_customer_id": str(i),
                            "opened_at": e.get("opened_at"),
                            "clicked_at": e.get("clicked_at"),
                        }
                        for i, e in enumerate(self.esp_events)
                    ]
                )
                con.execute("create or replace table marts.bridge_customer_identities as select * from bridge")
                con.execute(
                    "create or replace table staging.stg_esp__sends as select send_id, ec_customer_id, "
                    "cast(opened_at as timestamptz) as opened_at, "
                    "cast(clicked_at as timestamptz) as clicked_at from sends"
                )
            self._write_suppressed_contact_keys(con)
            empty_marks(con)  # no raw tables: nothing landed since this "build"
            for mart, rows in self.selections.items():
                frame = pd.DataFrame(rows)
                if frame.empty:
                    con.execute(f"create or replace table marts.{mart} (person_id varchar)")
                else:
                    con.execute(f"create or replace table marts.{mart} as select * from frame")
        finally:
            con.close()

    def _write_suppressed_contact_keys(self, con: duckdb.DuckDBPyConnection) -> None:
        """marts.suppressed_contact_keys as dbt leaves it, from the golden records alone (the
        test warehouse has no source records): the keyed contact value, under TEST_SECRET, of
        every person on every channel they are not deliverable on. Hashed here in Python, the
        way the dbt model's match_key does."""
        from yorisoi.activation.selection.membership import CONTACT_KEYS
        from yorisoi.privacy.keys import hmac_sha256
        from yorisoi.privacy.normalize import norm_email, norm_name, norm_phone, norm_postal

        def value(channel: str, p: Mapping[str, Any]) -> str | None:
            if channel == "email":
                return norm_email(p["email"])
            if channel in ("sms", "call"):
                return norm_phone(p["phone"])
            if channel == "line":
                return p["line_user_id"]
            postal, address = norm_postal(p["postal_code"]), norm_name(p["address"])
            return f"{postal}|{address}" if postal and address else None

        held: dict[tuple[str, str], list[str]] = {}
        for p in self.people:
            for channel, (key_type, _) in CONTACT_KEYS.items():
                v = value(channel, p)
                if v is not None and (p["person_id"], channel) not in self.deliverable:
                    held.setdefault((channel, hmac_sha256(f"{key_type}|{v}", TEST_SECRET)), []).append(p["person_id"])
        frame = pd.DataFrame(  # noqa: F841 (read by DuckDB's replacement scan)
            [
                {
                    "contact_key_id": f"{channel}:{key}",
                    "channel": channel,
                    "key_type": CONTACT_KEYS[channel][0],
                    "contact_key": key,
                    "suppressed_records": len(people),
                    "example_record_key": min(people),
                }
                for (channel, key), people in held.items()
            ],
            columns=[
                "contact_key_id",
                "channel",
                "key_type",
                "contact_key",
                "suppressed_records",
                "example_record_key",
            ],
        )
        con.execute("create or replace table marts.suppressed_contact_keys as select * from frame")


def cart_rows(person_ids: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "person_id": p,
            "trigger": "cart_abandonment",
            "triggered_on": "2026-11-01",
            "last_product_name": "煎茶 100g",
            "last_product_sku": "YS-00011",
            "started_checkout": True,
        }
        for p in person_ids
    ]


def destinations_yaml(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """include/destinations.yml as data (so a test can change a cap or a threshold)."""
    from yorisoi.activation.selection.definitions import DEFAULT_DESTINATIONS_FILE

    doc = yaml.safe_load(DEFAULT_DESTINATIONS_FILE.read_text("utf-8"))
    for key, value in (overrides or {}).items():
        doc["defaults"][key] = value
    return doc


def write_destinations(folder: Path, doc: Mapping[str, Any] | None = None) -> Destinations:
    path = folder / "destinations.yml"
    path.write_text(yaml.safe_dump(dict(doc or destinations_yaml()), allow_unicode=True), "utf-8")
    return load_destinations(path)


def write_audience(folder: Path, spec: Mapping[str, Any], destinations: Destinations) -> Audience:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['name']}.yml"
    path.write_text(yaml.safe_dump(dict(spec), allow_unicode=True, sort_keys=False), "utf-8")
    return load_audience(path, destinations)


def audience_spec(name: str, **overrides: Any) -> dict[str, Any]:
    """A cart-abandonment-like audience on the DM file destination (no templates needed)."""
    spec: dict[str, Any] = {
        "name": name,
        "owner": "tests",
        "description": "test audience",
        "selection": {"mart": "trigger_cart_abandonment"},
        "channels": ["dm"],
        "destinations": ["sftp_dm_list"],
        "priority": 1,
        "holdout_percent": 10,
        "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
        "columns": ["full_name", "postal_code", "address", "variant"],
    }
    spec.update(overrides)
    return spec


class MemoryStore:
    """The slice of the ActivationStore contract the audience code uses (spec8 item 1), in
    memory: audience_members rows, and a send ledger the test fills."""

    def __init__(self) -> None:
        self.members: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []

    def write_members(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.members += [dict(r) for r in rows]

    def last_members(self, audience: str) -> list[dict[str, Any]]:
        rows = [r for r in self.members if r["audience"] == audience]
        if not rows:
            return []
        last = max(r["computed_at"] for r in rows)
        run = next(r["run_id"] for r in rows if r["computed_at"] == last)
        return [r for r in rows if r["run_id"] == run]

    def record_send(self, audience: str, channel: str, person_id: str, at: datetime, interval: str = "i") -> None:
        self.ledger.append(
            {
                "audience": audience,
                "channel": channel,
                "person_id": person_id,
                "interval": interval,
                "status": "sent",
                "done_at": at,
            }
        )

    def sent_counts(self, channel: str, since: datetime) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.ledger:
            if r["channel"] == channel and r["status"] == "sent" and r["done_at"] >= since:
                out[r["person_id"]] = out.get(r["person_id"], 0) + 1
        return out

    def send_history(self, audiences: list[str]) -> list[dict[str, Any]]:
        frame = pd.DataFrame([r for r in self.ledger if r["audience"] in audiences and r["status"] == "sent"])
        if frame.empty:
            return []
        g = frame.groupby(["audience", "person_id"]).agg(
            sends=("interval", "nunique"), first_sent_at=("done_at", "min")
        )
        return g.reset_index().to_dict("records")


def days_ago(n: float) -> datetime:
    return AS_OF - timedelta(days=n)


# ---- the upstream results the circuit breaker reads ------------------------------------------------


def write_dbt_results(
    path: Path,
    tests: Mapping[str, str] | None = None,
    *,
    models: Mapping[str, str] | None = None,
    which: str = "build",
    generated_at: datetime | None = None,
) -> Path:
    """A run_results.json as dbt 1.11 writes it (the fields the breaker reads)."""
    import json

    tests = (
        {
            "test.yorisoi.not_null_deliverable_customers_person_id.1a2b": "pass",
            "test.yorisoi.unique_trigger_cart_abandonment_person_id.3c4d": "pass",
            "unit_test.yorisoi.trigger_cart_abandonment.trigger_cart_abandonment_boundaries": "pass",
        }
        if tests is None
        else tests
    )
    models = {"model.yorisoi.trigger_cart_abandonment": "success"} if models is None else models
    results = [
        {
            "unique_id": uid,
            "status": status,
            "message": "Got 3 results, configured to fail if != 0" if status == "fail" else None,
        }
        for uid, status in {**models, **tests}.items()
    ]
    doc = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.16",
            "generated_at": (generated_at or AS_OF - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        },
        "results": results,
        "elapsed_time": 1.0,
        "args": {"which": which},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), "utf-8")
    return path


def write_quality_results(
    path: Path, success: bool = True, *, validated_at: datetime | None = None, failed: list[str] | None = None
) -> Path:
    """The marts quality gate's summary (yorisoi.activation.selection.breaker.QUALITY_RESULTS)."""
    import json

    doc = {
        "layer": "marts",
        "success": success,
        "validated_at": (validated_at or AS_OF - timedelta(minutes=30)).isoformat(),
        "failed_suites": [] if success else ["marts.deliverable_customers"],
        "failed_expectations": failed
        or (
            []
            if success
            else ["marts.deliverable_customers: expect_column_values_to_not_be_null(column=person_id): 3 unexpected"]
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), "utf-8")
    return path


# ---- a loopback SMTP server ---------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the loopback SMTP server received."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"

    def recipients(self) -> list[str]:
        return [r for _, rcpts, _ in self.received for r in rcpts]


def smtp_server(conn_id: str, environ: Any) -> tuple[Any, Mailbox]:
    """An aiosmtpd server on 127.0.0.1 and the Airflow connection `conn_id` pointing at it (set
    through `environ`, a pytest MonkeyPatch). Returns (controller, mailbox); stop the controller."""
    import json
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"from_email": "news@yorisoi-tea.example.jp", "disable_tls": True, "disable_ssl": True, "timeout": 5},
    }
    environ.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    return controller, mailbox


# ---- a whole run's context ------------------------------------------------------------------------


MAIL_AUDIENCE: dict[str, Any] = {
    "name": "cart_mail",
    "owner": "tests",
    "description": "cart reminder by email",
    "selection": {"mart": "trigger_cart_abandonment"},
    "channels": ["email"],
    "destinations": [
        {
            "name": "smtp_email",
            "columns": ["full_name", "variant", "last_product_name"],
            "templates": {
                "A": {"subject": "{full_name}様 カートに商品があります", "body": "<p>{last_product_name}</p>"},
                "B": {"subject": "{full_name}様 送料無料", "body": "<p>{last_product_name} 送料無料</p>"},
            },
        }
    ],
    "priority": 1,
    "holdout_percent": 10,
    "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
    "columns": ["full_name", "variant", "last_product_name"],
    "breaker": {"max_size_change": 0.5, "min_size_change_rows": 10},
}


def fast_destinations_doc() -> dict[str, Any]:
    """include/destinations.yml with the client-side rate limits lifted (loopback servers)."""
    doc = destinations_yaml()
    for d in doc["destinations"]:
        d.pop("rate_per_second", None)
    return doc


AUTHOR = "author@yorisoi-tea.example.jp"  # requests exports (scenario_author)
APPROVER = "admin@yorisoi-tea.example.jp"  # approves them (admin)


def approve_all(ctx: Any, *names: str) -> None:
    """Record a request by AUTHOR and an approval by APPROVER of the current definition of each
    audience (all, or `names`) in the operation log, breaker overrides accepted."""
    from yorisoi.activation import approvals

    for audience in ctx.audiences:
        if names and audience.name not in names:
            continue
        approvals.request(audience, role="scenario_author", actor=AUTHOR)
        approvals.approve(audience, role="admin", actor=APPROVER, allow_breaker_override=True)


def make_context(
    folder: Path,
    wh: TinyWarehouse,
    specs: Iterable[Mapping[str, Any]],
    store: Any,
    *,
    approved: bool = True,
    **overrides: Any,
):
    """A run.Context over the test's warehouse, audiences, destinations, store and secret; the
    breaker reads `folder`/run_results.json and `folder`/quality.json. `approved`: every
    audience's definition is requested and approved in the operation log (approve_all)."""
    from yorisoi.activation.run import Context
    from yorisoi.activation.selection.definitions import load_audiences

    destinations = write_destinations(folder, overrides.pop("destinations_doc", None) or fast_destinations_doc())
    audiences_dir = folder / "audiences"
    audiences_dir.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        (audiences_dir / f"{spec['name']}.yml").write_text(yaml.safe_dump(dict(spec), allow_unicode=True), "utf-8")
    ctx = Context(
        audiences=load_audiences(audiences_dir, destinations),
        destinations=destinations,
        warehouse=wh.path,
        store_factory=lambda: store,
        secret_factory=lambda: TEST_SECRET,
        dbt_results=folder / "run_results.json",
        quality_results=folder / "quality.json",
        **overrides,
    )
    if approved:
        approve_all(ctx)
    return ctx


@contextlib.contextmanager
def cart_mail_over_smtp(
    tmp_path: Path, monkeypatch: Any, people: int, *, role: str | None = "admin", approved: bool = True
) -> Iterator[tuple[Any, Mailbox, TinyWarehouse, Any]]:
    """The cart_mail audience over a loopback SMTP server (the smtp_email destination): `people`
    people (P00000 ...) deliverable by email in the cart trigger, a store, passing dbt and GX
    results, and YORISOI_ROLE set to `role` (unset when None). Yields (ctx, mailbox, warehouse,
    store); the server stops and the store closes on exit."""
    from yorisoi.activation.delivery.store import ActivationStore

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    if role is None:
        monkeypatch.delenv("YORISOI_ROLE", raising=False)
    else:
        monkeypatch.setenv("YORISOI_ROLE", role)
    controller, mailbox = smtp_server("yorisoi_smtp", monkeypatch)
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(people)]
    ids = [p["person_id"] for p in wh.people]
    wh.deliverable = {(p, "email") for p in ids}
    wh.selections = {"trigger_cart_abandonment": cart_rows(ids)}
    wh.write()
    store = ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}")
    ctx = make_context(tmp_path, wh, [MAIL_AUDIENCE], store, approved=approved)
    write_dbt_results(ctx.dbt_results)
    write_quality_results(ctx.quality_results)
    try:
        yield ctx, mailbox, wh, store
    finally:
        controller.stop()
        store.close()
