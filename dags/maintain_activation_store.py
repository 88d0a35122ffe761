"""Airflow DAG: apply the activation store's retention (include/destinations.yml
`defaults.retention`) once a week."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS, LOCAL_TIME_ZONE

WEEKLY = "0 3 * * 0"  # Sunday 03:00, the quietest hour for sends


@dag(
    dag_id="maintain_activation_store",
    description="Weekly retention of the activation store (members, sync records, ledger).",
    schedule=CronTriggerTimetable(WEEKLY, timezone=LOCAL_TIME_ZONE),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # each prune covers everything older than the retention: a missed week is caught up by the next
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["activation", "maintenance", "retention"],
    doc_md="""
### Activation store retention
Deletes from the activation store (`var/activation/activation.sqlite`) what the retention in
`include/destinations.yml` (`defaults.retention`) no longer keeps:

- `audience_members` older than `audience_members_days` (90), except each audience's latest run,
  which the circuit breaker compares the next run's size with;
- `sync_runs` with their `sync_changelog` and `sync_rejects` rows older than `sync_days` (1095:
  the record of what was provided to whom, kept as long as APPI asks);
- `send_ledger` rows older than `send_ledger_days` (400, beyond every frequency cap), folded
  first into `send_history` so the exit conditions (`max_sends`, `no_response_after`, `goal`)
  still count every send. `sync_snapshots` (what each destination holds) are never pruned.

- **When:** Sundays 03:00 Japan time. Exports wait for the store's write lock meanwhile.
- **Outputs:** the rows deleted per table (the task's return value and log) and an entry
  `prune` in the operation log (`yorisoi audit --action prune`).
- **Rerun:** safe: a second prune finds nothing more to delete. By hand: `yorisoi activation
  prune --dry-run` to see the counts, then without `--dry-run`.
""",
)
def maintain_activation_store():
    @task
    def prune_activation_store(dag_run=None) -> dict[str, int]:
        from yorisoi.activation.cli import prune_store  # loaded when the task runs, not at parse

        return prune_store(dag_run.run_after)

    prune_activation_store()


maintain_activation_store()
