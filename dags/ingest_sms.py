"""Airflow DAG: land the SMS provider's delivery receipts (delivered / undelivered / failed per
message) in the raw layer for the campaign-outcome facts; tables, schedule and connection come
from include/sources/registry.yml (no DAG when the brand has no SMS provider: `enabled: false`)."""

from yorisoi.orchestration.dag_factory import ingest_dag

dag = ingest_dag(
    "sms",
    catchup=False,  # incremental by watermark (with an overlap): one run catches up on everything
    max_active_runs=1,  # runs of one source never overlap (watermarks move in order)
)
