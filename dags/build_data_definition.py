"""Airflow DAG: regenerate the data-definition document (データ項目定義書) after every build of
the marts, so what auditors read always matches what the warehouse holds."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import AssetAny, dag, task

from yorisoi.orchestration.assets import mart_asset
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, POOL

# Emitted by build_customer_model (dim_customers) and build_segments (customer_traits).
AFTER = ("dim_customers", "customer_traits")


@dag(
    dag_id="build_data_definition",
    description="Regenerate the data-definition document (データ項目定義書) after every build of the marts.",
    schedule=AssetAny(*(mart_asset(m) for m in AFTER)),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # data-triggered: one rebuild describes the warehouse as it is now
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["docs", "dbt", "audit"],
    doc_md="""
### Data-definition document (データ項目定義書)
Regenerates the document auditors review, from the source registry, the dbt manifest and
catalog (`dbt docs generate --static`) and the Great Expectations suites: the number of
databases and sources, the join keys and ER diagram, every table and column (description, type,
personal data and masking), each item's update method and frequency, and lineage.

- **Inputs:** runs after `build_customer_model` (asset `marts.dim_customers`) or
  `build_segments` (asset `marts.customer_traits`) has rebuilt the marts.
- **Outputs:** `var/out/docs/data-definition/`: `index.html`, `ja.html`, `en.html`,
  `data-definition.{ja,en}.xlsx`, `erd.*.svg`, `erd.mmd`, `data-definition.json`,
  `dbt-docs/index.html`.
- **Pool:** `duckdb_writer` (dbt opens the warehouse to read the catalog).
- **Rerun:** safe: the files are rewritten. By hand: `yorisoi docs build`.
""",
)
def build_data_definition():
    @task(pool=POOL)
    def generate_data_definition() -> dict:
        from yorisoi.docs.build import airflow_task  # loaded when the task runs, not at parse

        return airflow_task()

    generate_data_definition()


build_data_definition()
