# ruff: noqa: S608 - the bench's own fixed table names
"""Time the audience step of activation on a synthetic warehouse: membership (selection ∩
deliverable, keyed-hash group and variant), arbitration across audiences (frequency caps with a
ledger of past sends, priorities, exits) and the records of one destination.

    .venv/bin/python bench/activation_audiences_bench.py --people 200000 --people 1000000

Prints one line per size and stage (seconds, rows per second). Writes nothing outside a
temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import yaml

from yorisoi.activation.selection.arbitration import arbitrate
from yorisoi.activation.selection.definitions import load_audience, load_destinations
from yorisoi.activation.selection.membership import build_records, connect_warehouse, eligible_members

SECRET = b"bench-secret-0123456789abcdef0123"
AS_OF = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


class LedgerStub:
    """sent_counts from a precomputed dict (the store's query is timed by the engine's bench)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def sent_counts(self, channel: str, since: datetime) -> dict[str, int]:
        return self.counts if channel == "email" else {}

    def send_history(self, audiences: list[str]) -> list[dict]:
        return []


def build_warehouse(path: Path, people: int) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.execute(
        f"""
        create table marts.dim_customers as
        select 'P' || lpad(i::varchar, 8, '0') as person_id, '顧客' || i as full_name, 'コキャク' as name_kana,
               'p' || i || '@example.jp' as email, '+8190' || lpad(i::varchar, 8, '0') as phone,
               '1500041' as postal_code, '東京都' as prefecture, '渋谷区' || i as address,
               'U' || lpad(i::varchar, 32, '0') as line_user_id,
               i % 500 = 0 as is_test_account, i % 301 = 0 as is_blacklisted, false as is_erased
        from range({people}) t(i)
        """
    )
    con.execute(
        """
        create table marts.deliverable_customers as
        select person_id, channel from marts.dim_customers, (values ('email'), ('line'), ('dm')) c(channel)
        where hash(person_id || channel) % 10 < 7
        """
    )
    for name, share in (("trigger_cart_abandonment", 3), ("trigger_dormant_winback", 5), ("customer_status", 10)):
        con.execute(
            f"create table marts.{name} as select person_id, 'x' as last_product_name, 'vip' as status, "
            "9000 as lifetime_spend "
            f"from marts.dim_customers where hash(person_id || '{name}') % 10 < {share}"
        )
    con.close()


def audiences(folder: Path):
    destinations = load_destinations()
    out = []
    for name, mart, priority in (
        ("bench_cart", "trigger_cart_abandonment", 1),
        ("bench_winback", "trigger_dormant_winback", 2),
        ("bench_vip", "customer_status", 3),
    ):
        spec = {
            "name": name,
            "owner": "bench",
            "description": "bench",
            "selection": {"mart": mart},
            "channels": ["email", "dm"],
            "destinations": [
                {"name": "esp_list", "columns": ["full_name", "variant"]},
                {"name": "sftp_dm_list", "columns": ["full_name", "postal_code", "prefecture", "address", "variant"]},
            ],
            "priority": priority,
            "holdout_percent": 10,
            "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
            "columns": ["full_name", "postal_code", "prefecture", "address", "variant"],
            "frequency_cap": {"max_messages": 2, "period_days": 7},
        }
        path = folder / f"{name}.yml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
        out.append(load_audience(path, destinations))
    return out, destinations


def bench(people: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        build_warehouse(folder / "warehouse.duckdb", people)
        print(f"people={people:,} warehouse built in {time.perf_counter() - t0:.1f} s")
        auds, destinations = audiences(folder)
        con = connect_warehouse(folder / "warehouse.duckdb")
        t0 = time.perf_counter()
        contenders = [(a, eligible_members(a, con, SECRET)) for a in auds]
        seconds = time.perf_counter() - t0
        members = sum(len(m) for _, m in contenders)
        print(
            f"people={people:,} membership       {seconds:7.2f} s  {members:>9,} members  {members / seconds:>10,.0f}/s"
        )
        ledger = {pid: 1 + i % 3 for i, pid in enumerate(contenders[0][1].frame["person_id"].iloc[::4])}
        t0 = time.perf_counter()
        allocation = arbitrate(
            contenders,
            store=LedgerStub(ledger),
            as_of=AS_OF - timedelta(0),
            default_caps=destinations.frequency_caps,
            con=con,
        )
        seconds = time.perf_counter() - t0
        print(
            f"people={people:,} arbitration      {seconds:7.2f} s  {len(allocation.sends):>9,} sends    "
            f"{members / seconds:>10,.0f} members/s"
        )
        a = auds[1]
        ids = allocation.person_ids(a.name, "dm")
        t0 = time.perf_counter()
        records = build_records(a, destinations["sftp_dm_list"], ids, con, variants=allocation.variants(a.name))
        seconds = time.perf_counter() - t0
        n = len(records.records)
        print(f"people={people:,} records (DM)     {seconds:7.2f} s  {n:>9,} records  {n / seconds:>10,.0f}/s")
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, action="append", help="warehouse sizes (repeat)")
    args = parser.parse_args()
    for people in args.people or [200_000]:
        bench(people)


if __name__ == "__main__":
    main()
