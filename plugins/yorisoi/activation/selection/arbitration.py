"""Arbitration: across every audience of a run, who actually gets a message on which channel.

Rules, applied in this order and to whole member sets at once (pandas / DuckDB, no per-person
Python loops):

1. **Exit conditions** (per audience, to both groups alike so the control stays comparable):
   `goal: purchase` (a counted order since this audience's first send to the person),
   `max_sends` (this audience has messaged the person that many times: distinct run intervals),
   `no_response_after: k` (k sends and no response since the first: no counted order, and no
   open or click in the email provider's events when the warehouse has them). Opted-out,
   blacklisted and erased people never reach this step (membership drops them).
2. **Frequency caps** per person per channel: the channel's default cap (include/destinations.yml)
   and the audience's own `frequency_cap`, the tighter winning. A person's count is what the send
   ledger says was sent on the channel in the cap's period (`store.sent_counts`) plus what
   audiences of higher priority took earlier in this same run.
3. **Priority**: audiences are served in order of `priority` (1 first; ties by name), so when the
   cap leaves room for only one message the higher priority wins the person. Control-group
   members receive nothing and take no slot.

Caps, priority and the count-based exits (`max_sends`, `no_response_after`) are about
*messages*. A list a destination keeps (an ESP list, a LINE audience: `lists`) is not a message:
being on it sends nothing, and capping it would turn "had email this week" into a removal from the
list and an add next week; a thank-you letter sent once must not take the person off the VIP
list. So list channels get every treatment member except those who reached the goal, uncapped,
and take no slot from the messages (the campaign the ESP or LINE sends from the list is capped
there). `sends.sync` says which.

The result is deterministic: the same members, ledger and definitions give the same allocation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import duckdb
import pandas as pd

from .definitions import Audience, FrequencyCap
from .membership import TREATMENT, Members, table_exists

log = logging.getLogger(__name__)

EXIT_REASONS = ("exit_goal_reached", "exit_max_sends", "exit_no_response")
CAP_REASON = "frequency_cap"
MESSAGE, LIST = "message", "list"  # sends.sync: a capped message, or membership of a kept list


class SendHistoryStore(Protocol):
    def sent_counts(self, channel: str, since: datetime) -> dict[str, int]: ...


@dataclass
class Allocation:
    """Who is sent what in this run.

    `sends`: one row per (audience, channel, sync, person_id) let through, with grp and variant;
    `sync` is "message" (capped sends) or "list" (membership of a list the destination keeps).
    `members`: each audience's members after its exit conditions (both groups), as
    :class:`Members`, which membership writes to the store.
    `counts`: per audience, how many left by each exit reason and, per channel, how many the cap
    held back."""

    sends: pd.DataFrame
    members: dict[str, Members]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def person_ids(self, audience: str, channel: str, sync: str = MESSAGE) -> list[str]:
        s = self.sends
        chosen = (s["audience"] == audience) & (s["channel"] == channel) & (s["sync"] == sync)
        return s.loc[chosen, "person_id"].tolist()

    def variants(self, audience: str) -> dict[str, str | None]:
        f = self.members[audience].frame
        return dict(zip(f["person_id"].tolist(), f["variant"].tolist(), strict=True))


def _as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# ---- send history (the ledger) -------------------------------------------------------------------


def send_history(store: Any, audiences: Sequence[str]) -> pd.DataFrame:
    """`audience, person_id, sends, first_sent_at` from the store's send ledger (status sent):
    sends = distinct run intervals in which the audience reached the person on any destination.

    Uses `store.send_history(audiences)` when the store offers it, else reads the contract's
    `send_ledger` table through the store's SQLAlchemy engine."""
    empty = pd.DataFrame(
        {
            "audience": pd.Series(dtype="string"),
            "person_id": pd.Series(dtype="string"),
            "sends": pd.Series(dtype="int64"),
            "first_sent_at": pd.Series(dtype="datetime64[us, UTC]"),
        }
    )
    if not audiences or store is None:
        return empty
    if hasattr(store, "send_history"):
        frame = pd.DataFrame(store.send_history(list(audiences)))
    else:
        import sqlalchemy as sa

        from ..delivery.store import send_ledger as ledger

        engine = getattr(store, "engine", None)
        if engine is None:
            return empty
        stmt = (
            sa.select(
                ledger.c.audience,
                ledger.c.person_id,
                sa.func.count(sa.distinct(ledger.c.interval)).label("sends"),
                sa.func.min(sa.func.coalesce(ledger.c.done_at, ledger.c.claimed_at)).label("first_sent_at"),
            )
            .where(ledger.c.status == "sent", ledger.c.audience.in_(list(audiences)))
            .group_by(ledger.c.audience, ledger.c.person_id)
        )
        with engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(stmt).mappings().all())
    if frame.empty:
        return empty
    frame["first_sent_at"] = pd.to_datetime(frame["first_sent_at"], utc=True)
    frame["sends"] = frame["sends"].astype("int64")
    return frame[["audience", "person_id", "sends", "first_sent_at"]]


def _exits(
    audience: Audience, members: pd.DataFrame, history: pd.DataFrame, con: duckdb.DuckDBPyConnection | None
) -> pd.Series:
    """The exit reason of each member (index-aligned with `members`; None = stays)."""
    reasons = pd.Series([None] * len(members), index=members.index, dtype=object)
    ex = audience.exit
    if members.empty or history.empty or not (ex.goal or ex.max_sends or ex.no_response_after):
        return reasons
    h = history[history["audience"] == audience.name].set_index("person_id")
    if h.empty:
        return reasons
    sends = members["person_id"].map(h["sends"]).fillna(0).astype("int64")
    first = members["person_id"].map(h["first_sent_at"])
    responded = pd.Series(False, index=members.index)
    bought = pd.Series(False, index=members.index)
    if con is not None and (ex.goal or ex.no_response_after):
        sent = pd.DataFrame({"person_id": members["person_id"], "first_sent_at": first})
        sent = sent[sent["first_sent_at"].notna()]
        if not sent.empty:
            con.register("first_sends", sent)
            try:
                buyers = {
                    r[0]
                    for r in con.execute(
                        """
                        select distinct s.person_id from first_sends as s
                        join marts.fct_orders as o on o.person_id = s.person_id
                        where o.is_counted and o.ordered_at > s.first_sent_at
                        """
                    ).fetchall()
                }
                engaged: set[str] = set()
                if table_exists(con, "staging", "stg_esp__sends") and table_exists(
                    con, "marts", "bridge_customer_identities"
                ):
                    engaged = {
                        r[0]
                        for r in con.execute(
                            """
                            select distinct s.person_id from first_sends as s
                            join marts.bridge_customer_identities as b on b.person_id = s.person_id
                                and b.source = 'ecommerce'
                            join staging.stg_esp__sends as e on e.ec_customer_id = b.source_id
                            where e.opened_at > s.first_sent_at or e.clicked_at > s.first_sent_at
                            """
                        ).fetchall()
                    }
            finally:
                con.unregister("first_sends")
            bought = members["person_id"].isin(buyers)
            responded = bought | members["person_id"].isin(engaged)
    if ex.no_response_after:
        reasons[(sends >= ex.no_response_after) & ~responded] = "exit_no_response"
    if ex.max_sends:
        reasons[sends >= ex.max_sends] = "exit_max_sends"
    if ex.goal == "purchase":
        reasons[bought] = "exit_goal_reached"
    return reasons


# ---- the allocation ------------------------------------------------------------------------------


def arbitrate(
    contenders: Sequence[tuple[Audience, Members]],
    *,
    store: SendHistoryStore | Any,
    as_of: datetime,
    default_caps: Mapping[str, FrequencyCap],
    channels: Mapping[str, Sequence[str]] | None = None,
    lists: Mapping[str, Sequence[str]] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    history: pd.DataFrame | None = None,
) -> Allocation:
    """Allocate this run's messages. `contenders`: every audience due in the run with its
    members; `channels`: the channels each audience sends messages on in this run (default: all
    of its channels); `lists`: the channels on which it syncs a list (uncapped; default none);
    `con`: the warehouse, for purchases and responses (exit conditions)."""
    as_of = _as_utc(as_of)
    ordered = sorted(contenders, key=lambda c: (c[0].priority, c[0].name))
    if history is None:
        history = send_history(
            store, [a.name for a, _ in ordered if a.exit.goal or a.exit.max_sends or a.exit.no_response_after]
        )
    counts: dict[str, dict[str, int]] = {}
    kept: dict[str, Members] = {}
    listed: dict[str, pd.DataFrame] = {}  # members a list keeps: all but those who reached the goal
    for audience, members in ordered:
        reasons = _exits(audience, members.frame, history, con)
        left = reasons.notna()
        listed[audience.name] = members.frame[(reasons != "exit_goal_reached").to_numpy()]
        counts[audience.name] = {r: int((reasons == r).sum()) for r in EXIT_REASONS if (reasons == r).any()}
        kept[audience.name] = Members(
            audience=members.audience,
            frame=members.frame[~left].reset_index(drop=True),
            selected=members.selected,
            not_contactable=members.not_contactable,
            duplicate_rows=members.duplicate_rows,
            stats={**members.stats, "exited": int(left.sum())},
        )
    # Ledger counts, one query per (channel, period) in use.
    ledger: dict[tuple[str, int], pd.Series] = {}

    def ledger_counts(channel: str, period_days: int) -> pd.Series:
        key = (channel, period_days)
        if key not in ledger:
            since = as_of - timedelta(days=period_days)
            got = store.sent_counts(channel, since) if store is not None else {}
            ledger[key] = pd.Series(got, dtype="int64")
        return ledger[key]

    def rows(audience: Audience, channel: str, sync: str, people: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "audience": audience.name,
                "channel": channel,
                "sync": sync,
                "person_id": people["person_id"].to_numpy(),
                "grp": people["grp"].to_numpy(),
                "variant": people["variant"].to_numpy(),
            }
        )

    taken: dict[str, pd.Series] = {}  # channel -> messages given in this run so far, by person
    parts = []
    for audience, _ in ordered:
        frame = kept[audience.name].frame
        treat = frame[frame["grp"] == TREATMENT]
        on_list = listed[audience.name][listed[audience.name]["grp"] == TREATMENT]
        for channel in (lists or {}).get(audience.name, ()):
            column = f"deliverable_{channel}"
            parts.append(rows(audience, channel, LIST, on_list[on_list[column]] if column in on_list else on_list[:0]))
        for channel in (channels or {}).get(audience.name, audience.channels):
            cand = treat[treat[f"deliverable_{channel}"]] if f"deliverable_{channel}" in treat else treat.iloc[0:0]
            if cand.empty:
                continue
            ids = pd.Index(cand["person_id"])
            in_run = taken.get(channel, pd.Series(dtype="int64")).reindex(ids, fill_value=0)
            allowed = pd.Series(True, index=ids)
            caps = [c for c in (default_caps.get(channel), audience.frequency_cap) if c is not None]
            for cap in caps:
                before = ledger_counts(channel, cap.period_days).reindex(ids, fill_value=0) + in_run
                allowed &= before < cap.max_messages
            held = int((~allowed).sum())
            if held:
                counts[audience.name][f"{CAP_REASON}_{channel}"] = held
            winners = cand[allowed.to_numpy()]
            if winners.empty:
                continue
            taken[channel] = (
                taken.get(channel, pd.Series(dtype="int64"))
                .add(pd.Series(1, index=pd.Index(winners["person_id"]), dtype="int64"), fill_value=0)
                .astype("int64")
            )
            parts.append(rows(audience, channel, MESSAGE, winners))
    columns = ["audience", "channel", "sync", "person_id", "grp", "variant"]
    sends = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    )
    return Allocation(sends=sends[columns], members=kept, counts=counts)
