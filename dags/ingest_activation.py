"""Airflow DAG: land the activation store (audience members with group and variant, sync runs,
the send ledger, the changelog) in the raw layer for the campaign-outcome facts; tables, schedule
and connection come from include/sources/registry.yml."""

from yorisoi.orchestration.dag_factory import ingest_dag

dag = ingest_dag(
    "activation",
    catchup=False,  # incremental by watermark: one run catches up on everything since the last
    max_active_runs=1,  # runs of one source never overlap (watermarks move in order)
)
