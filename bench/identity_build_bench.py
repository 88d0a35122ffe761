"""Seconds and peak memory of the identity models alone, on a brand already built (issue 18's
goal: the identity build at L under 5 minutes on 2 cores).

    .venv/bin/python bench/identity_build_bench.py --work var/eval/L_daily/daily [--scale L] [--json FILE]

`--work` is a built run's folder: the daily-run bench leaves one at `<its --work>/daily`
(bench/daily_run_bench.py). Runs `dbt build` of `models/intermediate/identity` there (the 11
identity models, no tests), as the scheduled builds run dbt (two threads, DuckDB's memory limit
from YORISOI_DUCKDB_MEMORY_LIMIT), and prints the wall time, dbt's own elapsed time, the node
seconds per model and the peak memory of this process and dbt's child together.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from yorisoi_kit.bench import PeakRss
from yorisoi_kit.scale_run import ScaleRun, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a built run's folder")
    parser.add_argument("--scale", default="?", help="label for the output")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with PeakRss() as peak:
        built = build(
            ScaleRun(args.scale, args.work),
            select="path:models/intermediate/identity",
            exclude="resource_type:test resource_type:unit_test",
            quiet=True,
        )
    nodes = {r["node"]: r["seconds"] for r in built["nodes"] if r["node"].startswith("model.")}
    report = {
        "scale": args.scale,
        "wall_s": built["seconds"],
        "dbt_s": built["dbt_seconds"],
        "node_s": sum(nodes.values()),
        "peak_gb": peak.peak / 2**30,
        "load_at_start": load,
        "load_at_end": os.getloadavg()[0],
        "nodes": nodes,
    }
    print(
        f"identity models at {args.scale}: {report['wall_s']:.1f} s wall ({report['dbt_s']:.1f} s in dbt), "
        f"{report['node_s']:.1f} node s, peak {report['peak_gb']:.2f} GB, load {load:.1f}"
    )
    for node, seconds in sorted(nodes.items(), key=lambda kv: -kv[1]):
        print(f"  {node.split('.')[-1]:40} {seconds:7.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
