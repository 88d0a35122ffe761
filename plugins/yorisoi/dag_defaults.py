"""Defaults every Yorisoi DAG shares: owner, retries with backoff, and failure logging.

Import this from DAG files (`from yorisoi.dag_defaults import DEFAULT_ARGS`) so that a change of
policy is made once."""

from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger("yorisoi.dags")

OWNER = "data-engineering"
POOL = "duckdb_writer"  # one slot: DuckDB has a single writer, so warehouse writers queue here


def log_failure(context: dict) -> None:
    """Write one clear line per failed task: which DAG, task, run, try, and the error."""
    ti = context.get("task_instance")
    log.error(
        "task failed: dag=%s task=%s run=%s try=%s error=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        getattr(ti, "try_number", "?"),
        context.get("exception"),
    )


DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "on_failure_callback": log_failure,
}
