"""Airflow DAG: rebuild the CRM report (CRMレポート, static HTML in Japanese and English) after
every segment build whose marts passed the quality gate."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from yorisoi.orchestration.assets import mart_asset
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, POOL

# Emitted by build_segments' validate_marts, only when the segment marts passed their suites.
AFTER = "customer_traits"


@dag(
    dag_id="build_report",
    description="Rebuild the CRM report (CRMレポート, static HTML, ja / en) after every validated segment build.",
    schedule=[mart_asset(AFTER)],
    start_date=datetime(2026, 1, 1),
    catchup=False,  # data-triggered: one rebuild shows the marts as they are now
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["report", "segments"],
    doc_md="""
### CRM report (CRMレポート)
Rebuilds the self-BI report marketing reads from the segment marts: key figures, F別継続率 and
lead times, cohort repeat and retention, RFM grid and migration, deciles and ABC, channel mix,
ID links and reach, today's triggers and audience funnels, campaign results (when
`marts.campaign_results` exists), 顧客BS (5-year forecast with no new customers) and data health.

- **Inputs:** runs after `build_segments` validated the marts (asset `marts.customer_traits`).
- **Outputs:** `var/out/report/`: `index.html` (日本語), `en.html`, `assets/` (one shared Vega
  bundle); no network at build or view time.
- **Pool:** `duckdb_writer` (it opens the warehouse read-only, which DuckDB refuses while a
  writer holds it).
- **Rerun:** safe: the folder is replaced in one rename. By hand: `yorisoi report build`.
""",
)
def build_report():
    @task(pool=POOL)
    def build_crm_report() -> dict:
        from yorisoi.report.build import airflow_task  # loaded when the task runs, not at parse

        return airflow_task()

    build_crm_report()


build_report()
