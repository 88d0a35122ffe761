"""`yorisoi privacy ...`: erase the people who asked to be erased (削除依頼), and prove it.

Registered in yorisoi.cli as `app.add_typer(privacy_app, name="privacy")`. What is removed and
what is kept on purpose: docs/privacy.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

privacy_app = typer.Typer(help="Erasure (削除依頼): remove a person's data from every store, and verify it.")
console = Console()

AsJson = Annotated[bool, typer.Option("--json", help="print the report as JSON")]
NoDropFiles = Annotated[
    bool,
    typer.Option("--no-drop-files", help="leave the SFTP server's processed/ and quarantine/ files alone"),
]


@contextmanager
def stores(*, drop_files: bool = True) -> Iterator:
    """Every store of this installation: the warehouse and its lake (`yorisoi.orchestration.
    ingest.warehouse`), the analysts' and role databases, the SFTP drop server (the registry's
    `files` source, through its Airflow connection with the pinned host key) and the activation
    store."""
    from .. import paths
    from ..orchestration.ingest import warehouse
    from ..sources.registry import load_registry
    from .erasure import Stores

    databases = [paths.analytics_path(), *sorted(paths.roles_dir().glob("*.duckdb"))]
    found = Stores(warehouse(), databases=databases)
    hook = None
    if drop_files:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        source = next((s for s in load_registry().sources.values() if s.kind == "files"), None)
        if source is not None:
            hook = SFTPHook(ssh_conn_id=source.conn_id)
            found.sftp, found.sftp_source = hook.get_conn(), source
    try:
        yield found
    finally:
        if hook is not None:
            hook.close_conn()


def erase_task(*, drop_files: bool = True) -> dict:
    """Tombstone the pending erasure requests and purge every store (operation log `erase`).
    What `yorisoi privacy erase` and the DAG erase_personal_data run."""
    from .erasure import erase

    with stores(drop_files=drop_files) as where:
        return erase(where).to_dict()


def verify_task(*, drop_files: bool = True) -> dict:
    """Scan every store for the erased keys; the report (`ok` false when anything remains)."""
    from .tombstones import resolve_secret
    from .verify import verify

    with stores(drop_files=drop_files) as where:
        con = where.warehouse.connect()
        try:
            from .tombstones import Tombstones

            stones = Tombstones.load(con, resolve_secret())
        finally:
            con.close()
        return verify(where, stones).to_dict()


@privacy_app.command("erase")
def erase_command(no_drop_files: NoDropFiles = False, as_json: AsJson = False) -> None:
    """Erase everyone whose erasure request the customer build has resolved: tombstones first
    (a re-ingest can no longer bring them back), then raw tables, derived tables, the lake, kept
    drop files and the activation store. Safe to run again."""
    result = erase_task(drop_files=not no_drop_files)
    if as_json:
        console.print_json(json.dumps(result, ensure_ascii=False, default=str))
        return
    purge = result["purge"]
    console.print(
        f"requests tombstoned: {len(result['requests'])} ({', '.join(result['requests']) or '-'}), "
        f"new tombstones: {result['tombstones']}, rows removed or unlinked: {purge['rows']}"
    )
    for place in ("raw", "warehouse", "databases", "lake_files", "drop_files", "activation"):
        if purge[place]:
            console.print(f"  {place}: " + ", ".join(f"{k} {v}" for k, v in purge[place].items()))
    if purge["awaiting_destinations"]:
        console.print(
            f"[yellow]{purge['awaiting_destinations']} destination row(s) wait for the next sync to remove "
            "the person; run erase again after it[/yellow]"
        )


@privacy_app.command("verify-erasure")
def verify_command(no_drop_files: NoDropFiles = False, as_json: AsJson = False) -> None:
    """Look for every erased key (IDs, email, phone, LINE user ID, name) in every store. Exits 1
    when any remains; names alone are listed as possible namesakes."""
    report = verify_task(drop_files=not no_drop_files)
    if as_json:
        console.print_json(json.dumps(report, ensure_ascii=False, default=str))
    else:
        scanned = ", ".join(f"{k} {v}" for k, v in report["scanned"].items())
        console.print(f"tombstones: {report['tombstones']}; scanned: {scanned}")
        for r in report["residuals"]:
            console.print(f"[red]residual[/red] {r['store']}: {r['location']}.{r['column']}: {r['values']} {r['kind']}")
        for r in report["possible_namesakes"]:
            console.print(f"namesake? {r['store']}: {r['location']}.{r['column']}: {r['values']} {r['kind']}")
        console.print("[green]no residuals[/green]" if report["ok"] else f"{len(report['residuals'])} residual(s)")
    raise typer.Exit(0 if report["ok"] else 1)
