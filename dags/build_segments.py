"""Airflow DAG: rebuild the segment marts (traits, RFM, deciles, statuses, F-retention, cohorts,
daily trigger audiences, 4R) every morning for the day, and again whenever the customer model
changes."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import AssetAll, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from yorisoi.orchestration.assets import mart_asset
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, FINISH_BUILD_PRIORITY, LOCAL_TIME_ZONE, POOL

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
    description="Segment marts (RFM, deciles, statuses, F別継続率, triggers) daily 05:30 JST.",
    # 05:30 local time, before marketing starts the day; and after every customer-model build.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 5 * * *", timezone=LOCAL_TIME_ZONE),
        assets=AssetAll(*(mart_asset(m) for m in CUSTOMER_MARTS)),
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
4R check, with their dbt data tests (the unit tests run in CI, not here: docs/scale.md).

- **As-of day:** the local date of the run (env `YORISOI_AS_OF` pins another day, as the demo does).
- **Quality gate (marts → activation):** `validate_marts` runs the Great Expectations suites of
  `expectations/marts/` (keys, nulls, accepted values, references such as deliverable ⊆ opted in,
  freshness, audience-size jumps). Only when they pass are the segment assets emitted; a failure
  fails it without retries and alerts by email / Slack with the failed suites and expectations;
  Data Docs: `var/out/docs/quality/index.html`.
- **Outputs:** assets `marts.customer_traits`, `marts.trigger_audiences`, `marts.segment_4r`, ...
  emitted by `validate_marts` (activation listens to them).
- **First tick:** on a warehouse without a customer layer (a new deployment, switched on before
  its first customer build) the build is skipped, not failed; the first customer build triggers it.
- **Rerun:** safe: every model is rebuilt for its as-of day.
""",
)
def build_segments():
    @task(pool=POOL)
    def dbt_build_segments(dag_run=None) -> dict:
        from yorisoi.quality.gate import pin_as_of
        from yorisoi.transform import SEGMENT_LAYER, build_task, require_customer_layer  # loaded at run, not parse

        require_customer_layer()  # a new deployment's first tick comes before any customer build
        return {"as_of": pin_as_of(dag_run.run_after), **build_task(SEGMENT_LAYER, results_name="segments")}

    # The segment assets are emitted here, after the marts passed, so activation only ever starts
    # on validated marts.
    @task(
        pool=POOL,
        priority_weight=FINISH_BUILD_PRIORITY,  # right after dbt: no reader sees unvalidated marts
        outlets=[mart_asset(m) for m in OUTPUTS],
    )
    def validate_marts(dag_run=None) -> dict:
        from yorisoi.quality.gate import pin_as_of, validate_layer  # GX is imported at run, not at parse

        pin_as_of(dag_run.run_after)  # freshness is measured against the day the marts describe
        return validate_layer("marts", run_name=f"{dag_run.dag_id}.{dag_run.run_id}")

    dbt_build_segments() >> validate_marts()


build_segments()
