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


@sources_app.command("check")
def check_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the check as JSON")] = False,
) -> None:
    """Before anything runs: per source and table, what the registry and mappings give (columns
    with data, columns always null), per entity of the customer model what feeds it and what
    will be empty. Exit 1 when a mapping or table is unusable."""
    import json

    from rich.table import Table

    from .check import check_sources

    result = check_sources()
    if as_json:
        console.print_json(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        console.print(f"registry: {result.registry}")
        tables = Table("raw table", "enabled", "columns", "always null (not mapped)", "problem")
        for t in result.tables:
            tables.add_row(
                f"raw.{t.raw_name}",
                "yes" if t.enabled else "[dim]no: empty table[/]",
                str(len(t.columns)),
                ", ".join(t.null_columns) or "-",
                f"[red]{t.problem}[/]" if t.problem else "",
            )
        console.print(tables)
        entities = Table("entity", "fed by", "what reads it")
        for e in result.entities:
            fed = ", ".join(e.fed_by) if not e.empty else "[yellow]nothing: will be empty[/]"
            entities.add_row(e.entity, fed, e.reads)
        console.print(entities)
    if result.problems:
        raise typer.Exit(1)


def ingest_command(
    source_from: Annotated[
        str,
        typer.Option(
            "--from",
            help="a folder of export files, a database URL (postgresql+psycopg://, mysql+pymysql://, "
            "sqlite:///) or the shop's https URL (token in YORISOI_SHOP_TOKEN)",
        ),
    ],
    source: Annotated[str | None, typer.Option(help="the registry source to read it as [default: by kind]")] = None,
    read: Annotated[
        str | None,
        typer.Option(help="a shop: auto (bulk for a first load, REST after), rest or bulk [default: the registry's]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print what landed as JSON")] = False,
) -> None:
    """Load a brand's own exports into the embedded warehouse without Airflow, through the same
    extractors the ingest DAGs run (registry: YORISOI_REGISTRY). Then `yorisoi dbt build`."""
    import json

    from .local import ingest_from

    result = ingest_from(source_from, source_name=source, read=read)
    if as_json:
        console.print_json(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    else:
        console.print(f"{result.source} ({result.kind}) from {result.location}")
        for name, rows in result.tables.items():
            console.print(f"  raw.{result.source}__{name}: {rows:,} rows")
        for f in result.files:
            colour = "green" if f["status"] == "loaded" else "yellow"
            reason = f": {f['reason']}" if f["reason"] else ""
            console.print(f"  [{colour}]{f['status']}[/] {f['file']} → {f['table']}{reason}")
        for name in result.unmatched:
            console.print(f"  [dim]not read (no enabled table's pattern matches): {name}[/]")
    if result.alerts:  # quarantined or timed-out files: a person looks at them
        if not as_json:
            for line in result.alerts:
                console.print(f"[red]{line}[/]")
        raise typer.Exit(1)
