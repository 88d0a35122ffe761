"""What to do about each kind of failure: the last line of every alert (email, Slack, the task
log's ALERT lines, the circuit breaker's alerts), each pointing at its section of docs/runbook.md."""

from __future__ import annotations

RUNBOOK = "docs/runbook.md"

STEPS = {
    "quarantine": (
        "read the reason next to the file in quarantine/ (and raw._files), get a corrected file from the "
        "sender under a new name with its manifest, then clear the failed ingest task: loaded files are "
        "not loaded again"
    ),
    "column-drift": (
        "ask the sender whether the column change is intended; if it is, update the feed's columns in "
        "include/sources/registry.yml (and the staging model), move the file back from quarantine/ to the "
        "inbox and clear the ingest task; if not, get a corrected file"
    ),
    "timeout": (
        "ask the sender for the missing manifest (or resend the file with it); clear the ingest task once "
        "it is there: the file loads on the next run"
    ),
    "rejects": (
        "look at raw._rejects (file, line, reason); the good rows loaded; a corrected row sent in a later "
        "file upserts by key"
    ),
    "flags": (
        "look at raw._flags (table, key, column, reason): the rows landed; a date in the future or a kana "
        "column holding other text is fixed at the source, and the next read replaces the row"
    ),
    "gate": (
        "open the Data Docs named above, fix the data at its source (or the model, or the suite if the "
        "expectation is wrong), rebuild, then clear the gate task: it validates again and the build goes on"
    ),
    "dbt": (
        "find the failing model or test in the task log, reproduce it with `yorisoi dbt build --select "
        "<model>`, fix it, then clear the task: dbt rebuilds the models idempotently"
    ),
    "breaker": (
        "nothing was sent; find why in the reason above (a failed build, gate or a size jump), fix it or "
        "confirm the new size is right, then clear the export task or run `yorisoi activation run "
        "AUDIENCE`: the send ledger sends nobody twice"
    ),
    "destination": (
        "check the destination's Airflow connection and its status page; clear the export task when it "
        "answers again: only the rows without a confirmed answer are resent"
    ),
    "other": (
        "read the task log, fix the cause, then clear the task in the Airflow UI (or `airflow tasks "
        "clear`): every Yorisoi task can be rerun safely"
    ),
}


def next_step(topic: str) -> str:
    """`What to do: … (docs/runbook.md#topic)`."""
    return f"What to do: {STEPS[topic]} ({RUNBOOK}#{topic})."


def topic_of(exception: BaseException | str | None) -> str:
    """The runbook section for a failed task's exception."""
    name = type(exception).__name__ if isinstance(exception, BaseException) else ""
    text = str(exception or "")
    if name == "QualityGateFailed" or text.startswith("quality gate"):
        return "gate"
    if "COLUMN DRIFT" in text:
        return "column-drift"
    if "QUARANTINED" in text:
        return "quarantine"
    if "TIMEOUT" in text:
        return "timeout"
    if name in ("IngestAlert", "DropsStopped"):
        return "quarantine"
    if name == "DbtFailed" or text.startswith("dbt"):
        return "dbt"
    if "circuit breaker" in text:
        return "breaker"
    if name in ("SyncError", "DestinationUnavailable", "DestinationError", "PermanentError", "AuthenticationFailed"):
        return "destination"
    return "other"


def next_step_for(exception: BaseException | str | None) -> str:
    """The last line of a failure alert."""
    return next_step(topic_of(exception))
