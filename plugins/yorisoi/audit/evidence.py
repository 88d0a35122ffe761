"""What an auditor asks of a campaign and of a customer, answered from the activation store and the
warehouse: who received an audience, when, through which destination and why (the selection,
the consent in force at the moment of sending, the treatment / control group and variant); and a
customer's consent evidence per channel, now and at each send.

The store says what was sent (`sync_changelog` rows the destination confirmed, `succeeded`) and
who was a member in which group (`audience_members`); the warehouse says what consent was in
force (`intermediate.int_consent_events`, every opt-in and opt-out with its evidence, and
`marts.consent_ledger`, the state now). Consent at a send is the latest event on that channel at
or before the send (an as-of join): the same rule the consent ledger applies to "now". Where the
export recorded the consent that allowed it in the operation log (`evidence`, per person), that
record made at the time is shown first and the warehouse's dating checks it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

CONSENT_EVENTS = "intermediate.int_consent_events"
CONSENT_LEDGER = "marts.consent_ledger"
SENT = ("add", "update")  # a removal takes someone off a list: it is not a send


@dataclass
class Selection:
    """How the audience chooses its members, in words from its definition."""

    audience: str
    description: str
    rule: str
    holdout_percent: float
    variants: list[str]


def selection_of(audience: Any) -> Selection:
    sel = audience.selection
    if sel.sql:
        rule = "sql: " + " ".join(sel.sql.split())
    else:
        filters = [f"{f.column} {f.op} {f.value!r}" for f in sel.filters or []]
        rule = f"mart {sel.mart}" + (f" where {' and '.join(filters)}" if filters else "")
    return Selection(
        audience=audience.name,
        description=" ".join((audience.description or "").split()),
        rule=rule,
        holdout_percent=float(audience.holdout_percent or 0),
        variants=[v.name for v in audience.variants],
    )


def _sends(store: Any, *, audience: str | None = None, person_id: str | None = None) -> pd.DataFrame:
    """Confirmed sends (adds and updates a destination acknowledged), test sends left out."""
    from ..activation.delivery.store import SUCCEEDED, sync_changelog, sync_runs

    c, r = sync_changelog.c, sync_runs.c
    query = (
        sa.select(c.audience, c.destination, c.person_id, c.key, c.operation, c.at.label("sent_at"), c.run_id, r.mode)
        .join(sync_runs, r.run_id == c.run_id)
        .where(c.status == SUCCEEDED, c.operation.in_(SENT), r.mode != "test")
        .order_by(c.at, c.destination, c.person_id)
    )
    if audience:
        query = query.where(c.audience == audience)
    if person_id:
        query = query.where(c.person_id == person_id)
    with store.engine.connect() as con:
        frame = pd.DataFrame(con.execute(query).mappings().all())
    columns = ["audience", "destination", "person_id", "key", "operation", "sent_at", "run_id", "mode"]
    return frame if not frame.empty else pd.DataFrame(columns=columns)


def _members(store: Any, audience: str | None, person_id: str | None) -> pd.DataFrame:
    from ..activation.delivery.store import audience_members

    m = audience_members.c
    query = sa.select(m.audience, m.person_id, m.grp, m.variant, m.computed_at, m.run_id.label("allocation_run"))
    if audience:
        query = query.where(m.audience == audience)
    if person_id:
        query = query.where(m.person_id == person_id)
    with store.engine.connect() as con:
        frame = pd.DataFrame(con.execute(query).mappings().all())
    columns = ["audience", "person_id", "grp", "variant", "computed_at", "allocation_run"]
    return frame if not frame.empty else pd.DataFrame(columns=columns)


def _utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for col in columns:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


RECORDED = ["run_id", "person_id", "recorded_consent_id", "recorded_since", "recorded_source", "recorded_evidence"]


def recorded_evidence(log_dir: Path | None = None) -> pd.DataFrame:
    """The consent evidence each export recorded in the operation log at the moment of sending
    (per sync run and person: the consent ID, since when, the system and how it was given): the
    record made at the time, which the as-of reconstruction from the warehouse is checked against."""
    from . import log

    rows = []
    for entry in log.list_entries(action="export", log_dir=log_dir):
        run_id = (entry.get("details") or {}).get("sync_run")
        if run_id:
            rows += [
                (run_id, e.get("person_id"), e.get("consent_id"), e.get("since"), e.get("source"), e.get("evidence"))
                for e in log.evidence_of(entry, log_dir)
            ]
    return pd.DataFrame(rows, columns=RECORDED)


def sends_with_reasons(
    store: Any,
    warehouse: Any,
    channels: dict[str, str],
    *,
    audience: str | None = None,
    person_id: str | None = None,
    log_dir: Path | None = None,
) -> pd.DataFrame:
    """Every confirmed send (of `audience`, or to `person_id`), oldest first, with the group and
    variant the person had in the latest membership computed before it, the consent evidence the
    export recorded in the operation log (`recorded_*`), and the consent event in force on the
    destination's channel at that moment from the warehouse (null columns: no event, no consent).

    :param warehouse: a DuckDB connection to the warehouse (read-only is enough).
    :param channels: destination name -> channel (include/destinations.yml).
    """
    sends = _utc(_sends(store, audience=audience, person_id=person_id), "sent_at")
    sends["channel"] = sends["destination"].map(channels).fillna("")
    sends = sends.merge(recorded_evidence(log_dir), on=["run_id", "person_id"], how="left")
    members = _utc(_members(store, audience, person_id), "computed_at")
    warehouse.register("audit_sends", sends)
    warehouse.register("audit_members", members)
    try:
        return warehouse.execute(
            f"""
            with with_group as (
                select s.*, m.grp, m.variant, m.allocation_run
                from audit_sends as s
                asof left join audit_members as m
                    on s.audience = m.audience and s.person_id = m.person_id and s.sent_at >= m.computed_at
            )
            select g.*, e.action as consent, e.event_at as consent_since, e.source as consent_source,
                   e.source_record as consent_record, e.evidence as consent_evidence
            from with_group as g
            asof left join {CONSENT_EVENTS} as e
                on g.person_id = e.person_id and g.channel = e.channel and g.sent_at >= e.event_at
            order by g.sent_at, g.destination, g.person_id
            """  # noqa: S608 - fixed relation names
        ).df()
    finally:
        warehouse.unregister("audit_sends")
        warehouse.unregister("audit_members")


def consent_now(warehouse: Any, person_id: str) -> pd.DataFrame:
    """The consent ledger's rows for the person: per channel, the state now and its evidence."""
    return warehouse.execute(
        f"""
        select channel, consent_status, status_since, source, source_record, evidence, event_count
        from {CONSENT_LEDGER} where person_id = ? order by channel
        """,  # noqa: S608 - fixed relation name
        [person_id],
    ).df()


def consent_history(warehouse: Any, person_id: str) -> pd.DataFrame:
    """Every consent event of the person, oldest first, with its evidence."""
    return warehouse.execute(
        f"""
        select channel, action, event_at, source, source_record, evidence
        from {CONSENT_EVENTS} where person_id = ? order by event_at, channel
        """,  # noqa: S608 - fixed relation name
        [person_id],
    ).df()


def open_warehouse(path: Path | None = None) -> Any:
    from ..activation.selection.membership import connect_warehouse

    return connect_warehouse(path)
