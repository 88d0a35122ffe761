"""`yorisoi audit campaign AUDIENCE` and `yorisoi customer consent PERSON`: an auditor sees who
received a campaign, when, through which destination and why (selection, consent in force at the
send with its evidence, group and variant), and a customer's consent evidence now and at each
send. A real send over SMTP on loopback; consent events in the warehouse as the consent models
write them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from audiences_harness import (
    AS_OF,
    cart_mail_over_smtp,
)

from yorisoi.activation import run
from yorisoi.audit.evidence import consent_now, sends_with_reasons

PEOPLE = [f"P{i:05d}" for i in range(40)]
LATE_OPT_OUT = PEOPLE[0]  # opted out after the send: the send was still covered by the opt-in


def _consent_tables(path: Path) -> None:
    """intermediate.int_consent_events and marts.consent_ledger, with the dbt models' columns."""
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists intermediate")
        con.execute(
            "create or replace table intermediate.int_consent_events (person_id varchar, channel varchar, "
            "action varchar, event_at timestamptz, source varchar, source_record varchar, evidence varchar)"
        )
        opted_in = AS_OF - timedelta(days=100)
        con.executemany(
            "insert into intermediate.int_consent_events values (?, 'email', 'opt_in', ?, 'ecommerce', ?, ?)",
            [(p, opted_in, f"ecommerce:{p}", "shop account email_marketing_state=subscribed") for p in PEOPLE],
        )
        con.execute(
            "insert into intermediate.int_consent_events values (?, 'email', 'opt_out', ?, 'callcenter', "
            "'callcenter:CC1', '配信停止 by phone')",
            [LATE_OPT_OUT, datetime.now(UTC) + timedelta(days=1)],  # sends are stamped with the real time
        )
        con.execute(
            """
            create or replace table marts.consent_ledger as
            select person_id, channel,
                   case arg_max(action, event_at) when 'opt_in' then 'opted_in' else 'opted_out' end
                       as consent_status,
                   max(event_at) as status_since, arg_max(source, event_at) as source,
                   arg_max(source_record, event_at) as source_record, arg_max(evidence, event_at) as evidence,
                   count(*) as event_count
            from intermediate.int_consent_events group by all
            """
        )
    finally:
        con.close()


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """cart_mail sent once to the consented people over SMTP on loopback, by the DAG's tasks."""
    monkeypatch.delenv("YORISOI_AS_OF", raising=False)
    with cart_mail_over_smtp(tmp_path, monkeypatch, len(PEOPLE)) as (ctx, mailbox, wh, _):
        _consent_tables(wh.path)
        run_id = "asset_triggered__audit"
        pairs = run.plan_task(
            AS_OF, since=AS_OF - timedelta(minutes=15), triggered_by=["marts.trigger_audiences"], context=ctx
        )
        pairs = run.allocate_task(pairs, as_of=AS_OF, run_id=run_id, context=ctx)
        for p in pairs:
            run.export_task(p, run_id=run_id, as_of=AS_OF, context=ctx)
        yield ctx, mailbox


def test_every_send_has_its_destination_group_and_the_consent_in_force(sent) -> None:
    ctx, mailbox = sent
    channels = {d.name: d.channel for d in ctx.destinations}
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        sends = sends_with_reasons(ctx.store, con, channels, audience="cart_mail")
    finally:
        con.close()
    received = {r.split("@")[0].upper() for r in mailbox.recipients()}
    assert received and set(sends["person_id"]) == received  # exactly who got a message
    assert set(sends["destination"]) == {"smtp_email"} and set(sends["channel"]) == {"email"}
    assert set(sends["grp"]) == {"treatment"}  # the control group received nothing
    assert set(sends["variant"]) <= {"A", "B"} and sends["variant"].notna().all()
    assert set(sends["consent"]) == {"opt_in"}  # in force when sent, the later opt-out included
    assert set(sends["consent_evidence"]) == {"shop account email_marketing_state=subscribed"}
    # and as the export recorded it in the operation log when it sent (marts.deliverable_customers)
    assert sends["recorded_evidence"].notna().all() and sends["recorded_consent_id"].notna().all()
    assert set(sends["recorded_consent_id"]) == {f"{p}:email" for p in sends["person_id"]}
    members = {m["person_id"]: m["grp"] for m in ctx.store.last_members("cart_mail")}
    control = {p for p, g in members.items() if g == "control"}
    assert control and not control & set(sends["person_id"])


def test_the_cli_answers_for_a_campaign_and_for_a_customer(
    sent, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from yorisoi.activation import run as run_module
    from yorisoi.cli import main

    ctx, mailbox = sent
    monkeypatch.setattr(run_module.Context, "load", classmethod(lambda cls, **kw: ctx))
    monkeypatch.setenv("YORISOI_ROLE", "admin")
    with pytest.raises(SystemExit) as done:
        main(["yorisoi", "audit", "campaign", "cart_mail", "--json"])
    assert done.value.code in (0, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(mailbox.received) and all(r["consent"] == "opt_in" for r in lines)

    receiver = lines[0]["person_id"]
    with pytest.raises(SystemExit):
        main(
            [
                "yorisoi",
                "customer",
                "consent",
                LATE_OPT_OUT if LATE_OPT_OUT in {r["person_id"] for r in lines} else receiver,
            ]
        )
    out = capsys.readouterr().out
    assert "consent now" in out and "every consent event" in out and "consent in force at each send" in out
    assert "email_marketing_state=subscribed" in out

    with pytest.raises(SystemExit) as denied:
        main(["yorisoi", "audit", "campaign", "cart_mail", "--role", "analyst"])
    assert denied.value.code == 2
    assert "may not read_audit_log" in capsys.readouterr().err


def test_consent_now_is_the_ledger_and_the_opt_out_shows(sent) -> None:
    ctx, _ = sent
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        now = consent_now(con, LATE_OPT_OUT)
    finally:
        con.close()
    assert now.to_dict("records")[0]["consent_status"] == "opted_out"
    assert now.to_dict("records")[0]["evidence"] == "配信停止 by phone"
