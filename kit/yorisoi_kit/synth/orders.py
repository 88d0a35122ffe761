"""Purchase behaviour: when each person orders, through which channel, and what.

Each buyer belongs to a behaviour segment (config.SEGMENTS). Repeat orders follow a Poisson
process at the segment's rate for an exponential active lifetime, thinned by a seasonal day
intensity; subscribers (定期購入) receive a shipment every cycle. Everything is drawn for all
people at once with numpy and grouped with repeat / cumulative sums, never per person in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import config as c

SOURCES = np.array(["ecommerce", "oms", "pos"])
EC, OMS, POS = 0, 1, 2


@dataclass
class Presence:
    """Which source systems know each person, and the one they use most."""

    segment: np.ndarray  # index into config.SEGMENTS
    in_source: np.ndarray  # (n, 3) bool: ecommerce, oms, pos
    primary: np.ndarray  # 0/1/2
    line_friend: np.ndarray
    bargain: np.ndarray
    favourite_category: np.ndarray
    subscription_cycle: np.ndarray  # days; 0 if not a subscriber


SEGMENT_NAMES = np.array(list(c.SEGMENTS))


def build_presence(rng: np.random.Generator, n: int, n_categories: int) -> Presence:
    seg = rng.choice(len(c.SEGMENTS), size=n, p=np.array(list(c.SEGMENTS.values())))
    in_source = np.column_stack([rng.random(n) < c.P_ECOMMERCE, rng.random(n) < c.P_OMS, rng.random(n) < c.P_POS])
    subscriber = SEGMENT_NAMES[seg] == "subscriber"
    in_source[subscriber, OMS] = True  # 定期購入 contracts live in the OMS
    in_source[~in_source.any(axis=1), EC] = True
    # Primary source: a random one of those present (weighted towards e-commerce).
    score = rng.random((n, 3)) * np.array([1.6, 1.0, 1.0]) * in_source
    primary = np.argmax(score, axis=1)
    primary[subscriber] = OMS
    line_friend = rng.random(n) < np.where(in_source[:, EC], c.P_LINE_FRIEND * 1.2, c.P_LINE_FRIEND * 0.5)
    return Presence(
        segment=seg,
        in_source=in_source,
        primary=primary,
        line_friend=line_friend,
        bargain=rng.random(n) < c.P_BARGAIN_HUNTER,
        favourite_category=rng.integers(0, n_categories, size=n),
        subscription_cycle=np.where(subscriber, rng.choice(c.SUBSCRIPTION_CYCLES, size=n), 0),
    )


def _group_rank(group: np.ndarray) -> np.ndarray:
    """0, 1, 2… within runs of equal, sorted group keys."""
    start = np.r_[True, group[1:] != group[:-1]]
    idx = np.arange(len(group))
    return idx - np.maximum.accumulate(np.where(start, idx, 0))


def order_days(rng: np.random.Generator, pres: Presence, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(person index, day index in the window, is_subscription) for every order, unsorted."""
    n = len(pres.segment)
    days = start + np.arange(c.WINDOW_DAYS) * c.DAY
    w = c.day_intensity(days)
    sale = c.sale_day_mask(days)
    wmax = w.max()
    seg_name = SEGMENT_NAMES[pres.segment]
    buyer = seg_name != "none"

    acq = rng.choice(c.WINDOW_DAYS, size=n, p=w / w.sum())
    gap = np.array([c.BEHAVIOUR[s].mean_gap_days if s in c.BEHAVIOUR else np.inf for s in c.SEGMENTS])[pres.segment]
    life_mean = np.array([c.BEHAVIOUR[s].mean_life_days if s in c.BEHAVIOUR else 0 for s in c.SEGMENTS])
    life = rng.exponential(1.0, size=n) * life_mean[pres.segment]
    end = np.minimum(acq + life, c.WINDOW_DAYS - 1e-9)
    span = np.maximum(end - acq, 0)

    # Repeat orders (everyone but subscribers' cycle shipments): thinned Poisson candidates.
    bargain_boost = np.where(pres.bargain, 1.0 / (0.3 + 0.7 * sale.mean()), 1.0)
    repeats = np.isfinite(gap) & (life_mean[pres.segment] > 0)
    lam = np.where(buyer & repeats, span / np.where(repeats, gap, 1), 0)
    lam = np.where(seg_name == "subscriber", span / 120.0, lam)  # extras beside the contract
    k = rng.poisson(lam * (wmax / w.mean()) * bargain_boost)
    who = np.repeat(np.arange(n), k)
    day = (acq[who] + rng.random(len(who)) * span[who]).astype(np.int64)
    keep = rng.random(len(who)) < w[day] / wmax * np.where(pres.bargain[who] & ~sale[day], 0.3, 1.0)
    who, day = who[keep], day[keep]

    # Subscription shipments: every cycle ± 2 days while the contract lasts.
    cycle = pres.subscription_cycle
    n_ship = np.where(cycle > 0, np.floor(span / np.maximum(cycle, 1)), 0).astype(np.int64)
    s_who = np.repeat(np.arange(n), n_ship)
    s_k = _group_rank(s_who) + 1
    s_day = np.clip(acq[s_who] + s_k * cycle[s_who] + rng.integers(-2, 3, size=len(s_who)), 0, c.WINDOW_DAYS - 1)

    # "Two-time" buyers: one second purchase about two months later, if it falls in the window.
    two = np.flatnonzero(seg_name == "two_time")
    t_day = acq[two] + rng.exponential(c.BEHAVIOUR["two_time"].mean_gap_days, size=len(two))
    two, t_day = two[t_day < c.WINDOW_DAYS], t_day[t_day < c.WINDOW_DAYS].astype(np.int64)
    who, day = np.concatenate([who, two]), np.concatenate([day, t_day])

    first_who = np.flatnonzero(buyer)
    person = np.concatenate([first_who, who, s_who])
    day_idx = np.concatenate([acq[first_who], day, s_day]).astype(np.int64)
    is_sub = np.concatenate([np.zeros(len(first_who) + len(who), bool), np.ones(len(s_who), bool)])
    # A subscriber's first order is the contract's first shipment.
    is_sub[: len(first_who)] = seg_name[first_who] == "subscriber"
    return person, day_idx, is_sub


def build_orders(
    rng: np.random.Generator, pres: Presence, products: pa.Table, start: int, as_of: int
) -> tuple[pa.Table, pa.Table]:
    """All orders of all channels (one row each) and their lines, with person and source."""
    person, day_idx, is_sub = order_days(rng, pres, start)
    n_orders = len(person)

    # Source: subscriptions go to the OMS; otherwise the primary source 80 % of the time,
    # another source the person uses for the rest.
    alt = rng.random((n_orders, 3)) * pres.in_source[person]
    alt[np.arange(n_orders), pres.primary[person]] = 0
    other = np.argmax(alt, axis=1)
    has_other = alt.max(axis=1) > 0
    source = np.where((rng.random(n_orders) < 0.8) | ~has_other, pres.primary[person], other)
    source = np.where(is_sub, OMS, source)

    # Time of day: shop hours for stores, online/phone profile otherwise.
    hour_online = rng.choice(24, size=n_orders, p=c.HOUR_WEIGHTS / c.HOUR_WEIGHTS.sum())
    hour_store = rng.choice(24, size=n_orders, p=c.STORE_HOUR_WEIGHTS / c.STORE_HOUR_WEIGHTS.sum())
    hour = np.where(source == POS, hour_store, hour_online)
    ordered_at = start + day_idx * c.DAY + hour * 3600 + rng.integers(0, 3600, size=n_orders)
    ordered_at = np.where(is_sub, start + day_idx * c.DAY + 3 * 3600 + rng.integers(0, 600, size=n_orders), ordered_at)

    order = np.lexsort((ordered_at, person))
    person, ordered_at, source, is_sub, day_idx = (
        person[order],
        ordered_at[order],
        source[order],
        is_sub[order],
        day_idx[order],
    )
    seq = _group_rank(person) + 1  # 1 = first purchase (F1), 2 = second (F2), …

    lines = _build_lines(rng, pres, products, person, source, is_sub, day_idx, start)
    subtotal = np.bincount(lines["order_idx"], weights=lines["amount"], minlength=n_orders).astype(np.int64)
    list_total = np.bincount(lines["order_idx"], weights=lines["list_amount"], minlength=n_orders).astype(np.int64)

    # Points: 1 % of the subtotal is earned; some orders spend the whole balance (全ポイント利用).
    earned = np.floor(subtotal * c.POINTS_RATE).astype(np.int64)
    earned_before = np.cumsum(earned) - earned  # global running sum; made per-person below
    person_start = np.r_[True, person[1:] != person[:-1]]
    base = np.maximum.accumulate(np.where(person_start, earned_before, 0))
    earned_before -= base
    use_all = (rng.random(n_orders) < c.P_USE_ALL_POINTS) & (seq > 1)
    idx = np.arange(n_orders)
    prev_use = np.maximum.accumulate(np.where(np.r_[False, use_all[:-1]] | person_start, idx, 0))
    # Balance before order i = earned since the last order that used everything (or since start).
    balance = earned_before - earned_before[prev_use]
    balance = np.where(person_start, 0, balance)
    discount = np.where(is_sub, np.floor(subtotal * 0.1).astype(np.int64), 0)  # 定期割引 10 %
    # Points pay at most what is left after the discount, so no total is negative.
    points_used = np.where(use_all, np.minimum(balance, subtotal - discount), 0)
    shipping = np.where((source == POS) | is_sub | (subtotal >= c.FREE_SHIPPING_FROM), 0, c.SHIPPING_FEE)
    total = subtotal - discount + shipping - points_used

    # Lifecycle: cancellations, returns, shipments, late back-office corrections.
    u = rng.random(n_orders)
    cancelled = (u < c.P_CANCELLED) & (source != POS)
    returned = (u >= c.P_CANCELLED) & (u < c.P_CANCELLED + c.P_RETURNED)
    pending = (ordered_at >= as_of - c.PENDING_DAYS * c.DAY) & (source != POS) & ~cancelled
    returned &= ~pending
    shipped_at = np.where(source == POS, ordered_at, ordered_at + rng.integers(12 * 3600, 3 * c.DAY, size=n_orders))
    cancelled_at = ordered_at + rng.integers(600, c.DAY, size=n_orders)
    returned_at = shipped_at + rng.integers(3 * c.DAY, 20 * c.DAY, size=n_orders)
    updated_at = np.where(cancelled, cancelled_at, np.where(returned, returned_at, shipped_at))
    updated_at = np.where(pending, ordered_at, updated_at)
    late = (source == OMS) & (rng.random(n_orders) < c.P_LATE_CORRECTION) & (updated_at < as_of - 60 * c.DAY)
    updated_at = np.where(late, updated_at + (rng.random(n_orders) * (as_of - updated_at)).astype(np.int64), updated_at)
    updated_at = np.minimum(updated_at, as_of - 1)
    cancelled_at = np.minimum(cancelled_at, as_of - 1)
    returned = returned & (returned_at < as_of)
    status = np.select([cancelled, returned, pending], ["cancelled", "returned", "pending"], "shipped")

    oms_channel = np.where(
        is_sub, "subscription", rng.choice(["phone", "catalogue", "fax"], size=n_orders, p=[0.6, 0.32, 0.08])
    )
    orders = pa.table(
        {
            "order_idx": idx,
            "person_idx": person,
            "source": SOURCES[source],
            "oms_channel": np.where(source == OMS, oms_channel, None),
            "is_subscription": is_sub,
            "seq": seq,
            "ordered_at": ordered_at,
            "shipped_at": np.where(pending | cancelled, -1, shipped_at),
            "cancelled_at": np.where(cancelled, cancelled_at, -1),
            "returned_at": np.where(returned, returned_at, -1),
            "updated_at": updated_at,
            "status": status,
            "subtotal": subtotal,
            "list_total": list_total,
            "discount": discount,
            "shipping": shipping,
            "points_used": points_used,
            "points_earned": earned,
            "total": total,
            "counted": ~(cancelled | returned),
        }
    )
    line_table = pa.table({k: v for k, v in lines.items() if k != "list_amount"})
    return orders, line_table


def _build_lines(
    rng: np.random.Generator,
    pres: Presence,
    products: pa.Table,
    person: np.ndarray,
    source: np.ndarray,
    is_sub: np.ndarray,
    day_idx: np.ndarray,
    start: int,
) -> dict[str, np.ndarray]:
    n_orders = len(person)
    n_lines = 1 + rng.poisson(np.where(source == POS, 0.8, 0.5))
    n_lines = np.where(is_sub, 1, n_lines)
    order_idx = np.repeat(np.arange(n_orders), n_lines)
    line_no = _group_rank(order_idx) + 1
    m = len(order_idx)

    category = products["product_type"].to_numpy(zero_copy_only=False)
    cats, cat_code = np.unique(category, return_inverse=True)
    pop = products["popularity"].to_numpy()
    price = products["price"].to_numpy()
    sale_price = products["sale_price"].to_numpy()
    # Sample by popularity overall, or within the person's favourite category (CTB preference).
    cdf_all = np.cumsum(pop) / pop.sum()
    by_cat = np.argsort(cat_code, kind="stable")
    pop_sorted, cat_sorted = pop[by_cat], cat_code[by_cat]
    cs = np.cumsum(pop_sorted)
    cat_total = np.bincount(cat_sorted, weights=pop_sorted)
    cat_before = np.cumsum(cat_total) - cat_total
    cum = cat_sorted + (cs - cat_before[cat_sorted]) / cat_total[cat_sorted]
    fav = pres.favourite_category[person[order_idx]] % len(cats)
    use_fav = rng.random(m) < 0.65
    u = rng.random(m)
    pick_all = np.minimum(np.searchsorted(cdf_all, u), len(pop) - 1)
    pick_fav = by_cat[np.minimum(np.searchsorted(cum, fav + u * (1 - 1e-12)), len(pop) - 1)]
    product = np.where(use_fav, pick_fav, pick_all)
    # Subscriptions ship the same supplement or food item every cycle.
    sub_cats = np.flatnonzero(np.isin(cats, ["サプリメント", "食品"]))
    sub_products = np.flatnonzero(np.isin(cat_code, sub_cats))
    sub_item = sub_products[(person * 7919) % len(sub_products)]
    product = np.where(is_sub[order_idx], sub_item[order_idx], product)

    days = start + np.arange(c.WINDOW_DAYS) * c.DAY
    in_sale = c.sale_day_mask(days)[day_idx[order_idx]]
    is_sale = rng.random(m) < np.where(in_sale, 0.9, 0.04)
    is_sale &= ~is_sub[order_idx]
    qty = rng.choice([1, 2, 3], size=m, p=[0.82, 0.14, 0.04])
    qty = np.where(is_sub[order_idx], 1, qty)
    unit = np.where(is_sale, sale_price[product], price[product])
    return {
        "order_idx": order_idx,
        "line_no": line_no.astype(np.int64),
        "product_idx": product,
        "quantity": qty.astype(np.int64),
        "unit_price": unit.astype(np.int64),
        "list_price": price[product].astype(np.int64),
        "amount": (qty * unit).astype(np.int64),
        "list_amount": (qty * price[product]).astype(np.int64),
        "is_sale": is_sale,
    }
