"""`yorisoi activation ...`: check, plan, dry-run, test-send and run audiences from the command line.

Registered in yorisoi.cli as `app.add_typer(activation_app, name="activation")`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from ..logs import make_console

activation_app = typer.Typer(
    help="Audiences (audiences/*.yml) to email, LINE, SMS, DM, 同梱物 and S3: check, plan, dry-run, test-send, run.",
    no_args_is_help=True,
)
console = make_console()

AsOf = Annotated[
    str | None, typer.Option("--as-of", help="ISO time the run pretends it is (default: now); local time if no zone")
]
Destination = Annotated[
    list[str] | None, typer.Option("--destination", "-d", help="only this destination (repeat for more)")
]
AsJson = Annotated[bool, typer.Option("--json", help="print the summaries as JSON")]
AudiencesDir = Annotated[Path | None, typer.Option("--audiences", help="the audiences folder [default: audiences/]")]
Role = Annotated[str | None, typer.Option("--role", help="acting role (else $YORISOI_ROLE; include/roles.yml)")]


def _as_of(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        from zoneinfo import ZoneInfo

        from .run import LOCAL_TIME_ZONE

        at = at.replace(tzinfo=ZoneInfo(LOCAL_TIME_ZONE))
    return at.astimezone(UTC)


def _fail(message: str) -> NoReturn:
    """An expected error: one line on stderr, exit 2 (definitions errors reach yorisoi.cli.main)."""
    typer.echo(f"yorisoi activation: {message}", err=True)
    raise typer.Exit(2)


def _refuse(error: Exception) -> NoReturn:
    """A role, approval or four-eyes refusal: one line on stderr, exit 1."""
    typer.echo(f"yorisoi activation: refused: {error}", err=True)
    raise typer.Exit(1)


def _context(audiences: Path | None):
    from .run import Context

    return Context.load(audiences_dir=audiences)


def _summaries(
    audience: str, destinations: list[str] | None, audiences: Path | None, as_of: str | None, **kwargs: Any
) -> list[dict]:
    from .run import activate, new_run_id

    ctx = _context(audiences)
    try:
        a = ctx.audiences[audience]
    except KeyError as e:
        _fail(e.args[0])
    chosen = destinations or a.destination_names
    unknown = [d for d in chosen if d not in a.destination_names]
    if unknown:
        _fail(f"{audience} does not go to {', '.join(unknown)} (it goes to {', '.join(a.destination_names)})")
    from .. import roles

    run_id = new_run_id("cli")
    try:
        return [activate(audience, d, as_of=_as_of(as_of), run_id=run_id, context=ctx, **kwargs) for d in chosen]
    except (PermissionError, roles.RolesError) as e:
        _refuse(e)


FUNNEL = ("selected", "not contactable", "exited", "capped", "control", "sent")


def funnel(summary: dict) -> dict[str, int | None]:
    """How an audience narrowed on its way to one destination: selected by the audience's query →
    not contactable (no consent or contact point on the channel) → exited (goal, max_sends, no
    response) → capped (frequency cap on this channel) → control group → sent (the records the
    destination gets: would get, in a dry run). None where the step does not apply."""
    stats = summary.get("stats") or {}
    if "selected" not in stats:  # a test send (seed list) or an export that never read members
        return dict.fromkeys(FUNNEL[:-1], None) | {"sent": summary.get("records", summary.get("test_recipients"))}
    members = stats.get("members", 0)
    after_exit = stats.get("members_after_exit", members)
    capped = stats.get(f"frequency_cap_{summary.get('channel')}", 0)
    return {
        "selected": stats["selected"],
        "not contactable": stats.get("not_contactable", 0),
        "exited": members - after_exit,
        "capped": capped,
        "control": stats.get("control", 0),
        "sent": summary.get("records"),
    }


def _print(summaries: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summaries, ensure_ascii=False, default=str, indent=2))
        return
    table = Table(
        "audience",
        "destination",
        "status",
        *(h.replace(" ", "\n") for h in FUNNEL),
        "adds / upd.\n/ removes",
        "delivered",
        "rejected",
        "skipped",
        title="selected → not contactable → exited → capped → control → sent",
    )
    notes: dict[str, None] = {}  # in order, each once (a breaker's reason is the same for every destination)
    for s in summaries:
        sync = s.get("sync") or {}
        if why := s.get("reason") or ", ".join(f"{k} {v}" for k, v in (s.get("dropped_at_export") or {}).items()):
            notes[f"{s['audience']} → {s['destination']}: {why}"] = None
        if s.get("would_skip"):
            notes[f"[red]{s['audience']}: the circuit breaker would skip it[/red]: {s['would_skip']}"] = None
        steps = funnel(s)
        changes = " / ".join(str(sync[k]) for k in ("adds", "updates", "removes") if k in sync)
        table.add_row(
            s["audience"],
            s["destination"],
            s["status"],
            *("" if steps[h] is None else f"{steps[h]:,}" for h in FUNNEL),
            changes,
            *(str(sync.get(k, "")) for k in ("delivered", "rejected", "skipped")),
        )
    console.print(table)
    for note in notes:
        console.print(note)
    for s in summaries:
        if s.get("variants"):
            console.print(f"{s['audience']} → {s['destination']}: variants {s['variants']}")


@activation_app.command("validate")
def validate(audiences: AudiencesDir = None) -> None:
    """Check every audience file and include/destinations.yml (exit 2 on the first problems)."""
    ctx = _context(audiences)
    for a in ctx.audiences:
        console.print(f"[green]ok[/green] {a.name}: {len(a.destinations)} destinations, priority {a.priority}")


@activation_app.command("plan")
def plan(
    as_of: AsOf = None,
    since: Annotated[str | None, typer.Option(help="the previous check (default: 15 minutes before)")] = None,
    after_build: Annotated[
        bool, typer.Option("--after-build/--tick", help="as if the segment marts were just rebuilt")
    ] = True,
    audiences: AudiencesDir = None,
) -> None:
    """Which (audience, destination) pairs are due, and why."""
    from .run import due, last_fire

    ctx = _context(audiences)
    at = _as_of(as_of)
    pairs = due(at, since=_as_of(since) if since else None, triggered_by=None if after_build else [], context=ctx)
    table = Table("audience", "destination", "channel", "priority", "schedule", "interval", "why")
    for d in pairs:
        a = ctx.audiences[d.audience]
        table.add_row(
            d.audience,
            d.destination,
            ctx.destinations[d.destination].channel,
            str(a.priority),
            a.schedule or "after the segment build",
            d.interval,
            d.why,
        )
    console.print(table)
    later = [a for a in ctx.audiences if a.schedule and a.name not in {d.audience for d in pairs}]
    for a in later:
        console.print(f"{a.name}: not due; last fire {last_fire(a.schedule, at):%Y-%m-%d %H:%M %Z} ({a.schedule})")


@activation_app.command("dry-run")
def dry_run(
    audience: str,
    destination: Destination = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
    audiences: AudiencesDir = None,
    role: Role = None,
) -> None:
    """Plan an audience's export: members, control group, variants, caps, the adds / updates /
    removes each destination would get. Sends nothing, writes no members."""
    _print(_summaries(audience, destination, audiences, as_of, dry_run=True, role=role), as_json)


@activation_app.command("test-send")
def test_send(
    audience: str,
    destination: Destination = None,
    variant: Annotated[str | None, typer.Option(help="send every seed this variant (default: round-robin)")] = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
    audiences: AudiencesDir = None,
    role: Role = None,
) -> None:
    """テスト配信: send the audience's messages to the destinations' test_recipients only (no
    approval needed)."""
    _print(_summaries(audience, destination, audiences, as_of, test=True, test_variant=variant, role=role), as_json)


@activation_app.command("run")
def run_(
    audience: str,
    destination: Destination = None,
    full: Annotated[bool, typer.Option("--full", help="resend everything current (removals still explicit)")] = False,
    as_of: AsOf = None,
    as_json: AsJson = False,
    audiences: AudiencesDir = None,
    role: Role = None,
) -> None:
    """Export an audience now (circuit breaker, members, arbitration, sync): a role that may
    execute_export, and an approved definition. Exit 1 when refused, when the breaker skipped it
    or when the sync stopped or was deferred with rows unsent."""
    from .delivery.engine import SyncError

    try:
        summaries = _summaries(audience, destination, audiences, as_of, mode="full" if full else "diff", role=role)
    except SyncError as e:
        console.print(f"[red]{type(e).__name__}: {e}[/red]")
        raise typer.Exit(1) from None
    _print(summaries, as_json)
    if any(s["status"] == "skipped" for s in summaries):
        raise typer.Exit(1)


def _audience(name: str, audiences: Path | None):
    ctx = _context(audiences)
    try:
        return ctx.audiences[name]
    except KeyError as e:
        _fail(e.args[0])


@activation_app.command("request")
def request_(audience: str, audiences: AudiencesDir = None, role: Role = None) -> None:
    """Ask for the audience's current definition to be approved before its first real send
    (role: request_export). Written to the operation log with the definition's hash."""
    from .. import roles
    from .approvals import definition_hash, request

    a = _audience(audience, audiences)
    try:
        entry = request(a, role=role)
    except (PermissionError, roles.RolesError) as e:
        _refuse(e)
    console.print(f"requested {a.name} ({definition_hash(a)[:12]}) as {entry['actor']} (log seq {entry['seq']})")


@activation_app.command("approve")
def approve_(
    audience: str,
    allow_breaker_override: Annotated[
        bool, typer.Option("--allow-breaker-override", help="accept a definition that switches breaker checks off")
    ] = False,
    audiences: AudiencesDir = None,
    role: Role = None,
) -> None:
    """Approve the audience's current definition (role: approve_export; not the person who
    requested it). Written to the operation log; a real send needs it."""
    from .. import roles
    from .approvals import approve, definition_hash

    a = _audience(audience, audiences)
    try:
        entry = approve(a, role=role, allow_breaker_override=allow_breaker_override)
    except (PermissionError, roles.RolesError) as e:
        _refuse(e)
    console.print(
        f"approved {a.name} ({definition_hash(a)[:12]}) as {entry['actor']}, requested by "
        f"{entry['details']['requested_by']} (log seq {entry['seq']})"
    )


def prune_store(
    now: datetime, *, dry_run: bool = False, destinations_file: Path | None = None, store_url: str | None = None
) -> dict[str, int]:
    """Apply the retention of include/destinations.yml to the activation store
    (`ActivationStore.prune`) and, unless a dry run, write the deletion to the operation log.
    What `yorisoi activation prune` and the DAG maintain_activation_store run."""
    from ..audit import record
    from .delivery.store import ActivationStore
    from .selection.definitions import load_destinations

    retention = load_destinations(destinations_file).retention
    with ActivationStore(store_url) as store:
        counts = store.prune(now, retention, dry_run=dry_run)
        where = repr(store)
    if not dry_run:
        record(
            "prune",
            "activation store",
            rows=sum(n for table, n in counts.items() if table != "send_history"),
            details={"store": where, "as_of": now.isoformat(), "retention": retention.model_dump(), "rows": counts},
        )
    return counts


@activation_app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would go; delete nothing")] = False,
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Delete what the retention in include/destinations.yml (defaults.retention) no longer keeps
    from the activation store: old audience members (each audience's latest run stays), sync runs
    with their changelog and rejects, and ledger rows (folded into send_history first)."""
    counts = prune_store(_as_of(as_of), dry_run=dry_run)
    if as_json:
        console.print_json(json.dumps({"dry_run": dry_run, "rows": counts}))
        return
    title = "activation store prune" + (" (dry run: nothing deleted)" if dry_run else "")
    table = Table("table", "rows", "", title=title)
    for name, n in counts.items():
        if name == "send_history":
            what = "summaries that would take in pruned sends" if dry_run else "summaries that took in pruned sends"
        else:
            what = "would be deleted" if dry_run else "deleted"
        table.add_row(name, str(n), what)
    console.print(table)
