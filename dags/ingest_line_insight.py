"""Airflow DAG: land LINE's statistics per message (impressions, clicks, clicks per URL, per
custom aggregation unit and day) in the raw layer for the campaign-outcome facts; tables,
schedule and connection come from include/sources/registry.yml (no DAG when the brand has no
LINE official account: `enabled: false`)."""

from yorisoi.orchestration.dag_factory import ingest_dag

dag = ingest_dag(
    "line_insight",
    catchup=False,  # each run re-reads the last two weeks: one run catches up
    max_active_runs=1,  # runs of one source never overlap
)
