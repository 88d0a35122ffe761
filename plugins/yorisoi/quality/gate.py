"""What the quality-gate tasks run (dags/build_customer_model.py: validate_raw before the dbt build;
dags/build_segments.py: validate_marts after it, carrying the segment assets activation listens to).

A failed expectation fails the task without retries (`QualityGateFailed`: rerunning does not fix
data), so nothing downstream runs, the failure callbacks alert (dag_defaults), and the task's
assets are not emitted. Errors a retry may fix (a warehouse file locked for longer than the
connection retries) raise other exceptions and are retried."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from airflow.sdk.exceptions import AirflowFailException

from .. import paths
from ..transform import local_time_zone

log = logging.getLogger(__name__)

LOCAL_TIME_ZONE = local_time_zone()


class QualityGateFailed(AirflowFailException):
    """A quality gate found failed expectations (or a suite file it cannot read). The message
    lists every failed suite and expectation and where the Data Docs are."""


def pin_as_of(run_after: datetime | None) -> str:
    """The as-of day marts are built and validated for: $YORISOI_AS_OF if set (the demo pins the
    synthetic brand's day), else the local date of the run; set in the environment so dbt and the
    gate agree. Returns YYYY-MM-DD."""
    if not os.environ.get("YORISOI_AS_OF"):
        from zoneinfo import ZoneInfo

        when = run_after or datetime.now(ZoneInfo(LOCAL_TIME_ZONE))
        os.environ["YORISOI_AS_OF"] = when.astimezone(ZoneInfo(LOCAL_TIME_ZONE)).date().isoformat()
    return os.environ["YORISOI_AS_OF"]


def validate_layer(layer: str, *, run_name: str | None = None, tables: list[str] | None = None) -> dict:
    """Airflow task body: validate `layer` ("raw" or "marts") of the warehouse with its suites in
    expectations/<layer>/, publish Data Docs, record the history. Returns a small summary (XCom);
    raises QualityGateFailed listing the failed suites and expectations."""
    from .suites import SuiteError
    from .validate import validate

    if layer == "raw":  # a source the brand lacks, or one not landed yet, has an empty raw table
        from ..sources.catalog import init_raw_tables

        init_raw_tables()
    try:
        result = validate(layer, run_name=run_name, tables=tables)
    except SuiteError as exc:  # a broken suite file: a retry cannot fix it
        raise QualityGateFailed(f"quality gate {layer}: a suite file is invalid: {exc}") from exc
    for suite in result.suites:
        log.info(
            "%s: %s, %s rows validated (%s in the table), %.2f s",
            suite.suite,
            "passed" if suite.success else "FAILED",
            f"{suite.rows_validated:,}",
            f"{suite.row_count:,}" if suite.row_count is not None else "?",
            suite.seconds,
        )
        for warning in suite.warnings:
            log.warning("quality warning: %s", warning.line())
    log.info("Data Docs: %s", result.docs_index)
    publish_latest(result.summary())
    if not result.success:
        message = result.message()
        for line in message.splitlines():
            log.error("%s", line)
        raise QualityGateFailed(message)
    return result.summary()


def latest_results_path(layer: str) -> Path:
    """Where the latest gate result of `layer` is kept for the activation circuit breaker."""
    return paths.var_dir() / "quality" / "latest" / f"{layer}.json"


def publish_latest(summary: dict) -> Path:
    """Write the gate's summary, pass or fail, with the time it was validated, atomically (a
    reader never sees half a file): the circuit breaker refuses exports unless it says success."""
    from datetime import UTC

    target = latest_results_path(summary["layer"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**summary, "validated_at": datetime.now(UTC).isoformat()}, ensure_ascii=False))
    os.replace(tmp, target)
    return target
