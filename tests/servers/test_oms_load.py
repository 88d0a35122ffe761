"""Copy the OMS SQLite file into real PostgreSQL / MariaDB servers on loopback, and into SQLite.

Each run uses its own PostgreSQL schema / MariaDB database (created and dropped here), so
parallel runs do not clash. Server URLs can be overridden with YORISOI_TEST_POSTGRES_URL and
YORISOI_TEST_MARIADB_URL.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from yorisoi_kit.oms_load import OMS_TABLES, load_oms

POSTGRES_URL = os.environ.get("YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("YORISOI_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

PRIMARY_KEYS = {
    "customers": ("customer_code",),
    "orders": ("order_no",),
    "order_lines": ("order_no", "line_no"),
    "subscriptions": ("subscription_id",),
    "items": ("item_code",),
}

# A small OMS in the documented shape (docs/synthetic-brand.md), used until / unless the
# synthetic generator is available, and for edge cases the generator does not promise.
OMS_DDL = """
CREATE TABLE customers (
    customer_code TEXT PRIMARY KEY, name_kanji TEXT NOT NULL, name_kana TEXT, phone TEXT, email TEXT,
    postal_code TEXT, prefecture TEXT, address TEXT, birth_date TEXT, gender TEXT,
    mail_permission INTEGER, dm_permission INTEGER, call_permission INTEGER,
    blacklist_flag INTEGER, blacklist_reason TEXT, registered_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE orders (
    order_no TEXT PRIMARY KEY, customer_code TEXT NOT NULL, order_channel TEXT, subscription_id TEXT,
    ordered_at TEXT NOT NULL, shipped_at TEXT, status TEXT, subtotal INTEGER, discount INTEGER,
    shipping_fee INTEGER, points_used INTEGER, points_earned INTEGER, total INTEGER, updated_at TEXT
);
CREATE TABLE order_lines (
    order_no TEXT NOT NULL, line_no INTEGER NOT NULL, item_code TEXT, quantity INTEGER,
    unit_price INTEGER, list_price INTEGER, amount INTEGER, PRIMARY KEY (order_no, line_no)
);
CREATE TABLE subscriptions (
    subscription_id TEXT PRIMARY KEY, customer_code TEXT, item_code TEXT, cycle_days INTEGER,
    started_at TEXT, cancelled_at TEXT, status TEXT, updated_at TEXT
);
CREATE TABLE items (
    item_code TEXT PRIMARY KEY, item_name TEXT, category TEXT, brand TEXT, taste TEXT, list_price INTEGER
);
CREATE INDEX ix_orders_updated_at ON orders (updated_at);
CREATE INDEX ix_customers_updated_at ON customers (updated_at);
CREATE INDEX ix_order_lines_item ON order_lines (item_code, order_no);
"""
KANA = ["タカハシ　イチロウ", "ヤマザキ　ハナコ", "ﾀﾅｶ ｼﾞﾛｳ", "ワタナベ　ヴィオラ", "スズキ　ケン"]
KANJI = ["髙橋 一郎", "山﨑 花子", "田中 次郎", "渡辺 ヴィオラ", "鈴木 健"]
# Keys that differ only by case or character width: distinct in SQLite, must stay distinct.
ITEMS = [
    ("YB-001", "ボタニカル化粧水", "cosmetics", "Yorisoi Botanicals", "150ml", 3300),
    ("yb-001", "ボタニカル化粧水 (旧)", "cosmetics", "Yorisoi Botanicals", "150ml", 3000),
    ("ＹＢ-001", "ボタニカル化粧水 (全角)", "cosmetics", "Yorisoi Botanicals", "150ml", 3000),
    ("YB-002", "玄米グラノーラ", "food", "よりそい食堂", "メープル", 1296),
    ("YB-003", "柚子ハンドクリーム①", "cosmetics", "Yorisoi Botanicals", "柚子", 1980),
]


def build_tiny_oms(path: Path, customers: int = 300, orders_per_customer: int = 7) -> Path:
    """Write a small OMS SQLite file with the documented tables; deterministic."""
    start = dt.datetime(2024, 11, 1, 9, 0, 0)
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(OMS_DDL)
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", ITEMS)
        order_seq = 0
        for c in range(1, customers + 1):
            code = f"C{c:08d}"
            registered = start + dt.timedelta(hours=c)
            db.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code,
                    KANJI[c % len(KANJI)],
                    KANA[c % len(KANA)],
                    ["03-1234-5678", "０９０－１２３４－５６７８", "(06)1234-5678"][c % 3],
                    [None, f"user{c}@example.jp", f"USER{c}＠EXAMPLE.JP"][c % 3],
                    ["123-4567", "1234567", "〒123-4567", "１２３－４５６７"][c % 4],
                    "東京都",
                    "渋谷区神南1-2-3",
                    None if c % 5 == 0 else f"19{60 + c % 40}-0{1 + c % 9}-1{c % 10}",
                    "MFU"[c % 3],
                    c % 2,
                    (c + 1) % 2,
                    0,
                    int(c % 50 == 0),
                    "支払い遅延" if c % 50 == 0 else None,
                    registered.strftime("%Y-%m-%d %H:%M:%S"),
                    (registered + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"),
                ),
            )
            sub_id = f"S{c:07d}" if c % 4 == 0 else None
            if sub_id:
                db.execute(
                    "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sub_id,
                        code,
                        "YB-002",
                        30,
                        registered.strftime("%Y-%m-%d %H:%M:%S"),
                        None if c % 8 else (registered + dt.timedelta(days=90)).strftime("%Y-%m-%d %H:%M:%S"),
                        "active" if c % 8 else "cancelled",
                        registered.strftime("%Y-%m-%d %H:%M:%S"),
                    ),
                )
            for k in range(orders_per_customer):
                order_seq += 1
                order_no = f"O{order_seq:09d}"
                ordered = registered + dt.timedelta(days=k * 11, minutes=order_seq % 60)
                lines = []
                for line_no in range(1, 1 + (order_seq % 3) + 1):
                    item = ITEMS[(order_seq + line_no) % len(ITEMS)]
                    quantity = 1 + line_no % 2
                    unit_price = item[5] - (100 if order_seq % 5 == 0 else 0)
                    lines.append((order_no, line_no, item[0], quantity, unit_price, item[5], quantity * unit_price))
                subtotal = sum(line[-1] for line in lines)
                discount = 300 if order_seq % 7 == 0 else 0
                shipping = 0 if subtotal >= 5000 else 550
                points_used = 100 if order_seq % 9 == 0 else 0
                shipped = None if order_seq % 13 == 0 else ordered + dt.timedelta(days=2)
                db.execute(
                    "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        order_no,
                        code,
                        ["phone", "catalogue", "fax", "subscription"][order_seq % 4],
                        sub_id,
                        ordered.strftime("%Y-%m-%d %H:%M:%S"),
                        shipped.strftime("%Y-%m-%d %H:%M:%S") if shipped else None,
                        "pending" if shipped is None else ["shipped", "cancelled", "returned"][order_seq % 3],
                        subtotal,
                        discount,
                        shipping,
                        points_used,
                        subtotal // 100,
                        subtotal - discount + shipping - points_used,
                        ordered.strftime("%Y-%m-%d %H:%M:%S"),
                    ),
                )
                db.executemany("INSERT INTO order_lines VALUES (?, ?, ?, ?, ?, ?, ?)", lines)
    return path


@pytest.fixture(scope="module")
def tiny_oms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_oms(tmp_path_factory.mktemp("oms") / "oms.sqlite")


@pytest.fixture(scope="module")
def oms_sqlite(synth_xs: Path) -> Path:
    """The OMS of the XS synthetic brand (generated once per session by tests/conftest.py)."""
    return synth_xs / "oms" / "oms.sqlite"


# --------------------------------------------------------------------------------------------
# Targets: each test gets its own schema (PostgreSQL) / database (MariaDB) / file (SQLite)
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    kind: str
    url: str
    schema: str | None
    engine: sa.Engine


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    name = f"yorisoi_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'target.sqlite'}"
        engine = sa.create_engine(url)
        yield Target("sqlite", url, None, engine)
        engine.dispose()
        return
    url = POSTGRES_URL if request.param == "postgres" else MARIADB_URL
    admin = sa.create_engine(url)
    drop = f"DROP SCHEMA IF EXISTS {name} CASCADE" if request.param == "postgres" else f"DROP DATABASE IF EXISTS {name}"
    create = (
        f"CREATE SCHEMA {name}"
        if request.param == "postgres"
        else f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    )
    with admin.begin() as conn:
        conn.exec_driver_sql(create)
    try:
        yield Target(request.param, url, name, admin)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(drop)
        admin.dispose()


# --------------------------------------------------------------------------------------------
# Comparing source and target
# --------------------------------------------------------------------------------------------


def _normalise(value: object, timestamp: bool = False) -> object:
    """One representation for source and target values: timestamps as ISO text."""
    if timestamp and isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _source_rows(path: Path, table: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        select = ", ".join(f"NULLIF({c}, '')" if c.endswith("_at") else c for c in columns)
        order = ", ".join(PRIMARY_KEYS[table])
        rows = db.execute(f"SELECT {select} FROM {table} ORDER BY {order}")
        return [tuple(_normalise(v, c.endswith("_at")) for v, c in zip(row, columns, strict=True)) for row in rows]


def _source_indexes(path: Path) -> dict[str, dict[str, tuple[str, ...]]]:
    """Secondary indexes per table: name → columns."""
    with closing(sqlite3.connect(path)) as db:
        return {
            table: {
                name: tuple(r[2] for r in sorted(db.execute(f"PRAGMA index_info({name})")))
                for _, name, _, origin, _ in db.execute(f"PRAGMA index_list({table})")
                if origin != "pk"
            }
            for table in OMS_TABLES
        }


def _target_table(target: Target, table: str) -> sa.Table:
    return sa.Table(table, sa.MetaData(), schema=target.schema, autoload_with=target.engine)


def _target_rows(target: Target, table: str) -> list[tuple]:
    reflected = _target_table(target, table)
    with target.engine.connect() as conn:
        rows = conn.execute(sa.select(reflected)).all()
    # Sort in Python: the servers' collations need not order like SQLite's binary comparison.
    names = list(reflected.columns.keys())
    normalised = [tuple(_normalise(v, c.endswith("_at")) for v, c in zip(row, names, strict=True)) for row in rows]
    positions = [names.index(k) for k in PRIMARY_KEYS[table]]
    return sorted(normalised, key=lambda row: tuple(row[i] for i in positions))


def _assert_copy_matches(source: Path, target: Target, loaded: dict[str, int]) -> None:
    with closing(sqlite3.connect(source)) as db:
        expected_counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in OMS_TABLES}
        total = db.execute("SELECT sum(total) FROM orders").fetchone()[0]
        kana = db.execute(
            "SELECT customer_code, name_kana FROM customers WHERE name_kana GLOB '*[ァ-ヶ]　[ァ-ヶ]*' "
            "ORDER BY customer_code LIMIT 1"
        ).fetchone()
    assert loaded == expected_counts
    assert list(loaded) == list(OMS_TABLES)  # documented order

    customers = _target_table(target, "customers")
    orders = _target_table(target, "orders")
    with target.engine.connect() as conn:
        for table, count in expected_counts.items():
            assert conn.execute(sa.select(sa.func.count()).select_from(_target_table(target, table))).scalar() == count
        assert conn.execute(sa.select(sa.func.sum(orders.c.total))).scalar() == total
        assert kana is not None and "　" in kana[1]
        got = conn.execute(sa.select(customers.c.name_kana).where(customers.c.customer_code == kana[0])).scalar_one()
        assert got == kana[1]

    for table in OMS_TABLES:
        assert _target_rows(target, table) == _source_rows(source, table), table

    inspector = sa.inspect(target.engine)
    for table, key in PRIMARY_KEYS.items():
        assert tuple(inspector.get_pk_constraint(table, schema=target.schema)["constrained_columns"]) == key
    for table, indexes in _source_indexes(source).items():
        copied = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes(table, schema=target.schema)}
        assert indexes.items() <= copied.items(), table
    types = {c["name"]: c["type"] for c in inspector.get_columns("orders", schema=target.schema)}
    if target.kind == "sqlite":
        assert isinstance(types["ordered_at"], sa.Text)  # SQLite keeps the ISO text
    else:
        assert isinstance(types["ordered_at"], sa.DateTime)
        assert isinstance(types["total"], sa.BigInteger)
    if target.kind == "mariadb":
        assert isinstance(types["order_no"], sa.String) and types["order_no"].length == 32
        assert isinstance(types["subscription_id"], sa.Text)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_load_oms_copies_every_table(oms_sqlite: Path, target: Target) -> None:
    loaded = load_oms(oms_sqlite, target.url, schema=target.schema, chunk_rows=1_000)
    _assert_copy_matches(oms_sqlite, target, loaded)
    # Idempotent: a second run replaces the tables and gives the same result.
    assert load_oms(oms_sqlite, target.url, schema=target.schema) == loaded
    _assert_copy_matches(oms_sqlite, target, loaded)


def test_small_oms_with_awkward_keys(tiny_oms: Path, target: Target) -> None:
    """Keys differing only by case or width stay distinct; a composite index with a text column
    (a prefix index on MariaDB); many chunks."""
    loaded = load_oms(tiny_oms, target.url, schema=target.schema, chunk_rows=700)
    _assert_copy_matches(tiny_oms, target, loaded)
    codes = [row[0] for row in _target_rows(target, "items")]
    assert codes == sorted(item[0] for item in ITEMS)


def test_bad_timestamp_stops_the_load_before_anything_is_dropped(tmp_path: Path, tiny_oms: Path) -> None:
    url = f"sqlite:///{tmp_path / 'target.sqlite'}"
    load_oms(tiny_oms, url)
    broken = build_tiny_oms(tmp_path / "broken.sqlite", customers=3, orders_per_customer=1)
    with closing(sqlite3.connect(broken)) as db, db:
        db.execute("UPDATE orders SET ordered_at = '2026/10/31 10:00' WHERE order_no = 'O000000002'")
    with pytest.raises(ValueError, match=r"orders\.ordered_at: 1 value\(s\) .* '2026/10/31 10:00'"):
        load_oms(broken, url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM customers").scalar() == 300
    engine.dispose()


def test_arguments_are_checked(tmp_path: Path, tiny_oms: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_oms(tmp_path / "missing.sqlite", f"sqlite:///{tmp_path / 't.sqlite'}")
    with pytest.raises(ValueError, match="chunk_rows"):
        load_oms(tiny_oms, f"sqlite:///{tmp_path / 't.sqlite'}", chunk_rows=0)
    with pytest.raises(ValueError, match="schema"):
        load_oms(tiny_oms, f"sqlite:///{tmp_path / 't.sqlite'}", schema="oms")
