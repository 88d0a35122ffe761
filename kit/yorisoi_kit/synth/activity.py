"""Behaviour beyond orders: past email campaigns (with control groups and A/B variants) and
web tracking events (page and product views, carts, checkouts)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import config as c
from .accounts import Accounts
from .consent import ConsentEvents

SUBJECTS = (
    ("【新発売】ボタニカル美容液のご案内", "春の新作、先行でお届けします"),
    ("ポイント2倍キャンペーン開催中", "今だけ！ポイント2倍"),
    ("定期便のご案内", "毎月届く、いつものケアを"),
    ("夏のセール開始のお知らせ", "最大30%OFF サマーセール"),
    ("会員様限定 特別セット", "あなただけの特別なご案内"),
    ("年末ギフト特集", "大切な人へ、ヨリソイのギフト"),
)


def build_campaigns(
    rng: np.random.Generator, n: int, acc: Accounts, ev: ConsentEvents, flags: dict, as_of: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Email campaigns over the last months: each targets part of the list that was deliverable
    at send time, holds out a control group, splits the rest into variants A and B, and records
    deliveries, bounces, opens, clicks and unsubscribes (which become consent events)."""
    ec_primary_row = np.full(n, -1, dtype=np.int64)
    prim = ~acc.ec.is_duplicate
    ec_primary_row[acc.ec.person_idx[prim]] = np.flatnonzero(prim)
    first = as_of - c.CAMPAIGN_MONTHS * 30 * c.DAY
    send_times = np.sort(rng.integers(first, as_of - 3 * c.DAY, size=c.N_EMAIL_CAMPAIGNS))
    send_times = send_times // 3600 * 3600 + 10 * 3600  # 19:00 JST
    campaigns, assignments, sends = [], [], []
    # Email consent events so far, sorted by person then time; unsubscribes made through the
    # campaigns below are tracked per person and override anything older.
    events = ev.table()
    is_email = events["channel"].to_numpy(zero_copy_only=False) == "email"
    e_person = events["person"].to_numpy()[is_email]
    e_at = events["at"].to_numpy()[is_email]
    e_opt = events["opt_in"].to_numpy(zero_copy_only=False)[is_email]
    unsubscribed_at = np.full(n, np.iinfo(np.int64).max)
    for k, sent_at in enumerate(send_times, start=1):
        sel = e_at <= sent_at
        p, at_, opt_ = e_person[sel], e_at[sel], e_opt[sel]
        last = np.r_[p[1:] != p[:-1], True]
        state = np.zeros(n, dtype=bool)
        changed_at = np.full(n, -1, dtype=np.int64)
        state[p[last]] = opt_[last]
        changed_at[p[last]] = at_[last]
        later_unsub = (unsubscribed_at <= sent_at) & (unsubscribed_at > changed_at)
        ok = state & ~later_unsub & (ec_primary_row >= 0)
        ok &= ~flags["blacklisted"]
        target = np.flatnonzero(ok & (rng.random(n) < c.CAMPAIGN_REACH))
        control = rng.random(len(target)) < c.CONTROL_SHARE
        variant = np.where(rng.random(len(target)) < 0.5, "A", "B")
        assignments.append(
            pa.table(
                {
                    "campaign_id": np.full(len(target), k),
                    "person_id": target + 1,
                    "group": np.where(control, "control", "treatment"),
                    "variant": np.where(control, None, variant),
                }
            )
        )
        sent = target[~control]
        m = len(sent)
        bounce = rng.random(m) < c.P_BOUNCE
        opened = ~bounce & (rng.random(m) < np.where(variant[~control] == "B", c.P_OPEN * 1.15, c.P_OPEN))
        clicked = opened & (rng.random(m) < c.P_CLICK_GIVEN_OPEN)
        unsub = opened & (rng.random(m) < c.P_UNSUBSCRIBE * 10)
        at = sent_at + rng.integers(0, 300, size=m)
        opened_at = at + rng.integers(60, 3 * c.DAY, size=m)
        clicked_at = opened_at + rng.integers(5, 600, size=m)
        unsub_at = opened_at + rng.integers(5, 600, size=m)
        ev.add(sent[unsub], "email", False, unsub_at[unsub], "esp", "unsubscribe_link")
        unsubscribed_at[sent[unsub]] = np.minimum(unsubscribed_at[sent[unsub]], unsub_at[unsub])
        sends.append(
            pa.table(
                {
                    "campaign_id": np.full(m, k),
                    "person_idx": sent,
                    "ec_row": ec_primary_row[sent],
                    "variant": variant[~control],
                    "sent_at": at,
                    "delivered": ~bounce,
                    "bounce_type": np.where(bounce, np.where(rng.random(m) < 0.6, "hard", "soft"), None),
                    "opened_at": np.where(opened, opened_at, -1),
                    "clicked_at": np.where(clicked, clicked_at, -1),
                    "unsubscribed_at": np.where(unsub, unsub_at, -1),
                }
            )
        )
        subject = SUBJECTS[(k - 1) % len(SUBJECTS)]
        campaigns.append((k, f"CP{k:03d} {subject[0][:12]}", "email", int(sent_at), subject[0], subject[1]))
    camp = pa.table(
        {
            "campaign_id": [x[0] for x in campaigns],
            "name": [x[1] for x in campaigns],
            "channel": [x[2] for x in campaigns],
            "sent_at": [x[3] for x in campaigns],
            "subject_a": [x[4] for x in campaigns],
            "subject_b": [x[5] for x in campaigns],
        }
    )
    return (
        camp,
        pa.concat_tables(assignments, promote_options="default"),
        pa.concat_tables(sends, promote_options="default"),
    )


def build_web_events(
    rng: np.random.Generator, n: int, acc: Accounts, orders: pa.Table, n_products: int, as_of: int
) -> pa.Table:
    """Tracking events of the last WEB_EVENT_DAYS: the funnel before real e-commerce orders,
    browsing and abandoned carts of known customers, and anonymous visitors."""
    since = as_of - c.WEB_EVENT_DAYS * c.DAY
    src = orders["source"].to_numpy(zero_copy_only=False)
    at = orders["ordered_at"].to_numpy()
    recent = (src == "ecommerce") & (at >= since)
    o_person = orders["person_idx"].to_numpy()[recent]
    o_at = at[recent]
    o_acc = acc.order_account[recent]

    parts = []
    # Funnel of real orders: product view, add to cart, checkout started (of one product).
    o_prod = rng.integers(0, n_products, size=len(o_at))
    for etype, lo, hi in (
        ("product_view", 600, 1800),
        ("add_to_cart", 120, 600),
        ("checkout_started", 10, 110),
    ):
        parts.append((o_person, o_acc, o_at - rng.integers(lo, hi, size=len(o_at)), etype, o_prod))
    # Browsing of known customers without a purchase: views, some carts, some checkouts.
    ec_people = acc.ec.person_idx
    browsers = rng.random(len(ec_people)) < 0.35
    rows = np.flatnonzero(browsers)
    k = 1 + rng.poisson(1.5, size=len(rows))
    b_row = np.repeat(rows, k)
    b_at = since + (rng.random(len(b_row)) * (as_of - since - 3600)).astype(np.int64)
    b_prod = rng.integers(0, n_products, size=len(b_row))
    parts.append((ec_people[b_row], b_row, b_at, "product_view", b_prod))
    cart = rng.random(len(b_row)) < 0.3
    parts.append((ec_people[b_row][cart], b_row[cart], b_at[cart] + 120, "add_to_cart", b_prod[cart]))
    chk = cart & (rng.random(len(b_row)) < 0.4)
    parts.append((ec_people[b_row][chk], b_row[chk], b_at[chk] + 400, "checkout_started", b_prod[chk]))
    # Page views of known and anonymous visitors.
    m = len(ec_people) // 2 + n // 2
    pv_row = rng.integers(-len(ec_people), len(ec_people), size=m)  # negative: anonymous
    known = pv_row >= 0
    parts.append(
        (
            np.where(known, ec_people[np.maximum(pv_row, 0)], -1),
            np.where(known, pv_row, -1),
            since + (rng.random(m) * (as_of - since - 3600)).astype(np.int64),
            "page_view",
            np.full(m, -1),
        )
    )

    person = np.concatenate([p[0] for p in parts])
    ec_row = np.concatenate([p[1] for p in parts])
    ev_at = np.concatenate([p[2] for p in parts])
    etype = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    product = np.concatenate([p[4] for p in parts])
    order = np.argsort(ev_at, kind="stable")
    return pa.table(
        {
            "event_id": np.arange(1, len(order) + 1, dtype=np.int64),
            "event_at": ev_at[order],
            "person_idx": person[order],
            "ec_row": ec_row[order],
            "event_type": etype[order],
            "product_idx": product[order],
        }
    )
