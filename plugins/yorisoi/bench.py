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
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "reference": "reference_rfm_duckdb: one DuckDB query, per-customer R/F/M over the raw orders",
        "stages": stages,
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
    order = {"S": 0, "M": 1, "L": 2, "XS": -1}
    for path in sorted(res_dir.glob("*.json"), key=lambda p: order.get(p.stem, 9)):
        r = json.loads(path.read_text())
        m = r["machine"]
        lines += [
            f"## Scale {r['scale']} ({r['repeat']} runs, {r['measured_at']})",
            "",
            f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}, "
            f"DuckDB {m['duckdb']}.",
            "",
            "| stage | median s | rows | rows/s | peak RSS MB | × reference |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in r["stages"]:
            lines.append(
                f"| {s['stage']} | {s['seconds']:.3f} | {s['rows']:,} | {s['rows_per_second']:,.0f} | "
                f"{s['peak_rss_mb']:,.0f} | {s['ratio_to_reference']:.1f} |"
            )
        lines.append("")
    (folder / "RESULTS.md").write_text("\n".join(lines))
