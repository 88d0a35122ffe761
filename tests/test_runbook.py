"""Every alert ends with what to do, and every step it points at is a section of docs/runbook.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from yorisoi import runbook

RUNBOOK = (Path(__file__).resolve().parents[1] / "docs" / "runbook.md").read_text("utf-8")


def test_every_step_points_at_a_section_of_the_runbook() -> None:
    anchors = set(re.findall(r'<a id="([a-z-]+)"></a>', RUNBOOK))
    assert set(runbook.STEPS) == anchors
    for topic in ("quarantine", "timeout", "column-drift", "rejects", "gate"):
        assert f'<a id="{topic}"></a>' in RUNBOOK
    assert "## Rerunning each DAG" in RUNBOOK


@pytest.mark.parametrize(
    ("exception", "topic"),
    [
        ("quality gate marts failed: 1 of 12 suites failed", "gate"),
        ("sftp.pos_sales: [sftp] COLUMN DRIFT: pos/x.csv (table pos_sales) moved to ...", "column-drift"),
        ("sftp.pos_sales: [sftp] QUARANTINED: pos/x.csv (table pos_sales) moved to ...", "quarantine"),
        ("sftp.callcenter_requests: [sftp] TIMEOUT: callcenter/r.csv: no manifest 7h", "timeout"),
        ("dbt build failed: 2 of 310 nodes", "dbt"),
        (KeyError("x"), "other"),
    ],
)
def test_a_failure_alert_ends_with_the_step_for_its_kind(exception: object, topic: str) -> None:
    step = runbook.next_step_for(exception)
    assert step.startswith("What to do: ") and step.endswith(f"(docs/runbook.md#{topic}).")


def test_the_failure_email_and_slack_message_end_with_what_to_do() -> None:
    from yorisoi.quality import notify

    context = {"exception": "quality gate raw failed: 1 of 9 suites failed"}
    (rendered,) = notify._with_next_step((context,))
    assert rendered["next_step"] == runbook.next_step("gate")
    assert notify.BODY.rstrip().endswith("<p><b>{{ next_step | e }}</b></p>\n</body></html>")
    assert notify.SLACK_TEXT.endswith("*{{ next_step }}*")
