"""`yorisoi docs build`: the typer sub-app `docs_app` (registered in yorisoi.cli as `docs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

docs_app = typer.Typer(help="The data-definition document (データ項目定義書).", no_args_is_help=True)


@docs_app.command("build")
def build(
    out: Annotated[Path | None, typer.Option(help="output folder [default: var/out/docs/data-definition]")] = None,
    dbt_docs: Annotated[
        bool, typer.Option(help="run `dbt docs generate --static` first (off: reuse var/dbt/target)")
    ] = True,
) -> None:
    """Generate the document (HTML ja/en, XLSX ja/en, ER diagram, JSON, dbt static docs)."""
    import json

    from .build import generate

    try:
        written = generate(out, run_dbt_docs=dbt_docs, demo_key=True)
    except FileNotFoundError as e:
        typer.echo(f"yorisoi docs build: {e}", err=True)
        raise typer.Exit(2) from e
    counts = json.loads(written["json"].read_text("utf-8"))["counts"]
    typer.echo(json.dumps(counts, ensure_ascii=False))
    for key, path in written.items():
        typer.echo(f"{key:9} {path}")
