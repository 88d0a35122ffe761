"""Airflow DAG: build the unified customer model (identity, consent, exclusions) with dbt whenever
customer, consent or order data lands in the raw layer."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import AssetAny, dag, task

from yorisoi.orchestration.assets import mart_asset, registry_raw_assets
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, FINISH_BUILD_PRIORITY, POOL

MARTS = ("dim_customers", "bridge_customer_identities", "fct_orders", "consent_ledger", "deliverable_customers")


@dag(
    dag_id="build_customer_model",
    description="Unified customer model (identity, consent, orders) with dbt when raw data lands.",
    schedule=AssetAny(*registry_raw_assets()),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # data-triggered: one build covers everything landed since the last
    max_active_runs=1,  # identity keeps stable IDs by reading its previous result: builds never overlap
    default_args=DEFAULT_ARGS,
    tags=["transform", "dbt", "identity", "consent"],
    doc_md="""
### Unified customer model
`dbt build` of the customer layer (dbt_project/): staging (normalised), identity resolution,
the consent ledger, exclusions and deliverable customers, the golden record and its snapshot,
order lines and products, and the analysts' tables (var/analytics.duckdb). The segment marts
are built after it by `build_segments`. dbt tests run in the same build: a failing test
fails the task without retries and nothing downstream (exports) runs.

**Quality gate (raw → staging):** `validate_raw` runs the Great Expectations suites of
`expectations/raw/` on the rows landed since the last passing validation (keys, nulls, accepted
values, references, freshness, row-count change). A failed expectation fails it without retries:
the dbt build does not run, the failure email / Slack alert names the suites and expectations,
and the Data Docs (`var/out/docs/quality/index.html`) show the failing values.

- **Inputs:** every raw table of the source registry (runs when any of them lands; one build
  covers everything landed since the last).
- **Outputs:** assets `marts.dim_customers`, `marts.bridge_customer_identities`, `marts.fct_orders`,
  `marts.consent_ledger`, `marts.deliverable_customers`.
- **Secret:** the match key (HMAC) is the password of the Airflow connection `yorisoi_match_key`.
- **Rerun:** safe: models are rebuilt; person IDs stay stable (the identity model reads its last result).
  After a gate failure, fix or replace the bad batch at the source (a re-ingest replaces rows by key),
  then clear `validate_raw`.
- **First load:** until the customer layer has been built once, a build triggered while some
  raw table has not landed yet is skipped (the reason names the tables); the build after the
  last table lands runs.
""",
)
def build_customer_model():
    # In the writer pool too: DuckDB refuses a read-only connection while another process writes.
    @task(pool=POOL)
    def validate_raw(dag_run=None) -> dict:
        from yorisoi.quality.gate import validate_layer  # GX is imported when the task runs, not at parse
        from yorisoi.transform import require_first_load

        require_first_load()  # a new deployment's sources land one by one: wait for all of them
        return validate_layer("raw", run_name=f"{dag_run.dag_id}.{dag_run.run_id}")

    @task(
        pool=POOL,
        priority_weight=FINISH_BUILD_PRIORITY,  # right after the gate: no landing in between
        outlets=[mart_asset(m) for m in MARTS],
    )
    def dbt_build_customer_layer() -> dict:
        from yorisoi.transform import CUSTOMER_LAYER, SEGMENT_LAYER, build_task  # loaded at run, not parse

        return build_task(CUSTOMER_LAYER, exclude=SEGMENT_LAYER, results_name="customer_model")

    validate_raw() >> dbt_build_customer_layer()


build_customer_model()
