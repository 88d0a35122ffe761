"""Bad rows in the OMS cannot wedge its ingestion or move its watermark into the future
(docs/reliability.md #17, #18), on PostgreSQL and MariaDB on loopback (URLs overridable with
YORISOI_TEST_POSTGRES_URL / YORISOI_TEST_MARIADB_URL).

A legacy customer table without a primary-key constraint, as back offices have them: a row
stamped 2099-12-31, a row without a customer code, the same code twice, a code with a tab in it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.oms import ingest_oms
from yorisoi.sources.registry import DEFAULT_REGISTRY, Source, load_registry

POSTGRES_URL = os.environ.get("YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("YORISOI_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
LOAD_DATE = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 1, 9, 0)  # the run's upper bound, Japan wall-clock time
COLUMNS = [
    *("customer_code", "name_kanji", "name_kana", "phone", "email", "postal_code", "prefecture", "address"),
    *("birth_date", "gender", "mail_permission", "dm_permission", "call_permission", "blacklist_flag"),
    *("blacklist_reason", "registered_at", "updated_at"),
]


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    name = f"yorisoi_bad_{uuid.uuid4().hex[:10]}"
    url = POSTGRES_URL if request.param == "postgres" else MARIADB_URL
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        if request.param == "postgres":
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        else:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    if request.param == "postgres":
        engine = sa.create_engine(url, connect_args={"options": f"-c search_path={name}"})
    else:
        engine = sa.create_engine(sa.make_url(url).set(database=name).update_query_dict({"charset": "utf8mb4"}))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(
                f"DROP SCHEMA {name} CASCADE" if request.param == "postgres" else f"DROP DATABASE {name}"
            )
        admin.dispose()


CUSTOMERS = sa.Table(
    "customers",
    sa.MetaData(),
    *(
        sa.Column(
            c,
            sa.DateTime()
            if c.endswith("_at")
            else sa.Integer()
            if c.endswith(("permission", "flag"))
            else sa.String(60),
        )
        for c in COLUMNS
    ),
)  # no primary-key constraint: a legacy table


def _customer(code: str | None, updated_at: dt.datetime, name: str = "山田 花子", kana: str = "ヤマダ ハナコ") -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(
        customer_code=code, name_kanji=name, name_kana=kana, mail_permission=1, dm_permission=1, call_permission=0,
        blacklist_flag=0, registered_at=dt.datetime(2026, 1, 5), updated_at=updated_at,
    )  # fmt: skip
    return row


def _insert(engine: sa.Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        CUSTOMERS.create(conn, checkfirst=True)
        conn.execute(CUSTOMERS.insert(), rows)


def _q(wh: Warehouse, sql: str, params: list | None = None) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture
def source() -> Source:
    return load_registry(DEFAULT_REGISTRY).source("oms")


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


def test_future_dated_null_key_duplicate_and_control_character_rows(
    engine: sa.Engine, source: Source, warehouse: Warehouse
) -> None:
    day = dt.datetime(2026, 10, 30, 12, 0)
    _insert(
        engine,
        [
            _customer("C001", day),
            _customer("C002", dt.datetime(2099, 12, 31, 0, 0)),  # future-dated
            _customer(None, day),  # no key
            _customer("  ", day),  # blank key
            _customer("C003", day, name="古い 行"),  # the same key twice: this one loses
            _customer("C003", day + dt.timedelta(minutes=1), name="新しい 行"),
            _customer("C\t004", day),  # a control character (tab) inside the key (PostgreSQL refuses NUL)
            _customer("C005", day, kana="繝､繝槭ム"),  # UTF-8 read as CP932: not kana
        ],
    )
    run = ingest_oms(warehouse, source, engine, run_id="r1", load_date=LOAD_DATE, tables=["customers"], now=NOW)

    # Rows without a key, the losing duplicate and the NUL key: rejected with a reason, never in raw.
    assert sorted(r[0] for r in _q(warehouse, "select customer_id from raw.oms__customers")) == [
        "C001", "C002", "C003", "C005",
    ]  # fmt: skip
    assert _q(warehouse, "select name from raw.oms__customers where customer_id = 'C003'") == [("新しい 行",)]
    rejects = _q(
        warehouse, "select line, reason, raw_line from raw._rejects where table_name = 'customers' order by line"
    )
    reasons = [r[1] for r in rejects]
    assert len(rejects) == 4
    assert sum("no primary key: customer_id is empty" in r for r in reasons) == 2
    assert any("control character in key customer_id" in r for r in reasons)
    dup = next(r for r in rejects if r[1].startswith("duplicate key"))
    winner = re.search(r"line (\d+) has the same key and is kept", dup[1])
    assert json.loads(dup[2])["name"] == "古い 行" and winner and int(winner.group(1)) > dup[0]
    assert run["customers"].rows == 4

    # The 2099 row landed and was flagged; the watermark did not pass now.
    assert warehouse.get_watermark(source.tables["customers"]) == "2026-10-30T12:01:00"
    flags = _q(warehouse, "select key, column_name, reason from raw._flags order by column_name")
    assert [(k, c) for k, c, _ in flags] == [("customer_id='C005'", "name_kana"), ("customer_id='C002'", "updated_at")]
    assert "future-dated" in flags[1][2]

    # A rerun adds no NULL-key row anywhere, and a later change is still read.
    with engine.begin() as conn:
        conn.execute(
            CUSTOMERS.update()
            .where(CUSTOMERS.c.customer_code == "C001")
            .values(name_kanji="後の 変更", updated_at=NOW + dt.timedelta(hours=1))
        )
    ingest_oms(warehouse, source, engine, run_id="r1", load_date=LOAD_DATE, tables=["customers"], now=NOW)
    ingest_oms(
        warehouse,
        source,
        engine,
        run_id="r2",
        load_date=LOAD_DATE,
        tables=["customers"],
        now=NOW + dt.timedelta(days=1),
    )
    assert _q(warehouse, "select count(*) from raw.oms__customers where customer_id is null") == [(0,)]
    assert _q(warehouse, "select name from raw.oms__customers where customer_id = 'C001'") == [("後の 変更",)]
    assert warehouse.get_watermark(source.tables["customers"]) == "2026-11-01T10:00:00"
    assert _q(warehouse, "select count(*) from raw._rejects where batch_id = 'r1:customers'") == [
        (4,)
    ]  # replaced, not added


def test_a_watermark_already_in_the_future_comes_back(engine: sa.Engine, source: Source, warehouse: Warehouse) -> None:
    """A watermark moved to 2099 before the clamp existed: the next run reads from now and mends it."""
    _insert(engine, [_customer("C001", dt.datetime(2099, 12, 31)), _customer("C002", dt.datetime(2026, 10, 31))])
    con = warehouse.connect()
    con.execute("insert into raw._watermarks values ('oms', 'customers', '2099-12-31T00:00:00', 'old', now())")
    con.close()
    _insert(engine, [_customer("C003", NOW - dt.timedelta(hours=1))])  # a change after the bad run
    ingest_oms(warehouse, source, engine, run_id="r1", load_date=LOAD_DATE, tables=["customers"], now=NOW)
    assert warehouse.get_watermark(source.tables["customers"]) == (NOW - dt.timedelta(hours=1)).isoformat()
    ids = {r[0] for r in _q(warehouse, "select customer_id from raw.oms__customers")}
    assert "C003" in ids


ORDER_COLUMNS = [
    *("order_no", "customer_code", "order_channel", "subscription_id", "ordered_at", "shipped_at", "status"),
    *("subtotal", "discount", "shipping_fee", "points_used", "points_earned", "total", "updated_at", "coupon_code"),
]
ORDERS = sa.Table(
    "orders",
    sa.MetaData(),
    *(sa.Column(c, sa.DateTime() if c.endswith("_at") else sa.String(40)) for c in ORDER_COLUMNS),
)  # amounts kept as text, as some back offices do


def test_a_non_numeric_amount_rejects_that_row_and_the_table_lands(
    engine: sa.Engine, source: Source, warehouse: Warehouse
) -> None:
    day = dt.datetime(2026, 10, 30, 12, 0)

    def order(no: str, total: str, minutes: int) -> dict:
        row = dict.fromkeys(ORDER_COLUMNS)
        row.update(order_no=no, customer_code="C001", status="shipped", ordered_at=day, total=total)
        return row | {"updated_at": day + dt.timedelta(minutes=minutes)}

    with engine.begin() as conn:
        ORDERS.create(conn)
        conn.execute(ORDERS.insert(), [order("J1", "3300", 1), order("J2", "abc", 2), order("J3", "5500", 3)])
    run = ingest_oms(
        warehouse, source, engine, run_id="r1", load_date=LOAD_DATE, tables=["orders"], now=NOW, chunk_rows=2
    )
    assert run["orders"].rows == 2
    assert _q(warehouse, "select order_id, total from raw.oms__orders order by 1") == [("J1", 3300), ("J3", 5500)]
    [(line, reason, raw)] = _q(warehouse, "select line, reason, raw_line from raw._rejects")
    assert line == 2 and reason == "record order_id='J2': bad value in column total: 'abc' is not a whole number"
    assert json.loads(raw)["total"] == "abc"
    assert warehouse.get_watermark(source.tables["orders"]) == "2026-10-30T12:03:00"


def test_reconciliation_lands_a_correction_older_than_the_overlap(
    engine: sa.Engine, source: Source, warehouse: Warehouse, tmp_path: Path
) -> None:
    from yorisoi.sources.reconcile import reconcile_oms

    day = dt.datetime(2026, 10, 30, 12, 0)
    _insert(engine, [_customer(f"C{i:03}", day - dt.timedelta(days=30 - i)) for i in range(1, 21)])
    ingest_oms(warehouse, source, engine, run_id="r1", load_date=LOAD_DATE, tables=["customers"], now=NOW)
    mark = warehouse.get_watermark(source.tables["customers"])
    with engine.begin() as conn:  # corrected, stamped 14 days behind the watermark (the overlap is 3 days)
        conn.execute(
            CUSTOMERS.update()
            .where(CUSTOMERS.c.customer_code == "C005")
            .values(name_kanji="訂正 後", updated_at=day - dt.timedelta(days=24))
        )
        conn.execute(CUSTOMERS.delete().where(CUSTOMERS.c.customer_code == "C002"))
    ingest_oms(warehouse, source, engine, run_id="r2", load_date=LOAD_DATE, tables=["customers"], now=NOW)
    assert _q(warehouse, "select name from raw.oms__customers where customer_id = 'C005'") == [("山田 花子",)]

    result = reconcile_oms(
        warehouse, source, engine, run_id="w1", load_date=LOAD_DATE, tables=["customers"], now=NOW, workdir=tmp_path
    )["customers"]
    assert (result.source_rows, result.raw_rows, result.missing, result.changed) == (19, 20, 0, 1)
    assert (result.landed, result.only_in_raw) == (1, 1)  # a deletion is reported, not applied
    assert _q(warehouse, "select name, _batch_id from raw.oms__customers where customer_id = 'C005'") == [
        ("訂正 後", "w1:customers:reconcile")
    ]
    assert warehouse.get_watermark(source.tables["customers"]) == mark  # reconciliation never moves it
    again = reconcile_oms(warehouse, source, engine, run_id="w2", load_date=LOAD_DATE, tables=["customers"], now=NOW)
    assert (again["customers"].missing, again["customers"].changed, again["customers"].landed) == (0, 0, 0)


def _last_json(output: str) -> dict:
    """The JSON line of a command's output (log lines may come before it)."""
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


def test_sources_reconcile_command(synth_xs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`yorisoi sources reconcile` on the XS brand's OMS (SQLite): into an empty warehouse, every row
    is missing and landed; a second run finds nothing to land."""
    from typer.testing import CliRunner

    from yorisoi.cli import app

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    url = f"sqlite:///{synth_xs / 'oms' / 'oms.sqlite'}"
    args = ["sources", "reconcile", "--source", "oms", "--table", "subscriptions", "--table", "items"]
    args += ["--database-url", url, "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    counts = _last_json(first.output)
    assert set(counts) == {"subscriptions", "items"}
    subscriptions = counts["subscriptions"]
    assert subscriptions["landed"] == subscriptions["source_rows"] == subscriptions["missing"] > 0
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = _last_json(second.output)
    assert again["subscriptions"]["landed"] == 0 and again["subscriptions"]["raw_rows"] == subscriptions["source_rows"]
    bad = CliRunner().invoke(app, ["sources", "reconcile", "--table", "ordres", "--database-url", url])
    assert bad.exit_code != 0 and "ordres" in bad.output
