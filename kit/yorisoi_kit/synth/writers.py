"""Writers: each source system's native shape (Parquet behind the shop API, an SQLite OMS, CSV
drops with manifests for the SFTP server) and the ground truth."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import config as c

EC_CUSTOMER_BASE = 7_000_000_000_000
EC_ORDER_BASE = 5_000_000_000_000
EC_LINE_BASE = 9_000_000_000_000
POS_CARD_BASE = 2_100_000_000_000


def ts(seconds: np.ndarray) -> pa.Array:
    """UTC timestamps (microseconds) from epoch seconds; -1 means null."""
    s = np.asarray(seconds, dtype=np.int64)
    return pa.array(s * 1_000_000, type=pa.timestamp("us"), mask=s < 0)


def local_text(seconds: np.ndarray, fmt: str) -> pa.Array:
    """Japan wall-clock text (as back offices and POS systems keep it); -1 means null."""
    s = np.asarray(seconds, dtype=np.int64)
    return pc.strftime(pa.array(s + c.JST, type=pa.timestamp("s"), mask=s < 0), format=fmt)


def iso_jst(seconds: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(local_text(seconds, "%Y-%m-%dT%H:%M:%S"), "+09:00", "")


def write_parquet(table: pa.Table, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=256_000)
    return table.num_rows


# ---- SQLite OMS ------------------------------------------------------------------------------

OMS_DDL = """
CREATE TABLE items (item_code TEXT PRIMARY KEY, item_name TEXT NOT NULL, category TEXT NOT NULL,
  brand TEXT NOT NULL, taste TEXT, list_price INTEGER NOT NULL);
CREATE TABLE customers (customer_code TEXT PRIMARY KEY, name_kanji TEXT NOT NULL, name_kana TEXT,
  phone TEXT, email TEXT, postal_code TEXT, prefecture TEXT, address TEXT, birth_date TEXT, gender TEXT,
  mail_permission INTEGER NOT NULL, dm_permission INTEGER NOT NULL, call_permission INTEGER NOT NULL,
  blacklist_flag INTEGER NOT NULL, blacklist_reason TEXT, registered_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE subscriptions (subscription_id TEXT PRIMARY KEY, customer_code TEXT NOT NULL,
  item_code TEXT NOT NULL, cycle_days INTEGER NOT NULL, started_at TEXT NOT NULL, cancelled_at TEXT,
  status TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE orders (order_no TEXT PRIMARY KEY, customer_code TEXT NOT NULL, order_channel TEXT NOT NULL,
  subscription_id TEXT, ordered_at TEXT NOT NULL, shipped_at TEXT, status TEXT NOT NULL,
  subtotal INTEGER NOT NULL, discount INTEGER NOT NULL, shipping_fee INTEGER NOT NULL,
  points_used INTEGER NOT NULL, points_earned INTEGER NOT NULL, total INTEGER NOT NULL, updated_at TEXT NOT NULL,
  coupon_code TEXT);
CREATE TABLE order_lines (order_no TEXT NOT NULL, line_no INTEGER NOT NULL, item_code TEXT NOT NULL,
  quantity INTEGER NOT NULL, unit_price INTEGER NOT NULL, list_price INTEGER NOT NULL, amount INTEGER NOT NULL,
  PRIMARY KEY (order_no, line_no));
CREATE INDEX ix_orders_updated_at ON orders (updated_at);
CREATE INDEX ix_customers_updated_at ON customers (updated_at);
"""


def write_sqlite(path: Path, tables: dict[str, pa.Table], chunk: int = 200_000) -> dict[str, int]:
    """Create the OMS database; rows go in through executemany in chunks (no DuckDB SQLite
    extension can be installed here, and the stdlib driver is the fastest other path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.executescript(OMS_DDL)
    counts = {}
    for name, table in tables.items():
        cols = ", ".join(table.column_names)
        marks = ", ".join("?" * table.num_columns)
        sql = f"INSERT INTO {name} ({cols}) VALUES ({marks})"  # noqa: S608 - names are our own constants
        for batch in table.to_batches(max_chunksize=chunk):
            con.executemany(sql, zip(*(col.to_pylist() for col in batch.columns), strict=True))
        counts[name] = table.num_rows
    con.commit()
    con.execute("VACUUM")
    con.close()
    return counts


# ---- CSV drops with manifests -----------------------------------------------------------------


def csv_bytes(table: pa.Table, encoding: str) -> bytes:
    """CSV text in the encoding a source system uses. CP932 files use CRLF like the Windows
    systems that write them; "utf-8-sig" adds the BOM that Excel-made exports carry."""
    buf = io.BytesIO()
    eol = "\r\n" if encoding == "cp932" else "\n"
    pacsv.write_csv(table, buf, pacsv.WriteOptions(eol=eol, quoting_style="needed"))
    raw = buf.getvalue()
    if encoding == "utf-8":
        return raw
    return raw.decode("utf-8").encode(encoding)


def write_drop(folder: Path, name: str, table: pa.Table, encoding: str) -> dict:
    """Write one drop file and its manifest (rows without the header, bytes, SHA-256)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(csv_bytes(table, encoding))
    return write_manifest_for(folder / name, rows=table.num_rows, encoding=encoding, columns=table.column_names)


def write_manifest_for(path: Path, *, rows: int, encoding: str, columns: list[str] | None = None) -> dict:
    """The manifest a source writes after its data file: `<file>.manifest.json`."""
    data = path.read_bytes()
    manifest = {
        "file": path.name,
        "feed": path.parent.name,
        "rows": rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "encoding": encoding,
    }
    if columns is not None:
        manifest["columns"] = columns
    path.with_name(f"{path.name}.manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", "utf-8"
    )
    return manifest


def write_monthly(folder: Path, prefix: str, table: pa.Table, at: np.ndarray, encoding: str) -> list[dict]:
    """Split a table into monthly drop files by the (JST) month of `at`."""
    month = ((np.asarray(at) + c.JST).astype("datetime64[s]").astype("datetime64[M]")).astype(str)
    out = []
    for m in np.unique(month):
        idx = np.flatnonzero(month == m)
        out.append(write_drop(folder, f"{prefix}_{m.replace('-', '')}.csv", table.take(pa.array(idx)), encoding))
    return out
