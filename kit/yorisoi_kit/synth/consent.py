"""Consent per channel, as events in the systems where customers give or withdraw it.

The truth is the latest event across all systems; each system's own snapshot only knows its
own events (an unsubscribe at the email provider never reaches the shop's customer record), which
is exactly why a consent ledger has to union them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import config as c
from .accounts import Accounts

CHANNELS = ("email", "line", "sms", "dm", "call")


@dataclass
class ConsentEvents:
    person: list[np.ndarray] = field(default_factory=list)
    channel: list[np.ndarray] = field(default_factory=list)
    opt_in: list[np.ndarray] = field(default_factory=list)
    at: list[np.ndarray] = field(default_factory=list)
    source: list[np.ndarray] = field(default_factory=list)
    evidence: list[np.ndarray] = field(default_factory=list)
    account_row: list[np.ndarray] = field(default_factory=list)  # row in the source's accounts

    def add(self, person, channel, opt_in, at, source, evidence, account_row=None) -> None:
        n = len(person)
        self.person.append(np.asarray(person, dtype=np.int64))
        self.channel.append(np.full(n, channel))
        self.opt_in.append(np.broadcast_to(np.asarray(opt_in, dtype=bool), (n,)).copy())
        self.at.append(np.asarray(at, dtype=np.int64))
        self.source.append(np.full(n, source))
        self.evidence.append(np.full(n, evidence))
        self.account_row.append(np.full(n, -1) if account_row is None else np.asarray(account_row, dtype=np.int64))

    def table(self) -> pa.Table:
        cols = {
            k: np.concatenate(getattr(self, k))
            for k in ("person", "channel", "opt_in", "at", "source", "evidence", "account_row")
        }
        order = np.lexsort((cols["at"], cols["channel"], cols["person"]))
        return pa.table({k: v[order] for k, v in cols.items()})


def _later(rng: np.random.Generator, after: np.ndarray, as_of: int) -> np.ndarray:
    return after + (rng.random(len(after)) * np.maximum(as_of - after - c.DAY, 1)).astype(np.int64)


def _office_hours(rng: np.random.Generator, at: np.ndarray) -> np.ndarray:
    """Move call-centre requests to the centre's opening hours (09:00-18:00 JST) that day."""
    day = (at + c.JST) // c.DAY * c.DAY - c.JST
    return day + rng.integers(9 * 3600, 18 * 3600, size=len(at))


def build_consent(rng: np.random.Generator, n: int, acc: Accounts, as_of: int) -> tuple[ConsentEvents, dict]:
    """Consent events of every channel, plus blacklist and erasure flags per person."""
    ev = ConsentEvents()
    ec_primary = np.flatnonzero(~acc.ec.is_duplicate)
    ec_p, ec_at = acc.ec.person_idx[ec_primary], acc.ec.created_at[ec_primary]

    # Email: explicit opt-in at sign-up (shop) or on the order form (OMS).
    opt = rng.random(len(ec_primary)) < c.P_EMAIL_OPT_IN_EC
    ev.add(ec_p[opt], "email", True, ec_at[opt], "ecommerce", "signup_form_checkbox", ec_primary[opt])
    oms_primary = np.flatnonzero(~acc.oms.is_duplicate)
    oms_p, oms_at = acc.oms.person_idx[oms_primary], acc.oms.created_at[oms_primary]
    mail = rng.random(len(oms_primary)) < c.P_EMAIL_OPT_IN_OMS
    ev.add(oms_p[mail], "email", True, oms_at[mail], "oms", "order_form_checkbox", oms_primary[mail])
    # Withdrawals in the shop's account settings, and later re-subscriptions there.
    stop = opt & (rng.random(len(ec_primary)) < 0.04)
    stop_at = _later(rng, ec_at[stop], as_of)
    ev.add(ec_p[stop], "email", False, stop_at, "ecommerce", "account_settings", ec_primary[stop])
    again = rng.random(stop.sum()) < c.P_EMAIL_REOPT_IN
    ev.add(
        ec_p[stop][again],
        "email",
        True,
        _later(rng, stop_at[again], as_of),
        "ecommerce",
        "account_settings",
        ec_primary[stop][again],
    )

    # SMS: opt-in at sign-up.
    sms = rng.random(len(ec_primary)) < c.P_SMS_OPT_IN
    ev.add(ec_p[sms], "sms", True, ec_at[sms], "ecommerce", "signup_form_checkbox", ec_primary[sms])

    # LINE: following the official account is the consent, blocking withdraws it.
    ev.add(
        acc.line.person_idx,
        "line",
        True,
        acc.line.created_at,
        "line",
        "friend_added",
        np.arange(len(acc.line.person_idx)),
    )
    block = rng.random(len(acc.line.person_idx)) < c.P_LINE_BLOCK
    block_at = _later(rng, acc.line.created_at[block], as_of)
    rows = np.flatnonzero(block)
    ev.add(acc.line.person_idx[block], "line", False, block_at, "line", "blocked", rows)
    back = rng.random(len(rows)) < c.P_LINE_REFOLLOW
    ev.add(
        acc.line.person_idx[rows[back]],
        "line",
        True,
        _later(rng, block_at[back], as_of),
        "line",
        "friend_added",
        rows[back],
    )

    # DM and calls: the OMS records permission at registration (DM is sent unless refused).
    dm = rng.random(len(oms_primary)) < c.P_DM_PERMISSION
    ev.add(oms_p, "dm", dm, oms_at, "oms", "registration", oms_primary)
    call = rng.random(len(oms_primary)) < c.P_CALL_PERMISSION
    ev.add(oms_p[call], "call", True, oms_at[call], "oms", "registration", oms_primary[call])

    # Call-centre requests: 配信停止 (email), SMS stop, 発送停止 (DM), 架電停止 (call).
    requests = []
    for channel, pool_p, pool_at, pool_rows, p_stop in (
        (
            "email",
            np.r_[ec_p[opt], oms_p[mail]],
            np.r_[ec_at[opt], oms_at[mail]],
            None,
            c.P_EMAIL_UNSUBSCRIBE_CALL,
        ),
        ("sms", ec_p[sms], ec_at[sms], None, c.P_SMS_STOP),
        ("dm", oms_p[dm], oms_at[dm], oms_primary[dm], c.P_DM_STOP),
        ("call", oms_p[call], oms_at[call], oms_primary[call], c.P_CALL_STOP),
    ):
        sel = rng.random(len(pool_p)) < p_stop
        at = _office_hours(rng, _later(rng, pool_at[sel], as_of))
        ev.add(pool_p[sel], channel, False, at, "callcenter", "phone_request")
        requests.append((pool_p[sel], np.full(sel.sum(), channel), at))
        if channel == "dm":
            # Half of the DM stops are also keyed into the OMS customer master by the operator.
            also = rng.random(sel.sum()) < 0.5
            ev.add(pool_p[sel][also], "dm", False, at[also] + 600, "oms", "operator_update", pool_rows[sel][also])

    # Blacklist (OMS) and erasure requests (call centre).
    oms_rows = np.flatnonzero(rng.random(len(oms_primary)) < c.P_BLACKLIST)
    blacklisted = np.zeros(n, dtype=bool)
    blacklisted[oms_p[oms_rows]] = True
    erased_who = np.flatnonzero(rng.random(n) < c.P_ERASURE)
    erased_at = _office_hours(rng, as_of - rng.integers(2 * c.DAY, 200 * c.DAY, size=len(erased_who)))
    requests.append((erased_who, np.full(len(erased_who), "all"), erased_at))
    flags = {
        "blacklisted": blacklisted,
        "blacklist_rows": oms_primary[oms_rows],
        "erased_who": erased_who,
        "erased_at": erased_at,
        "requests": requests,
    }
    return ev, flags


def latest_state(events: pa.Table, n: int, channel: str, before: int | None = None) -> np.ndarray:
    """Consent per person for one channel: the latest event wins (no event = no consent)."""
    ch = events["channel"].to_numpy(zero_copy_only=False) == channel
    at = events["at"].to_numpy()
    if before is not None:
        ch &= at <= before
    person = events["person"].to_numpy()[ch]
    opt_in = events["opt_in"].to_numpy(zero_copy_only=False)[ch]
    state = np.zeros(n, dtype=bool)
    if len(person):
        # Events are sorted by person then time: the last row of each person is the latest.
        last = np.r_[person[1:] != person[:-1], True]
        state[person[last]] = opt_in[last]
    return state


def source_state(events: pa.Table, source: str, channel: str, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """What one system shows per account row: -1 never asked, 0 opted out, 1 opted in; and when."""
    src = events["source"].to_numpy(zero_copy_only=False)
    ch = events["channel"].to_numpy(zero_copy_only=False)
    m = (src == source) & (ch == channel)
    rows = events["account_row"].to_numpy()[m]
    at = events["at"].to_numpy()[m]
    opt = events["opt_in"].to_numpy(zero_copy_only=False)[m]
    order = np.lexsort((at, rows))
    rows, at, opt = rows[order], at[order], opt[order]
    state = np.full(n_rows, -1, dtype=np.int8)
    when = np.full(n_rows, -1, dtype=np.int64)
    keep = rows >= 0
    rows, at, opt = rows[keep], at[keep], opt[keep]
    if len(rows):
        last = np.r_[rows[1:] != rows[:-1], True]
        state[rows[last]] = opt[last].astype(np.int8)
        when[rows[last]] = at[last]
    return state, when
