"""`yorisoi report`: build the CRM report, and check it in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..logs import make_console
from ..outcomes.cli import DESIGNS_HELP, designs_option

report_app = typer.Typer(help="The CRM report (static HTML, Japanese and English, offline).", no_args_is_help=True)
console = make_console()


@report_app.command("build")
def build(
    out: Annotated[Path | None, typer.Option(help="folder [default: var/out/report]")] = None,
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB warehouse [default: var/warehouse.duckdb]")] = None,
    simulations: Annotated[int, typer.Option(help="simulations behind the 顧客BS intervals")] = 200,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    designs: Annotated[Path | None, typer.Option(help=DESIGNS_HELP)] = None,
) -> None:
    """Build the report from the marts: index.html (日本語), en.html, assets/. The campaigns view's
    sample-ratio check compares each campaign's groups with its audience's assigned split
    (audiences/*.yml, or --designs for campaigns defined elsewhere)."""
    from .build import build_report

    split = designs_option(designs)
    try:
        report = build_report(out, warehouse=warehouse, simulations=simulations, designs=split)
    except FileNotFoundError as e:
        typer.echo(f"yorisoi report build: {e}", err=True)
        raise typer.Exit(2) from e
    if json_out:
        typer.echo(json.dumps(report.summary(), ensure_ascii=False))
        return
    console.print(
        f"CRM report (CRMレポート): {report.folder / 'index.html'} — {report.total_bytes / 1e6:.2f} MB "
        f"in {len(report.files)} files, built in {report.seconds:.1f} s (as of {report.as_of})"
    )


@report_app.command("check")
def check(
    page: Annotated[Path | None, typer.Argument(help="a report page [default: var/out/report/index.html]")] = None,
    screenshot: Annotated[Path | None, typer.Option(help="also save a PNG of the top of the page")] = None,
    height: Annotated[int, typer.Option(help="screenshot height in pixels")] = 2200,
) -> None:
    """Open the page in headless Chromium; exit 1 on any JavaScript error, request leaving the
    machine, chart not drawn or empty view."""
    from .browser import BrowserError, check_page
    from .build import PAGES, default_folder

    page = page or default_folder() / PAGES["ja"]
    try:
        result = check_page(page, screenshot=screenshot, screenshot_height=height)
    except BrowserError as e:
        typer.echo(f"yorisoi report check: {e}", err=True)
        raise typer.Exit(2) from e
    charts = sum(len(v["charts"]) for v in result.views)
    if result.problems:
        for p in result.problems:
            console.print(f"[red]✗[/] {p}")
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/] {page}: {len(result.views)} views, {charts} charts drawn, no errors ({result.seconds:.1f} s)"
    )
