"""What retention (``ActivationStore.prune``) does to the activation store's size, and how long a
prune takes, on SQLite.

    .venv/bin/python bench/activation_retention_bench.py [--recipients 5000] [--weeks 208] [--rows 1000000]

1. **Size.** One audience sent weekly to a send-type destination (email keys): every run writes
   its members, claims and settles every recipient in the ledger (changelog, snapshot) and records
   the sync run, through the store's own methods, with the run's time as "now". Two stores get the
   same runs; one is pruned after every run with the default retention of
   include/destinations.yml. Printed: rows and bytes per table at the end, and bytes per
   recipient per run (the whole history, and the last year's growth).
2. **Prune time.** A store holding ``--rows`` changelog rows (runs older than the retention), as
   many old ledger rows (folded, then deleted) and as many old member rows, plus a quarter as many
   recent rows of each: the seconds of each statement of one prune (each table is one transaction,
   so a statement's time is how long other writers wait for the lock).
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from yorisoi.activation.delivery.store import ActivationStore, Claim, metadata
from yorisoi.activation.selection.definitions import Retention, load_destinations

START = datetime(2022, 1, 2, 1, 0, tzinfo=UTC)  # a Sunday, 10:00 in Tokyo
BATCH = 10_000


def recipients(n: int, offset: int = 0) -> tuple[list[str], list[str]]:
    people = [f"P{i:019x}" for i in range(offset, offset + n)]
    return [f"customer{i:07d}@example.jp" for i in range(offset, offset + n)], people


def send_batch(
    store: ActivationStore,
    run_id: str,
    claim_id: str,
    interval: str,
    keys: list[str],
    people: list[str],
    at: datetime,
    snapshot: str | None = "upsert",
) -> None:
    """One confirmed batch of an email export: claimed in the ledger, then settled as sent."""
    store.claim(
        audience="weekly",
        destination="smtp_email",
        channel="email",
        interval=interval,
        keys=keys,
        person_ids=people,
        claim_id=claim_id,
        owner=run_id,
        now=at,
    )
    store.settle(
        run_id=run_id,
        audience="weekly",
        destination="smtp_email",
        operation="add",
        at=at,
        keys=keys,
        person_ids=people,
        claim=Claim("email", interval, run_id, claim_id, whole_group=True),
        snapshot=snapshot,
    )


def one_run(store: ActivationStore, week: int, keys: list[str], people: list[str]) -> None:
    """What a weekly export of the audience writes."""
    at = START + timedelta(weeks=week)
    interval = at.date().isoformat()
    run_id = f"weekly-{week:04d}"
    store.write_members(
        {"run_id": run_id, "audience": "weekly", "person_id": p, "grp": "treatment", "variant": "A", "computed_at": at}
        for p in people
    )
    store.start_run(run_id, audience="weekly", destination="smtp_email", interval=interval, mode="diff", started_at=at)
    for part in range(0, len(keys), BATCH):
        send_batch(
            store, run_id, f"{run_id}-{part}", interval, keys[part : part + BATCH], people[part : part + BATCH], at
        )
    store.finish_run(run_id, status="succeeded", counts={"adds": len(keys), "delivered": len(keys)}, finished_at=at)


def used_bytes(store: ActivationStore) -> int:
    """Pages in use (a pruned SQLite file keeps its size; the freed pages are reused)."""
    with store.engine.connect() as conn:
        pages, free, size = (
            conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("page_count", "freelist_count", "page_size")
        )
    return (pages - free) * size


def table_bytes(store: ActivationStore) -> dict[str, tuple[int, int]]:
    """(rows, bytes with its indexes) per table (SQLite's dbstat)."""
    out = {}
    with store.engine.connect() as conn:
        sizes: dict[str, int] = defaultdict(int)
        indexes = {
            name: table
            for name, table in conn.exec_driver_sql(
                "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
            )
        }
        for name, pgsize in conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            sizes[indexes.get(name, name)] += pgsize
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            out[table.name] = (int(rows), sizes[table.name])
    return out


def size_bench(folder: Path, n: int, weeks: int, retention: Retention) -> None:
    keys, people = recipients(n)
    whole = ActivationStore(f"sqlite:///{folder / 'whole.sqlite'}")
    pruned = ActivationStore(f"sqlite:///{folder / 'pruned.sqlite'}")
    year_ago: dict[str, int] = {}
    t0 = time.perf_counter()
    for week in range(weeks):
        for store in (whole, pruned):
            one_run(store, week, keys, people)
        pruned.prune(START + timedelta(weeks=week, hours=1), retention)
        if week == weeks - 53:
            year_ago = {"whole": used_bytes(whole), "pruned": used_bytes(pruned)}
    print(
        f"\n## Size: {n:,} recipients, {weeks} weekly runs ({weeks / 52:.1f} years), {time.perf_counter() - t0:.0f} s"
    )
    print(f"retention: {retention.model_dump()}\n")
    print("| table | rows, never pruned | bytes | rows, pruned weekly | bytes |")
    print("|---|---:|---:|---:|---:|")
    w, p = table_bytes(whole), table_bytes(pruned)
    for name in w:
        print(f"| {name} | {w[name][0]:,} | {w[name][1]:,} | {p[name][0]:,} | {p[name][1]:,} |")
    for label, store in (("whole", whole), ("pruned", pruned)):
        total = used_bytes(store)
        growth = (total - year_ago[label]) / (n * 52) if year_ago else float("nan")
        print(
            f"\n{label:>6}: {total / 1e6:,.1f} MB in use; {total / (n * weeks):,.0f} B per recipient per run over "
            f"the whole history; the last 52 runs added {growth:,.0f} B per recipient per run"
        )
    whole.close()
    pruned.close()


def prune_time_bench(folder: Path, rows: int, retention: Retention) -> None:
    store = ActivationStore(f"sqlite:///{folder / 'prune.sqlite'}")
    now = START + timedelta(days=retention.sync_days + 30)
    t0 = time.perf_counter()
    per_run = 10_000
    for i, old in enumerate([True] * (rows // per_run) + [False] * (rows // per_run // 4)):
        keys, people = recipients(per_run, offset=(i % 10) * per_run)  # the same 100,000 people come back
        at = START + timedelta(days=i % 30) if old else now - timedelta(days=1 + i % 30)
        run_id = f"run-{i:05d}"
        interval = f"{at.date().isoformat()}-{i:05d}"  # one run interval per run
        store.start_run(
            run_id, audience="weekly", destination="smtp_email", interval=interval, mode="diff", started_at=at
        )
        send_batch(store, run_id, run_id, interval, keys, people, at, snapshot=None)
        store.write_members(
            {
                "run_id": run_id,
                "audience": "weekly",
                "person_id": p,
                "grp": "treatment",
                "variant": None,
                "computed_at": at,
            }
            for p in people
        )
    built = time.perf_counter() - t0
    print(f"\n## Prune time: {rows:,} old rows per table (+ {rows // 4:,} recent), built in {built:.0f} s")
    before = table_bytes(store)
    timings: list[tuple[str, float]] = []
    exec_ = ActivationStore._exec

    def timed(conn: Any, sql: str, params: Any, times: Any = ()) -> Any:
        t = time.perf_counter()
        try:
            return exec_(conn, sql, params, times)
        finally:
            timings.append((" ".join(sql.split()[:3]), time.perf_counter() - t))

    ActivationStore._exec = staticmethod(timed)  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        planned = store.prune(now, retention, dry_run=True)
        dry = time.perf_counter() - t
        timings.clear()
        t = time.perf_counter()
        counts = store.prune(now, retention)
        total = time.perf_counter() - t
    finally:
        ActivationStore._exec = staticmethod(exec_)  # type: ignore[method-assign]
    if planned != counts:
        raise SystemExit(f"the dry run planned {planned}, the prune deleted {counts}")
    print(f"dry run: {dry:.2f} s; prune: {total:.2f} s; deleted {counts}\n")
    print("| statement | seconds |")
    print("|---|---:|")
    for what, seconds in timings:
        print(f"| {what} | {seconds:.2f} |")
    after = table_bytes(store)
    print("\n| table | rows before | rows after |")
    print("|---|---:|---:|")
    for name in before:
        print(f"| {name} | {before[name][0]:,} | {after[name][0]:,} |")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--weeks", type=int, default=208)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    retention = load_destinations().retention
    print(
        f"# Activation store retention ({platform.platform()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version})"
    )
    with tempfile.TemporaryDirectory(prefix="yorisoi-retention-") as tmp:
        size_bench(Path(tmp), args.recipients, args.weeks, retention)
        prune_time_bench(Path(tmp), args.rows, retention)


if __name__ == "__main__":
    main()
