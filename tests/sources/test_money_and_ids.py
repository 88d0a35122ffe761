"""A brand's own shapes: amounts with decimals in the registry's currency, identifiers as text."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from yorisoi.sources.catalog import init_raw_tables
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.oms import ingest_oms
from yorisoi.sources.registry import DEFAULT_REGISTRY, RegistryError, load_registry

LOAD_DATE = date(2026, 11, 1)


def registry(tmp_path: Path, name: str, money: dict | None) -> Path:
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    doc["sources"]["oms"]["mapping"] = str(DEFAULT_REGISTRY.parent / doc["sources"]["oms"]["mapping"])
    if money is not None:
        doc["sources"]["oms"]["money"] = money
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def item_master(tmp_path: Path) -> sa.Engine:
    """An OMS whose item master keeps prices in dollars and cents (text and NUMERIC)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'oms.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create table items (item_code text, item_name text, category text, brand text, taste text, "
            "list_price text)"
        )
        conn.exec_driver_sql(
            "insert into items values ('A-1', 'Sencha', 'tea', 'Y', null, '12.99'), "
            "('B-2', 'Hojicha', 'tea', 'Y', null, '8'), ('C-3', 'Matcha', 'tea', 'Y', null, '')"
        )
    return engine


def query(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_oms_amounts_with_cents_land_as_decimals_in_the_registrys_minor_unit(tmp_path: Path) -> None:
    engine = item_master(tmp_path)
    usd = load_registry(registry(tmp_path, "usd", {"currency": "USD", "minor_unit": 2})).source("oms")
    assert usd.currency == "USD" and usd.tables["items"].money_scale == 2
    wh = Warehouse(tmp_path / "usd.duckdb", Lake(tmp_path / "lake"))
    ingest_oms(wh, usd, engine, run_id="r1", load_date=LOAD_DATE, tables=["items"])
    rows = query(wh.path, "select item_code, list_price from raw.oms__items order by item_code")
    assert rows == [("A-1", Decimal("12.99")), ("B-2", Decimal("8.00")), ("C-3", None)]
    assert query(wh.path, "select data_type from information_schema.columns where column_name = 'list_price'") == [
        ("DECIMAL(18,2)",)
    ]

    # the same export read as yen (the default): 12.99 is not a whole amount; the record is rejected
    # by name instead of being rounded, and the others land
    yen = load_registry(registry(tmp_path, "yen", None)).source("oms")
    wh_yen = Warehouse(tmp_path / "yen.duckdb", Lake(tmp_path / "lake-yen"))
    ingest_oms(wh_yen, yen, engine, run_id="r1", load_date=LOAD_DATE, tables=["items"])
    assert query(wh_yen.path, "select item_code, list_price from raw.oms__items order by 1") == [
        ("B-2", 8),
        ("C-3", None),
    ]
    (reason,) = query(wh_yen.path, "select reason from raw._rejects where table_name = 'items'")[0]
    assert "A-1" in reason and "list_price" in reason


def test_money_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"sources\.oms\.money\.currency: 'yen' is not an ISO 4217 code"):
        load_registry(registry(tmp_path, "bad-currency", {"currency": "yen"}))
    with pytest.raises(RegistryError, match=r"sources\.oms\.money\.minor_unit"):
        load_registry(registry(tmp_path, "bad-unit", {"currency": "USD", "minor_unit": "two"}))
    usd = load_registry(registry(tmp_path, "usd-tables", {"currency": "USD", "minor_unit": 2}))
    wh = Warehouse(tmp_path / "w.duckdb", Lake(tmp_path / "lake"))
    init_raw_tables(wh, usd)
    types = dict(
        query(wh.path, "select column_name, data_type from information_schema.columns where table_name = 'oms__orders'")
    )
    assert types["total"] == "DECIMAL(18,2)" and types["points_used"] == "BIGINT"  # points are counts


def test_an_integer_identifier_column_becomes_text_when_ids_hold_letters(tmp_path: Path) -> None:
    """A warehouse landed before identifiers were text keeps its rows; new ids with letters land."""
    shop = load_registry().source("ecommerce")
    table = shop.tables["customers"]
    wh = Warehouse(tmp_path / "w.duckdb", Lake(tmp_path / "lake"))
    old = pa.table({"id": pa.array([7], pa.int64()), "email": ["a@example.jp"]})
    wh.land(table, [old], batch_id="old", load_date=LOAD_DATE)
    new = pa.table({"id": pa.array(["C-0001"], pa.string()), "email": ["b@example.jp"]})
    wh.land(table, [new], batch_id="new", load_date=LOAD_DATE)
    assert query(wh.path, "select id, email from raw.ecommerce__customers order by email") == [
        ("7", "a@example.jp"),
        ("C-0001", "b@example.jp"),
    ]


def test_shop_customers_carry_furigana_and_birthday_from_where_the_cart_keeps_them() -> None:
    """A real Shopify customer has no top-level furigana: carts keep them in metafields (or in a
    note), and the registry's `fields` says where; the default reads top-level keys."""
    from yorisoi.sources.ecommerce import flatten_customers

    shopify = {
        "id": 7300000000001,
        "last_name": "山田",
        "metafields": [
            {"namespace": "custom", "key": "sei_kana", "value": "ヤマダ"},
            {"namespace": "custom", "key": "mei_kana", "value": "はなこ"},
            {"namespace": "facts", "key": "birth_date", "value": "1980-04-01"},
        ],
        "note": "生年月日：１９７９／１２／３１\nメモ: 贈答用",
    }
    fields = {
        "last_name_kana": {"metafield": "custom.sei_kana"},
        "first_name_kana": {"metafield": "custom.mei_kana"},
        "birth_date": {"metafield": "facts.birth_date"},
    }
    row = flatten_customers([shopify], fields).to_pylist()[0]
    assert (row["id"], row["last_name_kana"], row["first_name_kana"]) == ("7300000000001", "ヤマダ", "はなこ")
    assert row["birth_date"] == date(1980, 4, 1)

    from_note = flatten_customers([shopify], {"birth_date": {"note": "生年月日"}}).to_pylist()[0]
    assert from_note["birth_date"] == date(1979, 12, 31)  # full-width digits and a full-width colon
    # GraphQL bulk exports nest metafields as a connection
    graphql = {"id": "gid://shopify/Customer/1", "metafields": {"edges": [{"node": shopify["metafields"][0]}]}}
    assert flatten_customers([graphql], fields).to_pylist()[0]["last_name_kana"] == "ヤマダ"
    # without `fields`: the top-level keys (what the demo's shop sends); an impossible date is null
    plain = {"id": 1, "last_name_kana": "スズキ", "birth_date": "1990/02/30"}
    row = flatten_customers([plain]).to_pylist()[0]
    assert row["last_name_kana"] == "スズキ" and row["birth_date"] is None


def test_a_bad_fields_entry_stops_the_run_before_any_request(tmp_path: Path) -> None:
    from yorisoi.sources.ecommerce import ShopClient, ingest_ecommerce

    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    doc["sources"]["oms"]["mapping"] = str(DEFAULT_REGISTRY.parent / doc["sources"]["oms"]["mapping"])
    doc["sources"]["ecommerce"]["tables"]["customers"]["fields"] = {"birth_date": {"metafield": "birthday"}}
    path = tmp_path / "registry.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    shop = load_registry(path).source("ecommerce")
    wh = Warehouse(tmp_path / "w.duckdb", Lake(tmp_path / "lake"))
    with (
        ShopClient("http://127.0.0.1:9", "token", max_attempts=1) as client,  # nothing listens: never called
        pytest.raises(RegistryError, match=r"fields\.birth_date\.metafield: 'birthday' is not a name"),
    ):
        ingest_ecommerce(wh, shop, client, run_id="r1", load_date=LOAD_DATE, tables=["customers"])
