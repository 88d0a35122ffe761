"""Airflow DAG: erase the people who asked to be erased (削除依頼) from every store, then prove it."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import AssetAny, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from yorisoi.orchestration.assets import mart_asset
from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, POOL

LOCAL_TIME_ZONE = "Asia/Tokyo"  # the brand's, as in activate_audiences


@dag(
    dag_id="erase_personal_data",
    description="Erasure requests (削除依頼): purge every store after each customer build and daily 04:00 JST.",
    # After every customer build (which resolves new requests to people), and daily, to finish
    # what waited for a destination's removal.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * *", timezone=LOCAL_TIME_ZONE),
        assets=AssetAny(mart_asset("dim_customers")),
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # each run erases every pending request: a missed day is caught up by the next
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["privacy", "erasure", "maintenance"],
    doc_md="""
### Erasure (削除依頼)
For each erasure request the customer build resolved to a person (`marts.erasure_tombstones`)
and not yet erased, writes tombstones (keyed hashes of the person's IDs and contact values,
`raw._erasure_tombstones`), then removes what they mark from the raw tables, every derived
table, the analysts' and role databases, the lake's Parquet files, the SFTP server's
`processed/` and `quarantine/` files and the activation store (the record of provision is kept
with hashed keys). The landing drops tombstoned rows from then on. See docs/privacy.md.

- **Tasks:** `erase` (the purge; an `erase` entry in the operation log), then `verify_erasure`,
  which scans every store for the erased keys and fails, alerting, when any remains (for
  instance a destination that has not removed the person yet: the next run finishes it).
- **Credentials:** the match key (`yorisoi_match_key`) and the SFTP connection of the registry.
- **Rerun:** safe: both steps are driven by the tombstones and find nothing more the second time.
  By hand: `yorisoi privacy erase`, then `yorisoi privacy verify-erasure`.
""",
)
def erase_personal_data():
    @task(pool=POOL)
    def erase() -> dict:
        from yorisoi.privacy.cli import erase_task  # loaded when the task runs, not at parse
        from yorisoi.transform import match_key_from_airflow

        match_key_from_airflow()
        return erase_task()

    @task(pool=POOL)
    def verify_erasure() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from yorisoi.privacy.cli import verify_task
        from yorisoi.transform import match_key_from_airflow

        match_key_from_airflow()
        report = verify_task()
        if not report["ok"]:
            where = "; ".join(f"{r['store']} {r['location']}.{r['column']} ({r['kind']})" for r in report["residuals"])
            raise AirflowFailException(f"erased keys remain: {where}")
        return report

    erase() >> verify_erasure()


erase_personal_data()
