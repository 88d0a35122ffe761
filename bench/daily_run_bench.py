"""Seconds of the daily run against a full rebuild, at one scale (issue 19, part 1).

    nice -n 10 .venv/bin/python bench/daily_run_bench.py [--scale S] [--seed 42] [--work var/eval/<scale>_daily]
        [--no-rebuild] [--json FILE]

The brand at the scale is generated and ingested once (yorisoi_kit.scale_run.prepare, cached under
var/eval/<scale>), copied into the work folder and built in full (the first build). Then a day of
change (yorisoi_kit.synth.daily: +0.5 % orders, 1 % changed customers, opt-outs, web events and
email sends) is applied to its sources and ingested through the real extractors, and the same
raw tables are built twice: incrementally (the daily run) and with --full-refresh (a full rebuild),
both with their dbt tests, as the customer build runs; after the incremental build both quality
gates run (raw and marts, Great Expectations, judged on the next morning; not recorded). Prints
the seconds of each step, the ratio of the daily run (ingest of the day + incremental build, and
with the gates) to the full rebuild, the slowest nodes of each build, and whether both builds hold
the same rows (yorisoi_kit.daily_run.compare_builds).

Every step also prints its peak memory (this process and its children: dbt builds in a child
process), the first build's node seconds summed by part (the customer bench's and the segment
bench's parts), and, on the first build's warehouse, the analyst's pandas script and the
lower-bound query the segment layer is measured against (bench suite `segments`). With
--no-rebuild the separate full rebuild is skipped (at L each build takes many minutes) and the
first full build stands for it: the same models on one day less of data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
from rich.console import Console

from yorisoi import paths
from yorisoi.transform import brand_as_of
from yorisoi_kit.bench import CUSTOMER_STAGES, SEGMENT_STAGES, PeakRss, _segment_baselines
from yorisoi_kit.daily_run import build_day, compare_builds, copy_run, ingest_day
from yorisoi_kit.scale_run import prepare, using_var
from yorisoi_kit.synth.daily import apply_daily_change


def slowest(nodes: list[dict], n: int = 6) -> str:
    top = sorted(nodes, key=lambda r: -r["seconds"])[:n]
    return ", ".join(f"{r['node'].split('.')[-1]} {r['seconds']:.1f}" for r in top)


def where_time_goes(nodes: list[dict]) -> str:
    """dbt's node seconds summed by kind (two dbt threads: the sum exceeds the wall time)."""
    kinds = {"models": "model.", "unit tests": "unit_test.", "data tests": "test.", "snapshot": "snapshot."}
    sums = {k: sum(r["seconds"] for r in nodes if r["node"].startswith(p)) for k, p in kinds.items()}
    return ", ".join(f"{k} {v:.1f} s" for k, v in sums.items()) + f" ({len(nodes)} nodes)"


def run_gates(run, day) -> dict:
    """The two quality gates of the daily run, as the DAGs run them (yorisoi.quality.validate):
    the raw layer (before the customer model) and the marts (before activation), judged on the
    morning after `day`. Nothing is recorded in the history: the bench looks, it does not accept."""
    from yorisoi.quality.validate import validate

    morning = datetime.combine(date.fromisoformat(str(day)) + timedelta(days=1), dtime(6), ZoneInfo("Asia/Tokyo"))
    out = {}
    with using_var(run.work):
        for layer in ("raw", "marts"):
            result = validate(layer, warehouse=run.warehouse, now=morning, record=False)
            out[layer] = {
                "seconds": result.seconds,
                "gx_import_seconds": result.gx_import_seconds,
                "suites": len(result.suites),
                "rows_validated": sum(s.rows_validated for s in result.suites),
                "failed": [s.suite for s in result.failed],
            }
    return out


def node_seconds(nodes: list[dict]) -> dict[str, float]:
    """Every node's seconds, slowest first (for --json: where the time goes, node by node)."""
    return {r["node"]: round(r["seconds"], 3) for r in sorted(nodes, key=lambda r: -r["seconds"])}


# The campaign-outcome facts and readouts (issue 16 asks for their time against the segment build's).
CAMPAIGN_STAGES = {"campaign_outcomes": ("model.yorisoi.fct_campaign_", "model.yorisoi.campaign_")}


def by_part(nodes: list[dict]) -> dict[str, float]:
    """Node seconds by part of the pipeline; a node counts in the first part whose prefix it has."""
    parts: dict[str, float] = {}
    taken: tuple[str, ...] = ()
    for name, prefixes in {**CUSTOMER_STAGES, **SEGMENT_STAGES, **CAMPAIGN_STAGES}.items():
        if name in ("dbt_tests", "data_tests"):
            prefixes = ("test.yorisoi.",)
            name = "data_tests"
        parts[name] = parts.get(name, 0.0) + sum(
            r["seconds"] for r in nodes if r["node"].startswith(prefixes) and not r["node"].startswith(taken)
        )
        taken += prefixes
    parts["other"] = sum(r["seconds"] for r in nodes if not r["node"].startswith(taken))
    return parts


class Steps:
    """Each step's wall seconds and peak memory, printed as it ends and kept for --json."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def run(self, name: str, fn):
        with PeakRss() as mem:
            t0 = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t0
        self.rows[name] = {"seconds": seconds, "peak_rss_gb": mem.peak / 2**30, "load": os.getloadavg()[0]}
        print(f"[{name}] {seconds:.1f} s, peak {mem.peak / 2**30:.2f} GB, load {os.getloadavg()[0]:.1f}", flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="S")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--no-rebuild", action="store_true", help="the first full build stands for the rebuild")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    args = parser.parse_args()
    scale = args.scale.upper()
    work = args.work or paths.var_dir() / "eval" / f"{scale}_daily"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    steps = Steps()
    report: dict = {"scale": scale, "seed": args.seed, "load_at_start": os.getloadavg()[0], "steps": steps.rows}
    print(f"scale {scale}, seed {args.seed}, load {os.getloadavg()[0]:.1f}", flush=True)

    prepared = steps.run("generate_and_ingest", lambda: prepare(scale, seed=args.seed, console=Console()))
    if prepared.generated_s is not None:
        report["generated_s"] = prepared.generated_s
        report["ingest"] = [vars(i) for i in prepared.ingest]
        for i in prepared.ingest:
            print(f"  first load {i.source}: {i.rows:,} rows in {i.seconds:.1f} s ({i.rows / i.seconds:,.0f} rows/s)")
    daily = steps.run("copy", lambda: copy_run(prepared, work / "daily"))

    first = steps.run("first_full_build", lambda: build_day(daily))
    print(f"  node seconds: {where_time_goes(first['nodes'])}\n  slowest nodes: {slowest(first['nodes'], 12)}")
    report["first_build_parts"] = by_part(first["nodes"])
    print("  by part: " + ", ".join(f"{k} {v:.1f}" for k, v in report["first_build_parts"].items()))
    report["first_build_slowest"] = sorted(first["nodes"], key=lambda r: -r["seconds"])[:25]
    report["first_full_build_nodes"] = node_seconds(first["nodes"])
    with duckdb.connect(str(daily.warehouse), read_only=True) as con:
        counts = con.execute(
            "select (select count(*) from marts.bridge_customer_identities), "
            "(select count(distinct person_id) from marts.bridge_customer_identities), "
            "(select count(*) from marts.customer_traits), (select count(*) from marts.fct_orders), "
            "(select count(*) from marts.fct_order_lines)"
        ).fetchone()
    report["rows"] = dict(zip(("records", "people", "customers", "orders", "order_lines"), counts, strict=True))
    print(f"  rows: {report['rows']}")
    try:
        with using_var(daily.work):
            baselines = _segment_baselines(daily.warehouse, brand_as_of(daily.work / "sources"), counts[2])
        report["baselines"] = {b["stage"]: b["seconds"] for b in baselines}
    except RuntimeError as exc:
        report["baselines"] = {"error": str(exc)[:2000]}
    print(f"  baselines: {report['baselines']}", flush=True)

    change = steps.run("daily_change", lambda: apply_daily_change(daily.work / "sources", seed=args.seed))
    print(f"  day {change['day']}: {change['rows']}")
    report["day"] = {"day": str(change["day"]), "rows": change["rows"]}

    def ingest():
        with using_var(daily.work):
            return ingest_day(daily, "day-1")

    ingested = steps.run("ingest_of_the_day", ingest)
    print("  " + ", ".join(f"{i.source} {i.rows:,} rows {i.seconds:.1f} s" for i in ingested))

    rebuild = None if args.no_rebuild else copy_run(daily, work / "rebuild", sources=False)
    builds = {"incremental": (daily, False)} | ({} if rebuild is None else {"full_rebuild": (rebuild, True)})
    results = {"first_full_build": first}
    for name, (run, full_refresh) in builds.items():
        built = steps.run(name, lambda run=run, full_refresh=full_refresh: build_day(run, full_refresh=full_refresh))
        results[name] = built
        print(f"  node seconds: {where_time_goes(built['nodes'])}\n  slowest nodes: {slowest(built['nodes'], 12)}")
        report[f"{name}_parts"] = by_part(built["nodes"])
        report[f"{name}_nodes"] = node_seconds(built["nodes"])
        print("  by part: " + ", ".join(f"{k} {v:.1f}" for k, v in report[f"{name}_parts"].items()), flush=True)

    report["gates"] = steps.run("gates", lambda: run_gates(daily, change["day"]))
    for layer, gate in report["gates"].items():
        print(
            f"  gate {layer}: {gate['suites']} suites, {gate['rows_validated']:,} rows validated in "
            f"{gate['seconds']:.1f} s (+{gate['gx_import_seconds']:.1f} s importing GX); "
            f"failed: {gate['failed'] or 'none'}"
        )

    full_name = "first_full_build" if rebuild is None else "full_rebuild"
    full_s = steps.rows[full_name]["seconds"]
    daily_s = steps.rows["ingest_of_the_day"]["seconds"] + steps.rows["incremental"]["seconds"]
    report["ratio"] = daily_s / full_s
    with_gates = daily_s + steps.rows["gates"]["seconds"]
    report["ratio_with_gates"] = with_gates / full_s
    print(f"daily run (ingest + incremental build): {daily_s:.1f} s; with both gates {with_gates:.1f} s")
    print(
        f"ratio to the full rebuild ({full_name}): {daily_s / full_s:.2f} "
        f"(build alone {steps.rows['incremental']['seconds'] / full_s:.2f}, with the gates {with_gates / full_s:.2f})"
    )
    for key in ("fct_orders", "fct_order_lines"):
        inc = sum(r["seconds"] for r in results["incremental"]["nodes"] if r["node"] == f"model.yorisoi.{key}")
        full = sum(r["seconds"] for r in results[full_name]["nodes"] if r["node"] == f"model.yorisoi.{key}")
        print(f"  {key}: {inc:.2f} s incremental, {full:.2f} s full")
    if rebuild is not None:
        diffs = {t: d for t, d in compare_builds(daily, rebuild).items() if d != (0, 0)}
        report["equal"] = not diffs
        print("incremental equals the full rebuild" if not diffs else f"DIFFERENT tables: {diffs}")
    report["load_at_end"] = os.getloadavg()[0]
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
