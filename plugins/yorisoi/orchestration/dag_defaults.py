"""Defaults every Yorisoi DAG shares: owner, retries with backoff, failure logging and alerts
(email through the SMTP connection `smtp_default` to the Airflow Variable `yorisoi_alert_emails`,
and a Slack webhook when the connection `yorisoi_slack_webhook` exists: yorisoi.quality.notify).

Import this from DAG files (`from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS`) so that a change of
policy is made once."""

from __future__ import annotations

import logging
from datetime import timedelta

from ..transform import local_time_zone

log = logging.getLogger("yorisoi.dags")

LOCAL_TIME_ZONE = local_time_zone()
"""The clock of every schedule: dbt's var `local_time_zone` (dbt_project.yml), which the models
read too, so a brand elsewhere changes it once."""

OWNER = "data-engineering"
POOL = "duckdb_writer"  # one slot: DuckDB has a single writer, so warehouse writers queue here
# The order in which tasks waiting for the writer pool get its slot (weight_rule "absolute" for
# every task, so these numbers are the whole story; found running the DAGs under a real scheduler,
# tests/orchestration/test_scheduled_pipeline.py):
FINISH_BUILD_PRIORITY = 100
"""A build's second step (dbt after the raw gate; the marts gate after dbt) goes first: nothing may
slip in between, or dbt would build rows the gate never saw, or activation would read marts that
are built but not yet validated (its circuit breaker then refuses to send, and alerts)."""
LANDING_PRIORITY = 10
"""Landing goes ahead of starting a build: when several tables wait for the slot, a build triggered
by the first of them would otherwise rebuild on half of the run's data, then again for the rest."""
TASK_TIMEOUT = timedelta(hours=3)
"""Every task's `execution_timeout` unless it sets a shorter one: a task that hangs (a source that
trickles a byte at a time, a lock never released) must not hold the writer pool's one slot for
ever (docs/reliability.md #18). Three hours is several times a full build at L."""


def log_failure(context: dict) -> None:
    """Write one clear line per failed task: which DAG, task, run, try, and the error."""
    ti = context.get("task_instance")
    log.error(
        "task failed: dag=%s task=%s run=%s try=%s error=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        getattr(ti, "try_number", "?"),
        context.get("exception"),
    )


def alert_failure(context: dict) -> None:
    """Send the failure alerts of yorisoi.quality.notify (email; Slack when configured), each on
    its own so one broken channel does not silence the other. Imported when a task fails, so DAG
    files stay light to parse."""
    from ..quality.notify import failure_notifiers

    for notifier in failure_notifiers():
        try:
            notifier(dict(context))
        except Exception:
            log.exception("failure alert %s could not be sent", type(notifier).__name__)


DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": TASK_TIMEOUT,
    "weight_rule": "absolute",  # priorities above: 1 unless a task sets one
    "on_failure_callback": [log_failure, alert_failure],
}
