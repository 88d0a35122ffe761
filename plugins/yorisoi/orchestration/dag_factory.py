"""Ingest DAGs generated from the source registry: one DAG per source, one task per table,
each task publishing the Airflow Asset of its raw table so downstream DAGs run on data."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from ..sources.registry import Source, load_registry
from .assets import raw_asset
from .dag_defaults import DEFAULT_ARGS, LANDING_PRIORITY, POOL


def _doc(source: Source) -> str:
    rows = "\n".join(
        f"| `raw.{t.raw_name}` | {', '.join(t.primary_key)} | {t.watermark or '—'} | {t.description} |"
        for t in source.enabled_tables().values()
    )
    return f"""
### Ingest {source.name}: {source.system}
{source.description}

- **Frequency (連携頻度):** `{source.schedule}` · **Method (連携方法):** {source.method}
- **Connection:** Airflow connection `{source.conn_id}` (credentials live only there)
- **Rerun:** clear a task or the run: the batch of that run is replaced, never duplicated.
  Writers share the `{POOL}` pool (one slot), because DuckDB has a single writer; a task
  stops after `{source.duration("execution_timeout", "2 hours")}` (registry `execution_timeout`) so a
  source that hangs cannot hold the pool.

| raw table | primary key | watermark | content |
|---|---|---|---|
{rows}
"""


def ingest_dag(source_name: str, *, catchup: bool, max_active_runs: int) -> DAG | None:
    """Build `ingest_<source>` from the registry entry of `source_name`, with a task per enabled
    table; None (no DAG) when the brand does not have the source (`enabled: false`)."""
    source = load_registry().source(source_name)
    if not source.enabled:
        return None
    with DAG(
        dag_id=f"ingest_{source.name}",
        description=f"Ingest {source.system} into the raw layer ({source.schedule}, {source.method}).",
        schedule=source.schedule,
        start_date=datetime(2026, 1, 1),
        catchup=catchup,
        max_active_runs=max_active_runs,
        default_args=DEFAULT_ARGS,
        tags=["ingest", source.name, source.kind],
        doc_md=_doc(source),
    ) as dag:
        tables = source.enabled_tables()
        for table in tables.values():
            if table.options.get("parent"):
                continue  # landed by its parent's task (order lines come with their orders)
            outlets = [raw_asset(table)] + [
                raw_asset(child) for child in tables.values() if child.options.get("parent") == table.name
            ]

            @task(
                task_id=f"land_{table.name}",
                pool=POOL,
                priority_weight=LANDING_PRIORITY,
                outlets=outlets,
                execution_timeout=source.duration("execution_timeout", "2 hours"),
            )
            def land(
                table_name: str, kind: str, source_name: str, run_id: str | None = None, data_interval_end=None
            ) -> dict:
                from yorisoi.orchestration.ingest import land_table  # DuckDB and Arrow load when the task runs

                return land_table(kind, source_name, table_name, run_id or "manual", data_interval_end)

            land(table.name, source.kind, source.name)
    return dag


RECONCILED_KINDS = ("database", "api")  # read incrementally by watermark; file drops load whole


def reconcile_dag(*, schedule: str, catchup: bool, max_active_runs: int) -> DAG:
    """Build `reconcile_sources`: one task per OMS / shop table (children come with their parent)."""
    registry = load_registry()
    sources = [s for s in registry.sources.values() if s.kind in RECONCILED_KINDS]
    rows = "\n".join(
        f"| `reconcile_{s.name}_{t.name}` | `raw.{t.raw_name}` | {s.options.get('overlap', '—')} |"
        for s in sources
        for t in s.tables.values()
        if not t.options.get("parent")
    )
    with DAG(
        dag_id="reconcile_sources",
        description="Weekly: land what incremental reads missed (full key + row-hash comparison with raw).",
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=catchup,
        max_active_runs=max_active_runs,
        default_args=DEFAULT_ARGS,
        tags=["ingest", "reconcile"],
        doc_md=f"""
### Reconcile the incremental sources with raw (docs/reliability.md #17)
Incremental reads start at the watermark minus the source's overlap; a correction stamped older
than that is never read again. Each task reads its table in full, compares it with raw by primary
key and row hash, and lands the missing and changed rows (batch `<run_id>:<table>:reconcile`); the
watermark does not move and keys deleted at the source are only counted. The task's return value
(XCom) has the counts; the log says what was landed.

- **Rerun:** clear the task: the same batch is replaced. Writers share the `{POOL}` pool.
- **By hand:** `yorisoi sources reconcile [--source oms] [--table orders]`.

| task | raw table | overlap of the incremental reads |
|---|---|---|
{rows}
""",
    ) as dag:
        for source in sources:
            for table in source.tables.values():
                if table.options.get("parent"):
                    continue
                outlets = [raw_asset(table)] + [
                    raw_asset(c) for c in source.tables.values() if c.options.get("parent") == table.name
                ]

                @task(
                    task_id=f"reconcile_{source.name}_{table.name}",
                    pool=POOL,
                    outlets=outlets,
                    execution_timeout=source.duration("execution_timeout", "2 hours"),
                )
                def reconcile(
                    source_name: str, table_name: str, run_id: str | None = None, data_interval_end=None
                ) -> dict:
                    from yorisoi.orchestration.ingest import reconcile_table  # heavy imports at run time

                    return reconcile_table(source_name, table_name, run_id or "manual", data_interval_end)

                reconcile(source.name, table.name)
    return dag
