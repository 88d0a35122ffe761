"""Airflow DAG: ingest the `oms` source into the raw layer: tables, schedule and connection come from
include/sources/registry.yml; see the DAG's doc for what each task lands."""

from yorisoi.orchestration.dag_factory import ingest_dag

dag = ingest_dag(
    "oms",
    catchup=False,  # incremental by watermark: one run catches up on everything since the last
    max_active_runs=1,  # runs of one source never overlap (watermarks move in order)
)
