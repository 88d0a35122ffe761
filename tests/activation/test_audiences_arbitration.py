"""Arbitration across audiences: at most N messages per person per period per channel (the
channel's default cap and the audience's own), the higher priority wins a person, exit conditions
(goal reached, cap reached, no response after k sends), control members take no slot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from audiences_harness import (
    AS_OF,
    TEST_SECRET,
    MemoryStore,
    TinyWarehouse,
    audience_spec,
    cart_rows,
    days_ago,
    destinations_yaml,
    person,
    write_audience,
    write_destinations,
)

from yorisoi.activation.selection.arbitration import arbitrate
from yorisoi.activation.selection.membership import connect_warehouse, eligible_members

PEOPLE = [f"P{i:05d}" for i in range(300)]


@pytest.fixture
def world(tmp_path: Path):
    """300 people deliverable on DM, all in the cart trigger; DM cap 2 per 30 days."""
    destinations = write_destinations(
        tmp_path, destinations_yaml({"frequency_caps": {"dm": {"max_messages": 2, "period_days": 30}}})
    )
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(300)]
    wh.deliverable = {(p, "dm") for p in PEOPLE}
    wh.selections = {"trigger_cart_abandonment": cart_rows(PEOPLE)}
    wh.write()
    return tmp_path, destinations, wh


def _audiences(folder: Path, destinations, *specs):
    return [write_audience(folder / "audiences", s, destinations) for s in specs]


def _run(wh: TinyWarehouse, audiences, store: MemoryStore, destinations, **channels):
    """Arbitrate `audiences`; `channels` may give `channels=` (messages) and `lists=` per audience."""
    con = connect_warehouse(wh.path)
    try:
        contenders = [(a, eligible_members(a, con, TEST_SECRET)) for a in audiences]
        return arbitrate(
            contenders, store=store, as_of=AS_OF, default_caps=destinations.frequency_caps, con=con, **channels
        )
    finally:
        con.close()


def test_at_most_n_per_period_per_channel_across_audiences(world) -> None:
    folder, destinations, wh = world
    audiences = _audiences(
        folder,
        destinations,
        audience_spec("first", priority=1, holdout_percent=0),
        audience_spec("second", priority=2, holdout_percent=0),
        audience_spec("third", priority=3, holdout_percent=0),
    )
    store = MemoryStore()
    store.record_send("earlier", "dm", "P00001", days_ago(10))  # one in the period: room for one more
    for d in (5, 6):
        store.record_send("earlier", "dm", "P00002", days_ago(d))  # two: the cap is reached
    for d in (40, 45):
        store.record_send("earlier", "dm", "P00003", days_ago(d))  # outside the 30 days
    store.record_send("earlier", "email", "P00004", days_ago(1))  # another channel
    alloc = _run(wh, audiences, store, destinations)
    sends = alloc.sends
    per_person = sends.groupby("person_id")["audience"].apply(sorted).to_dict()
    assert per_person["P00001"] == ["first"]
    assert "P00002" not in per_person
    assert per_person["P00003"] == ["first", "second"] == per_person["P00004"] == per_person["P00000"]
    assert not (sends["audience"] == "third").any(), "the third audience must find everyone capped"
    # the invariant: what the ledger holds in the period + this run <= N, for everyone
    ledger = pd.Series(store.sent_counts("dm", days_ago(30)))
    total = sends.groupby("person_id").size().add(ledger, fill_value=0)
    assert (total <= 2).all()
    assert alloc.counts["second"] == {"frequency_cap_dm": 2}  # P00001 and P00002
    assert alloc.counts["third"] == {"frequency_cap_dm": 300}


def test_the_audiences_own_cap_is_tighter_and_counts_every_audience(world) -> None:
    folder, destinations, wh = world
    strict = audience_spec("strict", priority=2, holdout_percent=0, frequency_cap={"max_messages": 1, "period_days": 7})
    audiences = _audiences(folder, destinations, audience_spec("loose", priority=1, holdout_percent=0), strict)
    store = MemoryStore()
    store.record_send("elsewhere", "dm", "P00010", days_ago(3))  # within strict's 7 days
    store.record_send("elsewhere", "dm", "P00011", days_ago(10))  # outside them
    sends = _run(wh, audiences, store, destinations).sends
    got = sends.groupby("audience")["person_id"].apply(set).to_dict()
    # "loose" took everyone in this run, so "strict" (1 per 7 days, this run included) gets nobody
    assert got["loose"] == set(PEOPLE)
    assert "strict" not in got
    # alone, strict skips only the person messaged 3 days ago
    sends = _run(wh, [audiences[1]], store, destinations).sends
    assert set(sends["person_id"]) == set(PEOPLE) - {"P00010"}


@pytest.mark.parametrize("winner", ["cart", "winback"])
def test_the_higher_priority_wins_a_person(world, winner: str) -> None:
    folder, destinations, wh = world
    cap_one = destinations_yaml({"frequency_caps": {"dm": {"max_messages": 1, "period_days": 1}}})
    destinations = write_destinations(folder, cap_one)
    cart = audience_spec("cart", priority=1 if winner == "cart" else 5, holdout_percent=0)
    winback = audience_spec("winback", priority=5 if winner == "cart" else 1, holdout_percent=0)
    wh.selections["trigger_cart_abandonment"] = cart_rows(PEOPLE[:200])
    wh.selections["trigger_dormant_winback"] = [{"person_id": p, "lifetime_spend": 9000} for p in PEOPLE[100:]]
    wh.write()
    winback["selection"] = {"sql": "select person_id from marts.trigger_dormant_winback where lifetime_spend >= 5000"}
    audiences = _audiences(folder, destinations, cart, winback)
    sends = _run(wh, audiences, MemoryStore(), destinations).sends
    assert sends["person_id"].is_unique  # one message per person
    both = set(PEOPLE[100:200])
    got = sends.set_index("person_id")["audience"]
    assert set(got[got.index.isin(both)]) == {winner}
    assert set(got[got.index.isin(PEOPLE[:100])]) == {"cart"}
    assert set(got[got.index.isin(PEOPLE[200:])]) == {"winback"}
    # deterministic: the same inputs give the same allocation
    again = _run(wh, audiences, MemoryStore(), destinations).sends
    assert again.equals(sends)


def test_a_list_is_not_capped_and_takes_no_message_slot(world) -> None:
    """A list the destination keeps (ESP list, LINE audience) is membership, not a message: a
    capped person stays on the list (capping it would remove them, then add them back next
    week), and being listed uses none of the cap the messages share."""
    folder, destinations, wh = world
    audiences = _audiences(
        folder,
        destinations,
        audience_spec("vip_list", priority=1, holdout_percent=0),
        audience_spec("cart_dm", priority=2, holdout_percent=0),
    )
    store = MemoryStore()
    for d in (5, 6):
        store.record_send("earlier", "dm", "P00002", days_ago(d))  # capped for messages
    alloc = _run(
        wh, audiences, store, destinations, channels={"vip_list": [], "cart_dm": ["dm"]}, lists={"vip_list": ["dm"]}
    )
    assert set(alloc.person_ids("vip_list", "dm", "list")) == set(PEOPLE)  # P00002 included
    assert alloc.person_ids("vip_list", "dm") == []  # no message
    assert set(alloc.person_ids("cart_dm", "dm")) == set(PEOPLE) - {"P00002"}  # the list took no slot
    assert alloc.counts["vip_list"] == {}


def test_control_members_receive_nothing_and_take_no_slot(world) -> None:
    folder, destinations, wh = world
    cap_one = destinations_yaml({"frequency_caps": {"dm": {"max_messages": 1, "period_days": 1}}})
    destinations = write_destinations(folder, cap_one)
    audiences = _audiences(
        folder,
        destinations,
        audience_spec("held", priority=1, holdout_percent=30),
        audience_spec("next_one", priority=2, holdout_percent=0),
    )
    alloc = _run(wh, audiences, MemoryStore(), destinations)
    held = alloc.members["held"].frame
    control = set(held.loc[held["grp"] == "control", "person_id"])
    assert 40 < len(control) < 140
    sends = alloc.sends
    assert not set(sends.loc[sends["audience"] == "held", "person_id"]) & control
    assert set(sends.loc[sends["audience"] == "next_one", "person_id"]) == control
    assert (sends["grp"] == "treatment").all()


def test_exit_conditions(world) -> None:
    folder, destinations, wh = world
    goal = audience_spec("goal", priority=1, holdout_percent=0, exit={"goal": "purchase"})
    capped = audience_spec("capped", priority=2, holdout_percent=0, exit={"max_sends": 2})
    quiet = audience_spec("quiet", priority=3, holdout_percent=0, exit={"no_response_after": 2})
    wide = destinations_yaml({"frequency_caps": {"dm": {"max_messages": 50, "period_days": 30}}})
    destinations = write_destinations(folder, wide)
    audiences = _audiences(folder, destinations, goal, capped, quiet)
    store = MemoryStore()
    # goal: first send 5 days ago; P20 bought after it (out), P21 only before (in), P22's order
    # after it was cancelled (in)
    for p in ("P00020", "P00021", "P00022"):
        store.record_send("goal", "dm", p, days_ago(5), interval="d-5")
    wh.orders = [
        {"order_id": "1", "person_id": "P00020", "status": "shipped", "is_counted": True, "ordered_at": days_ago(2)},
        {"order_id": "2", "person_id": "P00021", "status": "shipped", "is_counted": True, "ordered_at": days_ago(9)},
        {"order_id": "3", "person_id": "P00022", "status": "cancelled", "is_counted": False, "ordered_at": days_ago(1)},
    ]
    # cap reached: P30 reached twice (two intervals, two destinations in one), P31 once
    for interval, d in (("d-9", 9), ("d-4", 4)):
        store.record_send("capped", "dm", "P00030", days_ago(d), interval=interval)
    store.record_send("capped", "dm", "P00030", days_ago(4), interval="d-4")  # a second destination, same run
    store.record_send("capped", "dm", "P00031", days_ago(4), interval="d-4")
    # no response after 2: P40 silent (out), P41 clicked an email since (in), P42 bought (in), P43 sent once (in)
    for p in ("P00040", "P00041", "P00042"):
        for interval, d in (("d-8", 8), ("d-3", 3)):
            store.record_send("quiet", "dm", p, days_ago(d), interval=interval)
    store.record_send("quiet", "dm", "P00043", days_ago(3), interval="d-3")
    wh.orders.append(
        {"order_id": "4", "person_id": "P00042", "status": "pending", "is_counted": True, "ordered_at": days_ago(1)}
    )
    wh.esp_events = [
        {"person_id": "P00041", "opened_at": None, "clicked_at": days_ago(2)},
        {"person_id": "P00040", "opened_at": days_ago(20), "clicked_at": None},  # before the first send
    ]
    wh.write()
    alloc = _run(wh, audiences, store, destinations)
    got = alloc.sends.groupby("audience")["person_id"].apply(set).to_dict()
    assert "P00020" not in got["goal"] and {"P00021", "P00022"} <= got["goal"]
    assert "P00030" not in got["capped"] and "P00031" in got["capped"]
    assert "P00040" not in got["quiet"] and {"P00041", "P00042", "P00043"} <= got["quiet"]
    assert alloc.counts["goal"]["exit_goal_reached"] == 1
    assert alloc.counts["capped"]["exit_max_sends"] == 1
    assert alloc.counts["quiet"]["exit_no_response"] == 1
    # exits apply to the member set itself (both groups), which membership then stores
    assert "P00020" not in set(alloc.members["goal"].frame["person_id"])

    # a list the destination keeps loses only those who reached the goal: the count-based exits
    # stop messages, not membership of the list
    as_lists = _run(
        wh,
        audiences,
        store,
        destinations,
        channels={a.name: [] for a in audiences},
        lists={a.name: ["dm"] for a in audiences},
    )
    assert "P00020" not in as_lists.person_ids("goal", "dm", "list")
    assert "P00030" in as_lists.person_ids("capped", "dm", "list")
    assert "P00040" in as_lists.person_ids("quiet", "dm", "list")


def test_opted_out_and_blacklisted_people_never_reach_arbitration(world) -> None:
    folder, destinations, wh = world
    wh.deliverable -= {("P00050", "dm")}
    wh.people[51]["is_blacklisted"] = True  # even if deliverable_customers still listed them
    wh.people[52]["is_erased"] = True
    wh.write()
    (audience,) = _audiences(folder, destinations, audience_spec("plain", holdout_percent=0))
    alloc = _run(wh, [audience], MemoryStore(), destinations)
    assert not {"P00050", "P00051", "P00052"} & set(alloc.sends["person_id"])
    assert len(alloc.sends) == 297


def test_list_destinations_are_told_apart_from_messages() -> None:
    from yorisoi.activation import run

    destinations = run.Context.load().destinations
    kinds = {name: run.sync_kind(d) for name, d in destinations.by_name.items()}
    assert {name for name, kind in kinds.items() if kind == "list"} == {"esp_list", "line_audience"}
