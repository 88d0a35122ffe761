"""Exports obey roles and four eyes (docs/reliability.md #20): a real send needs a role that may
execute_export and an approval, by someone other than its requester, of the audience's current
definition; a changed definition needs a new one; a test send needs none; the analyst cannot run
an export from the command line. Real SMTP on loopback (aiosmtpd)."""

from __future__ import annotations

from pathlib import Path

import pytest
from audiences_harness import (
    APPROVER,
    AS_OF,
    AUTHOR,
    cart_mail_over_smtp,
)
from typer.testing import CliRunner

from yorisoi.activation import approvals, run
from yorisoi.activation.cli import activation_app
from yorisoi.audit.log import list_entries

PEOPLE = [f"P{i:05d}" for i in range(60)]


@pytest.fixture
def unapproved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with cart_mail_over_smtp(tmp_path, monkeypatch, len(PEOPLE), role=None, approved=False) as (ctx, mailbox, _, _):
        yield ctx, mailbox


def _send(ctx, role: str = "admin") -> dict:
    return run.activate("cart_mail", "smtp_email", as_of=AS_OF, context=ctx, role=role)


def test_a_new_audience_is_sent_only_after_another_person_approved_it(unapproved) -> None:
    ctx, mailbox = unapproved
    audience = ctx.audiences["cart_mail"]
    with pytest.raises(approvals.ApprovalError, match="is not approved"):
        _send(ctx)
    assert mailbox.received == [] and ctx.store.runs(audience="cart_mail") == []

    # a test send to the seed list needs no approval
    assert run.activate("cart_mail", "smtp_email", test=True, as_of=AS_OF, context=ctx, role="content_author")[
        "status"
    ] == ("tested")
    mailbox.received.clear()

    with pytest.raises(approvals.ApprovalError, match="no export request"):
        approvals.approve(audience, role="admin", actor=APPROVER)
    with pytest.raises(PermissionError, match="may not request_export"):
        approvals.request(audience, role="content_author", actor=AUTHOR)
    approvals.request(audience, role="scenario_author", actor=AUTHOR)
    with pytest.raises(PermissionError, match="may not approve_export"):
        approvals.approve(audience, role="scenario_author", actor=APPROVER)
    with pytest.raises(approvals.ApprovalError, match="cannot approve it too"):
        approvals.approve(audience, role="admin", actor=AUTHOR)  # four eyes
    approval = approvals.approve(audience, role="admin", actor=APPROVER)
    assert approval["details"]["requested_by"] == AUTHOR and approval["actor"] == APPROVER

    with pytest.raises(PermissionError, match=r"role scenario_author .* may not execute_export"):
        _send(ctx, role="scenario_author")
    summary = _send(ctx)
    assert summary["status"] == "synced" and len(mailbox.received) == summary["sync"]["delivered"] > 0
    export = list_entries(action="export")[-1]
    assert export["details"]["approval_seq"] == approval["seq"] and export["role"] == "admin"
    assert export["details"]["definition_sha256"] == approvals.definition_hash(audience)


def test_a_changed_definition_needs_a_new_approval(unapproved) -> None:
    ctx, mailbox = unapproved
    approvals.request(ctx.audiences["cart_mail"], role="scenario_author", actor=AUTHOR)
    approvals.approve(ctx.audiences["cart_mail"], role="admin", actor=APPROVER)
    # the author widens the columns after the approval
    ctx.audiences.by_name["cart_mail"] = ctx.audiences["cart_mail"].model_copy(update={"holdout_percent": 0.0})
    with pytest.raises(approvals.ApprovalError, match="is not approved"):
        _send(ctx)
    assert mailbox.received == []


def test_the_analyst_cannot_run_an_export_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_ROLE", "analyst")
    result = CliRunner().invoke(activation_app, ["run", "cart_abandonment"])
    assert result.exit_code == 1, result.output
    assert "refused: role analyst" in result.output and "execute_export" in result.output
    result = CliRunner().invoke(activation_app, ["run", "cart_abandonment", "--role", "content_author"])
    assert result.exit_code == 1 and "may not execute_export" in result.output
