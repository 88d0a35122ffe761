"""The three ingest tasks, as Airflow runs them (connections from AIRFLOW_CONN_* variables),
against the loopback servers over the XS brand with its deliberately bad drops: the raw layer
equals the generated truth after a first run and again after a rerun, and every bad file and
row is accounted for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from yorisoi import paths
from yorisoi.orchestration.ingest import IngestAlert, ingest_ecommerce_table, ingest_oms_table, ingest_sftp_table
from yorisoi.sources.registry import load_registry
from yorisoi_kit.demo import demo_connections
from yorisoi_kit.servers import ecommerce, sftp
from yorisoi_kit.synth import generate


@pytest.fixture(scope="module")
def brand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("brand_defects")
    generate(out, scale="XS", seed=3, defects=True)
    return out


@pytest.fixture(scope="module")
def sources(brand: Path, tmp_path_factory: pytest.TempPathFactory):
    var = tmp_path_factory.mktemp("var")
    old = dict(os.environ)
    os.environ["YORISOI_VAR"] = str(var)
    with (
        ecommerce.serve_in_thread(brand / "ecommerce", api_key="demo-key", bucket_size=40, leak_per_second=200) as shop,
        sftp.serve_in_thread(brand / "sftp", username="yorisoi", password="demo", host_key_path=var / "key") as drop,
    ):
        os.environ.update(demo_connections(shop, drop, brand / "oms" / "oms.sqlite"))
        yield var
    os.environ.clear()
    os.environ.update(old)


def run_all(run_id: str) -> dict[str, str]:
    """Run every table's task like the DAGs do; returns the alerts per failed table."""
    registry = load_registry()
    alerts = {}
    for name, task in (("ecommerce", ingest_ecommerce_table), ("oms", ingest_oms_table), ("sftp", ingest_sftp_table)):
        for table in registry.source(name).tables.values():
            if table.options.get("parent"):
                continue
            try:
                task(table.name, run_id)
            except IngestAlert as alert:
                alerts[f"{name}.{table.name}"] = str(alert)
    return alerts


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'raw' and table_name not like '\\_%' escape '\\'"
        ).fetchall()
    ]
    return {n: con.execute(f'select count(*) from raw."{n}"').fetchone()[0] for n in names}


def test_raw_layer_equals_truth_after_a_run_and_a_rerun(brand: Path, sources: Path) -> None:
    first_alerts = run_all("run-1")
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    first = counts(con)
    truth = duckdb.connect()
    t = lambda sql: truth.execute(sql).fetchone()[0]  # noqa: E731
    records = f"read_parquet('{brand / 'truth' / 'source_records.parquet'}')"
    orders = f"read_parquet('{brand / 'truth' / 'orders.parquet'}')"
    assert first["ecommerce__customers"] == t(f"select count(*) from {records} where source = 'ecommerce'")
    assert first["ecommerce__orders"] == t(f"select count(*) from {orders} where source = 'ecommerce'")
    assert first["oms__customers"] == t(f"select count(*) from {records} where source = 'oms'")
    assert first["oms__orders"] == t(f"select count(*) from {orders} where source = 'oms'")
    assert first["sftp__pos_members"] == t(f"select count(*) from {records} where source = 'pos'")
    assert (
        first["sftp__line_id_links"]
        == len(next((brand / "sftp" / "processed" / "line").glob("id_links_*.csv")).read_text("utf-8-sig").splitlines())
        - 1
    )
    member_receipts = con.execute(
        "select count(distinct receipt_no) from raw.sftp__pos_sales where card_no <> '' and transaction_type = '売上'"
    ).fetchone()[0]
    assert member_receipts == t(f"select count(*) from {orders} where source = 'pos'")
    # Lines of the e-commerce orders agree with their order ids.
    assert (
        con.execute(
            "select count(*) from raw.ecommerce__order_lines l anti join raw.ecommerce__orders o on o.id = l.order_id"
        ).fetchone()[0]
        == 0
    )

    # Every defect of truth/defects.json is accounted for.
    defects = json.loads((brand / "truth" / "defects.json").read_text("utf-8"))
    assert len(defects) == 6
    quarantined = {
        r[0] for r in con.execute("select file_name from raw._files where status = 'quarantined'").fetchall()
    }
    assert quarantined == {Path(d["file"]).name for d in defects if "quarantined" in d["expect"]}
    for name in quarantined:  # all of them are store (pos) files
        assert (brand / "sftp" / "quarantine" / "pos" / name).exists()
        assert (brand / "sftp" / "quarantine" / "pos" / f"{name}.reason.txt").exists()
    rejects = con.execute("select source_file, line from raw._rejects order by line").fetchall()
    assert rejects == [("sales_corrected_202610.csv", 4), ("sales_corrected_202610.csv", 7)]
    assert set(first_alerts) == {"sftp.pos_members", "sftp.pos_sales", "sftp.callcenter_requests"}
    assert "no manifest" in first_alerts["sftp.callcenter_requests"]
    assert (brand / "sftp" / "inbox" / "callcenter" / "requests_unconfirmed.csv").exists()
    con.close()

    # A rerun of the same run: nothing duplicated, nothing lost.
    run_all("run-1")
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    assert counts(con) == first
    assert con.execute("select count(*) from raw._rejects").fetchone()[0] == 2
    con.close()


def test_ingest_oms_runs_through_airflow(sources: Path) -> None:
    """The generated DAG itself, run by Airflow's dag.test() against a migrated metadata DB."""
    import subprocess
    import sys

    from airflow.dag_processing.dagbag import DagBag

    env = {**os.environ}
    for args in (["db", "migrate"], ["pools", "set", "duckdb_writer", "1", "DuckDB writer"]):
        subprocess.run([sys.executable, "-m", "airflow", *args], check=True, env=env, capture_output=True)
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "ingest_oms.py"))
    run = bag.get_dag("ingest_oms").test()
    assert str(run.state) == "success"
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    assert con.execute("select count(*) from raw.oms__orders").fetchone()[0] > 0
    con.close()
