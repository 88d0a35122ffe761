"""One more day of a generated brand: the change a brand's sources see overnight, applied to the
files and the OMS database in place, so the daily run (ingest of the day, incremental build) can
be measured and checked against a full rebuild (docs/synthetic-brand.md, "A day of change").

The day is the one starting at the brand's `as_of` (local midnight); afterwards the manifest's
`as_of` is the next day, so the function can be applied again for the day after. New rows are
copies of existing ones (another purchase of the same basket by the same customer, the same kind
of web visit), with keys of their own and timestamps within the day, so they fit every source's
shape and the identity rules without a second model of the brand. The same seed and brand give the
same change.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .writers import write_drop, write_parquet

JST = timedelta(hours=9)
POS_INTEGERS = ("明細番号", "数量", "単価", "定価", "金額", "利用ポイント", "付与ポイント")


@dataclass(frozen=True)
class DailyShares:
    """Shares of the existing rows a day changes, and the day's events in average days."""

    new_orders: float = 0.005  # new orders and store receipts (with their lines)
    late_updates: float = 0.002  # older orders shipped, cancelled or returned today
    changed_customers: float = 0.01  # accounts with a new email address or a new address
    opt_outs: float = 0.002  # accounts that withdraw email consent (shop, OMS, call centre, LINE)
    event_days: float = 1.0  # web events and email sends: this many average days' worth


def _count(n: int, share: float) -> int:
    return min(n, max(1, round(n * share))) if n and share > 0 else 0


def _pick(rng: np.random.Generator, candidates: np.ndarray, share: float) -> np.ndarray:
    """A mask over the rows: `share` of all of them (at least one), chosen among `candidates`."""
    rows = np.flatnonzero(candidates)
    chosen = rng.choice(rows, size=min(len(rows), _count(len(candidates), share)), replace=False)
    mask = np.zeros(len(candidates), dtype=bool)
    mask[chosen] = True
    return mask


def _day_times(rng: np.random.Generator, start: datetime, n: int) -> np.ndarray:
    """`n` sorted instants within the day from `start` (naive UTC), as datetime64[us]."""
    offsets = np.sort(rng.integers(0, 86_400_000_000, size=n))
    return np.datetime64(start, "us") + offsets.astype("timedelta64[us]")


def _jst_text(at: np.ndarray, fmt: str) -> list[str]:
    return [(t.astype(datetime) + JST).strftime(fmt) for t in at]


def _iso_jst(at: np.ndarray) -> list[str]:
    return [f"{s}+09:00" for s in _jst_text(at, "%Y-%m-%dT%H:%M:%S")]


def _set(table: pa.Table, name: str, values) -> pa.Table:
    """Replace column `name`: an Arrow array keeps its own type, a list or NumPy array the column's."""
    i = table.schema.get_field_index(name)
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, type=table.schema.field(i).type)
    return table.set_column(i, pa.field(name, values.type), values)


def _where(table: pa.Table, name: str, mask: np.ndarray, values) -> pa.Table:
    """Column `name` takes `values` (a scalar or an array over all rows) where `mask` holds."""
    col = table[name]
    new = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.scalar(values, type=col.type)
    return _set(table, name, pc.if_else(pa.array(mask), new, col))


# ---- The shop (Parquet behind the API) ---------------------------------------------------------


def _shop(folder: Path, rng: np.random.Generator, start: datetime, shares: DailyShares) -> dict[str, int]:
    orders = pq.read_table(folder / "orders.parquet")
    lines = pq.read_table(folder / "order_lines.parquet")
    n = orders.num_rows

    # Late updates of older orders: unshipped ones ship, shipped ones are cancelled.
    late = _pick(rng, np.ones(n, dtype=bool), shares.late_updates)
    late_at = pa.array(_day_times(rng, start, n))
    unshipped = pc.is_null(orders["fulfillment_status"]).to_numpy(zero_copy_only=False)
    ship, cancel = late & unshipped, late & ~unshipped & pc.is_null(orders["cancelled_at"]).to_numpy(False)
    orders = _where(orders, "fulfillment_status", ship, "fulfilled")
    orders = _where(orders, "cancelled_at", cancel, late_at)
    orders = _where(orders, "cancel_reason", cancel, "customer")
    orders = _where(orders, "financial_status", cancel, "refunded")
    orders = _where(orders, "updated_at", ship | cancel, late_at)

    k = _count(n, shares.new_orders)
    template = np.sort(rng.choice(n, size=k, replace=False))
    at = pa.array(_day_times(rng, start, k))
    new_ids = pc.max(orders["id"]).as_py() + 1 + np.arange(k)
    last_name = max(int(s[1:]) for s in orders["name"].to_pylist() if s and s[1:].isdigit())
    new = orders.take(pa.array(template))
    for col, values in {
        "id": new_ids,
        "name": [f"#{last_name + 1 + i}" for i in range(k)],
        "created_at": at,
        "processed_at": at,
        "updated_at": at,
        "cancelled_at": pa.nulls(k, pa.timestamp("us")),
        "cancel_reason": pa.nulls(k, pa.string()),
        "financial_status": ["paid"] * k,
        "fulfillment_status": pa.nulls(k, pa.string()),
    }.items():
        new = _set(new, col, values)

    # The template orders' lines, under the new orders' ids.
    old_ids = orders["id"].to_numpy()[template]
    taken = pc.is_in(lines["order_id"], value_set=pa.array(old_ids)).to_numpy(zero_copy_only=False)
    new_lines = lines.filter(pa.array(taken))
    new_lines = _set(new_lines, "order_id", new_ids[np.searchsorted(old_ids, new_lines["order_id"].to_numpy())])
    new_lines = _set(new_lines, "id", pc.max(lines["id"]).as_py() + 1 + np.arange(new_lines.num_rows))

    write_parquet(pa.concat_tables([orders, new]), folder / "orders.parquet")
    write_parquet(pa.concat_tables([lines, new_lines]), folder / "order_lines.parquet")

    customers = pq.read_table(folder / "customers.parquet")
    m = customers.num_rows
    changed = _pick(rng, np.ones(m, dtype=bool), shares.changed_customers)
    moves = changed & (rng.random(m) < 0.5)
    new_email = changed & ~moves & pc.is_valid(customers["email"]).to_numpy(zero_copy_only=False)
    # A new address: another account's (a move within the brand's regions).
    donor = pa.array(rng.integers(0, m, size=m))
    for col in ("zip", "province", "city", "address1"):
        customers = _where(customers, col, moves, customers[col].take(donor))
    emails = customers["email"].to_pylist()
    customers = _where(
        customers,
        "email",
        new_email,
        pa.array([e.replace("@", f".{start + JST:%m%d}@", 1) if e else e for e in emails], pa.string()),
    )
    subscribed = pc.equal(customers["email_marketing_state"], "subscribed").to_numpy(zero_copy_only=False)
    opt_out = _pick(rng, subscribed, shares.opt_outs)
    c_at = pa.array(_day_times(rng, start, m))
    customers = _where(customers, "email_marketing_state", opt_out, "unsubscribed")
    customers = _where(customers, "email_marketing_updated_at", opt_out, c_at)
    customers = _where(customers, "updated_at", moves | new_email | opt_out, c_at)
    write_parquet(customers, folder / "customers.parquet")
    return {
        "ecommerce.orders new": k,
        "ecommerce.orders updated": int((ship | cancel).sum()),
        "ecommerce.order_lines new": new_lines.num_rows,
        "ecommerce.customers changed": int((moves | new_email).sum()),
        "ecommerce.customers opted out": int(opt_out.sum()),
    }


# ---- The OMS database ----------------------------------------------------------------------------


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in con.execute(f"pragma table_info({table})")]


def _copy_rows(table: str, alias: str, overrides: dict[str, str], columns: list[str]) -> str:
    """Insert a copy of the template orders' rows of `table` (through temp table day_map: old_no,
    new_no, at), with `overrides` (column: SQL expression) and every other column as it was."""
    select = ", ".join(overrides.get(c, f"{alias}.{c}") for c in columns)
    return (
        f"insert into {table} ({', '.join(columns)}) select {select} "  # noqa: S608 - the OMS's own column names
        f"from day_map m join {table} {alias} on {alias}.order_no = m.old_no"
    )


def _oms(path: Path, rng: np.random.Generator, start: datetime, shares: DailyShares) -> dict[str, int]:
    with sqlite3.connect(path) as con:
        n = con.execute("select count(*) from orders").fetchone()[0]
        late = np.flatnonzero(_pick(rng, np.ones(n, dtype=bool), shares.late_updates)) + 1
        late_at = _jst_text(_day_times(rng, start, len(late)), "%Y-%m-%d %H:%M:%S")
        con.executemany(
            "update orders set updated_at = ?, "
            "shipped_at = case status when 'pending' then ? else shipped_at end, "
            "status = case status when 'pending' then 'shipped' when 'shipped' then 'returned' else status end "
            "where rowid = ?",
            [(t, t, int(r)) for t, r in zip(late_at, late, strict=True)],
        )

        k = _count(n, shares.new_orders)
        template = np.sort(rng.choice(n, size=k, replace=False)) + 1
        at = _jst_text(_day_times(rng, start, k), "%Y-%m-%d %H:%M:%S")
        last = con.execute("select max(order_no) from orders").fetchone()[0]
        width, first = len(last) - 1, int(last[1:]) + 1
        con.execute("create temp table day_orders (rowid_old integer, order_no text, at text)")
        con.executemany(
            "insert into day_orders values (?, ?, ?)",
            [(int(r), f"O{first + i:0{width}d}", t) for i, (r, t) in enumerate(zip(template, at, strict=True))],
        )
        con.execute(
            "create temp table day_map as select o.order_no as old_no, d.order_no as new_no, d.at "
            "from day_orders d join orders o on o.rowid = d.rowid_old"
        )
        # Every column of the template, but the new order's number and times, unshipped, and no
        # coupon (a coupon answers a campaign the copy did not receive).
        new_order = {"order_no": "m.new_no", "ordered_at": "m.at", "shipped_at": "null", "status": "'pending'"}
        new_order |= {"updated_at": "m.at", "coupon_code": "null"}
        con.execute(_copy_rows("orders", "o", new_order, _columns(con, "orders")))
        new_lines = con.execute(
            _copy_rows("order_lines", "o", {"order_no": "m.new_no"}, _columns(con, "order_lines"))
        ).rowcount

        m = con.execute("select count(*) from customers").fetchone()[0]
        changed = np.flatnonzero(_pick(rng, np.ones(m, dtype=bool), shares.changed_customers)) + 1
        c_at = _jst_text(_day_times(rng, start, len(changed)), "%Y-%m-%d %H:%M:%S")
        donors = rng.integers(1, m + 1, size=len(changed))
        moves = rng.random(len(changed)) < 0.5
        tag = f".{start + JST:%m%d}@"
        for r, t, d, move in zip(changed, c_at, donors, moves, strict=True):
            if move:
                con.execute(
                    "update customers set (postal_code, prefecture, address) = "
                    "(select postal_code, prefecture, address from customers where rowid = ?), updated_at = ? "
                    "where rowid = ?",
                    (int(d), t, int(r)),
                )
            else:
                con.execute(
                    "update customers set email = replace(email, '@', ?), updated_at = ? "
                    "where rowid = ? and email like '%@%'",
                    (tag, t, int(r)),
                )
        permitted = np.zeros(m, dtype=bool)
        permitted[[r - 1 for (r,) in con.execute("select rowid from customers where mail_permission = 1")]] = True
        opt_out = np.flatnonzero(_pick(rng, permitted, shares.opt_outs)) + 1
        o_at = _jst_text(_day_times(rng, start, len(opt_out)), "%Y-%m-%d %H:%M:%S")
        con.executemany(
            "update customers set mail_permission = 0, updated_at = ? where rowid = ?",
            [(t, int(r)) for t, r in zip(o_at, opt_out, strict=True)],
        )
        requesters = con.execute(
            "select customer_code, replace(name_kanji, '　', ' '), coalesce(phone, ''), coalesce(email, '') "
            "from customers where mail_permission = 1 and email is not null order by customer_code"
        ).fetchall()
    return {
        "oms.orders new": k,
        "oms.orders updated": len(late),
        "oms.order_lines new": new_lines,
        "oms.customers changed": len(changed),
        "oms.customers opted out": len(opt_out),
        "_requesters": requesters,  # for the call centre's requests of the day
    }


# ---- The SFTP drops --------------------------------------------------------------------------------


def _read_drops(sftp: Path, feed: str, prefix: str, encoding: str, newest: int | None = None) -> pa.Table:
    """A feed's drop files, waiting in the inbox or already moved to processed/ by an ingest, as
    text columns: all of them, or the newest `newest` monthly files (the generator's, a month of
    traffic: a day's file is not a template for the next day's volume)."""
    files = sorted(
        (f for sub in ("inbox", "processed") for f in (sftp / sub / feed).glob(f"{prefix}_*.csv")), key=lambda f: f.name
    )
    if newest:
        files = [f for f in files if len(f.stem.rsplit("_", 1)[-1]) == len("YYYYMM")][-newest:]
    tables = []
    for f in files:
        text = f.read_bytes().decode(encoding).encode("utf-8")
        header = pacsv.read_csv(pa.BufferReader(text), read_options=pacsv.ReadOptions(skip_rows_after_names=10**9))
        tables.append(
            pacsv.read_csv(
                pa.BufferReader(text),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(header.column_names, pa.string()), strings_can_be_null=True
                ),
            )
        )
    return pa.concat_tables(tables) if tables else pa.table({})


def _typed(table: pa.Table, integers: tuple[str, ...] = (), booleans: tuple[str, ...] = ()) -> pa.Table:
    """Numbers and flags back to their types, so the day's file is written as the generator writes."""
    for col in integers:
        table = _set(table, col, pc.cast(table[col], pa.int64()))
    for col in booleans:
        table = _set(table, col, pc.equal(table[col], "true"))
    return table


def _sftp(
    sftp: Path, rng: np.random.Generator, start: datetime, shares: DailyShares, requesters: list, window_days: int
) -> dict[str, int]:
    day = (start + JST).strftime("%Y%m%d")
    inbox = sftp / "inbox"
    counts: dict[str, int] = {}

    # Store receipts: new sales (copies of last month's receipts) and returns of a few older ones.
    sales = _read_drops(sftp, "pos", "sales", "cp932", newest=1)
    is_sale = pc.equal(sales["取引区分"], "売上").to_numpy(zero_copy_only=False)
    receipts = np.unique(sales["取引番号"].to_numpy(zero_copy_only=False)[is_sale])
    total_receipts = round(len(receipts) * window_days / 30)
    k = min(len(receipts), max(1, round(total_receipts * shares.new_orders)))
    picked = rng.choice(receipts, size=k, replace=False)
    # Returns: of member receipts, which change a person's orders.
    receipt_col = sales["取引番号"].to_numpy(zero_copy_only=False)
    has_card = pc.fill_null(pc.not_equal(sales["会員番号"], ""), False).to_numpy(zero_copy_only=False)
    rest = np.setdiff1d(np.unique(receipt_col[is_sale & has_card]), picked)
    r_ret = rng.choice(rest, size=_count(len(rest), shares.late_updates), replace=False)
    parts = []
    for kind, chosen in (("売上", picked), ("返品", r_ret)):
        rows = np.flatnonzero(np.isin(receipt_col, chosen) & is_sale)
        part = sales.take(pa.array(rows))
        at = _day_times(rng, start, len(chosen))
        seq = {r: i for i, r in enumerate(chosen)}
        idx = np.array([seq[r] for r in receipt_col[rows]], dtype=np.int64)
        offset = 0 if kind == "売上" else k
        part = _set(part, "取引番号", [f"R{day}{offset + i + 1:06d}" for i in idx])
        part = _set(part, "取引日時", np.array(_jst_text(at, "%Y/%m/%d %H:%M:%S"))[idx].tolist())
        if kind == "返品":
            part = _set(part, "元取引番号", receipt_col[rows].tolist())
            part = _set(part, "取引区分", ["返品"] * len(rows))
            for col in ("数量", "金額", "利用ポイント", "付与ポイント"):
                part = _set(part, col, pc.cast(pc.negate(pc.cast(part[col], pa.int64())), pa.string()))
        parts.append(part)
    day_sales = _typed(pa.concat_tables(parts), POS_INTEGERS)
    write_drop(inbox / "pos", f"sales_{day}.csv", day_sales, "cp932")
    counts["pos.sales receipts new"], counts["pos.sales returns"] = k, len(r_ret)

    # Call centre: email opt-outs of OMS customers still opted in.
    n_req = _count(len(requesters), shares.opt_outs)
    chosen = [requesters[i] for i in sorted(rng.choice(len(requesters), size=n_req, replace=False))]
    requests = pa.table(
        {
            "受付番号": [f"CC{day}{i + 1:04d}" for i in range(n_req)],
            "受付日時": _jst_text(_day_times(rng, start, n_req), "%Y/%m/%d %H:%M:%S"),
            "顧客コード": [r[0] for r in chosen],
            "氏名": [r[1] for r in chosen],
            "電話番号": [r[2] for r in chosen],
            "メールアドレス": [r[3] for r in chosen],
            "対象チャネル": ["email"] * n_req,
            "依頼種別": ["配信停止"] * n_req,
        }
    )
    write_drop(inbox / "callcenter", f"requests_{day}.csv", requests, "cp932")
    counts["callcenter.requests new"] = n_req

    # LINE: some friends block the account.
    friends = _read_drops(sftp, "line", "friends", "utf-8-sig")
    follows = np.unique(
        friends.filter(pc.equal(friends["event"], "follow"))["line_user_id"].to_numpy(zero_copy_only=False)
    )
    n_block = _count(len(follows), shares.opt_outs)
    blocks = pa.table(
        {
            "line_user_id": sorted(rng.choice(follows, size=n_block, replace=False).tolist()),
            "event": ["unfollow"] * n_block,
            "event_at": _iso_jst(_day_times(rng, start, n_block)),
        }
    )
    write_drop(inbox / "line", f"friends_{day}.csv", blocks, "utf-8-sig")
    counts["line.friends unfollows"] = n_block

    # Web events and email sends: copies of last month's, moved into the day.
    for feed, prefix, key, at_col, shifted, integers, booleans in (
        ("web", "events", "event_id", "event_at", (), ("event_id", "ec_customer_id", "product_id"), ()),
        (
            "esp",
            "sends",
            "send_id",
            "sent_at",
            ("opened_at", "clicked_at", "unsubscribed_at"),
            ("send_id", "campaign_id", "ec_customer_id"),
            ("delivered",),
        ),
    ):
        recent = _read_drops(sftp, feed, prefix, "utf-8", newest=1)
        n_day = min(recent.num_rows, max(1, round(recent.num_rows / 30 * shares.event_days)))
        part = recent.take(pa.array(np.sort(rng.choice(recent.num_rows, size=n_day, replace=False))))
        at = _day_times(rng, start, n_day)
        old = [datetime.fromisoformat(s) for s in part[at_col].to_pylist()]
        shift = [t.astype(datetime).replace(tzinfo=UTC) - o for t, o in zip(at, old, strict=True)]
        part = _set(part, at_col, _iso_jst(at))
        for col in shifted:
            part = _set(
                part,
                col,
                [
                    (datetime.fromisoformat(v) + d).isoformat() if v else None
                    for v, d in zip(part[col].to_pylist(), shift, strict=True)
                ],
            )
        part = _set(part, key, [str(int(day) * 1_000_000 + i + 1) for i in range(n_day)])
        write_drop(inbox / feed, f"{prefix}_{day}.csv", _typed(part, integers, booleans), "utf-8")
        counts[f"{feed}.{prefix} new"] = n_day
    return counts


def apply_daily_change(brand: Path | str, *, seed: int, shares: DailyShares | None = None) -> dict:
    """Apply one day of change to the generated brand in `brand` (its files and OMS database, in
    place) and move its manifest's `as_of` to the next day. Returns the day and the rows changed
    per source table."""
    brand = Path(brand)
    shares = shares or DailyShares()
    manifest = json.loads((brand / "manifest.json").read_text("utf-8"))
    as_of = datetime.fromisoformat(manifest["as_of"])
    start = as_of.astimezone(UTC).replace(tzinfo=None)
    rng = np.random.default_rng([seed, int(start.timestamp()), 7])
    counts = _shop(brand / "ecommerce", rng, start, shares)
    oms = _oms(brand / "oms" / "oms.sqlite", rng, start, shares)
    requesters = oms.pop("_requesters")
    counts |= oms
    counts |= _sftp(brand / "sftp", rng, start, shares, requesters, int(manifest["window_days"]))
    change = {"day": as_of.date().isoformat(), "seed": seed, "shares": asdict(shares), "rows": counts}
    manifest["as_of"] = (as_of + timedelta(days=1)).isoformat()
    manifest.setdefault("daily_changes", []).append(change)
    (brand / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", "utf-8")
    return change
