"""The bench runner: named stages, wall time, rows/s and peak memory, medians over repeats, and
the ratio of each stage to a lower-bound reference measured in the same run.

The reference is the least work any pipeline must do with the raw orders: one hand-written DuckDB
query computing recency, frequency and monetary per source customer.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil
from rich.console import Console

from . import paths

REFERENCE_SQL = """
select source, source_customer_id,
       date_diff('day', max(ordered_at), timestamp '{as_of}') as recency_days,
       count(*) as frequency,
       sum(total) as monetary
from read_parquet('{orders}')
where status not in ('cancelled', 'returned')
group by all
"""


class PeakRss:
    """Samples this process's resident memory every 20 ms while a stage runs."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def timed(fn: Callable[[], int]) -> dict:
    with PeakRss() as mem:
        t0 = time.perf_counter()
        rows = fn()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": mem.peak / 2**20}


def reference(out: Path, as_of: str) -> int:
    con = duckdb.connect()
    sql = REFERENCE_SQL.format(orders=out / "truth" / "orders.parquet", as_of=as_of[:19].replace("T", " "))
    return con.execute(f"select count(*) from ({sql})").fetchone()[0]  # noqa: S608 - our own constant


def run_bench(scale: str, repeat: int = 3, console: Console | None = None) -> dict:
    """Run the generator's stages `repeat` times at `scale`; report medians."""
    from .synth.brand import STAGES, new_brand, write_manifest

    work = paths.var_dir() / "bench" / scale
    runs: dict[str, list[dict]] = {}
    for i in range(repeat):
        if work.exists():
            shutil.rmtree(work)
        brand = new_brand(work, scale=scale, seed=42)
        work.mkdir(parents=True)
        total = 0.0
        for name, stage in STAGES:
            r = timed(lambda stage=stage, brand=brand: stage(brand))
            runs.setdefault(name, []).append(r)
            total += r["seconds"]
        write_manifest(brand)
        runs.setdefault("generate_total", []).append(
            {
                "seconds": total,
                "rows": sum(runs[n][-1]["rows"] for n, _ in STAGES),
                "peak_rss_mb": max(runs[n][-1]["peak_rss_mb"] for n, _ in STAGES),
            }
        )
        as_of = json.loads((work / "manifest.json").read_text())["as_of"]
        runs.setdefault("reference_rfm_duckdb", []).append(timed(lambda as_of=as_of: reference(work, as_of)))
        brand.state.clear()
        if console:
            console.print(f"run {i + 1}/{repeat}: generate {total:.1f} s")
    ref = statistics.median(r["seconds"] for r in runs["reference_rfm_duckdb"])
    stages = []
    for name, rs in runs.items():
        sec = statistics.median(r["seconds"] for r in rs)
        rows = rs[0]["rows"]
        stages.append(
            {
                "stage": name,
                "seconds": sec,
                "rows": rows,
                "rows_per_second": rows / sec if sec else 0.0,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "ratio_to_reference": sec / ref if ref else 0.0,
                "runs": [round(r["seconds"], 4) for r in rs],
            }
        )
    return {
        "scale": scale,
        "repeat": repeat,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "reference": "reference_rfm_duckdb: one DuckDB query, per-customer R/F/M over the raw orders",
        "stages": stages,
    }


def _machine() -> dict:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }


def write_results(results: dict, folder: Path) -> None:
    """`bench/results/<scale>.json` per scale, and `bench/RESULTS.md` rebuilt from all of them."""
    res_dir = folder / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / f"{results['scale']}.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Benchmark results",
        "",
        "Written by `yorisoi bench --scale S|M|L` (`make bench SCALE=M`). Medians of the runs;",
        "`× reference` is the stage's time over the DuckDB lower bound measured in the same run.",
        "",
    ]
    order = {"S": 0, "M": 1, "L": 2, "ingest_S": 3, "ingest_M": 4, "ingest_L": 5}
    for path in sorted(res_dir.glob("*.json"), key=lambda p: order.get(p.stem, 9)):
        r = json.loads(path.read_text())
        m = r["machine"]
        lines += [
            f"## Scale {r['scale']} ({r['repeat']} runs, {r['measured_at']})",
            "",
            f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}, "
            f"DuckDB {m['duckdb']}.",
            "",
        ]
        if "ratio_to_reference" in r["stages"][0]:
            lines += [
                "| stage | median s | rows | rows/s | peak RSS MB | × reference |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {s['stage']} | {s['seconds']:.3f} | {s['rows']:,} | {s['rows_per_second']:,.0f} | "
                f"{s['peak_rss_mb']:,.0f} | {s['ratio_to_reference']:.1f} |"
                for s in r["stages"]
            ]
        else:
            lines += ["| stage | s | rows | rows/s | source MB/s | notes |", "|---|---:|---:|---:|---:|---|"]
            lines += [
                f"| {s['stage']} | {s['seconds']:.2f} | {s['rows']:,} | {s['rows_per_second']:,.0f} | "
                f"{s['mb_per_second']:,.1f} | {_notes(s)} |"
                for s in r["stages"]
            ]
        lines.append("")
    (folder / "RESULTS.md").write_text("\n".join(lines))


def _notes(stage: dict) -> str:
    if "touched_share" in stage:
        return (
            f"{stage['changed']:,} of {stage['orders_total']:,} orders changed; "
            f"the rerun landed {stage['touched_share']:.1%} of the rows of a full ingest"
        )
    return f"{stage['alerts']} alerts (bad files)" if stage.get("alerts") else ""


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_ingest_bench(scale: str, console: Console | None = None) -> dict:
    """Ingest a generated brand from the three loopback sources into a fresh warehouse, then
    change 1 % of the orders and ingest again: rows/s and MB/s per source, the share of rows the
    second run touched, and CP932 decoding speed. One run (a full ingest at L takes minutes)."""
    from datetime import date

    import paramiko
    import sqlalchemy

    from .demo import DEMO_API_KEY, DEMO_SFTP_PASSWORD, DEMO_SFTP_USER, pinned_sftp
    from .landing import Lake, Warehouse
    from .servers import ecommerce, sftp
    from .sources.ecommerce import ShopClient, ingest_ecommerce
    from .sources.oms import ingest_oms
    from .sources.registry import load_registry
    from .sources.sftp_files import ingest_drops
    from .synth import generate
    from .synth.mutate import touch_orders

    work = paths.var_dir() / "bench" / f"ingest_{scale}"
    if work.exists():
        shutil.rmtree(work)
    brand = work / "sources"
    generate(brand, scale=scale, seed=42)
    registry = load_registry()
    wh = Warehouse(work / "warehouse.duckdb", Lake(work / "lake"))
    day = date(2026, 11, 1)
    stages = []

    def record(name: str, seconds: float, rows: int, source_bytes: int, extra: dict | None = None) -> None:
        stages.append(
            {
                "stage": name,
                "seconds": seconds,
                "rows": rows,
                "rows_per_second": rows / seconds,
                "source_mb": source_bytes / 2**20,
                "mb_per_second": source_bytes / 2**20 / seconds,
                **(extra or {}),
            }
        )
        if console:
            console.print(f"{name}: {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")

    def shop_run(run_id: str) -> tuple[float, int]:
        with ecommerce.serve_in_thread(
            brand / "ecommerce", api_key=DEMO_API_KEY, bucket_size=10**9, leak_per_second=10**9
        ) as shop:
            client = ShopClient(shop.base_url, DEMO_API_KEY)
            t0 = time.perf_counter()
            res = ingest_ecommerce(wh, registry.source("ecommerce"), client, run_id=run_id, load_date=day)
            return time.perf_counter() - t0, sum(r.rows for r in res.values())

    def oms_run(run_id: str) -> tuple[float, int]:
        engine = sqlalchemy.create_engine(f"sqlite:///{brand / 'oms' / 'oms.sqlite'}")
        t0 = time.perf_counter()
        res = ingest_oms(wh, registry.source("oms"), engine, run_id=run_id, load_date=day)
        engine.dispose()
        return time.perf_counter() - t0, sum(r.rows for r in res.values())

    sec, rows = shop_run("bench-1")
    record("ingest_ecommerce", sec, rows, _dir_bytes(brand / "ecommerce"))
    sec, rows = oms_run("bench-1")
    record("ingest_oms_sqlite", sec, rows, (brand / "oms" / "oms.sqlite").stat().st_size)

    drop_bytes = _dir_bytes(brand / "sftp")
    pos_bytes = sum(p.stat().st_size for p in (brand / "sftp" / "inbox" / "pos").glob("*.csv"))
    with sftp.serve_in_thread(
        brand / "sftp", username=DEMO_SFTP_USER, password=DEMO_SFTP_PASSWORD, host_key_path=work / "host_key"
    ) as drop:
        client: paramiko.SFTPClient = pinned_sftp(
            drop.host, drop.port, drop.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD
        )
        t0 = time.perf_counter()
        report = ingest_drops(
            wh,
            registry.source("sftp"),
            client,
            run_id="bench-1",
            load_date=day,
            now=datetime.now(UTC),
            workdir=work / "sftp_work",
        )
        sec = time.perf_counter() - t0
        client.close()
    con = wh.connect(read_only=True)
    sftp_rows = sum(
        con.execute(f'select count(*) from raw."sftp__{t}"').fetchone()[0]  # noqa: S608
        for t in registry.source("sftp").tables
    )
    con.close()
    record("ingest_sftp", sec, sftp_rows, drop_bytes, {"alerts": len(report.alerts())})

    # CP932: decoding alone, on the stores' sales files (the largest CP932 feed).
    raw = b"".join(p.read_bytes() for p in (brand / "sftp" / "processed" / "pos").glob("sales_*.csv"))
    t0 = time.perf_counter()
    raw.decode("cp932")
    sec = time.perf_counter() - t0
    record("decode_cp932", sec, raw.count(b"\n"), len(raw))
    del raw, pos_bytes

    # Re-ingest after 1 % of the orders changed.
    changed = touch_orders(brand, 0.01, seed=42, at=datetime(2026, 11, 1, 3))
    total = {}
    con = wh.connect(read_only=True)
    for t in ("ecommerce__orders", "oms__orders"):
        total[t] = con.execute(f'select count(*) from raw."{t}"').fetchone()[0]  # noqa: S608
    con.close()
    full = {st["stage"]: st["rows"] for st in stages}
    sec, rows = shop_run("bench-2")
    record(
        "reingest_ecommerce_1pct",
        sec,
        rows,
        0,
        {
            "changed": changed["ecommerce.orders"],
            "orders_total": total["ecommerce__orders"],
            "touched_share": rows / full["ingest_ecommerce"],
        },
    )
    sec, rows = oms_run("bench-2")
    record(
        "reingest_oms_1pct",
        sec,
        rows,
        0,
        {
            "changed": changed["oms.orders"],
            "orders_total": total["oms__orders"],
            "touched_share": rows / full["ingest_oms_sqlite"],
        },
    )
    return {
        "scale": f"ingest_{scale}",
        "repeat": 1,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "stages": stages,
    }
