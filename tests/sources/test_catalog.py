"""Every source and table is optional: the registry's `enabled`, raw tables created typed and empty
from the registry before any row lands (a 0-row batch too), and raw suites that follow what the
brand has (a disabled source's suites are not run; expectations on unmapped columns dropped)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
import yaml

from yorisoi.quality.suites import follow_registry, load_suites
from yorisoi.sources.catalog import init_raw_tables, mapped_columns
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.oms import ENTITIES, ingest_oms
from yorisoi.sources.registry import DEFAULT_REGISTRY, RegistryError, load_registry


def registry_with(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    doc["sources"]["oms"]["mapping"] = str(DEFAULT_REGISTRY.parent / doc["sources"]["oms"]["mapping"])
    edit(doc)
    path = tmp_path / f"registry-{len(list(tmp_path.glob('registry-*')))}.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f'describe raw."{table}"').fetchall()}


def test_enabled_on_a_source_or_a_table(tmp_path: Path) -> None:
    def edit(doc):
        doc["sources"]["ecommerce"]["enabled"] = False
        doc["sources"]["sftp"]["tables"]["web_events"]["enabled"] = False

    registry = load_registry(registry_with(tmp_path, edit))
    assert not registry.source("ecommerce").enabled
    assert not any(t.enabled for t in registry.source("ecommerce").tables.values())
    assert registry.source("sftp").enabled
    assert "web_events" not in registry.source("sftp").enabled_tables()
    assert "pos_sales" in registry.source("sftp").enabled_tables()
    enabled = {t.raw_name for t in registry.tables(enabled_only=True)}
    assert "sftp__web_events" not in enabled and "ecommerce__orders" not in enabled and "oms__orders" in enabled
    assert len(registry.tables()) == len(load_registry().tables())

    def bad(doc):
        doc["sources"]["oms"]["tables"]["items"]["enabled"] = "no"

    with pytest.raises(RegistryError, match=r"sources\.oms\.tables\.items\.enabled: expected true or false"):
        load_registry(registry_with(tmp_path, bad))


def test_every_registry_table_gets_a_typed_empty_raw_table(tmp_path: Path) -> None:
    def edit(doc):
        doc["sources"]["ecommerce"]["enabled"] = False

    registry = load_registry(registry_with(tmp_path, edit))
    wh = Warehouse(tmp_path / "w.duckdb", Lake(tmp_path / "lake"))
    first = init_raw_tables(wh, registry)
    assert set(first.values()) == {"created"} and len(first) == len(registry.tables())
    assert set(init_raw_tables(wh, registry).values()) == {"exists"}
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        shop = columns(con, "ecommerce__customers")  # disabled: still there, typed
        assert shop["updated_at"] == "TIMESTAMP WITH TIME ZONE" and shop["_loaded_at"] == "TIMESTAMP WITH TIME ZONE"
        sends = columns(con, "sftp__esp_sends")
        assert sends["delivered"] == "BOOLEAN" and sends["sent_at"] == "TIMESTAMP WITH TIME ZONE"
        assert list(columns(con, "oms__items"))[: len(ENTITIES["items"])] == list(ENTITIES["items"])
        assert con.execute('select count(*) from raw."oms__orders"').fetchone()[0] == 0
    finally:
        con.close()


def test_an_empty_oms_table_still_creates_its_raw_table(tmp_path: Path) -> None:
    """The back office's item master is empty: the batch lands 0 rows and the table exists."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'oms.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create table items (item_code text, item_name text, category text, brand text, taste text, "
            "list_price integer)"
        )
    wh = Warehouse(tmp_path / "w.duckdb", Lake(tmp_path / "lake"))
    oms = load_registry(registry_with(tmp_path, lambda doc: None)).source("oms")
    result = ingest_oms(wh, oms, engine, run_id="r1", load_date=date(2026, 11, 1), tables=["items"])
    assert result["items"].rows == 0
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        got = columns(con, "oms__items")
    finally:
        con.close()
    assert got["list_price"] == "BIGINT" and got["item_code"] == "VARCHAR" and "_batch_id" in got


def test_raw_suites_follow_the_registry_and_the_mapping(tmp_path: Path) -> None:
    mapping = yaml.safe_load((DEFAULT_REGISTRY.parent / "oms_mapping.yml").read_text("utf-8"))
    customers = mapping["entities"]["customers"]["columns"]
    for unmapped in ("registered_at", "email_permission", "gender"):
        del customers[unmapped]
    (tmp_path / "oms_mapping.yml").write_text(yaml.safe_dump(mapping, allow_unicode=True), "utf-8")

    def edit(doc):
        doc["sources"]["oms"]["mapping"] = str(tmp_path / "oms_mapping.yml")
        doc["sources"]["sftp"]["tables"]["web_events"]["enabled"] = False

    registry = load_registry(registry_with(tmp_path, edit))
    assert {"registered_at", "gender"}.isdisjoint(
        mapped_columns(registry.source("oms"), registry.source("oms").tables["customers"])
    )
    specs = load_suites("raw")
    adapted = follow_registry(specs, registry)
    assert adapted.skipped == ["raw.sftp__web_events"]
    by_name = {s.name: s for s in adapted.specs}
    kept = {e.kwargs.get("column") for e in by_name["raw.oms__customers"].expectations}
    assert {"registered_at", "email_permission", "gender"}.isdisjoint(kept)
    assert {"customer_id", "dm_permission", "blacklisted"} <= kept
    assert sum("raw/raw.oms__customers.yml" in d for d in adapted.dropped) == 3
    original = {s.name: s for s in specs}
    assert by_name["raw.oms__orders"] == original["raw.oms__orders"]  # fully mapped: unchanged
