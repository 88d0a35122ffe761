"""What the weekly reconciliation costs (docs/reliability.md #18, `yorisoi sources reconcile`).

    .venv/bin/python bench/reconcile_bench.py [--scale M] [--corrections 0.001]

Generates the brand at `scale` (under var/eval/reconcile_<scale>, reused when already there),
lands the whole OMS through the incremental extractor, then changes `--corrections` of the OMS
orders in the source database the way a late back-office correction does: a new status and total
with the old `updated_at`, older than the overlap window, so no incremental read will ever see it.
Then times `reconcile_oms` over every OMS table and checks that raw holds every correction.

Prints, per table: source rows, changed keys found, rows landed and seconds; then the totals and
rows/s, with the load average before and after (the machine is shared: the figures are upper
bounds when the load is above the core count).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from datetime import date

import duckdb


def _load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="S")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--corrections", type=float, default=0.001, help="share of OMS orders corrected late")
    args = parser.parse_args()

    import sqlalchemy as sa

    from yorisoi import paths
    from yorisoi.sources.catalog import init_raw_tables
    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi.sources.reconcile import reconcile_oms
    from yorisoi.sources.registry import load_registry
    from yorisoi_kit.scale_run import LOAD_DATE, ingest_back_office
    from yorisoi_kit.synth import generate

    work = paths.var_dir() / "eval" / f"reconcile_{args.scale}"
    brand, stamp = work / "sources", work / "generated.json"
    wanted = {"scale": args.scale, "seed": args.seed}
    if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
        t0 = time.perf_counter()
        generate(brand, scale=args.scale, seed=args.seed)
        stamp.write_text(json.dumps(wanted))
        print(f"generated {args.scale} in {time.perf_counter() - t0:.0f} s")
    warehouse = work / "warehouse.duckdb"
    warehouse.unlink(missing_ok=True)
    wh = Warehouse(warehouse, Lake(work / "lake"))
    init_raw_tables(wh)
    print(f"load before: {_load()}")
    ingest = ingest_back_office(brand, wh, "bench-1")
    print(f"OMS incremental ingest: {ingest.rows:,} rows in {ingest.seconds:.1f} s")

    oms = brand / "oms" / "oms.sqlite"
    con = sqlite3.connect(oms)
    try:
        total = con.execute("select count(*) from orders").fetchone()[0]
        picked = max(int(total * args.corrections), 1)
        rows = con.execute(
            "select order_no from orders where status <> 'returned' order by random() limit ?", [picked]
        ).fetchall()
        corrected = [r[0] for r in rows]
        con.executemany("update orders set status = 'returned', total = 0 where order_no = ?", rows)
        con.commit()
    finally:
        con.close()
    print(f"corrected {len(corrected):,} of {total:,} orders in the OMS, updated_at left as it was")

    engine = sa.create_engine(f"sqlite:///{oms}")
    try:
        t0 = time.perf_counter()
        results = reconcile_oms(
            wh, load_registry().source("oms"), engine, run_id="bench-reconcile", load_date=LOAD_DATE
        )
        seconds = time.perf_counter() - t0
    finally:
        engine.dispose()
    print("| table | source rows | changed | missing | landed | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r.source_rows:,} | {r.changed:,} | {r.missing:,} | {r.landed:,} | {r.seconds:.1f} |")
    rows_read = sum(r.source_rows for r in results.values())
    print(f"reconciliation: {rows_read:,} rows in {seconds:.1f} s ({rows_read / seconds:,.0f} rows/s)")

    check = duckdb.connect(str(warehouse), read_only=True)
    try:
        check.execute("create temp table corrected (order_id varchar)")
        check.executemany("insert into corrected values (?)", [[c] for c in corrected])
        landed = check.execute(
            "select count(*) from raw.oms__orders o join corrected c using (order_id) where o.status = 'returned'"
        ).fetchone()[0]
    finally:
        check.close()
    print(f"corrections in raw after reconciliation: {landed:,} of {len(corrected):,}")
    print(f"load after: {_load()}; run on {date.today().isoformat()}")
    if landed != len(corrected):
        raise SystemExit("reconciliation missed corrections")


if __name__ == "__main__":
    main()
