"""`yorisoi audit` (list and verify the operation log) and `yorisoi customer show` (one
customer's golden record: personal data, so it needs a role that may read it, and the read is
logged before anything is shown). Registered in yorisoi.cli as sub-apps."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import roles
from ..logs import make_console
from . import log

console = make_console()
RoleOption = Annotated[str | None, typer.Option("--role", help=f"acting role (else ${roles.ROLE_ENV})")]


def _acting_role(role: str | None, command: str) -> str:
    try:
        return roles.current_role(role)
    except roles.RolesError as e:
        typer.echo(f"{command}: {e}", err=True)
        raise typer.Exit(2) from e


# --- yorisoi audit ------------------------------------------------------------------------------

audit_app = typer.Typer(
    help="The operation log: who exported or read personal data, when, how many rows, where to.",
)


def _when(value: str | None, option: str) -> date | datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    except ValueError as e:
        raise typer.BadParameter(f"{value!r}: give YYYY-MM-DD or an ISO datetime", param_hint=option) from e


@audit_app.callback(invoke_without_command=True)
def audit_command(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="entries concerning this person_id")] = None,
    since: Annotated[str | None, typer.Option(help="from this UTC day or ISO datetime (inclusive)")] = None,
    until: Annotated[str | None, typer.Option(help="up to this UTC day (inclusive) or ISO datetime")] = None,
    destination: Annotated[str | None, typer.Option(help="destination containing this text")] = None,
    action: Annotated[str | None, typer.Option(help="export, pii_read, pii_read_denied, ...")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="check the hash chain; exit 1 if broken")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON entry per line")] = False,
    role: RoleOption = None,
) -> None:
    """List the operation log, oldest first, filtered by person, date and destination; or
    `--verify` its hash chain. `yorisoi audit campaign AUDIENCE`: who received an audience, and why."""
    if ctx.invoked_subcommand:
        return
    try:
        roles.check(_acting_role(role, "yorisoi audit"), "read_audit_log")
    except PermissionError as e:
        typer.echo(f"yorisoi audit: {e}", err=True)
        raise typer.Exit(1) from e
    if verify:
        result = log.verify()
        if not result.ok:
            typer.echo(f"{log.audit_dir()}: {result}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{log.audit_dir()}: {result}")
        return
    entries = log.list_entries(
        person=person,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        destination=destination,
        action=action,
    )
    if json_out:
        for e in entries:
            typer.echo(json.dumps(e, ensure_ascii=False))
        return
    table = Table()
    for name in ("seq", "at (UTC)", "who", "did", "rows", "to", "persons", "file sha256"):
        table.add_column(name, overflow="fold")  # an audit view hides nothing behind an ellipsis
    for e in entries:
        table.add_row(
            str(e["seq"]),
            e["at"][:19].replace("T", " "),
            e["actor"] + (f" ({e['role']})" if e.get("role") else ""),
            f"{e['action']}: {e['object']}",
            "" if e.get("rows") is None else f"{e['rows']:,}",
            e.get("destination") or "",
            _persons(e),
            (e.get("file_sha256") or "")[:8],
        )
    console.print(table)
    console.print(f"{len(entries)} entries in {log.audit_dir() / log.LOG_NAME}", soft_wrap=True)
    if person:  # why was this person sent each export: the consent recorded at the send
        for e in entries:
            if e["action"] != "export":
                continue
            for c in [c for c in log.evidence_of(e) if c.get("person_id") == person] or [{}]:
                why = (
                    f"{c.get('channel')} consent {c.get('consent_id')} since {c.get('since')} "
                    f"({c.get('source')}, {c.get('record')}, {c.get('evidence')})"
                    if c
                    else "no consent evidence recorded"
                )
                console.print(f"seq {e['seq']} {e['object']} → {e.get('destination')}: {why}", soft_wrap=True)


def _persons(entry: dict) -> str:
    ids = entry.get("person_ids")
    if ids is not None and len(ids) <= 2:
        return ", ".join(ids)
    return f"{entry.get('person_count', 0):,}"


# --- yorisoi customer show ----------------------------------------------------------------------

customer_app = typer.Typer(
    help="One customer's personal data (needs a role that may read it; every read is logged).",
    no_args_is_help=True,
)
GOLDEN_RECORD = "marts.dim_customers"


def _rows(con, sql: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@customer_app.command("show")
def customer_show(
    person_id: Annotated[str, typer.Argument(help="the person_id (P…)")],
    role: RoleOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print a customer's golden record and the source records behind it (read-only). The read
    is written to the operation log with the person_id before anything is shown."""
    acting = _acting_role(role, "yorisoi customer show")
    try:
        roles.check(acting, "read_customer_pii")
    except PermissionError as e:
        log.record(
            "pii_read_denied",
            f"{GOLDEN_RECORD} person {person_id}",
            rows=0,
            destination="cli:terminal",
            person_ids=[person_id],
            role=acting,
            details={"command": "customer show"},
        )
        typer.echo(f"yorisoi customer show: {e}", err=True)
        raise typer.Exit(1) from e
    try:
        con = roles.connect(acting)
    except FileNotFoundError as e:
        typer.echo(f"yorisoi customer show: {e}", err=True)
        raise typer.Exit(2) from e
    try:
        golden = _rows(con, f"select * from {GOLDEN_RECORD} where person_id = ?", [person_id])  # noqa: S608 - constant
        identities = _rows(
            con,
            "select source, source_id, record_key, resolution from marts.bridge_customer_identities "
            "where person_id = ? order by source, source_id",
            [person_id],
        )
        merged_into = []
        if not golden:
            merged_into = [
                r["to_person_id"]
                for r in _rows(
                    con,
                    "select distinct to_person_id from marts.identity_merges where from_person_id = ? "
                    "and change_type = 'merge'",
                    [person_id],
                )
            ]
    finally:
        con.close()
    # Logged before it is shown: if the log cannot be written, nothing is printed.
    log.record(
        "pii_read",
        f"{GOLDEN_RECORD} person {person_id}",
        rows=len(golden),
        destination="cli:json" if json_out else "cli:terminal",
        person_ids=[person_id],
        role=acting,
        details={"command": "customer show", "source_records": len(identities)},
    )
    if not golden:
        hint = f"; merged into {', '.join(merged_into)}" if merged_into else ""
        typer.echo(f"yorisoi customer show: no person {person_id}{hint}", err=True)
        raise typer.Exit(1)
    record = golden[0]
    if json_out:
        typer.echo(json.dumps({"customer": record, "source_records": identities}, ensure_ascii=False, default=str))
        return
    table = Table("field", "value", title=f"{person_id} ({GOLDEN_RECORD})")
    for k, v in record.items():
        table.add_row(k, "" if v is None else str(v))
    console.print(table)
    sources = Table("source", "source_id", "record_key", "resolution", title="source records")
    for r in identities:
        sources.add_row(r["source"], str(r["source_id"]), r["record_key"], r["resolution"])
    console.print(sources)


# --- yorisoi audit campaign / yorisoi customer consent ------------------------------------------


def _when_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value) or str(value) in ("NaT", "None"):
        return ""
    return str(value)[:19].replace("T", " ")


def _consent_text(row: dict) -> str:
    """The consent in force at a send, in one cell: what, since when, which system, the evidence;
    as the export recorded it in the operation log when it did, else as the warehouse dates it."""
    if row.get("recorded_evidence"):
        return (
            f"[green]recorded at the send[/green]: since {_when_text(row['recorded_since'])} "
            f"({row['recorded_source']} {row['recorded_consent_id']}): {row['recorded_evidence']}"
        )
    if not row.get("consent"):
        return "[red]no consent event[/red]"
    colour = "green" if row["consent"] == "opt_in" else "red"
    return (
        f"[{colour}]{row['consent']}[/{colour}] since {_when_text(row['consent_since'])} "
        f"({row['consent_source']} {row['consent_record']}): {row['consent_evidence']}"
    )


def _records(frame) -> list[dict[str, Any]]:
    return [{k: (None if _when_text(v) == "" else v) for k, v in r.items()} for r in frame.to_dict("records")]


@audit_app.command("campaign")
def audit_campaign(
    audience: Annotated[str, typer.Argument(help="the audience (audiences/<name>.yml)")],
    role: RoleOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON line per send")] = False,
) -> None:
    """Who received an audience, when, through which destination, and why: the selection that
    chose them, the consent in force on that channel at the moment of sending (with its
    evidence), and their group (treatment, variant) in the membership computed before the send."""
    from ..activation.run import Context
    from .evidence import open_warehouse, selection_of, sends_with_reasons

    roles.check(_acting_role(role, "yorisoi audit campaign"), "read_audit_log")
    ctx = Context.load()
    definition = ctx.audiences[audience]
    channels = {d.name: d.channel for d in ctx.destinations}
    con = open_warehouse(ctx.warehouse)
    try:
        sends = sends_with_reasons(ctx.store, con, channels, audience=audience)
    finally:
        con.close()
    rows = _records(sends)
    if json_out:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False, default=str))
        return
    sel = selection_of(definition)
    console.print(f"[bold]{audience}[/]: {sel.description}", soft_wrap=True)
    console.print(
        f"selected by {sel.rule}; control group {sel.holdout_percent:g} % of the eligible (kept out, sent "
        f"nothing); variants {', '.join(sel.variants) or '-'}; consent re-checked at each send",
        soft_wrap=True,
    )
    table = Table(title=f"sends of {audience} confirmed by the destination (test sends left out)")
    for name in ("sent at (UTC)", "destination", "channel", "person", "group / variant", "consent at the send"):
        table.add_column(name, overflow="fold")
    for r in rows:
        group = "/".join(x for x in (r.get("grp"), r.get("variant")) if x) or "-"
        table.add_row(_when_text(r["sent_at"]), r["destination"], r["channel"], r["person_id"], group, _consent_text(r))
    console.print(table)
    without = sum(1 for r in rows if r.get("consent") != "opt_in")
    people = len({r["person_id"] for r in rows})
    console.print(
        f"{len(rows):,} sends to {people:,} people through {len({r['destination'] for r in rows})} destinations; "
        f"{without:,} without an opt-in in force at the send" + (" [red](investigate)[/red]" if without else ""),
        soft_wrap=True,
    )


@customer_app.command("consent")
def customer_consent(
    person_id: Annotated[str, typer.Argument(help="the person_id (P…)")],
    role: RoleOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A customer's consent evidence per channel: the state now (the consent ledger), every
    opt-in and opt-out with its evidence, and the consent in force at each send they received."""
    from ..activation.run import Context
    from .evidence import consent_history, consent_now, open_warehouse, sends_with_reasons

    roles.check(_acting_role(role, "yorisoi customer consent"), "read_audit_log")
    ctx = Context.load()
    channels = {d.name: d.channel for d in ctx.destinations}
    con = open_warehouse(ctx.warehouse)
    try:
        now, history = consent_now(con, person_id), consent_history(con, person_id)
        sends = sends_with_reasons(ctx.store, con, channels, person_id=person_id)
    finally:
        con.close()
    if now.empty:
        raise FileNotFoundError(f"no person {person_id} in the consent ledger (marts.consent_ledger)")
    if json_out:
        typer.echo(
            json.dumps(
                {"now": _records(now), "events": _records(history), "sends": _records(sends)},
                ensure_ascii=False,
                default=str,
            )
        )
        return
    table = Table(title=f"{person_id}: consent now (marts.consent_ledger)")
    for name in ("channel", "status", "since (UTC)", "system", "record", "evidence", "events"):
        table.add_column(name, overflow="fold")
    for r in _records(now):
        table.add_row(
            r["channel"],
            r["consent_status"],
            _when_text(r["status_since"]),
            r["source"] or "",
            r["source_record"] or "",
            r["evidence"] or "no event on any system: no consent",
            str(r["event_count"]),
        )
    console.print(table)
    events = Table(title="every consent event, oldest first (intermediate.int_consent_events)")
    for name in ("at (UTC)", "channel", "event", "system", "record", "evidence"):
        events.add_column(name, overflow="fold")
    for r in _records(history):
        events.add_row(
            _when_text(r["event_at"]), r["channel"], r["action"], r["source"], r["source_record"], r["evidence"]
        )
    console.print(events)
    sent = Table(title="consent in force at each send (activation store)")
    for name in ("sent at (UTC)", "audience", "destination", "channel", "group / variant", "consent at the send"):
        sent.add_column(name, overflow="fold")
    for r in _records(sends):
        group = "/".join(x for x in (r.get("grp"), r.get("variant")) if x) or "-"
        sent.add_row(_when_text(r["sent_at"]), r["audience"], r["destination"], r["channel"], group, _consent_text(r))
    console.print(sent if len(sends) else "no sends to this person in the activation store")


# --- yorisoi customer why -----------------------------------------------------------------------


@customer_app.command("why")
def customer_why(
    person_id: Annotated[str, typer.Argument(help="the person_id (P…)")],
    role: RoleOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Why these records are one person: every link between the person's source records with the
    rule that made it (for a probabilistic link, its match weight and how each comparison came
    out), the links a veto refused (and why), and the household links to other people
    (docs/identity.md). Keys and rule names only: no personal data."""
    import duckdb

    from .. import paths

    roles.check(_acting_role(role, "yorisoi customer why"), "read_audit_log")
    warehouse = paths.warehouse_path()
    if not warehouse.is_file():
        typer.echo(f"yorisoi customer why: no warehouse at {warehouse}", err=True)
        raise typer.Exit(2)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        records = _rows(
            con,
            "select record_key, source, source_id, resolution from marts.bridge_customer_identities "
            "where person_id = ? order by record_key",
            [person_id],
        )
        links = _rows(
            con,
            "select e.record_a, e.record_b, e.rule, e.priority, e.accepted, e.veto_reason, "
            "round(s.match_weight, 2) as match_weight, s.evidence "
            "from intermediate.int_identity_edges e "
            "join marts.bridge_customer_identities a on a.record_key = e.record_a "
            "join marts.bridge_customer_identities b on b.record_key = e.record_b "
            "left join intermediate.int_identity_match_scores s "
            "on e.rule = 'fellegi_sunter' and s.record_a = e.record_a and s.record_b = e.record_b "
            "where a.person_id = ? and b.person_id = ? order by e.accepted desc, e.priority, e.record_a, e.record_b",
            [person_id, person_id],
        )
        households = _rows(
            con,
            "select case when person_a = ? then person_b else person_a end as other_person, first_link, link_count "
            "from intermediate.int_identity_household_links where ? in (person_a, person_b) order by 1",
            [person_id, person_id],
        )
    finally:
        con.close()
    if not records:
        typer.echo(f"yorisoi customer why: no person {person_id}", err=True)
        raise typer.Exit(1)
    if json_out:
        typer.echo(json.dumps({"records": records, "links": links, "households": households}, ensure_ascii=False))
        return
    table = Table("record", "resolution", title=f"{person_id}: source records")
    for r in records:
        table.add_row(r["record_key"], r["resolution"])
    console.print(table)
    joined = Table(
        "record", "record", "rule", "priority", "accepted", "veto", "score", "evidence", title="links between them"
    )
    for r in links:
        joined.add_row(
            r["record_a"],
            r["record_b"],
            r["rule"],
            str(r["priority"]),
            str(r["accepted"]),
            r["veto_reason"] or "",
            "" if r["match_weight"] is None else str(r["match_weight"]),
            r["evidence"] or "",
        )
    console.print(joined)
    if households:
        other = Table("person", "shares", title="household (never merged)")
        for r in households:
            other.add_row(r["other_person"], r["first_link"])
        console.print(other)


# --- yorisoi customer review --------------------------------------------------------------------


@customer_app.command("review")
def customer_review(
    limit: Annotated[int, typer.Option("--limit", help="how many merges to list")] = 20,
    role: RoleOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The data steward's review queue: the merges only the probabilistic layer made, least
    certain first (marts.identity_review_queue), with each one's match weight and evidence. A
    wrong one is undone by listing the pair in the identity_do_not_merge seed (docs/identity.md).
    Keys only: no personal data."""
    import duckdb

    from .. import paths

    roles.check(_acting_role(role, "yorisoi customer review"), "read_audit_log")
    warehouse = paths.warehouse_path()
    if not warehouse.is_file():
        typer.echo(f"yorisoi customer review: no warehouse at {warehouse}", err=True)
        raise typer.Exit(2)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        total = con.execute("select count(*) from marts.identity_review_queue").fetchone()[0]
        queue = _rows(
            con,
            "select review_rank, person_id, record_a, source_a, record_b, source_b, "
            "round(match_weight, 2) as match_weight, round(match_probability, 4) as match_probability, evidence "
            "from marts.identity_review_queue order by review_rank limit ?",
            [limit],
        )
    finally:
        con.close()
    if json_out:
        typer.echo(json.dumps({"total": total, "merges": queue}, ensure_ascii=False, default=str))
        return
    table = Table(
        "#",
        "person",
        "record",
        "record",
        "score",
        "probability",
        "evidence",
        title=f"probabilistic merges, least certain first ({len(queue)} of {total})",
    )
    for r in queue:
        table.add_row(
            str(r["review_rank"]),
            r["person_id"],
            f"{r['record_a']} ({r['source_a']})",
            f"{r['record_b']} ({r['source_b']})",
            str(r["match_weight"]),
            str(r["match_probability"]),
            r["evidence"],
        )
    console.print(table)
