"""Change a share of a generated brand's orders, as a day of back-office work would: for
measuring that re-ingestion touches only what changed (`yorisoi bench`, tests)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def touch_orders(out: Path, share: float, seed: int, at: datetime) -> dict[str, int]:
    """Mark `share` of the e-commerce and OMS orders as updated at `at` (UTC, naive) with a new
    status note, the way a fulfilment or cancellation does. Returns the rows changed per system."""
    rng = np.random.default_rng([seed, 99])
    changed = {}
    path = out / "ecommerce" / "orders.parquet"
    orders = pq.read_table(path)
    pick = rng.random(orders.num_rows) < share
    stamp = pa.scalar(at, pa.timestamp("us"))
    orders = orders.set_column(
        orders.schema.get_field_index("updated_at"),
        "updated_at",
        pc.if_else(pa.array(pick), stamp, orders["updated_at"]),
    )
    pq.write_table(orders, path, compression="zstd", row_group_size=256_000)
    changed["ecommerce.orders"] = int(pick.sum())

    jst = (at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(out / "oms" / "oms.sqlite") as con:
        n = con.execute("select count(*) from orders").fetchone()[0]
        rows = np.flatnonzero(rng.random(n) < share) + 1
        con.executemany(
            "update orders set updated_at = ?, status = case status when 'pending' then 'shipped' else status end "
            "where rowid = ?",
            [(jst, int(r)) for r in rows],
        )
        changed["oms.orders"] = len(rows)
    return changed
