"""`yorisoi sources ...`: what the brand's registry and mappings give each entity, the empty raw
tables of the sources it does not have, and a first load of its own exports without Airflow.

Registered in yorisoi.cli as `app.add_typer(sources_app, name="sources")`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .reconcile_cli import register as register_reconcile

sources_app = typer.Typer(
    help="The source registry (YORISOI_REGISTRY, default include/sources/registry.yml): check, init.",
    no_args_is_help=True,
)
console = Console()
register_reconcile(sources_app)  # `yorisoi sources reconcile` (yorisoi.sources.reconcile_cli)


@sources_app.command("init")
def init_command(
    as_json: Annotated[bool, typer.Option("--json", help="print raw table → created / exists as JSON")] = False,
) -> None:
    """Create every registry table's raw table (typed, empty) that does not exist yet, enabled
    or not, so models whose inputs are absent build empty. dbt builds and the raw gate run it too."""
    import json

    from .catalog import init_raw_tables
    from .registry import RegistryError

    try:
        out = init_raw_tables()
    except RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if as_json:
        console.print_json(json.dumps(out))
        return
    for name, what in out.items():
        colour = {"created": "green", "exists": "dim", "no schema": "yellow"}[what]
        console.print(f"raw.{name}: [{colour}]{what}[/]")
