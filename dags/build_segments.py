"""Airflow DAG: rebuild the segment marts (traits, RFM, deciles, statuses, F-retention, cohorts,
daily trigger audiences, 4R) every morning for the day, and again whenever the customer model
changes."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, AssetAll, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from yorisoi.dag_defaults import DEFAULT_ARGS, POOL

LOCAL_TIME_ZONE = "Asia/Tokyo"  # the brand's; dbt's var local_time_zone says the same
CUSTOMER_MARTS = ("dim_customers", "fct_orders", "deliverable_customers")
OUTPUTS = (
    "customer_traits",
    "customer_status",
    "customer_rfm",
    "customer_deciles",
    "f_retention",
    "cohort_retention",
    "trigger_audiences",
    "segment_4r",
)


@dag(
    dag_id="build_segments",
    # 05:30 local time, before marketing starts the day; and after every customer-model build.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 5 * * *", timezone=LOCAL_TIME_ZONE),
        assets=AssetAll(*(Asset(name=f"marts.{m}", uri=f"duckdb://yorisoi/marts/{m}") for m in CUSTOMER_MARTS)),
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a segment describes one day; yesterday's rebuild is not wanted today
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["transform", "dbt", "segments"],
    doc_md="""
### Segment marts
`dbt build` of the marts marketing reads every day (dbt tags segments, retention, triggers,
targeting): customer traits, RFM, deciles, ABC, customer status and lifecycle, RFMC / RFMD,
F-retention and lead times, cohorts and revenue retention, the daily trigger audiences and the
4R check, with their dbt tests and unit tests.

- **As-of day:** the local date of the run (env `YORISOI_AS_OF` pins another day, as the demo does).
- **Outputs:** assets `marts.customer_traits`, `marts.trigger_audiences`, `marts.segment_4r`, ...
  (activation listens to them).
- **Rerun:** safe: every model is rebuilt for its as-of day.
""",
)
def build_segments():
    @task(
        pool=POOL,
        outlets=[Asset(name=f"marts.{m}", uri=f"duckdb://yorisoi/marts/{m}") for m in OUTPUTS],
    )
    def dbt_build_segments(dag_run=None) -> dict:
        import os

        import pendulum

        from yorisoi.transform import SEGMENT_LAYER, build_task  # loaded when the task runs, not at parse

        if not os.environ.get("YORISOI_AS_OF"):
            run_day = pendulum.instance(dag_run.run_after).in_timezone(LOCAL_TIME_ZONE).date()
            os.environ["YORISOI_AS_OF"] = run_day.isoformat()
        return {"as_of": os.environ["YORISOI_AS_OF"], **build_task(SEGMENT_LAYER)}

    dbt_build_segments()


build_segments()
