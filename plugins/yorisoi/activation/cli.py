"""`yorisoi activation ...`: check, plan, dry-run, test-send and run audiences from the command line.

Registered in yorisoi.cli as `app.add_typer(activation_app, name="activation")`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

activation_app = typer.Typer(
    help="Audiences (audiences/*.yml) to email, LINE, SMS, DM, 同梱物 and S3: check, plan, dry-run, test-send, run.",
    no_args_is_help=True,
)
console = Console()

AsOf = Annotated[
    str | None, typer.Option("--as-of", help="ISO time the run pretends it is (default: now); local time if no zone")
]
Destination = Annotated[
    list[str] | None, typer.Option("--destination", "-d", help="only this destination (repeat for more)")
]
AsJson = Annotated[bool, typer.Option("--json", help="print the summaries as JSON")]
AudiencesDir = Annotated[Path | None, typer.Option("--audiences", help="the audiences folder [default: audiences/]")]


def _as_of(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        from zoneinfo import ZoneInfo

        from .run import LOCAL_TIME_ZONE

        at = at.replace(tzinfo=ZoneInfo(LOCAL_TIME_ZONE))
    return at.astimezone(UTC)


def _context(audiences: Path | None):
    from .run import Context
    from .selection.definitions import AudienceError

    try:
        return Context.load(audiences_dir=audiences)
    except AudienceError as e:
        console.print(f"[red]invalid definitions[/red]\n{e}")
        raise typer.Exit(2) from None


def _summaries(
    audience: str, destinations: list[str] | None, audiences: Path | None, as_of: str | None, **kwargs: Any
) -> list[dict]:
    from .run import activate, new_run_id

    ctx = _context(audiences)
    try:
        a = ctx.audiences[audience]
    except KeyError as e:
        console.print(f"[red]{e.args[0]}[/red]")
        raise typer.Exit(2) from None
    chosen = destinations or a.destination_names
    unknown = [d for d in chosen if d not in a.destination_names]
    if unknown:
        console.print(f"[red]{audience} does not go to {unknown} (it goes to {a.destination_names})[/red]")
        raise typer.Exit(2)
    run_id = new_run_id("cli")
    return [activate(audience, d, as_of=_as_of(as_of), run_id=run_id, context=ctx, **kwargs) for d in chosen]


def _print(summaries: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(summaries, ensure_ascii=False, default=str))
        return
    table = Table(
        "audience",
        "destination",
        "status",
        "members",
        "allocated",
        "records",
        "adds",
        "updates",
        "removes",
        "delivered",
        "rejected",
        "skipped / why",
    )
    for s in summaries:
        sync = s.get("sync") or {}
        stats = s.get("stats") or {}
        why = s.get("reason") or ", ".join(f"{k} {v}" for k, v in (s.get("dropped_at_export") or {}).items())
        if s.get("would_skip"):
            why = f"{why}; [red]the breaker would skip it: {s['would_skip']}[/red]".lstrip("; ")
        table.add_row(
            s["audience"],
            s["destination"],
            s["status"],
            str(stats.get("members", "")),
            str((stats.get("allocated") or {}).get(s.get("channel"), "")),
            str(s.get("records", s.get("test_recipients", ""))),
            *(str(sync.get(k, "")) for k in ("adds", "updates", "removes", "delivered", "rejected")),
            f"{sync.get('skipped', '')} {why}".strip(),
        )
    console.print(table)
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
) -> None:
    """Plan an audience's export: members, control group, variants, caps, the adds / updates /
    removes each destination would get. Sends nothing, writes no members."""
    _print(_summaries(audience, destination, audiences, as_of, dry_run=True), as_json)


@activation_app.command("test-send")
def test_send(
    audience: str,
    destination: Destination = None,
    variant: Annotated[str | None, typer.Option(help="send every seed this variant (default: round-robin)")] = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
    audiences: AudiencesDir = None,
) -> None:
    """テスト配信: send the audience's messages to the destinations' test_recipients only."""
    _print(_summaries(audience, destination, audiences, as_of, test=True, test_variant=variant), as_json)


@activation_app.command("run")
def run_(
    audience: str,
    destination: Destination = None,
    full: Annotated[bool, typer.Option("--full", help="resend everything current (removals still explicit)")] = False,
    as_of: AsOf = None,
    as_json: AsJson = False,
    audiences: AudiencesDir = None,
) -> None:
    """Export an audience now (circuit breaker, members, arbitration, sync)."""
    summaries = _summaries(audience, destination, audiences, as_of, mode="full" if full else "diff")
    _print(summaries, as_json)
    if any(s["status"] == "skipped" for s in summaries):
        raise typer.Exit(1)


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
