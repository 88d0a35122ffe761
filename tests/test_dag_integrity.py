"""Every DAG file imports cleanly and quickly, and every DAG documents itself (docs/contributing.md, "DAGs")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from yorisoi.orchestration.dag_defaults import POOL, TASK_TIMEOUT

DAGS = Path(__file__).resolve().parents[1] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def test_there_are_dags_to_check() -> None:
    assert DAG_FILES, "dags/ holds no DAG files"


@pytest.fixture(scope="module")
def dagbag_loader():
    from airflow.dag_processing.dagbag import DagBag

    def load(path: Path) -> tuple[DagBag, float]:
        t0 = time.perf_counter()
        bag = DagBag(dag_folder=str(path))  # safe mode, as the DAG processor parses
        return bag, time.perf_counter() - t0

    load(DAG_FILES[0])  # warm Airflow's own imports so the budget measures the DAG file
    return load


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_and_declares_everything(path: Path, dagbag_loader) -> None:
    bag, seconds = dagbag_loader(path)
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"
    assert seconds < 1.0, (
        f"{path.name} took {seconds:.2f} s to import (budget 1 s): import heavy libraries inside tasks"
    )
    for dag_id, dag in bag.dags.items():
        assert (dag.doc_md or "").strip(), f"{dag_id}: doc_md missing"
        description = (dag.description or "").strip()
        assert description and "\n" not in description, f"{dag_id}: a one-line description is missing"
        assert dag.tags, f"{dag_id}: tags missing"
        assert dag.owner and dag.owner != "airflow", f"{dag_id}: owner not set"
        assert dag.max_active_runs is not None and dag.max_active_runs >= 1, f"{dag_id}: max_active_runs"
        source = path.read_text("utf-8")
        assert "catchup=" in source, f"{dag_id}: catchup must be set on purpose"
        assert "max_active_runs=" in source, f"{dag_id}: max_active_runs must be set on purpose"
        for task in dag.tasks:
            assert task.owner == dag.owner, f"{dag_id}.{task.task_id}: owner differs"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: no retries"
            if task.pool == POOL:  # a hung writer would hold the pool's one slot for ever
                assert task.execution_timeout is not None, f"{dag_id}.{task.task_id}: no execution_timeout"
                assert task.execution_timeout <= TASK_TIMEOUT, f"{dag_id}.{task.task_id}: execution_timeout"


def _assets(condition) -> set[str]:
    """The URIs of every asset in a (possibly nested) AssetAny / AssetAll condition, as the SDK
    declares it or as a timetable holds it after serialisation."""
    if hasattr(condition, "uri"):
        return {condition.uri}
    return set().union(*(_assets(c) for c in getattr(condition, "objects", ())))  # a time-only DAG: none


def _awaited_and_emitted(bag) -> tuple[dict[str, set[str]], set[str]]:
    from airflow.sdk import Asset

    awaited: dict[str, set[str]] = {}
    emitted: set[str] = set()
    for dag_id, dag in bag.dags.items():
        uris = _assets(getattr(dag.timetable, "asset_condition", None))
        if uris:
            awaited[dag_id] = uris
        for task in dag.tasks:
            emitted |= {outlet.uri for outlet in task.outlets if isinstance(outlet, Asset)}
    return awaited, emitted


def test_every_asset_a_dag_waits_on_is_some_dags_output() -> None:
    """A DAG scheduled on an asset nobody emits would never run: the names are built by one helper
    (yorisoi.orchestration.assets), and this holds them to each other across the whole folder."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    awaited, emitted = _awaited_and_emitted(bag)
    assert set(awaited) >= {"build_customer_model", "build_segments", "activate_audiences", "build_data_definition"}
    for dag_id, uris in awaited.items():
        orphans = uris - emitted
        assert not orphans, f"{dag_id} waits on assets no DAG emits: {sorted(orphans)}"


def test_the_customer_build_waits_on_every_registry_table(tmp_path, monkeypatch) -> None:
    """The customer build's inputs are the registry's tables, so a brand's own registry (here one
    with a single source and a table the demo registry does not have) drives what triggers it."""
    from airflow.dag_processing.dagbag import DagBag

    registry = tmp_path / "registry.yml"
    registry.write_text(
        """
version: 1
sources:
  oms:
    system: another back office
    conn_id: yorisoi_oms
    schedule: "@daily"
    method: automatic
    kind: database
    tables:
      customers: {primary_key: [customer_id], watermark: updated_at, description: customers}
      loyalty_cards: {primary_key: [card_id], watermark: null, description: cards}
""",
        "utf-8",
    )
    monkeypatch.setenv("YORISOI_REGISTRY", str(registry))
    bag = DagBag(dag_folder=str(DAGS / "build_customer_model.py"))
    assert not bag.import_errors, bag.import_errors
    awaited, _ = _awaited_and_emitted(bag)
    assert awaited["build_customer_model"] == {
        "duckdb://yorisoi/raw/oms__customers",
        "duckdb://yorisoi/raw/oms__loyalty_cards",
    }
