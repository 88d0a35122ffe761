"""docs/reliability.md #13: a circuit breaker stands before every export. A failing dbt test in the
build's run_results.json, a failing (or missing) Great Expectations result, or an audience whose
size jumped beyond the threshold stops the export: the loopback SMTP server receives nothing, no
sync run or ledger row is written, and the alert says why."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from audiences_harness import (
    APPROVER,
    AS_OF,
    AUTHOR,
    cart_mail_over_smtp,
    cart_rows,
    write_dbt_results,
    write_quality_results,
)

from yorisoi.activation import approvals, run
from yorisoi.activation.selection import breaker

PEOPLE = [f"P{i:05d}" for i in range(200)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """200 people deliverable by email in the cart trigger, a loopback SMTP server behind the
    smtp_email destination, a store, and passing dbt and GX results."""
    with cart_mail_over_smtp(tmp_path, monkeypatch, len(PEOPLE)) as setup:
        yield setup


def _export(ctx, *, day: int = 0) -> dict:
    return run.activate("cart_mail", "smtp_email", as_of=AS_OF + timedelta(days=day), context=ctx)


def _assert_stopped(ctx, mailbox, summary: dict, *expected: str) -> None:
    assert summary["status"] == "skipped", summary
    for text in expected:
        assert text in summary["reason"], summary["reason"]
    assert mailbox.received == [], "a message went out although the breaker tripped"
    assert ctx.store.runs(audience="cart_mail") == [], "a sync run started although the breaker tripped"
    alerts = breaker.read_alerts()
    assert alerts and alerts[-1]["audience"] == "cart_mail" and alerts[-1]["passed"] is False
    assert alerts[-1]["next_step"].endswith("(docs/runbook.md#breaker).")
    for text in expected:
        assert text in alerts[-1]["reason"]


def test_with_every_check_passing_the_export_goes_out(env) -> None:
    """The positive control: the same set-up with nothing wrong reaches the SMTP server."""
    ctx, mailbox, _, _ = env
    summary = _export(ctx)
    assert summary["status"] == "synced", summary
    treatment = summary["stats"]["allocated"]["email"]
    assert 150 < treatment < 200  # 10 % held out
    assert len(mailbox.recipients()) == treatment == summary["sync"]["delivered"]
    assert breaker.read_alerts() == []


def test_a_failing_dbt_test_stops_the_export(env) -> None:
    ctx, mailbox, _, _ = env
    write_dbt_results(
        ctx.dbt_results,
        {
            "test.yorisoi.not_null_deliverable_customers_person_id.1a2b": "fail",
            "test.yorisoi.unique_trigger_cart_abandonment_person_id.3c4d": "pass",
        },
    )
    summary = _export(ctx)
    _assert_stopped(
        ctx, mailbox, summary, "dbt: 1 of 2 dbt tests did not pass", "not_null_deliverable_customers_person_id"
    )


@pytest.mark.parametrize("status", ["error", "skipped"])
def test_an_errored_or_skipped_dbt_test_stops_the_export(env, status: str) -> None:
    ctx, mailbox, _, _ = env
    write_dbt_results(ctx.dbt_results, {"test.yorisoi.assert_deliverable_is_master_minus_exclusions": status})
    _assert_stopped(ctx, mailbox, _export(ctx), "assert_deliverable_is_master_minus_exclusions")


def test_a_dbt_invocation_without_tests_or_without_results_stops_the_export(env) -> None:
    ctx, mailbox, _, _ = env
    write_dbt_results(ctx.dbt_results, {}, models={}, which="docs")
    _assert_stopped(ctx, mailbox, _export(ctx), "ran no tests")
    ctx.dbt_results.unlink()
    _assert_stopped(ctx, mailbox, _export(ctx), "no dbt results at")


def test_a_failing_great_expectations_suite_stops_the_export(env) -> None:
    ctx, mailbox, _, _ = env
    write_quality_results(ctx.quality_results, success=False)
    _assert_stopped(
        ctx,
        mailbox,
        _export(ctx),
        "quality: the Great Expectations suites failed",
        "expect_column_values_to_not_be_null",
    )


def test_missing_or_stale_great_expectations_results_stop_the_export_unless_not_required(env) -> None:
    ctx, mailbox, _, _ = env
    write_quality_results(ctx.quality_results, validated_at=AS_OF - timedelta(days=1))  # before the dbt build
    _assert_stopped(ctx, mailbox, _export(ctx), "older than the dbt build")
    ctx.quality_results.unlink()
    _assert_stopped(ctx, mailbox, _export(ctx), "no Great Expectations results at")
    # An audience that says require_quality: false goes out without them, once an admin other
    # than its author approved that override (docs/reliability.md #20).
    ctx.audiences.by_name["cart_mail"] = audience = ctx.audiences["cart_mail"].model_copy(
        update={"breaker": ctx.audiences["cart_mail"].breaker.model_copy(update={"require_quality": False})}
    )
    with pytest.raises(approvals.ApprovalError, match="is not approved"):
        _export(ctx)
    approvals.request(audience, role="scenario_author", actor=AUTHOR)
    with pytest.raises(approvals.ApprovalError, match=r"switches breaker checks off \(require_quality\)"):
        approvals.approve(audience, role="admin", actor=APPROVER)
    approval = approvals.approve(audience, role="admin", actor=APPROVER, allow_breaker_override=True)
    assert approval["details"]["breaker_overrides"] == {"require_quality": False}
    assert mailbox.received == []
    assert _export(ctx)["status"] == "synced"
    assert mailbox.received


def test_an_audience_size_jump_beyond_the_threshold_stops_the_export(env) -> None:
    ctx, mailbox, wh, _ = env
    wh.selections = {"trigger_cart_abandonment": cart_rows(PEOPLE[:60])}
    wh.write()
    first = _export(ctx)
    assert first["status"] == "synced"
    sent = len(mailbox.received)
    assert sent > 0
    wh.selections = {"trigger_cart_abandonment": cart_rows(PEOPLE)}  # 60 → 200 members: +233 %
    wh.write()
    summary = _export(ctx, day=1)
    assert summary["status"] == "skipped"
    assert "size: the audience changed from 60 to 200 members (+140, 233%)" in summary["reason"]
    assert len(mailbox.received) == sent, "the second export reached the server"
    assert len(ctx.store.runs(audience="cart_mail")) == 1
    assert "changed from 60 to 200" in breaker.read_alerts()[-1]["reason"]
    # within the threshold (60 → 80, +33 %) it goes out
    wh.selections = {"trigger_cart_abandonment": cart_rows(PEOPLE[:80])}
    wh.write()
    assert _export(ctx, day=2)["status"] == "synced"
    assert len(mailbox.received) > sent


def _land_after_the_build(wh, *statements: str) -> None:
    """Rows landed in raw after the consent marts were built (the test warehouse's marks say the
    build read none), with the identity tables the send-time check maps them through."""
    con = duckdb.connect(str(wh.path))
    try:
        con.execute("create schema if not exists raw")
        con.execute("create schema if not exists intermediate")
        con.execute("create or replace table marts.bridge_customer_identities (record_key varchar, person_id varchar)")
        con.execute(
            "create or replace table intermediate.int_identity_records (record_key varchar, email_key varchar, "
            "mobile_key varchar, landline_key varchar, name_key varchar)"
        )
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def test_an_unsubscribe_landed_after_the_marts_were_built_is_not_emailed(env) -> None:
    """docs/reliability.md #16: the marts still list them; the email provider's unsubscribes
    (addresses typed in upper case, padded) landed since the build; none of them is emailed."""
    ctx, mailbox, wh, _ = env
    gone = PEOPLE[:30]
    values = ", ".join(f"('{p}')" for p in gone)
    _land_after_the_build(
        wh,
        "create table raw.sftp__esp_sends as select null::varchar as ec_customer_id, "
        "' ' || upper(person_id) || '@EXAMPLE.JP ' as email, now() as unsubscribed_at, now() as _loaded_at "
        f"from (values {values}) as t(person_id)",
    )
    summary = _export(ctx)
    assert summary["status"] == "synced", summary
    assert summary["consent"]["passed"] and summary["consent"]["late_rows"] == {"sftp__esp_sends": 30}
    sent = set(mailbox.recipients())
    assert sent and not sent & {f"{p.lower()}@example.jp" for p in gone}
    assert summary["dropped_at_export"]["key_shared_with_suppressed"] > 20  # the 10 % held out were not asked


def test_without_consent_build_marks_the_export_is_refused(env) -> None:
    ctx, mailbox, wh, _ = env
    con = duckdb.connect(str(wh.path))
    con.execute("drop table marts.consent_build_marks")
    con.close()
    summary = _export(ctx)
    _assert_stopped(ctx, mailbox, summary, "consent: cannot prove consent is current", "no consent build marks")


def test_a_late_consent_table_the_check_cannot_read_refuses_the_export(env) -> None:
    ctx, mailbox, wh, _ = env
    _land_after_the_build(wh, "create table raw.sftp__line_friends as select 'U1' as line_user_id, now() as _loaded_at")
    summary = _export(ctx)
    _assert_stopped(ctx, mailbox, summary, "cannot check the consent rows landed in raw.sftp__line_friends")


def test_the_dag_task_skips_with_the_reason(env) -> None:
    """What the DAG's mapped task runs: a tripped breaker raises AirflowSkipException with the
    reason (the task's on_skipped_callback then notifies)."""
    from airflow.sdk.exceptions import AirflowSkipException

    ctx, mailbox, _, _ = env
    write_quality_results(ctx.quality_results, success=False)
    with pytest.raises(AirflowSkipException, match="circuit breaker: quality: the Great Expectations suites failed"):
        run.export_task({"audience": "cart_mail", "destination": "smtp_email", "interval": "2026-11-02"}, context=ctx)
    assert mailbox.received == []


def test_breaker_results_files_are_where_the_docs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_VAR", str(tmp_path))
    # the files the segment build and the marts gate keep (yorisoi.transform / yorisoi.quality.gate)
    from yorisoi.quality.gate import latest_results_path
    from yorisoi.transform import build_results_path

    assert breaker.dbt_results_path() == build_results_path("segments") == tmp_path / "dbt/builds/segments.json"
    assert breaker.quality_results_path() == latest_results_path("marts") == tmp_path / "quality/latest/marts.json"
    write_dbt_results(breaker.dbt_results_path())
    write_quality_results(breaker.quality_results_path())
    checks = breaker.check_upstream(breaker.settings_for(None))
    assert [c.passed for c in checks] == [True, True], [c.reason for c in checks]
    assert json.loads(breaker.quality_results_path().read_text())["success"] is True
