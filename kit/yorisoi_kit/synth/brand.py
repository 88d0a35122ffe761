"""The generator as named stages over one shared state, so `yorisoi bench` can time each one.

`generate()` runs them all; each stage returns the rows it produced."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import accounts as a
from . import config as c
from . import text as t
from .activity import build_campaigns, build_web_events
from .catalogue import build_products
from .consent import CHANNELS, build_consent, latest_state, source_state
from .geography import PREFECTURES, STORES
from .orders import SEGMENT_NAMES, build_orders, build_presence
from .people import build_people
from .writers import (
    EC_CUSTOMER_BASE,
    EC_LINE_BASE,
    EC_ORDER_BASE,
    POS_CARD_BASE,
    iso_jst,
    local_text,
    ts,
    write_drop,
    write_monthly,
    write_parquet,
    write_sqlite,
)

GENERATOR_VERSION = "4"  # 2: household members have distinct first names; 3: shop accounts carry furigana;
# 4: OMS orders have a coupon_code column


@dataclass
class Brand:
    out: Path
    scale: str
    seed: int
    as_of: int
    n: int
    state: dict = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    defects: bool = False

    @property
    def start(self) -> int:
        return self.as_of - c.WINDOW_DAYS * c.DAY

    def rng(self, stage: str) -> np.random.Generator:
        """An independent, reproducible stream per stage (a stage's output never depends on
        how many numbers another stage drew)."""
        return np.random.default_rng([self.seed, *stage.encode()])


def stage_products(b: Brand) -> int:
    b.state["products"] = build_products(b.rng("products"), b.start - 400 * c.DAY, b.start)
    return b.state["products"].num_rows


def stage_people(b: Brand) -> int:
    b.state["people"] = build_people(b.rng("people"), b.n, b.as_of)
    return b.n


def stage_orders(b: Brand) -> int:
    n_cat = len(np.unique(b.state["products"]["product_type"].to_numpy(zero_copy_only=False)))
    b.state["presence"] = build_presence(b.rng("presence"), b.n, n_cat)
    orders, lines = build_orders(b.rng("orders"), b.state["presence"], b.state["products"], b.start, b.as_of)
    b.state["orders"], b.state["lines"] = orders, lines
    return orders.num_rows + lines.num_rows


def stage_accounts(b: Brand) -> int:
    acc = a.build_accounts(b.rng("accounts"), b.state["presence"], b.state["orders"], b.start, b.as_of)
    b.state["accounts"] = acc
    return len(acc.ec.ids) + len(acc.oms.ids) + len(acc.pos.ids) + len(acc.line.ids)


def stage_consent(b: Brand) -> int:
    ev, flags = build_consent(b.rng("consent"), b.n, b.state["accounts"], b.as_of)
    b.state["consent_builder"], b.state["flags"] = ev, flags
    camp, assign, sends = build_campaigns(b.rng("campaigns"), b.n, b.state["accounts"], ev, flags, b.as_of)
    b.state["campaigns"], b.state["assignments"], b.state["sends"] = camp, assign, sends
    b.state["consent"] = ev.table()
    return b.state["consent"].num_rows + sends.num_rows


def stage_web_events(b: Brand) -> int:
    b.state["web"] = build_web_events(
        b.rng("web"), b.n, b.state["accounts"], b.state["orders"], b.state["products"].num_rows, b.as_of
    )
    return b.state["web"].num_rows


# ---- writers of each system -------------------------------------------------------------------


def _source_rows(orders: pa.Table, source: str) -> np.ndarray:
    """Rows of one system's orders, oldest first: the order their numbers are given in."""
    rows = np.flatnonzero(orders["source"].to_numpy(zero_copy_only=False) == source)
    return rows[np.argsort(orders["ordered_at"].to_numpy()[rows], kind="stable")]


def _ec_order_ids(b: Brand) -> tuple[np.ndarray, np.ndarray]:
    """Rows of e-commerce orders (sorted by time) and their ids (increasing with time)."""
    rows = _source_rows(b.state["orders"], "ecommerce")
    return rows, np.arange(1, len(rows) + 1, dtype=np.int64)


def _lines_of(n_orders: int, lines: pa.Table, rows: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line rows of the orders at `rows` (numbered `ids`), sorted by order id and line number,
    with each line's order id."""
    new_id = np.full(n_orders, -1, dtype=np.int64)
    new_id[rows] = ids
    l_order = new_id[lines["order_idx"].to_numpy()]
    keep = np.flatnonzero(l_order > 0)
    keep = keep[np.lexsort((lines["line_no"].to_numpy()[keep], l_order[keep]))]
    return keep, l_order


def stage_write_ecommerce(b: Brand) -> int:
    acc: a.Accounts = b.state["accounts"]
    o, lines, products, ev = b.state["orders"], b.state["lines"], b.state["products"], b.state["consent"]
    rng = b.rng("write_ecommerce")
    folder = b.out / "ecommerce"
    n_rows = len(acc.ec.ids)
    fields = a.ec_fields(rng, b.state["people"], acc.ec, acc.test_person)
    email_state, email_at = source_state(ev, "ecommerce", "email", n_rows)
    sms_state, sms_at = source_state(ev, "ecommerce", "sms", n_rows)
    rows, ids = _ec_order_ids(b)
    account = acc.order_account[rows]
    last_order = np.full(n_rows, -1, dtype=np.int64)
    np.maximum.at(last_order, account, o["updated_at"].to_numpy()[rows])
    updated = np.maximum.reduce([acc.ec.created_at, last_order, email_at, sms_at])
    state_names = np.array(["not_subscribed", "unsubscribed", "subscribed"])
    customers = pa.table(
        {
            "id": EC_CUSTOMER_BASE + acc.ec.ids,
            **{
                k: fields[k] for k in ("email", "first_name", "last_name", "last_name_kana", "first_name_kana", "phone")
            },
            "created_at": ts(acc.ec.created_at),
            "updated_at": ts(updated),
            "state": np.full(n_rows, "enabled"),
            "tags": np.where(acc.test_person[acc.ec.person_idx], "staff, test", ""),
            "email_marketing_state": state_names[email_state + 1],
            "email_marketing_opt_in_level": np.where(
                email_state == 1,
                np.where(rng.random(n_rows) < 0.7, "confirmed_opt_in", "single_opt_in"),
                None,
            ),
            "email_marketing_updated_at": ts(email_at),
            "sms_marketing_state": state_names[sms_state + 1],
            "sms_marketing_updated_at": ts(sms_at),
            **{k: fields[k] for k in ("zip", "province", "city", "address1")},
            "verified_email": rng.random(n_rows) < 0.95,
        }
    )
    total = write_parquet(customers, folder / "customers.parquet")
    b.state["ec_email"] = fields["email"]

    status = o["status"].to_numpy(zero_copy_only=False)[rows]
    cust_id = EC_CUSTOMER_BASE + acc.ec.ids[account]
    orders = pa.table(
        {
            "id": EC_ORDER_BASE + ids,
            "name": pc.binary_join_element_wise("#", pc.cast(pa.array(1000 + ids), pa.string()), ""),
            "customer_id": cust_id,
            "email": fields["email"].take(pa.array(account)),
            "created_at": ts(o["ordered_at"].to_numpy()[rows]),
            "processed_at": ts(o["ordered_at"].to_numpy()[rows]),
            "updated_at": ts(o["updated_at"].to_numpy()[rows]),
            "cancelled_at": ts(o["cancelled_at"].to_numpy()[rows]),
            "cancel_reason": np.where(status == "cancelled", "customer", None),
            "financial_status": np.select(
                [status == "cancelled", status == "returned"], ["voided", "refunded"], "paid"
            ),
            "fulfillment_status": np.where(np.isin(status, ["shipped", "returned"]), "fulfilled", None),
            "source_name": np.full(len(rows), "web"),
            "subtotal_price": o["subtotal"].to_numpy()[rows],
            "total_discounts": o["discount"].to_numpy()[rows],
            "shipping_price": o["shipping"].to_numpy()[rows],
            "points_used": o["points_used"].to_numpy()[rows],
            "points_earned": o["points_earned"].to_numpy()[rows],
            "total_price": o["total"].to_numpy()[rows],
            "currency": np.full(len(rows), "JPY"),
        }
    )
    total += write_parquet(orders, folder / "orders.parquet")

    # Lines of those orders, in order-id order.
    keep, l_order = _lines_of(o.num_rows, lines, rows, ids)
    prod = lines["product_idx"].to_numpy()[keep]
    line_table = pa.table(
        {
            "id": EC_LINE_BASE + np.arange(1, len(keep) + 1),
            "order_id": EC_ORDER_BASE + l_order[keep],
            "product_id": products["id"].to_numpy()[prod],
            "sku": products["sku"].take(pa.array(prod)),
            "title": products["title"].take(pa.array(prod)),
            "quantity": lines["quantity"].to_numpy()[keep],
            "price": lines["unit_price"].to_numpy()[keep],
            "compare_at_price": lines["list_price"].to_numpy()[keep],
        }
    )
    total += write_parquet(line_table, folder / "order_lines.parquet")
    created = ts(products["created_at"].to_numpy())
    product_table = products.drop_columns(["popularity", "created_at"]).append_column("created_at", created)
    product_table = product_table.append_column("updated_at", created)
    total += write_parquet(product_table, folder / "products.parquet")
    b.files.update(
        {
            "ecommerce/customers.parquet": customers.num_rows,
            "ecommerce/orders.parquet": orders.num_rows,
            "ecommerce/order_lines.parquet": line_table.num_rows,
            "ecommerce/products.parquet": product_table.num_rows,
        }
    )
    return total


def _code(prefix: str, ids: np.ndarray, width: int) -> pa.Array:
    return t.join(prefix, t.digits(ids, width))


def stage_write_oms(b: Brand) -> int:
    acc: a.Accounts = b.state["accounts"]
    o, lines, products, ev = b.state["orders"], b.state["lines"], b.state["products"], b.state["consent"]
    rng = b.rng("write_oms")
    n_rows = len(acc.oms.ids)
    f = a.oms_fields(rng, b.state["people"], acc.oms)
    perms = {ch: source_state(ev, "oms", ch, n_rows) for ch in ("email", "dm", "call")}
    black = np.zeros(n_rows, dtype=bool)
    black[b.state["flags"]["blacklist_rows"]] = True
    updated = np.maximum.reduce([acc.oms.created_at, *(w for _, w in perms.values())])
    codes = _code("C", acc.oms.ids, 8)
    customers = pa.table(
        {
            "customer_code": codes,
            **f,
            "mail_permission": (perms["email"][0] == 1).astype(np.int64),
            "dm_permission": (perms["dm"][0] == 1).astype(np.int64),
            "call_permission": (perms["call"][0] == 1).astype(np.int64),
            "blacklist_flag": black.astype(np.int64),
            "blacklist_reason": np.where(black, rng.choice(["未入金", "不正注文", "迷惑行為"], size=n_rows), None),
            "registered_at": local_text(acc.oms.created_at, "%Y-%m-%d %H:%M:%S"),
            "updated_at": local_text(updated, "%Y-%m-%d %H:%M:%S"),
        }
    )
    rows = _source_rows(o, "oms")
    ids = np.arange(1, len(rows) + 1)
    account = acc.order_account[rows]
    is_sub = o["is_subscription"].to_numpy(zero_copy_only=False)[rows]
    person = o["person_idx"].to_numpy()[rows]
    # One subscription contract per subscriber, numbered by start date.
    sub_person, first_idx = np.unique(person[is_sub], return_index=True)
    sub_first = np.flatnonzero(is_sub)[first_idx]
    order = np.argsort(rows[sub_first], kind="stable")
    sub_person, sub_first = sub_person[order], sub_first[order]
    sub_no = np.full(b.n, -1, dtype=np.int64)
    sub_no[sub_person] = np.arange(1, len(sub_person) + 1)
    sub_ids = _code("S", np.maximum(sub_no[person], 0), 7)
    o_at = o["ordered_at"].to_numpy()[rows]
    orders = pa.table(
        {
            "order_no": _code("O", ids, 9),
            "customer_code": codes.take(pa.array(account)),
            "order_channel": o["oms_channel"].take(pa.array(rows)),
            "subscription_id": pc.if_else(pa.array(is_sub), sub_ids, pa.scalar(None, pa.string())),
            "ordered_at": local_text(o_at, "%Y-%m-%d %H:%M:%S"),
            "shipped_at": local_text(o["shipped_at"].to_numpy()[rows], "%Y-%m-%d %H:%M:%S"),
            "status": o["status"].take(pa.array(rows)),
            "subtotal": o["subtotal"].to_numpy()[rows],
            "discount": o["discount"].to_numpy()[rows],
            "shipping_fee": o["shipping"].to_numpy()[rows],
            "points_used": o["points_used"].to_numpy()[rows],
            "points_earned": o["points_earned"].to_numpy()[rows],
            "total": o["total"].to_numpy()[rows],
            "updated_at": local_text(o["updated_at"].to_numpy()[rows], "%Y-%m-%d %H:%M:%S"),
            "coupon_code": pa.nulls(len(rows), pa.string()),  # quoted only in answer to a campaign (planted)
        }
    )
    keep, l_order = _lines_of(o.num_rows, lines, rows, ids)
    prod = lines["product_idx"].to_numpy()[keep]
    order_lines = pa.table(
        {
            "order_no": _code("O", l_order[keep], 9),
            "line_no": lines["line_no"].to_numpy()[keep],
            "item_code": products["sku"].take(pa.array(prod)),
            "quantity": lines["quantity"].to_numpy()[keep],
            "unit_price": lines["unit_price"].to_numpy()[keep],
            "list_price": lines["list_price"].to_numpy()[keep],
            "amount": lines["amount"].to_numpy()[keep],
        }
    )
    # Subscriptions: last shipment + two cycles before as_of means the contract was cancelled.
    cycle = b.state["presence"].subscription_cycle[sub_person]
    last_at = np.zeros(b.n, dtype=np.int64)
    np.maximum.at(last_at, person[is_sub], o_at[is_sub])
    last = last_at[sub_person]
    cancelled = last + 2 * cycle * c.DAY < b.as_of
    cancel_at = np.where(cancelled, last + cycle * c.DAY // 2, -1)
    first_line = np.searchsorted(l_order[keep], ids[sub_first])
    subscriptions = pa.table(
        {
            "subscription_id": _code("S", np.arange(1, len(sub_person) + 1), 7),
            "customer_code": codes.take(pa.array(account[sub_first])),
            "item_code": products["sku"].take(pa.array(prod[first_line])),
            "cycle_days": cycle.astype(np.int64),
            "started_at": local_text(o_at[sub_first], "%Y-%m-%d %H:%M:%S"),
            "cancelled_at": local_text(cancel_at, "%Y-%m-%d %H:%M:%S"),
            "status": np.where(cancelled, "cancelled", "active"),
            "updated_at": local_text(np.where(cancelled, cancel_at, o_at[sub_first]), "%Y-%m-%d %H:%M:%S"),
        }
    )
    items = pa.table(
        {
            "item_code": products["sku"],
            "item_name": products["title"],
            "category": products["product_type"],
            "brand": products["vendor"],
            "taste": products["variant_title"],
            "list_price": products["price"],
        }
    )
    counts = write_sqlite(
        b.out / "oms" / "oms.sqlite",
        {
            "items": items,
            "customers": customers,
            "subscriptions": subscriptions,
            "orders": orders,
            "order_lines": order_lines,
        },
    )
    b.state["oms_codes"] = codes
    b.files.update({f"oms/oms.sqlite:{k}": v for k, v in counts.items()})
    return sum(counts.values())


def _nearest_store(pref_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A store in the same region as the prefecture if there is one, else any store."""
    regions = np.array([p[1] for p in PREFECTURES])
    store_region = regions[[s[2] for s in STORES]]
    out = rng.integers(0, len(STORES), size=len(pref_idx))
    for r in np.unique(regions):
        in_r = np.flatnonzero(store_region == r)
        sel = regions[pref_idx] == r
        if len(in_r):
            out[sel] = in_r[rng.integers(0, len(in_r), size=sel.sum())]
    return out


def stage_write_sftp(b: Brand) -> int:
    acc: a.Accounts = b.state["accounts"]
    o, lines, products, people = b.state["orders"], b.state["lines"], b.state["products"], b.state["people"]
    rng = b.rng("write_sftp")
    inbox = b.out / "sftp" / "inbox"
    day = local_text(np.array([b.as_of - c.DAY]), "%Y%m%d")[0].as_py()
    manifests: list[dict] = []
    # POS members (full snapshot).
    f = a.pos_fields(rng, people, acc.pos)
    home_store = _nearest_store(people["prefecture_idx"].to_numpy()[acc.pos.person_idx], rng)
    store_codes = np.array([s[0] for s in STORES])
    store_names = np.array([s[1] for s in STORES])
    cards = pc.cast(pa.array(POS_CARD_BASE + acc.pos.ids * 7), pa.string())
    members = pa.table(
        {
            "会員番号": cards,
            "氏名カナ": f["kana"],
            "電話番号": f["phone"],
            "生年月日": f["birth_date"],
            "郵便番号": f["postal_code"],
            "メールアドレス": f["email"],
            "入会店舗": store_codes[home_store],
            "入会日": local_text(acc.pos.created_at, "%Y/%m/%d"),
            "更新日": local_text(acc.pos.created_at, "%Y/%m/%d"),
        }
    )
    manifests.append(write_drop(inbox / "pos", f"members_{day}.csv", members, "cp932"))

    # POS sales: member receipts, their returns, and anonymous receipts.
    rows = _source_rows(o, "pos")
    receipt = np.full(o.num_rows, -1, dtype=np.int64)
    receipt[rows] = np.arange(1, len(rows) + 1)
    l_idx = np.flatnonzero(receipt[lines["order_idx"].to_numpy()] > 0)
    l_order = lines["order_idx"].to_numpy()[l_idx]
    l_store = home_store[acc.order_account[l_order]]
    status = o["status"].to_numpy(zero_copy_only=False)
    first_line = lines["line_no"].to_numpy()[l_idx] == 1
    sale = {
        "receipt": receipt[l_order],
        "line_no": lines["line_no"].to_numpy()[l_idx],
        "store": l_store,
        "at": o["ordered_at"].to_numpy()[l_order],
        "kind": np.full(len(l_idx), "売上"),
        "orig": np.full(len(l_idx), -1),
        "card": acc.order_account[l_order],
        "product": lines["product_idx"].to_numpy()[l_idx],
        "qty": lines["quantity"].to_numpy()[l_idx],
        "unit": lines["unit_price"].to_numpy()[l_idx],
        "list": lines["list_price"].to_numpy()[l_idx],
        "used": np.where(first_line, o["points_used"].to_numpy()[l_order], 0),
        "earned": np.where(first_line, o["points_earned"].to_numpy()[l_order], 0),
    }
    ret = status[l_order] == "returned"
    n_ret_orders = len(np.unique(l_order[ret]))
    ret_receipt = len(rows) + 1 + np.searchsorted(np.unique(l_order[ret]), l_order[ret])
    returns = {k: v[ret] for k, v in sale.items()}
    returns.update(
        {
            "receipt": ret_receipt,
            "at": o["returned_at"].to_numpy()[l_order[ret]],
            "kind": np.full(ret.sum(), "返品"),
            "orig": receipt[l_order[ret]],
            "qty": -sale["qty"][ret],
            "used": -sale["used"][ret],
            "earned": -sale["earned"][ret],
        }
    )
    n_anon = len(rows) // 4
    anon_at = (
        o["ordered_at"].to_numpy()[rows[rng.integers(0, max(len(rows), 1), size=n_anon)]]
        if len(rows)
        else np.zeros(0, np.int64)
    )
    pop = products["popularity"].to_numpy()
    anon_prod = rng.choice(len(pop), size=n_anon, p=pop / pop.sum())
    anon_unit = products["price"].to_numpy()[anon_prod]
    anon = {
        "receipt": len(rows) + n_ret_orders + 1 + np.arange(n_anon),
        "line_no": np.ones(n_anon, np.int64),
        "store": rng.integers(0, len(STORES), size=n_anon),
        "at": anon_at,
        "kind": np.full(n_anon, "売上"),
        "orig": np.full(n_anon, -1),
        "card": np.full(n_anon, -1),
        "product": anon_prod,
        "qty": np.ones(n_anon, np.int64),
        "unit": anon_unit,
        "list": anon_unit,
        "used": np.zeros(n_anon, np.int64),
        "earned": np.zeros(n_anon, np.int64),
    }
    allr = {k: np.concatenate([sale[k], returns[k], anon[k]]) for k in sale}
    order = np.lexsort((allr["line_no"], allr["receipt"], allr["at"]))
    allr = {k: v[order] for k, v in allr.items()}
    card_txt = pc.if_else(pa.array(allr["card"] >= 0), cards.take(pa.array(np.maximum(allr["card"], 0))), "")
    receipt_txt = lambda x: t.join("R", t.digits(x, 10))  # noqa: E731
    sales = pa.table(
        {
            "取引番号": receipt_txt(allr["receipt"]),
            "明細番号": allr["line_no"],
            "店舗コード": store_codes[allr["store"]],
            "店舗名": store_names[allr["store"]],
            "取引日時": local_text(allr["at"], "%Y/%m/%d %H:%M:%S"),
            "取引区分": allr["kind"],
            "元取引番号": pc.if_else(pa.array(allr["orig"] > 0), receipt_txt(np.maximum(allr["orig"], 0)), ""),
            "会員番号": card_txt,
            "商品コード": products["sku"].take(pa.array(allr["product"])),
            "数量": allr["qty"],
            "単価": allr["unit"],
            "定価": allr["list"],
            "金額": allr["qty"] * allr["unit"],
            "利用ポイント": allr["used"],
            "付与ポイント": allr["earned"],
        }
    )
    manifests += write_monthly(inbox / "pos", "sales", sales, allr["at"], "cp932")

    # Call-centre requests: 配信停止 / 発送停止 / 架電停止 / 削除依頼.
    req_p = np.concatenate([r[0] for r in b.state["flags"]["requests"]])
    req_ch = np.concatenate([r[1] for r in b.state["flags"]["requests"]])
    req_at = np.concatenate([r[2] for r in b.state["flags"]["requests"]])
    order = np.argsort(req_at, kind="stable")
    req_p, req_ch, req_at = req_p[order], req_ch[order], req_at[order]
    oms_row = np.full(b.n, -1, dtype=np.int64)
    prim = ~acc.oms.is_duplicate
    oms_row[acc.oms.person_idx[prim]] = np.flatnonzero(prim)
    code = pc.if_else(
        pa.array(oms_row[req_p] >= 0), b.state["oms_codes"].take(pa.array(np.maximum(oms_row[req_p], 0))), ""
    )
    kind = {"email": "配信停止", "sms": "配信停止", "dm": "発送停止", "call": "架電停止", "all": "削除依頼"}
    kinds, kind_idx = np.unique(req_ch, return_inverse=True)
    pp = pa.array(req_p)
    requests = pa.table(
        {
            "受付番号": t.join("CC", t.digits(np.arange(1, len(req_p) + 1), 7)),
            "受付日時": local_text(req_at, "%Y/%m/%d %H:%M:%S"),
            "顧客コード": code,
            "氏名": t.join(people["last_name"].take(pp), " ", people["first_name"].take(pp)),
            "電話番号": pc.coalesce(people["phone_mobile"].take(pp), people["phone_home"].take(pp), ""),
            "メールアドレス": pc.if_else(
                pa.array(np.isin(req_ch, ["email", "all"])), pc.coalesce(people["email"].take(pp), ""), ""
            ),
            "対象チャネル": req_ch,
            "依頼種別": np.array([kind[k] for k in kinds], dtype=object)[kind_idx],
        }
    )
    manifests += write_monthly(inbox / "callcenter", "requests", requests, req_at, "cp932")

    # LINE: follow / unfollow events and the ID-link table (UTF-8 with BOM, as LINE tools export).
    uid = pc.binary_join_element_wise("U", t.random_hex(rng, len(acc.line.ids), 16), "")
    ev = b.state["consent"]
    m = ev["channel"].to_numpy(zero_copy_only=False) == "line"
    lrow = ev["account_row"].to_numpy()[m]
    lat = ev["at"].to_numpy()[m]
    order = np.argsort(lat, kind="stable")
    friends = pa.table(
        {
            "line_user_id": uid.take(pa.array(lrow[order])),
            "event": np.where(ev["opt_in"].to_numpy(zero_copy_only=False)[m][order], "follow", "unfollow"),
            "event_at": iso_jst(lat[order]),
        }
    )
    manifests += write_monthly(inbox / "line", "friends", friends, lat[order], "utf-8-sig")
    linked = np.flatnonzero(acc.line_link >= 0)
    linked = linked[np.argsort(acc.line_linked_at[linked], kind="stable")]
    links = pa.table(
        {
            "line_user_id": uid.take(pa.array(linked)),
            "ec_customer_id": EC_CUSTOMER_BASE + acc.ec.ids[acc.line_link[linked]],
            "linked_at": iso_jst(acc.line_linked_at[linked]),
        }
    )
    manifests.append(write_drop(inbox / "line", f"id_links_{day}.csv", links, "utf-8-sig"))
    b.state["line_uid"] = uid

    # Web tracking events.
    w = b.state["web"]
    anon_ids = t.random_hex(rng, b.n + 1, 8)
    wp = w["person_idx"].to_numpy()
    anon_pick = np.where(wp >= 0, wp, b.n)
    anon_col = anon_ids.take(pa.array(anon_pick))
    fresh = t.random_hex(rng, len(wp), 8)
    anon_col = pc.if_else(pa.array(wp >= 0), anon_col, fresh)
    wrow = w["ec_row"].to_numpy()
    wprod = w["product_idx"].to_numpy()
    sku = products["sku"].take(pa.array(np.maximum(wprod, 0)))
    web = pa.table(
        {
            "event_id": w["event_id"],
            "event_at": iso_jst(w["event_at"].to_numpy()),
            "anonymous_id": anon_col,
            "ec_customer_id": pa.array(EC_CUSTOMER_BASE + acc.ec.ids[np.maximum(wrow, 0)], mask=wrow < 0),
            "event_type": w["event_type"],
            "product_id": pa.array(products["id"].to_numpy()[np.maximum(wprod, 0)], mask=wprod < 0),
            "url": pc.if_else(pa.array(wprod >= 0), t.join("/products/", sku), "/"),
        }
    )
    manifests += write_monthly(inbox / "web", "events", web, w["event_at"].to_numpy(), "utf-8")

    # Email provider: campaigns and per-recipient sends.
    camp = b.state["campaigns"]
    manifests.append(
        write_drop(
            inbox / "esp",
            "campaigns.csv",
            camp.set_column(3, "sent_at", iso_jst(camp["sent_at"].to_numpy())),
            "utf-8",
        )
    )
    s = b.state["sends"]
    srow = s["ec_row"].to_numpy()
    s_at = s["sent_at"].to_numpy()
    sends = pa.table(
        {
            "send_id": np.arange(1, s.num_rows + 1),
            "campaign_id": s["campaign_id"],
            "ec_customer_id": EC_CUSTOMER_BASE + acc.ec.ids[srow],
            "email": b.state["ec_email"].take(pa.array(srow)),
            "variant": s["variant"],
            "sent_at": iso_jst(s_at),
            "delivered": s["delivered"],
            "bounce_type": s["bounce_type"],
            "opened_at": iso_jst(s["opened_at"].to_numpy()),
            "clicked_at": iso_jst(s["clicked_at"].to_numpy()),
            "unsubscribed_at": iso_jst(s["unsubscribed_at"].to_numpy()),
        }
    )
    manifests += write_monthly(inbox / "esp", "sends", sends, s_at, "utf-8")
    for mf in manifests:
        b.files[f"sftp/inbox/{mf['feed']}/{mf['file']}"] = mf["rows"]
    return sum(mf["rows"] for mf in manifests)


def stage_write_truth(b: Brand) -> int:
    """The answers: who is behind every source record, and each person's true state."""
    acc: a.Accounts = b.state["accounts"]
    o, people, ev, flags = b.state["orders"], b.state["people"], b.state["consent"], b.state["flags"]
    folder = b.out / "truth"
    pid = lambda idx: np.asarray(idx, dtype=np.int64) + 1  # noqa: E731
    cards = pc.cast(pa.array(POS_CARD_BASE + acc.pos.ids * 7), pa.string())
    records = pa.concat_tables(
        [
            pa.table(
                {
                    "source": np.full(len(account.ids), source),
                    "source_id": source_id,
                    "person_id": pid(account.person_idx),
                    "is_duplicate": account.is_duplicate,
                }
            )
            for source, account, source_id in (
                ("ecommerce", acc.ec, pc.cast(pa.array(EC_CUSTOMER_BASE + acc.ec.ids), pa.string())),
                ("oms", acc.oms, b.state["oms_codes"]),
                ("pos", acc.pos, cards),
                ("line", acc.line, b.state["line_uid"]),
            )
        ]
    )
    total = write_parquet(records, folder / "source_records.parquet")

    # Orders with their source keys.
    person = o["person_idx"].to_numpy()
    order_id = np.empty(o.num_rows, dtype=object)
    cust_id = np.empty(o.num_rows, dtype=object)
    rows, ids = _ec_order_ids(b)
    order_id[rows] = (EC_ORDER_BASE + ids).astype(str)
    cust_id[rows] = (EC_CUSTOMER_BASE + acc.ec.ids[acc.order_account[rows]]).astype(str)
    for source, prefix, width in (("oms", "O", 9), ("pos", "R", 10)):
        r = _source_rows(o, source)
        order_id[r] = t.join(prefix, t.digits(np.arange(1, len(r) + 1), width)).to_numpy(zero_copy_only=False)
        if source == "oms":
            cust_id[r] = b.state["oms_codes"].take(pa.array(acc.order_account[r])).to_numpy(zero_copy_only=False)
        else:
            cust_id[r] = cards.take(pa.array(acc.order_account[r])).to_numpy(zero_copy_only=False)
    truth_orders = pa.table(
        {
            "source": o["source"],
            "order_id": pa.array(order_id, pa.string()),
            "source_customer_id": pa.array(cust_id, pa.string()),
            "person_id": pid(person),
            "ordered_at": ts(o["ordered_at"].to_numpy()),
            "channel": pc.coalesce(o["oms_channel"], o["source"]),
            "total": o["total"],
            "status": o["status"],
            "counted": o["counted"],
            "seq": o["seq"],
        }
    )
    total += write_parquet(truth_orders, folder / "orders.parquet")

    counted = o["counted"].to_numpy(zero_copy_only=False)
    order_count = np.bincount(person[counted], minlength=b.n)
    spend = np.bincount(person[counted], weights=o["total"].to_numpy()[counted], minlength=b.n).astype(np.int64)
    at = o["ordered_at"].to_numpy()
    first = np.full(b.n, -1, dtype=np.int64)
    last = np.full(b.n, -1, dtype=np.int64)
    np.maximum.at(last, person[counted], at[counted])
    first_at = np.full(b.n, np.iinfo(np.int64).max)
    np.minimum.at(first_at, person[counted], at[counted])
    first = np.where(order_count > 0, first_at, -1)
    erased = np.zeros(b.n, dtype=bool)
    erased[flags["erased_who"]] = True
    blacklisted = flags["blacklisted"]
    cols = {
        **{k: people[k] for k in people.column_names if k not in ("prefecture_idx", "household_rank")},
        "is_test": acc.test_person,
        "segment": SEGMENT_NAMES[b.state["presence"].segment],
        "order_count": order_count.astype(np.int64),
        "spend": spend,
        "first_order_at": ts(first),
        "last_order_at": ts(np.where(order_count > 0, last, -1)),
        "blacklisted": blacklisted,
        "erased": erased,
    }
    for ch in CHANNELS:
        state = latest_state(ev, b.n, ch) & ~erased
        cols[f"consent_{ch}"] = state
        cols[f"deliverable_{ch}"] = state & ~blacklisted & ~acc.test_person
    total += write_parquet(pa.table(cols), folder / "people.parquet")
    consent = pa.table(
        {
            "person_id": pid(ev["person"].to_numpy()),
            "channel": ev["channel"],
            "action": np.where(ev["opt_in"].to_numpy(zero_copy_only=False), "opt_in", "opt_out"),
            "event_at": ts(ev["at"].to_numpy()),
            "source": ev["source"],
            "evidence": ev["evidence"],
        }
    )
    total += write_parquet(consent, folder / "consent_events.parquet")
    total += write_parquet(b.state["assignments"], folder / "campaign_assignments.parquet")
    for name in ("source_records", "orders", "people", "consent_events", "campaign_assignments"):
        b.files[f"truth/{name}.parquet"] = pa.parquet.read_metadata(folder / f"{name}.parquet").num_rows
    return total


STAGES: tuple[tuple[str, Callable[[Brand], int]], ...] = (
    ("products", stage_products),
    ("people", stage_people),
    ("orders", stage_orders),
    ("accounts", stage_accounts),
    ("consent_and_campaigns", stage_consent),
    ("web_events", stage_web_events),
    ("write_ecommerce", stage_write_ecommerce),
    ("write_oms", stage_write_oms),
    ("write_sftp", stage_write_sftp),
    ("write_truth", stage_write_truth),
)


def new_brand(
    out: Path, scale: str = "S", seed: int = 42, as_of: datetime | None = None, people: int | None = None
) -> Brand:
    if scale not in c.SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(c.SCALES)}")
    return Brand(out=Path(out), scale=scale, seed=seed, as_of=c.as_of_seconds(as_of), n=people or c.SCALES[scale])


def write_manifest(b: Brand) -> None:
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "scale": b.scale,
        "seed": b.seed,
        "people": b.n,
        "as_of": local_text(np.array([b.as_of]), "%Y-%m-%dT%H:%M:%S+09:00")[0].as_py(),
        "window_days": c.WINDOW_DAYS,
        "defects": b.defects,
        "rows": dict(sorted(b.files.items())),
    }
    (b.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", "utf-8")
