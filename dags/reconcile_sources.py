"""Airflow DAG: once a week, land what the incremental OMS and shop reads missed (a correction
stamped older than the overlap): tasks come from include/sources/registry.yml; see the DAG's doc."""

from yorisoi.orchestration.dag_factory import reconcile_dag

dag = reconcile_dag(
    schedule="@weekly",  # a full read per table: cheap weekly, too much for every run
    catchup=False,  # one run reconciles everything up to now
    max_active_runs=1,
)
