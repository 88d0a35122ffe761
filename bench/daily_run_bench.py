"""Seconds of the daily run against a full rebuild, at one scale (issue 19, part 1).

    nice -n 10 .venv/bin/python bench/daily_run_bench.py [--scale S] [--seed 42] [--work var/eval/<scale>_daily]

The brand at the scale is generated and ingested once (yorisoi_kit.scale_run.prepare, cached under
var/eval/<scale>), copied into the work folder and built in full (the first build). Then a day of
change (yorisoi_kit.synth.daily: +0.5 % orders, 1 % changed customers, opt-outs, web events and
email sends) is applied to its sources and ingested through the real extractors, and the same
raw tables are built twice: incrementally (the daily run) and with --full-refresh (a full rebuild),
both with their dbt tests, as the customer build runs. Prints the seconds of each step, the ratio
of the daily run (ingest of the day + incremental build) to the full rebuild, the slowest nodes of
each build, and whether both builds hold the same rows (yorisoi_kit.daily_run.compare_builds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from yorisoi import paths
from yorisoi_kit.daily_run import build_day, compare_builds, copy_run, ingest_day
from yorisoi_kit.scale_run import prepare, using_var
from yorisoi_kit.synth.daily import apply_daily_change


def slowest(nodes: list[dict], n: int = 6) -> str:
    top = sorted(nodes, key=lambda r: -r["seconds"])[:n]
    return ", ".join(f"{r['node'].split('.')[-1]} {r['seconds']:.1f}" for r in top)


def where_time_goes(nodes: list[dict]) -> str:
    """dbt's node seconds summed by kind (they run one after another on one thread)."""
    kinds = {"models": "model.", "unit tests": "unit_test.", "data tests": "test.", "snapshot": "snapshot."}
    sums = {k: sum(r["seconds"] for r in nodes if r["node"].startswith(p)) for k, p in kinds.items()}
    return ", ".join(f"{k} {v:.1f} s" for k, v in sums.items()) + f" ({len(nodes)} nodes)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="S")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    scale = args.scale.upper()
    work = args.work or paths.var_dir() / "eval" / f"{scale}_daily"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    prepared = prepare(scale, seed=args.seed)
    daily = copy_run(prepared, work / "daily")
    print(f"scale {scale}, seed {args.seed}, load {os.getloadavg()[0]:.1f}")

    first_s = build_day(daily)["seconds"]
    print(f"first full build: {first_s:.1f} s")

    t0 = time.perf_counter()
    change = apply_daily_change(daily.work / "sources", seed=args.seed)
    change_s = time.perf_counter() - t0
    print(f"day {change['day']} generated in {change_s:.1f} s: {change['rows']}")
    with using_var(daily.work):
        t0 = time.perf_counter()
        ingested = ingest_day(daily, "day-1")
        ingest_s = time.perf_counter() - t0
    print(f"ingest of the day: {ingest_s:.1f} s (" + ", ".join(f"{i.source} {i.seconds:.1f} s" for i in ingested) + ")")

    rebuild = copy_run(daily, work / "rebuild", sources=False)
    results = {}
    for name, run, full_refresh in (("incremental", daily, False), ("full rebuild", rebuild, True)):
        built = build_day(run, full_refresh=full_refresh)
        results[name] = (built["seconds"], built["nodes"])
        print(f"{name} build: {built['seconds']:.1f} s; node seconds: {where_time_goes(built['nodes'])}")
        print(f"  slowest nodes: {slowest(built['nodes'])}")

    incremental_s, full_s = results["incremental"][0], results["full rebuild"][0]
    print(f"daily run (ingest + incremental build): {ingest_s + incremental_s:.1f} s")
    ratio = (ingest_s + incremental_s) / full_s
    print(f"ratio to the full rebuild: {ratio:.2f} (build alone {incremental_s / full_s:.2f})")
    for key in ("fct_orders", "fct_order_lines"):
        inc = sum(r["seconds"] for r in results["incremental"][1] if r["node"] == f"model.yorisoi.{key}")
        full = sum(r["seconds"] for r in results["full rebuild"][1] if r["node"] == f"model.yorisoi.{key}")
        print(f"  {key}: {inc:.2f} s incremental, {full:.2f} s full")
    diffs = {t: d for t, d in compare_builds(daily, rebuild).items() if d != (0, 0)}
    print("incremental equals the full rebuild" if not diffs else f"DIFFERENT tables: {diffs}")
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
