"""`yorisoi sources reconcile`: the weekly reconciliation (yorisoi.sources.reconcile) run by hand,
e.g. after a back office announced a batch of back-dated corrections. Attached to the
`yorisoi sources` group by yorisoi.sources.cli."""

from __future__ import annotations

import os
from typing import Annotated

import typer


def reconcile_command(
    source: Annotated[list[str] | None, typer.Option("--source", help="oms and / or ecommerce (default: both)")] = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="a table of the source (default: all)")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="the OMS as a SQLAlchemy URL (default: env YORISOI_OMS_URL, else the Airflow connection)"),
    ] = None,
    shop_url: Annotated[
        str | None,
        typer.Option(
            help="the shop API's root (default: the Airflow connection); the token comes from env YORISOI_SHOP_TOKEN"
        ),
    ] = None,
    read: Annotated[
        str | None, typer.Option(help="the shop read in full by: bulk or rest [default: the registry's, else bulk]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the counts per table as JSON")] = False,
) -> None:
    """Read each OMS / shop table in full, compare it with raw by key and row hash, and land what
    incremental reads missed (corrections stamped older than the overlap). The watermark does not
    move; keys deleted at the source are counted, not removed."""
    import json
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from ..orchestration import ingest
    from . import reconcile
    from .ecommerce import ShopClient
    from .registry import load_registry

    registry = load_registry()
    wanted = source or [s.name for s in registry.sources.values() if s.kind in ("database", "api")]
    run_id = f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    load_date = ingest.load_date_of(None)
    wh = ingest.warehouse()
    results: dict[str, reconcile.Reconciled] = {}
    unknown = set(table or ()) - {t for name in wanted for t in registry.source(name).tables}
    if unknown:
        raise typer.BadParameter(f"no table(s) {sorted(unknown)} in {', '.join(wanted)}")
    for name in wanted:
        src = registry.source(name)
        mine = [t for t in table if t in src.tables] if table else None
        if table and not mine:
            continue
        if src.kind == "database":
            url = database_url or os.environ.get("YORISOI_OMS_URL")
            engine = sa.create_engine(url) if url else ingest._oms_engine(src)
            try:
                results |= reconcile.reconcile_oms(wh, src, engine, run_id=run_id, load_date=load_date, tables=mine)
            finally:
                engine.dispose()
        elif src.kind == "api":
            if shop_url:
                client = ShopClient(shop_url, os.environ.get("YORISOI_SHOP_TOKEN", ""))
            else:
                client = ingest._shop_client(src)
            with client:
                results |= reconcile.reconcile_ecommerce(
                    wh, src, client, run_id=run_id, load_date=load_date, tables=mine, read=read
                )
        else:
            raise typer.BadParameter(f"{name} is a {src.kind} source: only database and api sources are reconciled")
    if as_json:
        typer.echo(json.dumps({k: r.to_dict() for k, r in results.items()}))
    else:
        typer.echo(reconcile.summary(results.values()))


def register(app: typer.Typer) -> None:
    """Add `reconcile` to the `yorisoi sources` commands."""
    app.command("reconcile")(reconcile_command)
