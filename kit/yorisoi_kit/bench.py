"""The bench runner: named stages, wall time, rows/s and peak memory, medians over repeats, and
the ratio of each stage to a lower-bound reference measured in the same run.

The reference is the least work any pipeline must do with the raw orders: one hand-written DuckDB
query computing recency, frequency and monetary per source customer.
"""

from __future__ import annotations

import contextlib
import json
import os
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

from yorisoi import paths

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
    """Samples the resident memory of this process and of its children every 20 ms while a stage
    runs (dbt builds in a child process: yorisoi.transform.run_dbt). The peak is of their sum,
    which counts pages the processes share twice: an upper bound."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


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


# Sections of bench/RESULTS.md below this line are written by hand (profiles, one-off
# comparisons) and kept when the generated part above it is rewritten.
MEASURED_BY_HAND = "<!-- measured by hand: kept by write_results -->"


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
    order = {
        "S": 0,
        "M": 1,
        "L": 2,
        "ingest_S": 3,
        "ingest_M": 4,
        "ingest_L": 5,
        "customers_S": 6,
        "customers_M": 7,
        "customers_L": 8,
        "customers_L_customers_only": 9,
        "segments_S": 10,
        "segments_M": 11,
        "segments_L": 12,
    }
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
        if r["scale"].startswith("customers_"):
            lines += [
                f"{r['records']:,} source records → {r['people']:,} people; {r['orders']:,} orders. Node times of the "
                "rebuild, summed per part (the parts' nodes run one after another).",
                "",
                "| part | s | rows/s |",
                "|---|---:|---:|",
            ]
            lines += [f"| {s['stage']} | {s['seconds']:.2f} | {s['rows_per_second']:,.0f} |" for s in r["stages"]]
        elif r["scale"].startswith("segments_"):
            lines += [
                f"{r['customers']:,} customers, {r['orders']:,} orders, {r['order_lines']:,} order lines. The daily "
                "build's wall time and the part of it before dbt runs its first node, then its node times summed "
                "per part; the order lines loaded in full and "
                "incrementally (nothing new landed).",
                "",
                "| part | s | rows/s |",
                "|---|---:|---:|",
            ]
            lines += [f"| {s['stage']} | {s['seconds']:.2f} | {s['rows_per_second']:,.0f} |" for s in r["stages"]]
            if r.get("slowest_nodes"):
                lines += [
                    "",
                    "Slowest nodes of the daily build: "
                    + ", ".join(
                        f"{n['node'].split('.', 2)[2]} ({n['node'].split('.')[0]}) {n['seconds']:.2f} s"
                        for n in r["slowest_nodes"]
                    )
                    + ".",
                ]
        elif "ratio_to_reference" in r["stages"][0]:
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
    out = folder / "RESULTS.md"
    old = out.read_text() if out.is_file() else ""
    kept = old[old.index(MEASURED_BY_HAND) :] if MEASURED_BY_HAND in old else ""
    out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


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
    from yorisoi.sources.landing import Lake, Warehouse

    from .scale_run import ingest_back_office, ingest_drop_folder, ingest_shop
    from .synth import generate
    from .synth.mutate import touch_orders

    work = paths.var_dir() / "bench" / f"ingest_{scale}"
    if work.exists():
        shutil.rmtree(work)
    brand = work / "sources"
    generate(brand, scale=scale, seed=42)
    wh = Warehouse(work / "warehouse.duckdb", Lake(work / "lake"))
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
        t = ingest_shop(brand, wh, run_id)
        return t.seconds, t.rows

    def oms_run(run_id: str) -> tuple[float, int]:
        t = ingest_back_office(brand, wh, run_id)
        return t.seconds, t.rows

    sec, rows = shop_run("bench-1")
    record("ingest_ecommerce", sec, rows, _dir_bytes(brand / "ecommerce"))
    sec, rows = oms_run("bench-1")
    record("ingest_oms_sqlite", sec, rows, (brand / "oms" / "oms.sqlite").stat().st_size)

    drop_bytes = _dir_bytes(brand / "sftp")
    t = ingest_drop_folder(brand, wh, work, "bench-1")
    record("ingest_sftp", t.seconds, t.rows, drop_bytes)

    # CP932: decoding alone, on the stores' sales files (the largest CP932 feed).
    raw = b"".join(p.read_bytes() for p in (brand / "sftp" / "processed" / "pos").glob("sales_*.csv"))
    t0 = time.perf_counter()
    raw.decode("cp932")
    sec = time.perf_counter() - t0
    record("decode_cp932", sec, raw.count(b"\n"), len(raw))
    del raw

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
    return _one_run(f"ingest_{scale}", stages)


CUSTOMER_STAGES = {
    "staging": ("model.yorisoi.stg_",),
    "identity_resolution": ("model.yorisoi.int_identity_", "model.yorisoi.bridge_customer_identities"),
    "consent_and_exclusions": (
        "model.yorisoi.int_callcenter_",
        "model.yorisoi.int_consent_",
        "model.yorisoi.consent_ledger",
        "model.yorisoi.deliverable_",
        "model.yorisoi.erasure_",
    ),
    "golden_record": ("model.yorisoi.dim_customers", "snapshot.yorisoi.customers_snapshot"),
    "orders": ("model.yorisoi.int_pos_", "model.yorisoi.fct_orders"),
    "analytics": ("model.yorisoi.customer_profiles", "model.yorisoi.orders"),
    "dbt_tests": ("test.yorisoi.",),
}


def run_customer_bench(scale: str, console: Console | None = None, scope: str = "all") -> dict:
    """The customer layer (dbt) on a brand generated and ingested at `scale` (var/eval/<scale>):
    wall time of a first build and of a rebuild (person IDs read from the previous one), and the
    summed node times of each part. Nodes of one part run one after another (each depends on the
    last), so the identity figure is the time identity resolution takes. Scope "customers" leaves
    the order tables out (see yorisoi_kit.scale_run.CUSTOMER_TABLES)."""
    from yorisoi.transform import SEGMENT_LAYER

    from .scale_run import build, prepare

    run = prepare(scale, scope=scope, console=console)
    con = duckdb.connect(str(run.warehouse))
    con.execute("drop schema if exists intermediate cascade")  # a first build: no previous person IDs
    con.close()
    first = build(run, exclude=SEGMENT_LAYER, quiet=True)
    second = build(run, exclude=SEGMENT_LAYER, quiet=True)
    con = duckdb.connect(str(run.warehouse), read_only=True)
    records, people = con.execute(
        "select count(*), count(distinct person_id) from marts.bridge_customer_identities"
    ).fetchall()[0]
    orders = con.execute("select count(*) from marts.fct_orders").fetchall()[0][0] if scope == "all" else 0
    con.close()
    stages = [
        {"stage": "dbt_build_first", "seconds": first["seconds"], "rows": records},
        {"stage": "dbt_build_rerun", "seconds": second["seconds"], "rows": records},
    ]
    for name, prefixes in CUSTOMER_STAGES.items():
        seconds = sum(n["seconds"] for n in second["nodes"] if n["node"].startswith(prefixes))
        stages.append({"stage": name, "seconds": seconds, "rows": orders if name == "orders" else records})
    for s in stages:
        s["rows_per_second"] = s["rows"] / s["seconds"] if s["seconds"] else 0.0
        if console:
            console.print(f"{s['stage']}: {s['seconds']:.1f} s")
    return _one_run(
        f"customers_{scale}" + ("" if scope == "all" else "_customers_only"),
        stages,
        records=records,
        people=people,
        orders=orders,
        scope=scope,
        ingest=[vars(t) for t in run.ingest],
    )


# Parts of the daily build; a node counts in the first part whose prefix it has.
SEGMENT_STAGES = {
    "predicted_clv": ("model.yorisoi.customer_clv",),
    "segments": ("model.yorisoi.customer_", "model.yorisoi.product_abc", "model.yorisoi.segment_rfm"),
    "retention": ("model.yorisoi.f_", "model.yorisoi.cohort_retention", "model.yorisoi.revenue_retention"),
    "triggers": ("model.yorisoi.trigger_",),
    "targeting": ("model.yorisoi.segment_4r",),
    "data_tests": ("test.yorisoi.",),
    "unit_tests": ("unit_test.yorisoi.",),
}


def run_segment_bench(scale: str, console: Console | None = None) -> dict:
    """The segment marts (dbt tags segments, retention, triggers, targeting) on a brand generated
    and ingested at `scale`, after the customer layer: wall time of the daily build and the summed
    node times of each part; and the order lines, the largest table under them, loaded in full
    and then incrementally with nothing new landed (what a daily run costs)."""
    from yorisoi.transform import SEGMENT_LAYER

    from .scale_run import build, prepare

    run = prepare(scale, console=console)
    build(run, exclude=SEGMENT_LAYER, quiet=True)
    full = build(run, select="fct_order_lines", full_refresh=True, quiet=True)
    incremental = build(run, select="fct_order_lines", quiet=True)
    daily = build(run, select=SEGMENT_LAYER, quiet=True)
    con = duckdb.connect(str(run.warehouse), read_only=True)
    customers, lines, orders = con.execute(
        "select (select count(*) from marts.customer_traits), (select count(*) from marts.fct_order_lines), "
        "(select count(*) from marts.fct_orders)"
    ).fetchall()[0]
    con.close()

    def node_seconds(result: dict, prefixes: tuple[str, ...], taken: tuple[str, ...] = ()) -> float:
        return sum(
            n["seconds"] for n in result["nodes"] if n["node"].startswith(prefixes) and not n["node"].startswith(taken)
        )

    line_model = ("model.yorisoi.fct_order_lines",)
    stages = [
        {"stage": "order_lines_full_refresh", "seconds": node_seconds(full, line_model), "rows": lines},
        {
            "stage": "order_lines_incremental_nothing_new",
            "seconds": node_seconds(incremental, line_model),
            "rows": lines,
        },
        {"stage": "segment_marts_daily_build", "seconds": daily["seconds"], "rows": customers},
        # Before dbt runs its first node: process start, dbt import, project read (bench/RESULTS.md).
        {"stage": "dbt_invocation", "seconds": daily["seconds"] - daily["dbt_seconds"], "rows": customers},
    ]
    taken: tuple[str, ...] = ()
    for name, prefixes in SEGMENT_STAGES.items():
        stages.append({"stage": name, "seconds": node_seconds(daily, prefixes, taken), "rows": customers})
        taken += prefixes
    stages += _segment_baselines(run.warehouse, os.environ["YORISOI_AS_OF"], customers)
    for s in stages:
        s["rows_per_second"] = s["rows"] / s["seconds"] if s["seconds"] else 0.0
        if console:
            console.print(f"{s['stage']}: {s['seconds']:.2f} s")
    slowest = sorted(daily["nodes"], key=lambda n: -n["seconds"])[:10]
    return _one_run(
        f"segments_{scale}",
        stages,
        customers=customers,
        orders=orders,
        order_lines=lines,
        slowest_nodes=[{"node": n["node"], "seconds": n["seconds"]} for n in slowest],
    )


def _segment_baselines(warehouse: Path, as_of: str, customers: int) -> list[dict]:
    """What the segment layer is measured against, on the same warehouse: an analyst's pandas
    script (yorisoi_kit.pandas_baseline, checked to give the marts' answers) and the lower bound,
    one DuckDB query of R, F and M by person over the same identity-resolved orders."""
    from .pandas_baseline import compare, compute

    baseline = compute(warehouse, as_of)
    mismatches = compare(baseline, warehouse)
    if any(mismatches.values()):
        raise RuntimeError(f"the pandas baseline and the marts disagree: {mismatches}")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        started = time.perf_counter()
        con.execute(
            "select person_id, count(*), sum(total), max(ordered_at) from marts.fct_orders "
            "where is_counted and person_id is not null group by person_id"
        ).fetchall()
        lower_bound = time.perf_counter() - started
    return [
        {"stage": "pandas_baseline", "seconds": baseline.seconds, "rows": customers},
        {"stage": "lower_bound_rfm_by_person", "seconds": lower_bound, "rows": customers},
    ]


def _one_run(name: str, stages: list[dict], **extra) -> dict:
    """Results of a suite measured once (a second run would take as long as the first)."""
    return {
        "scale": name,
        "repeat": 1,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        **extra,
        "stages": stages,
    }
