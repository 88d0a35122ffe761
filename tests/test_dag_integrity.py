"""Every DAG file imports cleanly and quickly, and every DAG documents itself (STYLE.md §7-8)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
        assert dag.tags, f"{dag_id}: tags missing"
        assert dag.owner and dag.owner != "airflow", f"{dag_id}: owner not set"
        assert dag.max_active_runs is not None and dag.max_active_runs >= 1, f"{dag_id}: max_active_runs"
        source = path.read_text("utf-8")
        assert "catchup=" in source, f"{dag_id}: catchup must be set on purpose"
        assert "max_active_runs=" in source, f"{dag_id}: max_active_runs must be set on purpose"
        for task in dag.tasks:
            assert task.owner == dag.owner, f"{dag_id}.{task.task_id}: owner differs"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: no retries"
