"""A whole brand at a given scale, end to end outside Airflow: generate it, ingest it from the
loopback servers with the same extractors the DAGs run, and build the dbt layers. Used by
`yorisoi eval identity --scale` and the benchmarks, which need S, M and L warehouses of their own
(under var/eval/<scale>, never the demo's)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from yorisoi import paths

LOAD_DATE = date(2026, 11, 1)
# Scope "customers": what identity resolution, consent and the golden record read. At L the shop
# API alone serves ~27 M order and line rows (about 40 minutes on this machine), which the
# customer benchmark does not need.
CUSTOMER_TABLES = {
    "ecommerce": ["customers"],
    "oms": ["customers"],
    "sftp": ["pos_members", "callcenter_requests", "line_friends", "line_id_links", "esp_sends"],
}
ORDER_MODELS = "stg_ecommerce__orders+ stg_oms__orders+ stg_pos__sales+"


@dataclass
class IngestTiming:
    source: str
    seconds: float
    rows: int


@dataclass
class ScaleRun:
    scale: str
    work: Path
    scope: str = "all"
    generated_s: float | None = None
    ingest: list[IngestTiming] = field(default_factory=list)

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse.duckdb"

    @property
    def truth(self) -> Path:
        return self.work / "sources" / "truth"


@contextlib.contextmanager
def using_var(work: Path) -> Iterator[None]:
    """Point yorisoi.paths (and dbt) at `work` for the duration."""
    old = os.environ.get("YORISOI_VAR")
    os.environ["YORISOI_VAR"] = str(work)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("YORISOI_VAR", None)
        else:
            os.environ["YORISOI_VAR"] = old


@contextlib.contextmanager
def _as_of(day: str | None) -> Iterator[None]:
    """YORISOI_AS_OF set to `day` (when given) for the duration, then as it was."""
    old = os.environ.get("YORISOI_AS_OF")
    if day:
        os.environ["YORISOI_AS_OF"] = day
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("YORISOI_AS_OF", None)
        else:
            os.environ["YORISOI_AS_OF"] = old


def ingest_shop(brand: Path, wh, run_id: str, tables: list[str] | None = None) -> IngestTiming:
    """The e-commerce API (served from the brand's files on loopback, no rate limit)."""
    from yorisoi.sources.ecommerce import ShopClient, ingest_ecommerce
    from yorisoi.sources.registry import load_registry

    from .demo import DEMO_API_KEY
    from .servers import ecommerce

    with ecommerce.serve_in_thread(
        brand / "ecommerce", api_key=DEMO_API_KEY, bucket_size=10**9, leak_per_second=10**9
    ) as shop:
        client = ShopClient(shop.base_url, DEMO_API_KEY)
        t0 = time.perf_counter()
        res = ingest_ecommerce(
            wh, load_registry().source("ecommerce"), client, run_id=run_id, load_date=LOAD_DATE, tables=tables
        )
        return IngestTiming("ecommerce", time.perf_counter() - t0, sum(r.rows for r in res.values()))


def ingest_back_office(brand: Path, wh, run_id: str, tables: list[str] | None = None) -> IngestTiming:
    """The OMS database (the brand's SQLite file through SQLAlchemy, as PostgreSQL would be)."""
    import sqlalchemy

    from yorisoi.sources.oms import ingest_oms
    from yorisoi.sources.registry import load_registry

    engine = sqlalchemy.create_engine(f"sqlite:///{brand / 'oms' / 'oms.sqlite'}")
    try:
        t0 = time.perf_counter()
        res = ingest_oms(wh, load_registry().source("oms"), engine, run_id=run_id, load_date=LOAD_DATE, tables=tables)
        return IngestTiming("oms", time.perf_counter() - t0, sum(r.rows for r in res.values()))
    finally:
        engine.dispose()


def ingest_drop_folder(brand: Path, wh, work: Path, run_id: str, tables: list[str] | None = None) -> IngestTiming:
    """Every SFTP drop, through a local SFTP server with a pinned host key."""
    from yorisoi.sources.registry import load_registry
    from yorisoi.sources.sftp_files import ingest_drops

    from .demo import DEMO_SFTP_PASSWORD, DEMO_SFTP_USER, pinned_sftp
    from .servers import sftp

    source = load_registry().source("sftp")
    with sftp.serve_in_thread(
        brand / "sftp", username=DEMO_SFTP_USER, password=DEMO_SFTP_PASSWORD, host_key_path=work / "host_key"
    ) as drop:
        client = pinned_sftp(drop.host, drop.port, drop.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD)
        t0 = time.perf_counter()
        report = ingest_drops(
            wh,
            source,
            client,
            run_id=run_id,
            load_date=LOAD_DATE,
            now=datetime.now(UTC),
            tables=tables,
            workdir=work / "sftp_work",
        )
        seconds = time.perf_counter() - t0
        client.close()
    # The rows this run landed (a day's ingest lands a day's files, not the table).
    rows = sum(t.rows_loaded for t in report.tables.values())
    return IngestTiming("sftp", seconds, rows)


def prepare(scale: str, *, seed: int = 42, scope: str = "all", console=None) -> ScaleRun:
    """Generate and ingest the brand at `scale` into var/eval/<scale> unless it is already there
    (same scale, seed and generator version). Scope "customers" ingests only the tables of
    CUSTOMER_TABLES (into var/eval/<scale>_customers)."""
    from yorisoi.sources.catalog import init_raw_tables
    from yorisoi.sources.landing import Lake, Warehouse

    from .synth import generate
    from .synth.brand import GENERATOR_VERSION

    if scope not in ("all", "customers"):
        raise ValueError(f"scope must be all or customers, not {scope!r}")
    work = paths.var_dir() / "eval" / (scale if scope == "all" else f"{scale}_customers")
    run = ScaleRun(scale, work, scope)
    stamp = work / "prepared.json"
    wanted = {"scale": scale, "seed": seed, "generator_version": GENERATOR_VERSION, "scope": scope}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and run.warehouse.exists():
        return run
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    generate(work / "sources", scale=scale, seed=seed)
    run.generated_s = time.perf_counter() - t0
    wh = Warehouse(run.warehouse, Lake(work / "lake"))
    brand = work / "sources"
    tables = CUSTOMER_TABLES if scope == "customers" else {}
    run.ingest.append(ingest_shop(brand, wh, "eval-1", tables.get("ecommerce")))
    run.ingest.append(ingest_back_office(brand, wh, "eval-1", tables.get("oms")))
    run.ingest.append(ingest_drop_folder(brand, wh, work, "eval-1", tables.get("sftp")))
    # Every registry table's raw table, as production has them before any build (yorisoi sources
    # init): what a plain `dbt build` on this warehouse (the Spark test's DuckDB side) reads.
    init_raw_tables(wh)
    if console:
        for t in run.ingest:
            console.print(f"ingest {t.source}: {t.rows:,} rows in {t.seconds:.1f} s")
    stamp.write_text(json.dumps(wanted))
    return run


def build(
    run: ScaleRun,
    select: str | None = None,
    *,
    exclude: str | None = None,
    full_refresh: bool = False,
    quiet: bool = False,
    as_of: str | None = None,
) -> dict:
    """`dbt build` in the run's folder, by default of every mart (customer layer and segments),
    without the unit tests, as the scheduled builds run it (transform.SCHEDULED_BUILD_FLAGS:
    `unit_tests` runs them); wall time, dbt's elapsed time of running the nodes (the rest of the
    wall time is the invocation: creating the raw tables, starting Python, importing dbt, reading
    the project) and per-node times. The segment marts describe `as_of` (YYYY-MM-DD), by default the
    day the brand's data ends on, whatever YORISOI_AS_OF the calling process holds: the same
    brand builds the same marts in any order of tests."""
    from yorisoi.transform import CUSTOMER_LAYER, SCHEDULED_BUILD_FLAGS, brand_as_of, run_dbt

    select = select or CUSTOMER_LAYER
    manifest = run.work / "sources" / "manifest.json"
    day = as_of or (brand_as_of(run.work / "sources") if manifest.is_file() else os.environ.get("YORISOI_AS_OF"))
    with using_var(run.work), _as_of(day):
        t0 = time.perf_counter()
        args = [*(["--quiet"] if quiet else []), "build", "--select", select, "--indirect-selection", "cautious"]
        args += SCHEDULED_BUILD_FLAGS
        if full_refresh:
            args.append("--full-refresh")
        excluded = [*([exclude] if exclude else []), *([ORDER_MODELS] if run.scope == "customers" else [])]
        if excluded:
            args += ["--exclude", " ".join(excluded)]
        result = run_dbt(args, demo_key=True)
        seconds = time.perf_counter() - t0
        run_results = paths.var_dir() / "dbt" / "target" / "run_results.json"
        dbt_seconds = json.loads(run_results.read_text())["elapsed_time"] if run_results.is_file() else None
    return {"seconds": seconds, "dbt_seconds": dbt_seconds, "nodes": result.results}


def unit_tests(run: ScaleRun) -> list[dict]:
    """Every dbt unit test of the project (`dbt test --select test_type:unit`) in the run's
    folder, whose warehouse `build` has built (a unit test reads its model's parents' columns
    from the warehouse); dbt's result rows, pass or fail, of the unit tests alone (the project's
    on-run-start and on-run-end hooks report a row each too)."""
    from yorisoi.transform import brand_as_of, run_dbt

    with using_var(run.work), _as_of(brand_as_of(run.work / "sources")):
        dbt_run = run_dbt(["--quiet", "test", "--select", "test_type:unit"], demo_key=True, raise_on_failure=False)
    return [r for r in dbt_run.results if r["node"].startswith("unit_test.")]
