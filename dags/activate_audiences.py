"""Airflow DAG: export the audiences defined in audiences/ to their destinations (email, LINE,
SMS, DM and 同梱物 files, S3) after every segment build, and on each audience's own schedule."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetAny, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from yorisoi.orchestration.assets import mart_asset
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, LOCAL_TIME_ZONE, POOL

TICK = "*/15 * * * *"  # how often scheduled audiences are looked for (yorisoi.activation.run.DEFAULT_TICK)
# The segment marts build_segments emits (its outlets); audiences select from them.
SEGMENT_MARTS = (
    "trigger_audiences",
    "customer_status",
    "customer_traits",
    "customer_rfm",
    "customer_deciles",
    "segment_4r",
)
MAX_PARALLEL_EXPORTS = 4


def _notify_skipped(context) -> None:
    from yorisoi.activation.selection.breaker import notify_skipped

    notify_skipped(context)


@dag(
    dag_id="activate_audiences",
    description="Send audiences to email, LINE, SMS, DM / 同梱物 files and S3 after each segment build.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(TICK, timezone=LOCAL_TIME_ZONE),
        assets=AssetAny(*(mart_asset(m) for m in SEGMENT_MARTS)),
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a missed tick is caught by the next one (plan looks back to the last success)
    max_active_runs=1,  # one allocation at a time: frequency caps count what the previous run sent
    default_args=DEFAULT_ARGS,
    tags=["activation", "audiences"],
    doc_md="""
### Audience activation
Exports every audience in `audiences/*.yml` (validated on load) to the destinations of
`include/destinations.yml`.

- **When:** after every segment build (assets `marts.trigger_audiences`, `marts.customer_status`,
  `marts.segment_4r`, ...) for audiences without a `schedule`, and every 15 minutes for those with
  one (cron, Japan time) whose fire time has come.
- **Tasks:** `plan` (the due (audience, destination) pairs) → `allocate` (circuit breaker: the
  build's dbt tests and the Great Expectations marts suites must have passed and the audience's
  size may not jump; members with control group and variants; frequency caps, priorities and exit
  conditions across audiences; reads the warehouse in the `duckdb_writer` pool so it never meets
  dbt) → `export`, one mapped task per pair (eligibility re-read from the warehouse, then the
  diff sync with ledger, rate limit and retries). A tripped breaker skips the pair's export with
  the reason, alerted in the log and `var/activation/alerts.jsonl`.
- **Rerun:** safe: the send ledger makes each send once per (audience, destination, interval),
  list syncs are diffs against the last confirmed snapshot. Dry run: `yorisoi activation dry-run
  <audience>`.
""",
)
def activate_audiences():
    @task
    def plan(dag_run=None, triggering_asset_events=None, prev_start_date_success=None) -> list[dict]:
        from yorisoi.activation.run import DEFAULT_TICK, plan_task

        as_of = dag_run.run_after
        since = prev_start_date_success or as_of - DEFAULT_TICK
        triggered_by = [asset.name for asset in (triggering_asset_events or {})]
        return plan_task(as_of, since=max(since, as_of - timedelta(days=1)), triggered_by=triggered_by)

    @task(pool=POOL)
    def allocate(pairs: list[dict], dag_run=None) -> list[dict]:
        from yorisoi.activation.run import allocate_task

        return allocate_task(pairs, as_of=dag_run.run_after, run_id=dag_run.run_id)

    @task(max_active_tis_per_dagrun=MAX_PARALLEL_EXPORTS, on_skipped_callback=_notify_skipped)
    def export(pair: dict, dag_run=None) -> dict:
        from yorisoi.activation.run import export_task

        return export_task(pair, run_id=dag_run.run_id, as_of=dag_run.run_after)

    export.expand(pair=allocate(plan()))


activate_audiences()
