"""`yorisoi quality ...`: run the quality gates by hand and list the suites.

Registered in yorisoi.cli as `app.add_typer(quality_app, name="quality")`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..logs import make_console

quality_app = typer.Typer(
    help="Quality gates: the Great Expectations suites of expectations/ (raw and marts), Data Docs.",
    no_args_is_help=True,
)
console = make_console()


@quality_app.command("validate")
def validate_command(
    layer: Annotated[str, typer.Option(help="raw (before the customer model) or marts (before activation)")],
    table: Annotated[list[str] | None, typer.Option(help="only this table (schema.table or table); repeatable")] = None,
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file [default: var/warehouse.duckdb]")] = None,
    record: Annotated[
        bool, typer.Option(help="record the result in var/quality/history.duckdb (the next run's baseline)")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Validate a layer like the Airflow gate does: a table per suite, exit code 1 if any failed.
    On the runtime's own warehouse the result is published where the activation circuit breaker
    reads it, as the gate's is; a run with --no-record or on another --warehouse is a look only."""
    from .gate import publish_latest
    from .suites import SuiteError
    from .validate import validate

    try:
        result = validate(layer, tables=table or None, warehouse=warehouse, record=record)
    except (SuiteError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if record and warehouse is None:
        publish_latest(result.summary())
    if as_json:
        console.print_json(json.dumps(result.summary()))
    else:
        out = Table(
            "suite",
            "scope",
            "rows in table",
            "rows validated",
            "rows to GX",
            "seconds",
            "result",
            "failed expectations",
            title=f"Quality gate {layer}: {result.warehouse}",
        )
        for s in result.suites:
            failed = "\n".join(f"{f.expectation}: {f.details}" for f in s.failures) or (s.error or "")
            warned = "\n".join(f"[yellow]warning[/] {f.expectation}: {f.details}" for f in s.warnings)
            out.add_row(
                s.suite,
                s.scope,
                f"{s.row_count:,}" if s.row_count is not None else "-",
                f"{s.rows_validated:,}",
                f"{s.frame_rows:,}",
                f"{s.seconds:.2f}",
                "[green]passed[/]" if s.success else "[red]FAILED[/]",
                "\n".join(x for x in (failed, warned) if x),
            )
        console.print(out)
        console.print(
            f"{'[green]passed[/]' if result.success else '[red]failed[/]'}: {len(result.suites)} suites in "
            f"{result.seconds:.1f} s (+{result.gx_import_seconds:.1f} s to import Great Expectations)"
        )
        console.print(f"Data Docs: {result.docs_index}")
    if not result.success:
        raise typer.Exit(1)


@quality_app.command("accept")
def accept_command(
    layer: Annotated[str, typer.Option(help="raw or marts")],
    table: Annotated[list[str], typer.Option(help="the table whose new size is right; repeatable")],
    reason: Annotated[str, typer.Option(help="why (kept in var/quality/history.duckdb)")],
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file [default: var/warehouse.duckdb]")] = None,
) -> None:
    """Accept the current row counts as the baseline after checking a jump the gate stopped."""
    from .suites import SuiteError
    from .validate import accept_row_counts

    try:
        accepted = accept_row_counts(layer, table, reason=reason, warehouse=warehouse)
    except (SuiteError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    out = Table("suite", "previous baseline", "accepted", title="Row counts accepted")
    for suite, (before, now) in accepted.items():
        out.add_row(suite, f"{before:,}" if before is not None else "-", f"{now:,}")
    console.print(out)


@quality_app.command("suites")
def suites_command(
    layer: Annotated[str | None, typer.Option(help="raw or marts [default: both]")] = None,
    check: Annotated[bool, typer.Option(help="also build every suite with Great Expectations")] = False,
) -> None:
    """List the suite files: table, scope, how many expectations; with --check, load each into GX."""
    from .suites import SuiteError, expected_tables, load_suites

    try:
        specs = load_suites(layer)
        if check:
            for spec in specs:
                spec.to_gx_suites()
    except SuiteError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    out = Table("suite", "scope", "rows / profile", "table measures", "file", title="Quality suites")
    for s in specs:
        out.add_row(s.name, s.scope, str(len(s.expectations)), str(len(s.table_expectations)), s.relpath)
    console.print(out)
    missing = [
        t
        for lay in ([layer] if layer else ["raw", "marts"])
        for t in expected_tables(lay)
        if t not in {s.table for s in specs}
    ]
    if missing:
        console.print(f"[red]tables without a suite:[/] {', '.join(missing)}")
        raise typer.Exit(1)
