"""The kit's commands on the `yorisoi` command line: the synthetic brand, its servers on
loopback, the demo, the benchmarks and the evaluations. `yorisoi.cli` registers them when this
package is installed (the `kit` extra)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from yorisoi import paths
from yorisoi.logs import make_console

serve_app = typer.Typer(help="Run a source system's server on this machine (demo and tests).", no_args_is_help=True)
oms_app = typer.Typer(help="The OMS / ERP database of the synthetic brand.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure the pipeline against the synthetic brand's ground truth.", no_args_is_help=True)
console = make_console()
_TOP_LEVEL: list[Callable[..., Any]] = []

DEMO_API_KEY_ENV = "YORISOI_EC_API_KEY"
SFTP_USER_ENV = "YORISOI_SFTP_USER"
SFTP_PASSWORD_ENV = "YORISOI_SFTP_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def kit_app_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a command for the top level of `yorisoi` (registered by :func:`register`)."""
    _TOP_LEVEL.append(fn)
    return fn


def register(app: typer.Typer) -> None:
    """Add the kit's commands to the product's command line."""
    for fn in _TOP_LEVEL:
        app.command()(fn)
    app.add_typer(serve_app, name="serve")
    app.add_typer(oms_app, name="oms")
    app.add_typer(eval_app, name="eval")


def _generate(scale: str, seed: int, out: Path, *, defects: bool = False) -> None:
    from .synth import STAGES, generate

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"synth {scale} → {out}", total=len(STAGES))

        def on_stage(name: str, rows: int) -> None:
            progress.update(task, advance=1, description=f"{name}: {rows:,} rows")

        generate(out, scale=scale, seed=seed, on_stage=on_stage, defects=defects)


@kit_app_command
def synth(
    scale: Annotated[str, typer.Option(help="XS (1 k people), S (20 k), M (200 k) or L (2 M)")] = "S",
    seed: Annotated[int, typer.Option(help="same seed, byte-identical files")] = 42,
    out: Annotated[Path | None, typer.Option(help="output folder [default: var/sources]")] = None,
    stats: Annotated[bool, typer.Option(help="print statistics of the result as JSON")] = False,
    defects: Annotated[bool, typer.Option(help="add deliberately bad drops (see truth/defects.json)")] = False,
) -> None:
    """Generate the synthetic brand in each source system's native shape, with ground truth."""
    out = out or paths.sources_dir()
    t0 = time.perf_counter()
    _generate(scale.upper(), seed, out, defects=defects)
    console.print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    if stats:
        from .synth.stats import summarize

        console.print_json(json.dumps(summarize(out), ensure_ascii=False))


@kit_app_command
def daily_change(
    out: Annotated[Path | None, typer.Option(help="a generated brand [default: var/sources]")] = None,
    seed: Annotated[int, typer.Option(help="same seed and brand, same change")] = 42,
    days: Annotated[int, typer.Option(help="days of change to apply, one after the other")] = 1,
    new_orders: Annotated[float, typer.Option(help="share of new orders and store receipts")] = 0.005,
    changed_customers: Annotated[float, typer.Option(help="share of accounts with a new email or address")] = 0.01,
    opt_outs: Annotated[float, typer.Option(help="share of accounts withdrawing email consent")] = 0.002,
) -> None:
    """Apply a day of change to a generated brand in place (new orders, late order updates,
    changed customers, opt-outs, web events, email sends) and move its as-of day on by one: what
    the daily run ingests and builds incrementally (docs/synthetic-brand.md)."""
    from .synth.daily import DailyShares, apply_daily_change

    brand = out or paths.sources_dir()
    shares = DailyShares(new_orders=new_orders, changed_customers=changed_customers, opt_outs=opt_outs)
    for _ in range(days):
        change = apply_daily_change(brand, seed=seed, shares=shares)
        console.print(f"{change['day']}: " + ", ".join(f"{k} {v:,}" for k, v in change["rows"].items()))


def _secret(env: str, default: str) -> str:
    return os.environ.get(env, default)


@serve_app.command("ecommerce")
def serve_ecommerce(
    data: Annotated[Path | None, typer.Option(help="folder with the shop's Parquet files")] = None,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """The Shopify-like Admin REST API over the brand's e-commerce data (API key from $YORISOI_EC_API_KEY)."""
    from .servers import ecommerce

    data = data or paths.sources_dir() / "ecommerce"
    ecommerce.serve(data, host=host, port=port, api_key=_secret(DEMO_API_KEY_ENV, "demo-key"))


@serve_app.command("sftp")
def serve_sftp(
    root: Annotated[Path | None, typer.Option(help="folder served as the SFTP root")] = None,
    host: str = "127.0.0.1",
    port: int = 2222,
    host_key: Annotated[Path | None, typer.Option(help="server host key (created if missing)")] = None,
) -> None:
    """An SFTP server for the drop folder (user/password from $YORISOI_SFTP_USER / $YORISOI_SFTP_PASSWORD)."""
    from .servers import sftp

    root = root or paths.sources_dir() / "sftp"
    host_key = host_key or paths.var_dir() / "keys" / "sftp_host_ed25519"
    console.print(f"host key (pin it in the Airflow connection's extra 'host_key'): {sftp.ensure_host_key(host_key)}")
    sftp.serve(
        root,
        host=host,
        port=port,
        username=_secret(SFTP_USER_ENV, "yorisoi"),
        password=_secret(SFTP_PASSWORD_ENV, "demo"),
        host_key_path=host_key,
    )


@serve_app.command("destinations")
def serve_destinations_command() -> None:
    """The demo's stand-in destinations (LINE, ESP, SMS, SMTP, S3, SFTP) again, so `yorisoi
    activation test-send` works after the demo; their Airflow connections go to var/destinations.env."""
    from contextlib import ExitStack

    from .demo import airflow_environment, destinations_env_file, serve_destinations

    airflow_environment()
    with ExitStack() as stack:
        conns = serve_destinations(stack)
        env = destinations_env_file()
        console.print(
            f"{len(conns) - 2} destination connections written to {env}. In another shell:\n"
            f"  set -a; . {env}; set +a\n"
            "  .venv/bin/yorisoi activation test-send cart_abandonment --role content_author\n"
            "Ctrl-C stops the servers.",
            soft_wrap=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@oms_app.command("load")
def oms_load(
    url: Annotated[str, typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test")],
    sqlite: Annotated[Path | None, typer.Option(help="source OMS [default: var/sources/oms/oms.sqlite]")] = None,
    schema: Annotated[str | None, typer.Option(help="target schema (PostgreSQL)")] = None,
) -> None:
    """Copy the OMS database into PostgreSQL or MariaDB (same tables, same rows)."""
    from .oms_load import load_oms

    counts = load_oms(sqlite or paths.sources_dir() / "oms" / "oms.sqlite", url, schema=schema)
    for table, n in counts.items():
        console.print(f"{table:15s} {n:>12,}")


@kit_app_command
def stats(out: Annotated[Path | None, typer.Option(help="a generated brand")] = None) -> None:
    """Statistics of a generated brand: sources, LINE links, consent, the F ladder."""
    from .synth.stats import summarize

    console.print_json(json.dumps(summarize(out or paths.sources_dir()), ensure_ascii=False))


@kit_app_command
def demo(
    scale: Annotated[str, typer.Option(help="scale of the demo brand")] = "S",
    seed: int = 42,
    keep_serving: Annotated[bool, typer.Option(help="keep the servers up until Ctrl-C")] = False,
    ingest: Annotated[bool, typer.Option(help="run the ingest DAGs through Airflow")] = True,
) -> None:
    """Generate the brand (unless already there), start the source servers on loopback and show
    each one serving through a real client."""
    from .demo import run_demo

    run_demo(
        scale.upper(),
        seed,
        keep_serving=keep_serving,
        ingest=ingest,
        console=console,
        generate=lambda sc, sd, out: _generate(sc, sd, out, defects=True),
    )


@kit_app_command
def bench(
    scale: Annotated[str, typer.Option(help="S, M or L")] = "S",
    repeat: Annotated[int, typer.Option(help="repetitions (the median is reported)")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="also print the results as JSON")] = False,
    out: Annotated[Path, typer.Option(help="folder for results")] = Path("bench"),
    suite: Annotated[str, typer.Option(help="generate | ingest | customers | segments")] = "generate",
    scope: Annotated[str, typer.Option(help="customers suite: all, or customers (no order tables)")] = "all",
) -> None:
    """Time each named stage (wall time, rows/s, peak memory) against a DuckDB lower bound, or
    (`--suite ingest`) the ingestion of all three sources and a re-ingest after a 1 % change, or
    (`--suite customers`) the dbt build of the customer layer, identity resolution included, or
    (`--suite segments`) the daily build of the segment marts and the incremental order lines."""
    from .bench import run_bench, run_customer_bench, run_ingest_bench, run_segment_bench, write_results

    once = {"ingest": run_ingest_bench, "customers": run_customer_bench, "segments": run_segment_bench}
    if suite in once:
        kwargs = {"scope": scope} if suite == "customers" else {}
        results = once[suite](scale.upper(), console=console, **kwargs)
        write_results(results, out)
        if json_out:
            console.print_json(json.dumps(results))
        return
    results = run_bench(scale.upper(), repeat=repeat, console=console)
    write_results(results, out)
    table = Table("stage", "median s", "rows", "rows/s", "peak RSS MB", "× reference")
    for s in results["stages"]:
        table.add_row(
            s["stage"],
            f"{s['seconds']:.3f}",
            f"{s['rows']:,}",
            f"{s['rows_per_second']:,.0f}",
            f"{s['peak_rss_mb']:,.0f}",
            f"{s['ratio_to_reference']:.1f}",
        )
    console.print(table)
    if json_out:
        console.print_json(json.dumps(results))


@eval_app.command("identity")
def eval_identity(
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB warehouse [default: var/warehouse.duckdb]")] = None,
    truth: Annotated[Path | None, typer.Option(help="ground truth folder [default: var/sources/truth]")] = None,
    json_only: Annotated[bool, typer.Option("--json", help="print the JSON only")] = False,
    check: Annotated[bool, typer.Option(help="exit 1 when the goal is missed")] = False,
    scale: Annotated[
        str | None,
        typer.Option(help="generate, ingest and build a brand of this scale (XS, S, M, L) under var/eval first"),
    ] = None,
    labelled_set: Annotated[
        Path | None,
        typer.Option(
            "--set",
            help="a labelled set (source exports + truth/): ingest, build and score it under var/eval/sets, "
            "with Splink as a peer when installed",
        ),
    ] = None,
    peer: Annotated[bool, typer.Option(help="with --set: also run Splink on the same records")] = True,
) -> None:
    """Identity resolution against the generator's ground truth: pairwise precision, recall and F1
    (all records and records that carry an identifier) and each match rule's contribution, as JSON."""
    from .identity_eval import evaluate, evaluate_set

    if labelled_set:
        try:
            result = evaluate_set(labelled_set, paths.var_dir() / "eval" / "sets" / labelled_set.name, peer=peer)
        except (FileNotFoundError, LookupError) as e:
            typer.echo(f"yorisoi eval identity: {e}", err=True)
            raise typer.Exit(2) from e
        _print_identity(result, json_only)
        if check and not result["meets_goal"]:
            raise typer.Exit(1)
        return
    if scale:
        from .scale_run import build, prepare

        run = prepare(scale.upper(), console=None if json_only else console)
        build(run, select="+bridge_customer_identities", quiet=json_only)
        warehouse, truth = run.warehouse, run.truth
    try:
        result = evaluate(warehouse or paths.warehouse_path(), truth or paths.sources_dir() / "truth")
    except (FileNotFoundError, LookupError) as e:
        typer.echo(f"yorisoi eval identity: {e}", err=True)
        raise typer.Exit(2) from e
    _print_identity(result, json_only)
    if check and not result["meets_goal"]:
        raise typer.Exit(1)


def _print_identity(result: dict, json_only: bool) -> None:
    if json_only:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    console.print_json(json.dumps(result, ensure_ascii=False))
    r = result["resolvable_records"]
    verdict = "[green]meets[/green]" if result["meets_goal"] else "[red]misses[/red]"
    console.print(
        f"resolvable records: precision {r['precision']:.4f}, recall {r['recall']:.4f}, F1 {r['f1']:.4f} "
        f"— {verdict} the goal (F1 ≥ {result['goal']['f1']}, precision ≥ {result['goal']['precision']})"
    )
    peer = result.get("splink") or {}
    if peer.get("available"):
        b = peer["best"]
        console.print(
            f"splink (best threshold {b['threshold']}): precision {b['precision']:.4f}, recall {b['recall']:.4f}, "
            f"F1 {b['f1']:.4f}"
        )
