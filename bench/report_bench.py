"""Size and build time of the CRM report (yorisoi.report) at a scale, and the time of its parts.

    .venv/bin/python bench/report_bench.py --scale M           # var/eval/M, built when missing
    .venv/bin/python bench/report_bench.py --warehouse var/warehouse.duckdb

Prints JSON: warehouse, customers, the build's wall time with the Vega bundle already cached
(what every daily rebuild costs) and once cold (the first build on a machine makes the bundle),
seconds per part (queries, 顧客BS forecast, rendering both pages), bytes per file and in all.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import duckdb


def _warehouse(scale: str) -> Path:
    from yorisoi.transform import brand_as_of
    from yorisoi_kit.scale_run import build, prepare

    run = prepare(scale.upper())
    os.environ.setdefault("YORISOI_AS_OF", brand_as_of(run.work / "sources"))
    con = None
    try:
        con = duckdb.connect(str(run.warehouse), read_only=True)
        built = con.execute(
            "select count(*) from information_schema.tables where table_name = 'customer_segment_history'"
        ).fetchone()[0]
    finally:
        if con is not None:
            con.close()
    if not built:
        build(run, quiet=True)
    return run.warehouse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", help="XS, S, M or L: a brand under var/eval/<scale>")
    parser.add_argument("--warehouse", type=Path, help="an existing warehouse instead")
    parser.add_argument("--simulations", type=int, default=200)
    args = parser.parse_args()
    warehouse = args.warehouse or _warehouse(args.scale)

    from yorisoi.report import build as report_build
    from yorisoi.report.build import build_report, local_time_zone
    from yorisoi.report.data import Warehouse
    from yorisoi.report.strings import Text
    from yorisoi.report.views import assemble, collect

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        report_build.vega_bundle(cache)
        bundle_s = time.perf_counter() - t0

        parts = {}
        t0 = time.perf_counter()
        with Warehouse(warehouse) as wh:
            customers = wh.frame("select count(*) from marts.customer_status").iloc[0, 0]
            facts = collect(wh, time_zone=local_time_zone(), simulations=args.simulations)
        parts["queries_and_forecast"] = time.perf_counter() - t0
        for lang in ("ja", "en"):
            t0 = time.perf_counter()
            assemble(facts, Text(lang))
            parts[f"charts_{lang}"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        report = build_report(Path(tmp) / "report", warehouse=warehouse, simulations=args.simulations)
        warm_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "warehouse": str(warehouse),
                "customers": int(customers),
                "build_seconds_bundle_cached": round(warm_s, 2),
                "vega_bundle_seconds_first_build": round(bundle_s, 2),
                "parts_seconds": {k: round(v, 2) for k, v in parts.items()},
                "bytes": report.total_bytes,
                "files": report.files,
                "load": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
