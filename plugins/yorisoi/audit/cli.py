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
    `--verify` its hash chain."""
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
