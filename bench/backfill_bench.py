"""The first load (backfill) of a brand's three sources, rows/s per source, with the shop read both
ways in the same run: the paged REST walk and one bulk operation per endpoint.

    .venv/bin/python bench/backfill_bench.py [--scale S] [--repeat 1]

Prints one line per stage and a summary. Each shop read lands into a fresh warehouse; the shop
stand-in runs in a process of its own, so "cpu" is the client's own CPU and the stand-in's is
printed apart (in one process, the stand-in's thread took about three quarters of the CPU of a
REST walk). The bulk read is timed twice: cold (the stand-in exports the JSONL while the client
polls, as a shop would) and warm (the stand-in already wrote that file: what is left is the
client's download, parse, flatten, checks and landing), with its wait for the operation and its
download split out. The L lines are extrapolations from the rates measured here (L's row counts
from issue 19's L run), not measurements. Loopback, no rate limit; the machine's load is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

L_ROWS = {"ecommerce": 28_000_000, "oms": 9_000_000, "sftp": 18_000_000}
"""Rows at L per source, as the L run of issue 19 counted them (shop ~28 M, OMS 9 M, SFTP 18 M)."""
L_MEASURED_S = {"oms": 75.0, "sftp": 99.0}
"""The OMS and SFTP ingests as that L run measured them: both have fixed costs per file or table
that a small scale overstates, so their S rates extrapolate badly."""


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _line(label: str, rows: int, seconds: float, cpu: float, extra: str = "") -> None:
    print(
        f"{label:18} {rows:>11,} rows {seconds:8.1f} s {rows / seconds:>10,.0f} rows/s  cpu {cpu:7.1f} s "
        f"({rows / cpu:>8,.0f} rows/cpu-s){extra}  load {_load()}"
    )


def _cpu() -> float:
    """CPU seconds of this process (all its threads: the client, DuckDB, and the OMS / SFTP stand-ins
    it runs; the shop stand-in runs in a process of its own, counted apart)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _shop(brand: Path, work: Path, read: str, until: datetime, shop) -> dict:
    from yorisoi.sources.ecommerce import ShopClient, ingest_ecommerce
    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi.sources.registry import load_registry
    from yorisoi_kit.demo import DEMO_API_KEY

    folder = work / f"shop_{read}_{time.monotonic_ns()}"
    wh = Warehouse(folder / "warehouse.duckdb", Lake(folder / "lake"))
    phases = {"wait_s": 0.0, "download_s": 0.0}
    with ShopClient(shop.base_url, DEMO_API_KEY, poll_interval=0.05) as client:
        run_bulk, download = client.run_bulk, client.download

        def timed_run_bulk(query: str) -> dict:
            t0 = time.perf_counter()
            try:
                return run_bulk(query)
            finally:
                phases["wait_s"] += time.perf_counter() - t0

        def timed_download(url: str, sink) -> int:
            t0 = time.perf_counter()
            try:
                return download(url, sink)
            finally:
                phases["download_s"] += time.perf_counter() - t0

        client.run_bulk, client.download = timed_run_bulk, timed_download  # type: ignore[method-assign]
        t0, c0, s0 = time.perf_counter(), _cpu(), shop.cpu_seconds()
        results = ingest_ecommerce(
            wh, load_registry().source("ecommerce"), client, run_id="backfill", load_date=until.date(),
            until=until, read=read, workdir=folder,
        )  # fmt: skip
        seconds, cpu, server = time.perf_counter() - t0, _cpu() - c0, shop.cpu_seconds() - s0
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "seconds": seconds,
        "cpu": cpu,
        "server_cpu": server,
        "rows": sum(r.rows for r in results.values()),
        **phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="S")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each shop read (the median is printed)")
    args = parser.parse_args()

    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi_kit.demo import DEMO_API_KEY
    from yorisoi_kit.scale_run import ingest_back_office, ingest_drop_folder
    from yorisoi_kit.servers import ecommerce
    from yorisoi_kit.synth import generate

    work = Path(tempfile.mkdtemp(prefix=f"backfill-{args.scale}-"))
    try:
        print(f"scale {args.scale}; load average at start {_load()}")
        brand = work / "sources"
        generate(brand, scale=args.scale, seed=42)
        until = datetime(2026, 12, 1, tzinfo=UTC)
        rows: dict[str, float] = {}
        cpu_rate: dict[str, float] = {}
        with ecommerce.serve_in_process(
            brand / "ecommerce", api_key=DEMO_API_KEY, bucket_size=10**9, leak_per_second=10**9
        ) as shop:
            for label, read in (("shop REST walk", "rest"), ("shop bulk (cold)", "bulk"), ("shop bulk (warm)", "bulk")):
                runs = [_shop(brand, work, read, until, shop) for _ in range(args.repeat)]
                best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
                extra = f"  server CPU {best['server_cpu']:.1f} s"
                if read == "bulk":
                    extra += (
                        f"  (waiting for the operation {best['wait_s']:.1f} s, download {best['download_s']:.1f} s)"
                    )
                rows[label] = best["rows"] / best["seconds"]
                cpu_rate[label] = best["rows"] / best["cpu"]
                _line(label, best["rows"], best["seconds"], best["cpu"], extra)
        wh = Warehouse(work / "wh" / "warehouse.duckdb", Lake(work / "wh" / "lake"))
        c0 = _cpu()
        oms = ingest_back_office(brand, wh, "backfill")
        rows["oms"], cpu_rate["oms"] = oms.rows / oms.seconds, oms.rows / (_cpu() - c0)
        _line("OMS (SQLite)", oms.rows, oms.seconds, _cpu() - c0)
        c0 = _cpu()
        drops = ingest_drop_folder(brand, wh, work, "backfill")
        rows["sftp"], cpu_rate["sftp"] = drops.rows / drops.seconds, drops.rows / (_cpu() - c0)
        _line("SFTP drops", drops.rows, drops.seconds, _cpu() - c0)
        print()
        for basis, rate in (("wall time at this load", rows), ("CPU time, one core busy per source", cpu_rate)):
            print(f"EXTRAPOLATION to L from {basis} (rows at L / rows per second here; NOT measured at L):")
            total = {"REST": 0.0, "bulk": 0.0}
            for label, key in (("shop REST walk", "ecommerce"), ("shop bulk (warm)", "ecommerce"), ("OMS", "oms"),
                               ("SFTP", "sftp")):  # fmt: skip
                seconds = L_ROWS[key] / rate[label if key == "ecommerce" else key]
                print(f"  {label:18} {L_ROWS[key]:>11,} rows  ~{seconds / 60:6.1f} min")
                for way in total:
                    if key != "ecommerce" or way in label:
                        total[way] += seconds
            rest, bulk = total["REST"] / 60, total["bulk"] / 60
            print(f"  all three, shop by REST ~{rest:.1f} min, by bulk ~{bulk:.1f} min (goal: under 10)")
        shop = L_ROWS["ecommerce"] / cpu_rate["shop bulk (warm)"]
        others = sum(L_MEASURED_S.values())
        print(
            f"EXTRAPOLATION, mixed: the shop by bulk at L from CPU time here (~{shop / 60:.1f} min) + OMS and SFTP "
            f"as issue 19's L run measured them ({others:.0f} s): ~{(shop + others) / 60:.1f} min (goal: under 10)"
        )
        print(f"load average at end {_load()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
