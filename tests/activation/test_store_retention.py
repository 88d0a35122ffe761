"""Retention of the activation store (`ActivationStore.prune`, `yorisoi activation prune`).

Old rows go; each audience's latest members run, the snapshots and every row a frequency cap can
still count stay; the exit conditions (`max_sends`, `no_response_after`, `goal`) give the same
answers from the folded `send_history` as from the whole ledger; a dry run changes nothing. The
same on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from audiences_harness import (
    AS_OF,
    TEST_SECRET,
    TinyWarehouse,
    audience_spec,
    cart_rows,
    days_ago,
    person,
    write_audience,
    write_destinations,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_engine import postgres_url  # noqa: F401 - the fixture
from typer.testing import CliRunner

from yorisoi.activation.cli import activation_app
from yorisoi.activation.delivery.store import ActivationStore, Change, Claim, default_url, metadata
from yorisoi.activation.selection import arbitration
from yorisoi.activation.selection.definitions import DestinationConfigError, Retention, load_destinations
from yorisoi.activation.selection.membership import connect_warehouse, eligible_members
from yorisoi.audit import list_entries

DEFAULTS = Retention()  # members 90 days, sync 1095, ledger 400
PEOPLE = [f"P{i:05d}" for i in range(60)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ActivationStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'activation.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with ActivationStore(url) as opened:
        yield opened


# ---- writing the store through its own API ------------------------------------------------------


def interval_of(at: datetime) -> str:
    """The run interval of an audience run after the segment build: the day."""
    return at.date().isoformat()


def send(
    store: ActivationStore,
    audience: str,
    person_id: str,
    at: datetime,
    *,
    interval: str | None = None,
    destination: str = "sftp_dm_list",
    channel: str = "dm",
    outcome: str = "sent",
) -> None:
    """One recipient through the ledger as the engine does it: claimed at `at`, then settled as
    sent, released as failed, or left claimed."""
    interval = interval or interval_of(at)
    claim_id = f"{audience}/{destination}/{interval}/{person_id}"
    store.claim(
        audience=audience,
        destination=destination,
        channel=channel,
        interval=interval,
        keys=[person_id],
        person_ids=[person_id],
        claim_id=claim_id,
        owner="test",
        now=at,
    )
    if outcome == "sent":
        store.settle(
            run_id=f"run-{interval}",
            audience=audience,
            destination=destination,
            operation="add",
            at=at,
            keys=[person_id],
            person_ids=[person_id],
            claim=Claim(channel, interval, "test", claim_id, whole_group=True),
        )
    elif outcome == "failed":
        store.release(audience=audience, destination=destination, interval=interval, owner="test", claim_id=claim_id)


def resend(
    store: ActivationStore, audience: str, person_id: str, interval: str, at: datetime, destination: str
) -> None:
    """A rerun takes over a failed row at `at` and this time the destination confirms it."""
    old = f"{audience}/{destination}/{interval}/{person_id}"
    store.reclaim(
        audience=audience,
        destination=destination,
        interval=interval,
        keys=[person_id],
        old_claim_id=old,
        claim_id=f"{old}/again",
        owner="rerun",
        now=at,
        stale_before=at,
    )
    store.settle(
        run_id=f"run-{interval}-again",
        audience=audience,
        destination=destination,
        operation="add",
        at=at,
        keys=[person_id],
        person_ids=[person_id],
        claim=Claim("dm", interval, "rerun", f"{old}/again", whole_group=True),
    )


def members(run_id: str, audience: str, people: list[str], at: datetime) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "audience": audience, "person_id": p, "grp": "treatment", "variant": "A", "computed_at": at}
        for p in people
    ]


def sync_run(store: ActivationStore, run_id: str, at: datetime, keys: list[str], rejected: str) -> None:
    """A list sync at `at`: `keys` confirmed (changelog + snapshot), `rejected` refused."""
    store.start_run(
        run_id, audience="weekly", destination="esp_list", interval=interval_of(at), mode="diff", started_at=at
    )
    store.settle(
        run_id=run_id,
        audience="weekly",
        destination="esp_list",
        operation="add",
        at=at,
        keys=keys,
        person_ids=keys,
        others=[Change(rejected, rejected, "rejected", "400", "invalid address")],
        snapshot="upsert",
    )
    store.finish_run(run_id, status="succeeded", counts={"adds": len(keys)}, finished_at=at)


def every_row(store: ActivationStore) -> dict[str, list[tuple]]:
    with store.engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(sa.select(t))), key=repr) for t in metadata.sorted_tables}


def history(store: ActivationStore, audiences: list[str]) -> pd.DataFrame:
    """What arbitration reads for the exit conditions, in a stable order."""
    frame = arbitration.send_history(store, audiences)
    return frame.sort_values(["audience", "person_id"]).reset_index(drop=True)


def history_from_the_whole_ledger(store: ActivationStore, audiences: list[str]) -> pd.DataFrame:
    """The definition: arbitration's own query over the ledger (used for a store without
    send_history), run on a store that was never pruned."""

    class LedgerOnly:
        engine = store.engine

    frame = arbitration.send_history(LedgerOnly(), audiences)
    return frame.sort_values(["audience", "person_id"]).reset_index(drop=True)


# ---- members, sync runs, snapshots -------------------------------------------------------------


def old_and_new(store: ActivationStore) -> None:
    """Members runs of three audiences, two sync runs either side of 3 years, a 5-year-old snapshot."""
    store.write_members(members("weekly-200", "weekly", PEOPLE[:5], days_ago(200)))
    store.write_members(members("weekly-100", "weekly", PEOPLE[:4], days_ago(100)))
    store.write_members(members("weekly-10", "weekly", PEOPLE[:3], days_ago(10)))
    store.write_members(members("dormant-300", "dormant", PEOPLE[:6], days_ago(300)))
    store.write_members(members("dormant-200", "dormant", PEOPLE[:2], days_ago(200)))  # latest, however old
    store.write_members(members("tied-a", "tied", PEOPLE[:2], days_ago(150)))
    store.write_members(members("tied-b", "tied", PEOPLE[:1], days_ago(150)))  # same time: the higher run id wins
    sync_run(store, "sync-1100", days_ago(1100), ["a@example.jp", "b@example.jp"], rejected="x@example")
    sync_run(store, "sync-1000", days_ago(1000), ["c@example.jp"], rejected="y@example")
    store.start_run(
        "sync-1800", audience="weekly", destination="esp_list", interval="i", mode="diff", started_at=days_ago(1800)
    )
    store.settle(
        run_id="sync-1800",
        audience="weekly",
        destination="esp_list",
        operation="add",
        at=days_ago(1800),
        keys=["z@example.jp"],
        person_ids=["z@example.jp"],
        snapshot="upsert",
    )


def test_old_rows_go_and_the_latest_members_and_the_snapshots_stay(store: ActivationStore) -> None:
    old_and_new(store)
    latest = {a: store.last_members(a) for a in ("weekly", "dormant", "tied")}
    snapshot = store.load_snapshot("weekly", "esp_list")
    assert set(snapshot) == {"a@example.jp", "b@example.jp", "c@example.jp", "z@example.jp"}

    counts = store.prune(AS_OF, DEFAULTS)

    assert counts == {
        "audience_members": 5 + 4 + 6 + 2,  # weekly-200, weekly-100, dormant-300, tied-a
        "sync_changelog": 3 + 1,  # sync-1100 (2 added, 1 rejected), sync-1800 (1 added)
        "sync_rejects": 1,
        "sync_runs": 2,
        "sync_claimants": 0,
        "send_history": 0,
        "send_ledger": 0,
    }
    with store.engine.connect() as conn:
        runs_left = conn.execute(sa.text("SELECT DISTINCT audience, run_id FROM audience_members")).all()
    assert sorted(runs_left) == [("dormant", "dormant-200"), ("tied", "tied-b"), ("weekly", "weekly-10")]
    assert {a: store.last_members(a) for a in latest} == latest  # what the breaker compares with
    assert [r["run_id"] for r in store.runs()] == ["sync-1000"]
    assert store.changelog("sync-1100") == store.rejects("sync-1100") == store.changelog("sync-1800") == []
    assert [r["key"] for r in store.changelog("sync-1000")] == ["c@example.jp", "y@example"]
    assert [r["key"] for r in store.rejects("sync-1000")] == ["y@example"]
    assert store.load_snapshot("weekly", "esp_list") == snapshot  # the destinations' state: never pruned
    assert store.prune(AS_OF, DEFAULTS) == dict.fromkeys(counts, 0)  # a second prune finds nothing


def test_a_dry_run_counts_the_same_rows_and_deletes_nothing(store: ActivationStore) -> None:
    old_and_new(store)
    send(store, "capped", "P00001", days_ago(700))
    send(store, "capped", "P00001", days_ago(500), outcome="failed")
    send(store, "capped", "P00002", days_ago(5))
    before = every_row(store)

    planned = store.prune(AS_OF, DEFAULTS, dry_run=True)

    assert every_row(store) == before
    assert planned["send_ledger"] == 2 and planned["send_history"] == 1 and planned["audience_members"] == 17
    assert store.prune(AS_OF, DEFAULTS) == planned


# ---- the ledger: exit conditions and frequency caps ----------------------------------------------


@pytest.fixture
def world(tmp_path: Path):
    """60 people deliverable on DM, all in the cart trigger; three audiences with exit conditions."""
    destinations = write_destinations(tmp_path)
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(len(PEOPLE))]
    wh.deliverable = {(p, "dm") for p in PEOPLE}
    wh.selections = {"trigger_cart_abandonment": cart_rows(PEOPLE)}
    specs = [
        audience_spec("goal", priority=1, holdout_percent=0, exit={"goal": "purchase"}),
        audience_spec("capped", priority=2, holdout_percent=0, exit={"max_sends": 3}),
        audience_spec("quiet", priority=3, holdout_percent=0, exit={"no_response_after": 2}),
    ]
    audiences = [write_audience(tmp_path / "audiences", s, destinations) for s in specs]
    return wh, audiences, destinations


def allocate(wh: TinyWarehouse, audiences, destinations, store: ActivationStore) -> arbitration.Allocation:
    con = connect_warehouse(wh.path)
    try:
        contenders = [(a, eligible_members(a, con, TEST_SECRET)) for a in audiences]
        return arbitration.arbitrate(
            contenders, store=store, as_of=AS_OF, default_caps=destinations.frequency_caps, con=con
        )
    finally:
        con.close()


def test_the_exit_conditions_allocate_the_same_after_pruning(store: ActivationStore, world) -> None:
    wh, audiences, destinations = world
    # max_sends 3, counted in distinct run intervals across destinations
    for d in (700, 500, 10):
        send(store, "capped", "P00030", days_ago(d))  # 3 intervals: exits
    for dest in ("sftp_dm_list", "s3_dm_vendor"):
        send(store, "capped", "P00031", days_ago(700), destination=dest)  # one interval on two destinations
    send(store, "capped", "P00031", days_ago(10))  # 2 intervals: stays
    for d in (700, 500, 450):
        send(store, "capped", "P00032", days_ago(d))  # 3 intervals, all beyond the retention: exits
    send(store, "capped", "P00033", days_ago(700))
    late = interval_of(days_ago(420))
    send(store, "capped", "P00033", days_ago(420), interval=late)
    send(store, "capped", "P00033", days_ago(420), interval=late, destination="s3_dm_vendor", outcome="failed")
    resend(store, "capped", "P00033", late, days_ago(380), "s3_dm_vendor")  # the same interval, settled later
    # P33: 2 intervals (the late one half old, half recent): stays
    monday, tuesday = interval_of(days_ago(402)), interval_of(days_ago(401))
    send(store, "capped", "P00034", days_ago(402), interval=monday, outcome="failed")
    send(store, "capped", "P00034", days_ago(401), interval=tuesday)
    resend(store, "capped", "P00034", monday, days_ago(399), "sftp_dm_list")  # Monday's retry after Tuesday's
    send(store, "capped", "P00034", days_ago(10))  # 3 intervals, Tuesday's beyond the retention: exits
    # no_response_after 2: P40 bought after the first send, 600 days ago (stays); P41 never (exits)
    for d in (700, 10):
        send(store, "quiet", "P00040", days_ago(d))
    for d in (700, 500):
        send(store, "quiet", "P00041", days_ago(d))
    # goal purchase: P20 bought after a first send long ago (exits); P21 before it (stays)
    send(store, "goal", "P00020", days_ago(700))
    send(store, "goal", "P00021", days_ago(500))
    wh.orders = [
        {"order_id": "1", "person_id": "P00040", "status": "shipped", "is_counted": True, "ordered_at": days_ago(600)},
        {"order_id": "2", "person_id": "P00020", "status": "shipped", "is_counted": True, "ordered_at": days_ago(600)},
        {"order_id": "3", "person_id": "P00021", "status": "shipped", "is_counted": True, "ordered_at": days_ago(650)},
    ]
    wh.write()
    names = [a.name for a in audiences]
    whole = history_from_the_whole_ledger(store, names)
    pd.testing.assert_frame_equal(history(store, names), whole)
    before = allocate(wh, audiences, destinations, store)

    counts = store.prune(AS_OF, DEFAULTS)

    assert counts["send_ledger"] == 13 and counts["send_history"] == 8  # all above but P34
    left = {
        (r["destination"], r["person_id"], r["interval"])
        for d in ("sftp_dm_list", "s3_dm_vendor")
        for r in store.ledger("capped", d)
    }
    recent = interval_of(days_ago(10))
    assert left == {
        ("sftp_dm_list", "P00030", recent),
        ("sftp_dm_list", "P00031", recent),
        ("sftp_dm_list", "P00033", late),
        ("s3_dm_vendor", "P00033", late),
        ("sftp_dm_list", "P00034", monday),  # Monday's retry is recent: it holds Tuesday back
        ("sftp_dm_list", "P00034", tuesday),
        ("sftp_dm_list", "P00034", recent),
    }
    pd.testing.assert_frame_equal(history(store, names), whole)
    after = allocate(wh, audiences, destinations, store)
    pd.testing.assert_frame_equal(after.sends, before.sends)
    assert after.counts == before.counts
    assert before.counts["capped"]["exit_max_sends"] == 3  # P30, P32, P34
    assert before.counts["quiet"]["exit_no_response"] == 1  # P41
    assert before.counts["goal"]["exit_goal_reached"] == 1  # P20
    stay = {name: set(after.members[name].frame["person_id"]) for name in names}
    assert {"P00031", "P00033"} <= stay["capped"] and not {"P00030", "P00032", "P00034"} & stay["capped"]
    assert "P00040" in stay["quiet"] and "P00041" not in stay["quiet"]
    assert "P00021" in stay["goal"] and "P00020" not in stay["goal"]


def test_frequency_caps_count_the_same_sends_within_the_window(store: ActivationStore) -> None:
    shortest = Retention(send_ledger_days=367)
    for d in (1, 6, 29, 200, 365.5, 367.5, 500):
        send(store, "news", "P00001", days_ago(d), destination="esp_list", channel="email")
    send(store, "news", "P00002", days_ago(3), destination="esp_list", channel="email", outcome="claimed")
    send(store, "news", "P00003", days_ago(200), destination="esp_list", channel="email", outcome="failed")
    send(store, "news", "P00004", days_ago(500), destination="esp_list", channel="email", outcome="failed")
    windows = (1, 7, 30, 90, 366)
    caps_before = {w: store.sent_counts("email", days_ago(w)) for w in windows}

    counts = store.prune(AS_OF, shortest)

    assert {w: store.sent_counts("email", days_ago(w)) for w in windows} == caps_before
    assert caps_before[366] == {"P00001": 5}
    assert counts["send_ledger"] == 3  # P1's sends 367.5 and 500 days ago, P4's failed claim 500 days ago
    left = {(r["person_id"], r["status"]) for r in store.ledger("news", "esp_list")}
    assert ("P00002", "claimed") in left and ("P00003", "failed") in left  # unsettled, within a cap window
    assert ("P00004", "failed") not in left


def test_an_interval_sent_again_after_its_rows_were_pruned_counts_once(store: ActivationStore) -> None:
    old = interval_of(days_ago(700))
    send(store, "capped", "P00001", days_ago(700))
    send(store, "capped", "P00001", days_ago(10))
    store.prune(AS_OF, DEFAULTS)
    folded = history(store, ["capped"])
    assert folded["sends"].tolist() == [2]
    # a backfill (`--as-of` two years back) of that interval: the ledger no longer holds its row
    send(store, "capped", "P00001", AS_OF, interval=old)
    pd.testing.assert_frame_equal(history(store, ["capped"]), folded)
    store.prune(AS_OF + timedelta(days=401), DEFAULTS)
    assert store.ledger("capped", "sftp_dm_list") == []
    pd.testing.assert_frame_equal(history(store, ["capped"]), folded)


# ---- send_history equals the whole ledger's, whatever the sends and prunes ------------------------

AUDIENCES = ["a", "b"]
START = datetime(2024, 1, 1, tzinfo=UTC)
send_event = st.tuples(
    st.sampled_from(AUDIENCES),
    st.sampled_from(["p1", "p2"]),
    st.sampled_from(["d1", "d2"]),
    st.integers(0, 7),  # the run interval: the n-th, 90 days apart
    # days after the interval's start that the claim is made: mostly on time, some retries and
    # reruns much later, but (with a resend) always within the retention, which is what keeps the
    # summary exact (see store._KEPT)
    st.one_of(st.integers(0, 2), st.integers(0, 300)),
    st.sampled_from(["sent", "sent", "failed", "claimed", "resent"]),
    st.integers(1, 60),  # resent: days later
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(send_event, min_size=5, max_size=30), every=st.integers(20, 120), first=st.integers(0, 119))
def test_send_history_after_any_prunes_equals_the_whole_ledgers(events, every: int, first: int) -> None:
    """Two stores get the same sends in time order; one is pruned every `every` days with the
    shortest retention. The exit conditions' history and the frequency caps must read the same
    from both."""
    with ActivationStore("sqlite://") as pruned, ActivationStore("sqlite://") as whole:
        replay(events, range(first, 1100, every), pruned, whole)


def replay(events, prunes, pruned: ActivationStore, whole: ActivationStore) -> None:
    retention = Retention(send_ledger_days=367)
    writes = []
    for audience, person_id, dest, n, delay, outcome, later in events:
        interval = interval_of(START + timedelta(days=n * 90))
        at = START + timedelta(days=n * 90 + delay)
        writes.append((at, audience, person_id, dest, interval, "failed" if outcome == "resent" else outcome))
        if outcome == "resent":
            writes.append((at + timedelta(days=later), audience, person_id, dest, interval, "resent"))
    writes.sort(key=lambda w: w[0])
    for day in [*sorted(prunes), None]:
        now = START + timedelta(days=day) if day is not None else None
        due = [w for w in writes if now is None or w[0] <= now]
        writes = writes[len(due) :]
        for at, audience, person_id, dest, interval, outcome in due:
            for s in (pruned, whole):
                if outcome == "resent":
                    resend(s, audience, person_id, interval, at, dest)
                else:
                    send(s, audience, person_id, at, interval=interval, destination=dest, outcome=outcome)
        if now is not None:
            pruned.prune(now, retention)
            for window in (30, 366):
                assert pruned.sent_counts("dm", now - timedelta(days=window)) == whole.sent_counts(
                    "dm", now - timedelta(days=window)
                )
        pd.testing.assert_frame_equal(history(pruned, AUDIENCES), history_from_the_whole_ledger(whole, AUDIENCES))


# ---- configuration and command line -----------------------------------------------------------------


def test_the_retention_is_configured_and_validated(tmp_path: Path) -> None:
    assert load_destinations().retention == Retention(audience_members_days=90, sync_days=1095, send_ledger_days=400)
    with pytest.raises(ValidationError, match="send_ledger_days"):
        Retention(send_ledger_days=366)  # shorter than the longest frequency cap may look back
    bad = tmp_path / "destinations.yml"
    bad.write_text("defaults:\n  retention: {sync_days: 1095, keep_forever: true}\ndestinations: []\n", "utf-8")
    with pytest.raises(DestinationConfigError, match=r"defaults\.retention\.keep_forever: unknown field"):
        load_destinations(bad)


def test_the_command_prints_what_it_deletes_and_logs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(tmp_path / "audit"))
    with ActivationStore(default_url()) as s:
        old_and_new(s)
        send(s, "capped", "P00001", days_ago(700))
    as_of = ["--as-of", AS_OF.isoformat()]
    runner = CliRunner()

    dry = runner.invoke(activation_app, ["prune", "--dry-run", *as_of])
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing deleted" in dry.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in dry.output.splitlines() if "│" in line}
    assert rows == {
        "audience_members": "17",
        "sync_changelog": "4",
        "sync_rejects": "1",
        "sync_runs": "2",
        "sync_claimants": "0",
        "send_history": "1",
        "send_ledger": "1",
    }
    assert list_entries(action="prune") == []

    done = runner.invoke(activation_app, ["prune", "--json", *as_of])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["rows"] == {k: int(v) for k, v in rows.items()}
    (entry,) = list_entries(action="prune")
    assert entry["rows"] == 17 + 4 + 1 + 2 + 1 and entry["details"]["rows"]["send_ledger"] == 1
    again = runner.invoke(activation_app, ["prune", "--json", *as_of])
    assert set(json.loads(again.output)["rows"].values()) == {0}
