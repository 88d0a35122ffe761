"""OMS extraction through the mapping file, landed incrementally (yorisoi.sources.oms).

The XS brand's OMS is read from SQLite directly, and from PostgreSQL / MariaDB after `load_oms`
copied it into a schema (PostgreSQL) / database (MariaDB) of its own, dropped afterwards. Server
URLs can be overridden with YORISOI_TEST_POSTGRES_URL and YORISOI_TEST_MARIADB_URL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from yorisoi.sources import oms as oms_module
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.oms import ENTITIES, ExtractError, extract, ingest_oms, load_mapping, select_statement
from yorisoi.sources.registry import DEFAULT_REGISTRY, PROJECT_ROOT, RegistryError, Source, load_registry
from yorisoi_kit.oms_load import OMS_TABLES, load_oms

POSTGRES_URL = os.environ.get("YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("YORISOI_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
EXAMPLE_MAPPING = PROJECT_ROOT / "include" / "sources" / "examples" / "oms_mapping_kikan_x.yml"
LOAD_DATE = dt.date(2026, 11, 1)
TS = "%Y-%m-%d %H:%M:%S"


@pytest.fixture(scope="module")
def source() -> Source:
    return load_registry(DEFAULT_REGISTRY).source("oms")


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


# --------------------------------------------------------------------------------------------
# Source databases: SQLite (a copy), or a unique PostgreSQL schema / MariaDB database
# --------------------------------------------------------------------------------------------


@dataclass
class Db:
    kind: str
    engine: sa.Engine
    name: str  # schema / database name (or the SQLite file's stem); PostgreSQL application_name

    def value(self, moment: dt.datetime) -> object:
        """A timestamp as the database keeps it: ISO text in SQLite, a datetime on the servers."""
        return moment.strftime(TS) if self.kind == "sqlite" else moment


@contextmanager
def _database(kind: str, tmp_path: Path, oms_file: Path | None) -> Iterator[Db]:
    """An empty database of `kind` (with the OMS copied in when `oms_file` is given)."""
    name = f"yorisoi_test_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        path = tmp_path / f"{name}.sqlite"
        if oms_file is not None:
            shutil.copy(oms_file, path)
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            yield Db(kind, engine, name)
        finally:
            engine.dispose()
        return
    url = POSTGRES_URL if kind == "postgres" else MARIADB_URL
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        if kind == "postgres":
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        else:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    if kind == "postgres":
        engine = sa.create_engine(url, connect_args={"options": f"-c search_path={name}", "application_name": name})
    else:
        engine = sa.create_engine(sa.make_url(url).set(database=name).update_query_dict({"charset": "utf8mb4"}))
    try:
        if oms_file is not None:
            load_oms(oms_file, url, schema=name)
        yield Db(kind, engine, name)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE" if kind == "postgres" else f"DROP DATABASE {name}")
        admin.dispose()


KINDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=KINDS)
def oms_db(request: pytest.FixtureRequest, synth_xs: Path, tmp_path: Path) -> Iterator[Db]:
    """The XS brand's OMS on SQLite, PostgreSQL or MariaDB (a fresh copy per test: tests edit it)."""
    with _database(request.param, tmp_path, synth_xs / "oms" / "oms.sqlite") as db:
        yield db


@pytest.fixture(params=KINDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    with _database(request.param, tmp_path, None) as db:
        yield db


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _source_counts(db: Db) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one() for t in OMS_TABLES}


def _raw(wh: Warehouse, sql: str, params: list | None = None) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _raw_counts(wh: Warehouse) -> dict[str, int]:
    return {t: _raw(wh, f'select count(*) from raw."oms__{t}"')[0][0] for t in OMS_TABLES}


def _original_orders(synth_xs: Path) -> dict[str, tuple[dt.datetime, int]]:
    """order_no → (updated_at, total) in the generated OMS file (never edited by the tests)."""
    with closing(sqlite3.connect(synth_xs / "oms" / "oms.sqlite")) as db:
        rows = db.execute("SELECT order_no, updated_at, total FROM orders ORDER BY order_no").fetchall()
    return {no: (dt.datetime.strptime(at, TS), total) for no, at, total in rows}


def _update_orders(db: Db, order_nos: list[str], updated_at: dt.datetime, add: int) -> None:
    orders = sa.table("orders", sa.column("order_no"), sa.column("updated_at"), sa.column("total"))
    with db.engine.begin() as conn:
        conn.execute(
            orders.update()
            .where(orders.c.order_no.in_(order_nos))
            .values(updated_at=db.value(updated_at), total=orders.c.total + add)
        )


def _mark(wh: Warehouse, source: Source, table: str) -> dt.datetime:
    return dt.datetime.fromisoformat(wh.get_watermark(source.tables[table]))


# --------------------------------------------------------------------------------------------
# Incremental ingestion
# --------------------------------------------------------------------------------------------


def test_first_run_rerun_and_incremental_run(oms_db: Db, source: Source, warehouse: Warehouse, synth_xs: Path) -> None:
    counts = _source_counts(oms_db)
    first = ingest_oms(warehouse, source, oms_db.engine, run_id="run1", load_date=LOAD_DATE, chunk_rows=400)
    assert {t: r.rows for t, r in first.items()} == counts
    assert _raw_counts(warehouse) == counts
    original = _original_orders(synth_xs)
    mark = _mark(warehouse, source, "orders")
    assert mark == max(at for at, _ in original.values())

    # Rerun of the same batches: nothing duplicated; a batch that already landed re-reads in full,
    # so the files it replaces in the lake still hold every row.
    again = ingest_oms(warehouse, source, oms_db.engine, run_id="run1", load_date=LOAD_DATE)
    assert {t: r.rows for t, r in again.items()} == counts
    assert _raw_counts(warehouse) == counts
    lake = warehouse.lake.folder("oms", "orders", LOAD_DATE)
    assert sum(pq.read_metadata(f).num_rows for f in lake.glob("run1_orders-*.parquet")) == counts["orders"]

    # 1% of orders corrected in the back office: a later updated_at and a new total.
    changed = sorted(original)[::100]
    new_at = dt.datetime(2026, 11, 1, 10, 0, 0)
    _update_orders(oms_db, changed, new_at, add=1)
    low = mark - dt.timedelta(days=3)
    expected = set(changed) | {no for no, (at, _) in original.items() if at >= low}
    assert len(expected) < counts["orders"] // 10  # an incremental read, not a full one

    second = ingest_oms(warehouse, source, oms_db.engine, run_id="run2", load_date=LOAD_DATE)
    assert second["orders"].rows == len(expected)
    landed = _raw(warehouse, "select order_id from raw.oms__orders where _batch_id = 'run2:orders'")
    assert {row[0] for row in landed} == expected
    # Lines are read through their orders: only the lines of the orders read above.
    lines_of_expected = _raw(
        warehouse,
        "select count(*) from raw.oms__order_lines where order_id in "
        "(select order_id from raw.oms__orders where _batch_id = 'run2:orders')",
    )[0][0]
    assert second["order_lines"].rows == lines_of_expected < counts["order_lines"] // 5
    assert second["items"].rows == counts["items"]
    assert second["customers"].rows < counts["customers"] // 5
    assert _raw_counts(warehouse) == counts
    rows = _raw(
        warehouse,
        "select order_id, total, updated_at from raw.oms__orders where order_id in (select unnest(?))",
        [changed],
    )
    assert sorted(rows) == [(no, original[no][1] + 1, new_at) for no in changed]
    assert _mark(warehouse, source, "orders") == new_at


def test_overlap_window_picks_up_late_corrections(
    oms_db: Db, source: Source, warehouse: Warehouse, synth_xs: Path
) -> None:
    ingest_oms(warehouse, source, oms_db.engine, run_id="run1", load_date=LOAD_DATE, tables=["orders"])
    mark = _mark(warehouse, source, "orders")
    original = _original_orders(synth_xs)
    old = [no for no, (at, _) in original.items() if at < mark - dt.timedelta(days=30)]
    inside, outside = old[0], old[1]
    # Both corrected after the last run, but stamped behind the watermark: one within the 3-day
    # overlap (picked up), one beyond it (not: that is what the overlap is for).
    _update_orders(oms_db, [inside], mark - dt.timedelta(days=2), add=7)
    _update_orders(oms_db, [outside], mark - dt.timedelta(days=4), add=7)

    ingest_oms(warehouse, source, oms_db.engine, run_id="run2", load_date=LOAD_DATE, tables=["orders"])
    totals = dict(_raw(warehouse, "select order_id, total from raw.oms__orders where order_id in (?, ?)", old[:2]))
    assert totals == {inside: original[inside][1] + 7, outside: original[outside][1]}
    assert _mark(warehouse, source, "orders") == mark  # the watermark never moves back


# --------------------------------------------------------------------------------------------
# The worked example: another 基幹 system's schema
# --------------------------------------------------------------------------------------------


KIKAN_X = {  # table: columns (":i" integer, ":t" DATETIME, else text), as Kikan X names them
    "KOKYAKU": "KOKYAKU_CD KOKYAKU_NM KOKYAKU_KANA TEL_NO MAIL_ADDR YUBIN_NO TODOFUKEN JUSHO SEINENGAPPI "
    "SEIBETSU_KBN:i MAIL_KYODAKU_FLG:i DM_KYODAKU_FLG:i TEL_KYODAKU_FLG:i TORIHIKI_TEISHI_FLG:i "
    "TORIHIKI_TEISHI_RIYU TOROKU_DT:t KOSHIN_DT:t",
    "JUCHU": "JUCHU_NO KOKYAKU_CD JUCHU_KBN:i TEIKI_NO JUCHU_DT:t SHUKKA_DT:t JUCHU_STS:i SHOKEI_KIN:i "
    "NEBIKI_KIN:i SORYO:i RIYO_PT:i FUYO_PT:i SEIKYU_KIN:i KOSHIN_DT:t",
    "JUCHU_MEISAI": "JUCHU_NO GYO_NO:i SHOHIN_CD SURYO:i TANKA:i TEIKA:i KINGAKU:i",
    "TEIKI": "TEIKI_NO KOKYAKU_CD SHOHIN_CD SHUKI_NISSU:i KAISHI_DT:t KAIYAKU_DT:t TEIKI_STS:i KOSHIN_DT:t",
    "SHOHIN": "SHOHIN_CD SHOHIN_NM BUNRUI_NM BRAND_NM TEIKA:i",
}


def _build_kikan_x(db: Db) -> None:
    """A small OMS in Kikan X's schema (upper-case romaji names, numeric codes), on any database."""
    at = dt.datetime(2026, 10, 1, 9, 30)
    shipped = at + dt.timedelta(days=2)
    rows = {
        "KOKYAKU": [
            ("K001", "髙橋 一郎", "タカハシ　イチロウ", "03-1234-5678", None, "150-0041", "東京都", "渋谷区神南1-2-3",
             "19760428", 1, 1, 0, 0, 0, None, at, at),
            ("K002", "山﨑 花子", "ﾔﾏｻﾞｷ ﾊﾅｺ", "06-1234-5678", "hanako@example.jp", "5300001", "大阪府", "北区梅田1-1",
             "", 2, 0, 1, 1, 1, "支払い遅延", at, at),
        ],
        "JUCHU": [  # JUCHU_KBN 1-4 (channel) and JUCHU_STS 1/2/9/8 (status), one day apart
            (f"J000{i}", "K001", kbn, None, at, None if sts == 1 else shipped, sts, 3300, 0, 550, 0, 33, 3850,
             at + dt.timedelta(days=i))
            for i, (kbn, sts) in enumerate([(1, 1), (2, 2), (3, 9), (4, 8)], start=1)
        ],
        "JUCHU_MEISAI": [("J0001", 1, "X-1", 1, 3300, 3300, 3300)],
        "TEIKI": [("T01", "K001", "X-1", 30, at, None, 1, at)],
        "SHOHIN": [("X-1", "化粧水", "スキンケア", "ヨリソイ", 3300)],
    }  # fmt: skip
    types = {"i": sa.Integer(), "t": sa.DateTime()}
    md = sa.MetaData()
    with db.engine.begin() as conn:
        for name, spec in KIKAN_X.items():
            columns = [c.partition(":") for c in spec.split()]
            table = sa.Table(name, md, *(sa.Column(c, types.get(t, sa.String(40))) for c, _, t in columns))
            table.create(conn)
            conn.execute(table.insert(), [dict(zip(table.c.keys(), row, strict=True)) for row in rows[name]])


def test_worked_example_mapping_of_another_kikan_system(empty_db: Db, source: Source) -> None:
    mapping = load_mapping(EXAMPLE_MAPPING, source.tables)  # valid for the registry's oms tables
    _build_kikan_x(empty_db)

    def read(entity: str, **kwargs) -> list[dict]:
        kwargs.setdefault("since", None)
        kwargs.setdefault("watermark_column", None)
        parts = list(extract(empty_db.engine, mapping, entity, chunk_rows=2, **kwargs))
        assert all(p.column_names == list(ENTITIES[entity]) for p in parts)
        return [row for p in parts for row in p.to_pylist()]

    orders = read("orders", watermark_column="updated_at")
    assert [(o["order_id"], o["channel"], o["status"]) for o in orders] == [
        ("J0001", "phone", "pending"),
        ("J0002", "catalogue", "shipped"),
        ("J0003", "fax", "cancelled"),
        ("J0004", "subscription", "returned"),
    ]
    assert orders[0]["ordered_at"] == dt.datetime(2026, 10, 1, 9, 30) and orders[0]["shipped_at"] is None
    assert orders[0]["total"] == 3850
    since = read("orders", watermark_column="updated_at", since=dt.datetime(2026, 10, 4, 9, 30))
    assert [o["order_id"] for o in since] == ["J0003", "J0004"]  # at or after `since`

    customers = {c["customer_id"]: c for c in read("customers")}
    assert customers["K001"]["gender"] == "M" and customers["K001"]["birth_date"] == dt.date(1976, 4, 28)
    assert customers["K002"]["gender"] == "F" and customers["K002"]["birth_date"] is None
    assert customers["K002"]["blacklisted"] is True and customers["K002"]["dm_permission"] is True
    assert read("subscriptions")[0]["status"] == "active"
    assert read("items") == [
        dict(item_code="X-1", item_name="化粧水", category="スキンケア", brand="ヨリソイ", taste=None, list_price=3300)
    ]  # `taste` is not in Kikan X: null
    assert read("order_lines")[0]["amount"] == 3300


def test_identifiers_are_quoted_by_the_dialect() -> None:
    from sqlalchemy.dialects import mysql, postgresql

    mapping = load_mapping(EXAMPLE_MAPPING)
    stmt = select_statement(mapping, "orders", watermark_column="updated_at", since=dt.datetime(2026, 1, 1))
    pg = str(stmt.compile(dialect=postgresql.dialect()))
    assert '"JUCHU"."JUCHU_NO" AS order_id' in pg and 'ORDER BY "JUCHU"."KOSHIN_DT"' in pg
    assert "%(since)s" in pg  # a bound parameter, never pasted in
    my = str(stmt.compile(dialect=mysql.dialect()))
    assert "`JUCHU`.`JUCHU_NO` AS order_id" in my


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_database_gone_mid_extract_lands_nothing(
    synth_xs: Path, tmp_path: Path, source: Source, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _database("postgres", tmp_path, synth_xs / "oms" / "oms.sqlite") as db:
        ingest_oms(warehouse, source, db.engine, run_id="run1", load_date=LOAD_DATE, tables=["orders"])
        mark = warehouse.get_watermark(source.tables["orders"])
        before = _raw(warehouse, "select count(*), sum(total), max(_loaded_at) from raw.oms__orders")
        original = _original_orders(synth_xs)
        _update_orders(db, sorted(original)[::50], dt.datetime(2026, 11, 1, 10, 0), add=1)

        real_extract = oms_module.extract
        admin = sa.create_engine(POSTGRES_URL)

        def extract_then_kill(*args, **kwargs):
            parts = real_extract(*args, **kwargs)
            try:
                yield next(parts)
                with admin.connect() as conn:
                    killed = conn.execute(
                        sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"),
                        {"a": db.name},
                    ).all()
                assert killed == [(True,)]
                yield from parts
            finally:
                parts.close()

        monkeypatch.setattr(oms_module, "extract", extract_then_kill)
        try:
            with pytest.raises(ExtractError, match=r"OMS source 'oms', table 'orders': .* after 10 rows read") as err:
                ingest_oms(
                    warehouse, source, db.engine, run_id="run2", load_date=LOAD_DATE, tables=["orders"], chunk_rows=10
                )
        finally:
            admin.dispose()
        assert err.value.rows_read == 10
        assert "unchanged" in str(err.value)
        assert _raw(warehouse, "select count(*), sum(total), max(_loaded_at) from raw.oms__orders") == before
        assert warehouse.get_watermark(source.tables["orders"]) == mark
        assert _raw(warehouse, "select count(*) from raw.oms__orders where _batch_id = 'run2:orders'") == [(0,)]

        # Once the database is back, the same run lands (the dead connection was discarded).
        monkeypatch.setattr(oms_module, "extract", real_extract)
        again = ingest_oms(
            warehouse, source, db.engine, run_id="run2", load_date=LOAD_DATE, tables=["orders"], chunk_rows=10
        )
        assert again["orders"].rows > 10
        assert warehouse.get_watermark(source.tables["orders"]) == "2026-11-01T10:00:00"


def _write_mapping(tmp_path: Path, edit) -> Path:
    import yaml

    doc = yaml.safe_load((DEFAULT_REGISTRY.parent / "oms_mapping.yml").read_text("utf-8"))
    edit(doc["entities"])
    path = tmp_path / f"mapping_{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def test_invalid_mappings_name_the_entry(tmp_path: Path, source: Source, warehouse: Warehouse) -> None:
    def unknown_column(e):
        e["orders"]["columns"]["totl"] = "total"

    def missing_entity(e):
        del e["items"]

    def missing_table(e):
        del e["orders"]["table"]

    def bad_code(e):
        e["orders"]["values"] = {"status": {9: "canceled"}}

    def unmapped_value_column(e):
        e["orders"]["values"] = {"reason": {1: "x"}}

    def missing_watermark(e):
        del e["customers"]["columns"]["updated_at"]

    cases = [
        (unknown_column, r"entities\.orders\.columns\.totl: not a canonical column of orders"),
        (missing_entity, r"entities\.items: missing"),
        (missing_table, r"entities\.orders\.table: the source table is required"),
        (bad_code, r"entities\.orders\.values\.status\.9: 'canceled' is not a canonical value"),
        (unmapped_value_column, r"entities\.orders\.values\.reason: not a mapped column"),
        (missing_watermark, r"entities\.customers\.columns: updated_at must be mapped"),
    ]
    for edit, message in cases:
        path = _write_mapping(tmp_path, edit)
        with pytest.raises(RegistryError, match=message):
            load_mapping(path, source.tables)
        # ingest_oms checks the mapping before reading anything
        broken = dataclasses.replace(source, options={**source.options, "mapping": str(path)})
        with pytest.raises(RegistryError, match=message):
            ingest_oms(warehouse, broken, sa.create_engine("sqlite://"), run_id="r", load_date=LOAD_DATE)
    assert not warehouse.path.exists()


def test_mapped_column_missing_from_the_database(tmp_path: Path, source: Source, synth_xs: Path) -> None:
    def renamed(e):
        e["orders"]["columns"]["total"] = "grand_total"

    mapping = load_mapping(_write_mapping(tmp_path, renamed), source.tables)
    engine = sa.create_engine(f"sqlite:///{synth_xs / 'oms' / 'oms.sqlite'}")
    with pytest.raises(RegistryError, match=r"entities\.orders\.columns\.total: column 'grand_total' not in table"):
        list(extract(engine, mapping, "orders", since=None, watermark_column=None))
    engine.dispose()
