"""A day of change on a generated brand: reproducible, within the day, in every source's shape,
and moving the brand's as-of day on (the daily run's input, tests/transform/test_daily_run.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from yorisoi_kit.synth.daily import apply_daily_change


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_day_of_change(synth_xs: Path, tmp_path: Path) -> None:
    brand, again = tmp_path / "brand", tmp_path / "again"
    shutil.copytree(synth_xs, brand)
    shutil.copytree(synth_xs, again)
    orders_before = pq.read_table(brand / "ecommerce" / "orders.parquet")

    change = apply_daily_change(brand, seed=7)
    assert change["day"] == "2026-11-01"
    assert json.loads((brand / "manifest.json").read_text())["as_of"].startswith("2026-11-02T00:00:00")
    assert all(n > 0 for n in change["rows"].values()), change["rows"]

    # Same seed, same change; the shop's new orders are ~0.5 % more, keyed apart, within the day.
    apply_daily_change(again, seed=7)
    assert _digest(brand) == _digest(again)
    orders = pq.read_table(brand / "ecommerce" / "orders.parquet")
    assert orders.num_rows == orders_before.num_rows + change["rows"]["ecommerce.orders new"]
    assert pc.count_distinct(orders["id"]).as_py() == orders.num_rows
    day_start = datetime(2026, 10, 31, 15)  # local midnight in UTC
    touched = orders.filter(pc.greater_equal(orders["updated_at"], day_start))
    assert touched.num_rows == change["rows"]["ecommerce.orders new"] + change["rows"]["ecommerce.orders updated"]
    assert pc.max(touched["updated_at"]).as_py() < day_start + timedelta(days=1)
    lines = pq.read_table(brand / "ecommerce" / "order_lines.parquet")
    assert pc.all(pc.is_in(lines["order_id"], value_set=orders["id"])).as_py()

    with sqlite3.connect(brand / "oms" / "oms.sqlite") as oms:
        assert oms.execute("select count(*) from orders where updated_at >= '2026-11-01'").fetchone()[0] == (
            change["rows"]["oms.orders new"] + change["rows"]["oms.orders updated"]
        )
        assert (
            oms.execute(
                "select count(*) from order_lines where order_no not in (select order_no from orders)"
            ).fetchone()[0]
            == 0
        )

    # The SFTP feeds get a file of the day each, with its manifest.
    for feed, prefix in (("pos", "sales"), ("callcenter", "requests"), ("line", "friends"), ("web", "events")):
        day_file = brand / "sftp" / "inbox" / feed / f"{prefix}_20261101.csv"
        manifest = json.loads(day_file.with_name(day_file.name + ".manifest.json").read_text())
        assert manifest["sha256"] == hashlib.sha256(day_file.read_bytes()).hexdigest()

    # The next day follows on.
    assert apply_daily_change(brand, seed=7)["day"] == "2026-11-02"
