"""The builds' guards for a new deployment: a segment build before any customer build, and a
customer build while the first load is still landing, are skipped, not failed (each would
otherwise fail and alert on the first day, once per landed table)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from yorisoi.orchestration.assets import registry_raw_assets
from yorisoi.transform import require_customer_layer, require_first_load


def _warehouse(path: Path, *, landed: list[str], empty: list[str] = (), customer_layer: bool = False) -> Path:
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute("create schema marts")
    for name in landed:
        con.execute(f"create table {name} as select 1 as id")
    for name in empty:
        con.execute(f"create table {name} (id integer)")
    if customer_layer:
        con.execute("create table marts.dim_customers (person_id varchar)")
    con.close()
    return path


def test_segments_skip_without_a_warehouse_or_without_the_golden_record(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with pytest.raises(AirflowSkipException, match="no customer layer"):
        require_customer_layer(warehouse)
    _warehouse(warehouse, landed=["marts.fct_orders"])
    with pytest.raises(AirflowSkipException, match="no customer layer"):
        require_customer_layer(warehouse)


def test_segments_run_once_the_customer_layer_is_there(tmp_path: Path) -> None:
    require_customer_layer(_warehouse(tmp_path / "w.duckdb", landed=[], customer_layer=True))


def test_the_first_customer_build_waits_for_every_raw_table() -> None:
    raw = [a.name for a in registry_raw_assets()]
    assert len(raw) > 10 and all(name.startswith("raw.") for name in raw)


def test_a_first_build_skips_while_a_table_is_missing_or_empty(tmp_path: Path) -> None:
    raw = [a.name for a in registry_raw_assets()]
    with pytest.raises(AirflowSkipException, match="nothing landed"):
        require_first_load(tmp_path / "none.duckdb")
    partly = _warehouse(tmp_path / "partly.duckdb", landed=raw[:-2], empty=raw[-2:-1])
    with pytest.raises(AirflowSkipException, match="2 raw table") as skipped:
        require_first_load(partly)
    assert raw[-1] in str(skipped.value) and raw[-2] in str(skipped.value)


def test_a_build_runs_once_every_table_landed_or_after_the_first_build(tmp_path: Path) -> None:
    raw = [a.name for a in registry_raw_assets()]
    require_first_load(_warehouse(tmp_path / "all.duckdb", landed=raw))
    # Later, an empty table is the raw gate's to fail loudly, not a reason to skip.
    require_first_load(_warehouse(tmp_path / "later.duckdb", landed=raw[1:], empty=raw[:1], customer_layer=True))
