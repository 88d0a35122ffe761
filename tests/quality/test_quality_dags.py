"""Through Airflow: the real DAGs run with dag.test() on a warehouse holding bad data. The gate task
fails, the task after it never runs (no dbt build, no segment assets for activation), and exactly
one alert reaches a real SMTP server on loopback (and one the Slack webhook stand-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from quality_seeds import seed_bad_raw_batch, seed_opted_out_deliverable

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def airflow_db() -> None:
    """The session's Airflow metadata DB, migrated, with the writer pool (once per module)."""
    for args in (["db", "migrate"], ["pools", "set", "duckdb_writer", "1", "DuckDB writer"]):
        subprocess.run([sys.executable, "-m", "airflow", *args], check=True, env={**os.environ}, capture_output=True)


@pytest.fixture
def airflow_alerts(airflow_db, var: Path, smtp_server, slack_webhook, monkeypatch: pytest.MonkeyPatch):
    """The SMTP connection to the loopback server, the alert recipients (an Airflow Variable from
    the environment) and the Slack webhook connection."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": smtp_server.host,
                "port": smtp_server.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0},
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_YORISOI_ALERT_EMAILS", "crm-ops@example.com, data-eng@example.com")
    monkeypatch.setenv(
        "AIRFLOW_CONN_YORISOI_SLACK_WEBHOOK", json.dumps({"conn_type": "http", "password": slack_webhook.url})
    )
    return smtp_server, slack_webhook


def _run(dag_id: str, **kwargs) -> tuple[dict[str, str], str]:
    """Run dags/<dag_id>.py once with dag.test(); the final state of each task."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    run = bag.get_dag(dag_id).test(**kwargs)
    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}, run.run_id


def test_raw_gate_stops_the_customer_model_and_alerts_once(var: Path, airflow_alerts) -> None:
    from yorisoi_kit.demo_log import task_logs_for_the_ui

    mailbox, webhook = airflow_alerts
    seed_bad_raw_batch(var / "warehouse.duckdb")

    with task_logs_for_the_ui():  # as the demo runs its DAGs: each task's log where the UI reads it
        states, run_id = _run("build_customer_model")

    assert states == {"validate_raw": "failed", "dbt_build_customer_layer": "upstream_failed"}
    assert len(mailbox.messages) == 1, [m["Subject"] for m in mailbox.messages]
    mail = mailbox.messages[0]
    assert mail["Subject"] == f"[Yorisoi] build_customer_model.validate_raw failed (run {run_id})"
    assert sorted(a.strip() for a in mail["To"].split(",")) == ["crm-ops@example.com", "data-eng@example.com"]
    body = mail.get_body(("html",)).get_content()
    assert "quality gate raw failed" in body
    assert "raw.ecommerce__customers: expect_column_values_to_not_be_null(column=id)" in body
    assert "Data Docs:" in body
    assert body.rstrip().endswith("(docs/runbook.md#gate).</b></p>\n</body></html>")  # what to do
    assert len(webhook.posts) == 1
    assert "build_customer_model.validate_raw" in webhook.posts[0]["text"]
    assert webhook.posts[0]["text"].endswith("(docs/runbook.md#gate).*")
    # The failed task's log is where the Airflow UI reads it, in lines the UI's reader parses.
    from airflow.utils.log.file_task_handler import StructuredLogMessage

    log = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "dag_id=build_customer_model" / f"run_id={run_id}"
    lines = (log / "task_id=validate_raw" / "attempt=1.log").read_text("utf-8").splitlines()
    events = [StructuredLogMessage.model_validate_json(line) for line in lines]
    assert any("quality gate raw failed" in e.event for e in events)
    assert all(e.timestamp is not None for e in events)


@pytest.mark.slow  # the raw gate's DAG test covers blocking and alerting; this adds the assets
def test_marts_gate_withholds_the_segment_assets(var: Path, airflow_alerts) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    mailbox, _ = airflow_alerts
    seed_opted_out_deliverable(var / "warehouse.duckdb")

    # The dbt build is marked successful without running (the XS marts are already built).
    states, run_id = _run("build_segments", mark_success_pattern="dbt_build_segments")

    assert states == {"dbt_build_segments": "success", "validate_marts": "failed"}
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == "build_segments", AssetEvent.source_run_id == run_id)
        ).all()
    assert events == [], "activation must not be triggered by marts that failed their gate"
    assert len(mailbox.messages) == 1
    assert mailbox.messages[0]["Subject"] == f"[Yorisoi] build_segments.validate_marts failed (run {run_id})"
    assert "(column=not_opted_in)" in mailbox.messages[0].get_body(("html",)).get_content()
