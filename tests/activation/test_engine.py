"""The sync engine against fake destinations that behave like the real systems (docs/reliability.md #2-8).

The fakes live here: a list destination that keeps its membership (an ESP list, a LINE audience),
a send-type destination that deduplicates by idempotency key the way LINE does with
X-Line-Retry-Key (a repeated key answers "already accepted"), and one that enforces a request rate.
Faults are scripted per call. Time is a fake clock: backoff waits and rate limiting are asserted
without sleeping.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from yorisoi.activation.delivery.destinations.base import (
    BatchRejected,
    Destination,
    DestinationError,
    Operation,
    Record,
    RowResult,
    TransientError,
)
from yorisoi.activation.delivery.engine import (
    DestinationUnavailable,
    InvalidRecords,
    SyncDeferred,
    SyncError,
    claimant_dead,
    idempotency_key,
    sync,
)
from yorisoi.activation.delivery.ratelimit import TokenBucket
from yorisoi.activation.delivery.store import ActivationStore

AUDIENCE = "vip_reached"
INTERVAL = "2026-11-01"


# --------------------------------------------------------------------------------------------
# Fakes
# --------------------------------------------------------------------------------------------


class FakeClock:
    """Monotonic time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Killed(BaseException):
    """The process dies here (SIGKILL): no except clause, no cleanup."""


Fault = Callable[[Operation, Sequence[Record]], None] | BaseException | str | None


class ListFake(Destination):
    """A list that keeps its members (ESP list / LINE audience): ADD, UPDATE, REMOVE.

    ``script`` holds one fault per call, consumed in order (None: answer normally); a fault is an
    exception to raise *before* accepting, or ``("after", exc)`` to accept the batch and then
    raise. ``poisoned`` keys make any batch holding them a 400 BatchRejected."""

    name = "esp_list"
    channel = "email"
    key_field = "email"
    allowed_columns = frozenset({"full_name", "rank"})
    supports = frozenset({Operation.ADD, Operation.UPDATE, Operation.REMOVE})

    def __init__(self, *, max_batch: int = 100, rate: float | None = None) -> None:
        self.max_batch = max_batch
        self.rate_per_second = rate
        self.members: dict[str, dict] = {}
        self.calls: list[tuple[Operation, list[str], str]] = []
        self.accepted: list[tuple[Operation, str]] = []
        self.script: list = []
        self.poisoned: set[str] = set()

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.calls.append((operation, [r.key for r in records], idempotency_key))
        fault = self.script.pop(0) if self.script else None
        if isinstance(fault, BaseException):
            raise fault
        if self.poisoned & {r.key for r in records}:
            raise BatchRejected("400 Bad Request: invalid contact in batch", status=400, code="invalid_contact")
        for r in records:
            if operation == Operation.REMOVE:
                self.members.pop(r.key, None)
            else:
                self.members[r.key] = dict(r.fields)
            self.accepted.append((operation, r.key))
        if isinstance(fault, tuple):
            raise fault[1]
        return [RowResult(key=r.key, ok=True) for r in records]


class SendFake(Destination):
    """A send-type system (LINE multicast): ADD only; a request whose idempotency key it has
    already accepted is not delivered again (LINE answers 409 to a reused X-Line-Retry-Key)."""

    name = "line_multicast"
    channel = "line"
    key_field = "line_user_id"
    allowed_columns = frozenset({"variant"})
    supports = frozenset({Operation.ADD})
    rate_per_second = None

    def __init__(self, *, max_batch: int = 3) -> None:
        self.max_batch = max_batch
        self.received: Counter[str] = Counter()  # deliveries per recipient
        self.keys: set[str] = set()
        self.calls: list[tuple[list[str], str]] = []
        self.script: list = []

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.calls.append(([r.key for r in records], idempotency_key))
        fault = self.script.pop(0) if self.script else None
        if isinstance(fault, BaseException):
            raise fault
        if idempotency_key in self.keys:
            return [RowResult(key=r.key, ok=True, code="409", already_done=True) for r in records]
        self.keys.add(idempotency_key)
        self.received.update(r.key for r in records)
        if isinstance(fault, tuple):
            raise fault[1]
        return [RowResult(key=r.key, ok=True) for r in records]


class LimitedFake(ListFake):
    """Answers 429 when more than ``limit`` requests arrive within any rolling second."""

    def __init__(self, clock: FakeClock, limit: int, rate: float | None) -> None:
        super().__init__(max_batch=1, rate=rate)
        self.clock = clock
        self.limit = limit
        self.stamps: list[float] = []
        self.too_many = 0

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        now = self.clock.now
        recent = [t for t in self.stamps if now - t < 1.0]
        if len(recent) >= self.limit:
            self.too_many += 1
            raise TransientError("429 Too Many Requests", status=429, retry_after=1.0)
        self.stamps.append(now)
        return super().deliver(operation, records, idempotency_key=idempotency_key)


def people(*names: str, rank: str = "gold") -> list[Record]:
    return [Record(key=f"{n}@example.jp", person_id=f"P{n}", fields={"full_name": n, "rank": rank}) for n in names]


def line_users(n: int) -> list[Record]:
    return [Record(key=f"U{i:032x}", person_id=f"P{i}", fields={"variant": "A"}, variant="A") for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> ActivationStore:
    with ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}") as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def run(store: ActivationStore, destination: Destination, records: Sequence[Record], clock: FakeClock, **kw):
    kw.setdefault("interval", INTERVAL)
    return sync(store, destination, AUDIENCE, records, sleep=clock.sleep, clock=clock.clock, jitter=lambda: 0.0, **kw)


def opted_out(*names: str) -> Callable[[set[str]], set[str]]:
    out = {f"P{n}" for n in names}
    return lambda person_ids: person_ids & out


# --------------------------------------------------------------------------------------------
# docs/reliability.md #2: opt-outs go out as explicit removals; a full resync never re-adds them
# --------------------------------------------------------------------------------------------


def test_opt_out_is_removed_explicitly_and_a_full_resync_never_readds_it(store, clock) -> None:
    fake = ListFake()
    members = people("aoi", "ren", "mei", "sho")
    run(store, fake, members, clock)
    assert set(fake.members) == {r.key for r in members}

    # ren opts out: the audience no longer lists them, and the export-time check says so too
    current = [r for r in members if r.person_id != "Pren"]
    summary = run(store, fake, current, clock, suppressed=opted_out("ren"), interval="2026-11-02")
    assert summary.removes == 1
    assert (Operation.REMOVE, ["ren@example.jp"]) in [(op, keys) for op, keys, _ in fake.calls]
    assert "ren@example.jp" not in fake.members
    assert "ren@example.jp" not in store.load_snapshot(AUDIENCE, fake.name)

    # a full resync from a stale source that still lists ren: never re-added, removed again
    fake.calls.clear()
    summary = run(store, fake, members, clock, mode="full", suppressed=opted_out("ren"), interval="2026-11-03")
    sent_ren = [op for op, keys, _ in fake.calls if "ren@example.jp" in keys]
    assert sent_ren == [Operation.REMOVE]
    assert "ren@example.jp" not in fake.members
    assert set(fake.members) == {"aoi@example.jp", "mei@example.jp", "sho@example.jp"}
    assert summary.updates == 3  # everyone current is sent again in full

    # a full resync without the suppression callable still never re-adds a removed member
    run(store, fake, current, clock, mode="full", interval="2026-11-04")
    assert "ren@example.jp" not in fake.members


class RebuildFake(ListFake):
    """A list that cannot drop one member (a LINE upload audience): ADD fills the live list, or
    after ``start_rebuild()`` a new copy; REMOVE publishes the copy in place of the live list."""

    rebuilds = True

    def __init__(self) -> None:
        super().__init__()
        self.copy: dict[str, dict] | None = None
        self.publishes = 0

    def start_rebuild(self) -> None:
        self.copy = {}

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.calls.append((operation, [r.key for r in records], idempotency_key))
        if operation == Operation.REMOVE:
            assert self.copy is not None, "a REMOVE outside a rebuild"
            self.members, self.copy = self.copy, None
            self.publishes += 1
            return [RowResult(key=r.key, ok=True) for r in records]
        if self.poisoned & {r.key for r in records}:
            raise BatchRejected("400 invalid user ID in the upload", status=400)
        target = self.members if self.copy is None else self.copy
        target.update((r.key, dict(r.fields)) for r in records)
        return [RowResult(key=r.key, ok=True) for r in records]


def test_a_list_that_cannot_remove_is_rebuilt_without_the_leavers(store, clock) -> None:
    fake = RebuildFake()
    members = people("aoi", "ren", "mei", "sho")
    run(store, fake, members, clock)
    assert fake.publishes == 0 and set(fake.members) == {r.key for r in members}  # no rebuild to add

    # ren opts out; mei's rank changed and her ID is now refused: neither is in the published list
    fake.poisoned = {"mei@example.jp"}
    members = [*people("aoi", "ren"), *people("mei", rank="silver"), *people("sho")]
    summary = run(store, fake, members, clock, suppressed=opted_out("ren"), interval="2026-11-02")
    assert fake.publishes == 1 and summary.removes == 1
    assert set(fake.members) == {"aoi@example.jp", "sho@example.jp"}
    assert set(store.load_snapshot(AUDIENCE, fake.name)) == {"aoi@example.jp", "sho@example.jp"}
    assert [r["key"] for r in store.rejects(summary.run_id)] == ["mei@example.jp"]

    # mei's ID is accepted again: added back without a rebuild; ren stays out
    fake.poisoned = set()
    summary = run(store, fake, members, clock, suppressed=opted_out("ren"), interval="2026-11-03")
    assert fake.publishes == 1 and summary.adds == 1
    assert set(fake.members) == {"aoi@example.jp", "mei@example.jp", "sho@example.jp"}


def test_send_type_destination_drops_leavers_from_the_snapshot_without_a_request(store, clock) -> None:
    fake = SendFake()
    users = line_users(4)
    run(store, fake, users, clock)
    summary = run(store, fake, users[:3], clock, interval="2026-11-02")
    assert summary.removes == 0 and len(fake.calls) == 2  # nothing new to send, nothing to recall
    assert users[3].key not in store.load_snapshot(AUDIENCE, fake.name)
    assert [r["status"] for r in store.changelog(summary.run_id)] == ["skipped"]


# --------------------------------------------------------------------------------------------
# docs/reliability.md #3: unique non-null keys before any request; snapshot only after confirmation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "records, message",
    [
        (people("aoi", "ren") + people("aoi"), "duplicate key"),
        ([Record(key="", person_id="Px", fields={}), *people("ren")], "without a key"),
        ([Record(key="x@example.jp", person_id="", fields={})], "without a person_id"),
        ([Record(key="x@example.jp", person_id="Px", fields={"phone": "+819012345678"})], "does not allow"),
    ],
    ids=["duplicate", "null key", "null person", "field outside the allow-list"],
)
def test_bad_records_fail_before_any_request(store, clock, records, message) -> None:
    fake = ListFake()
    with pytest.raises(InvalidRecords, match=message):
        run(store, fake, records, clock)
    assert fake.calls == []
    assert store.load_snapshot(AUDIENCE, fake.name) == {}
    assert [r["status"] for r in store.runs(AUDIENCE)] == ["failed"]


def test_snapshot_is_saved_only_after_the_destination_confirmed(store, clock) -> None:
    fake = ListFake()
    run(store, fake, people("aoi", "ren"), clock)
    before = store.load_snapshot(AUDIENCE, fake.name)

    # the system accepts the batch but the answer is lost, every time
    fake.script = [("after", TransientError("502 Bad Gateway", status=502))] * 3
    with pytest.raises(DestinationUnavailable):
        run(store, fake, people("aoi", "ren", "mei"), clock, max_attempts=3, interval="2026-11-02")
    assert "mei@example.jp" in fake.members  # it did accept...
    assert store.load_snapshot(AUDIENCE, fake.name) == before  # ...but never confirmed

    # an error that is not retried leaves the snapshot alone too
    fake.script = [("after", DestinationError("401 Unauthorized"))]
    with pytest.raises(SyncError):
        run(store, fake, people("aoi", "ren", "sho"), clock, interval="2026-11-03")
    assert store.load_snapshot(AUDIENCE, fake.name) == before

    summary = run(store, fake, people("aoi", "ren", "mei"), clock, interval="2026-11-04")
    assert summary.delivered == 1
    assert set(store.load_snapshot(AUDIENCE, fake.name)) == {"aoi@example.jp", "ren@example.jp", "mei@example.jp"}


# --------------------------------------------------------------------------------------------
# docs/reliability.md #4: idempotent per (audience, interval, recipient)
# --------------------------------------------------------------------------------------------


def test_500_after_accepting_is_retried_under_the_same_key_and_delivered_once(store, clock) -> None:
    fake = SendFake(max_batch=3)
    users = line_users(6)
    fake.script = [("after", TransientError("500", status=500))]
    summary = run(store, fake, users, clock)
    assert [key for _, key in fake.calls[:2]] == [fake.calls[0][1]] * 2
    assert fake.received == Counter({u.key: 1 for u in users})
    assert summary.delivered == 6


def test_500_after_accepting_then_rerun_delivers_everyone_exactly_once(store, clock) -> None:
    fake = SendFake(max_batch=3)
    users = line_users(9)
    # the second batch is accepted but answered with a 500; its retries fail too
    fake.script = [None, ("after", TransientError("500", status=500))] + [TransientError("500", status=500)] * 2
    with pytest.raises(DestinationUnavailable) as stopped:
        run(store, fake, users, clock, max_attempts=3)
    assert stopped.value.summary.delivered == 3
    assert len({key for _, key in fake.calls[1:4]}) == 1  # every retry carried the same key
    statuses = Counter(row["status"] for row in store.ledger(AUDIENCE, fake.name, INTERVAL))
    assert statuses == {"sent": 3, "failed": 3}  # the third batch was never claimed

    summary = run(store, fake, users, clock)  # the task is retried
    assert fake.received == Counter({u.key: 1 for u in users})  # exactly once each
    assert summary.adds == summary.delivered == 6  # the confirmed three are in the snapshot
    assert all(row["status"] == "sent" for row in store.ledger(AUDIENCE, fake.name, INTERVAL))
    codes = Counter(row["code"] for row in store.changelog(summary.run_id) if row["status"] == "succeeded")
    assert codes == {"409": 3, None: 3}  # the resent batch was already there

    summary = run(store, fake, users, clock, mode="full")  # and again: nothing twice in one interval
    assert summary.delivered == 0 and summary.skipped == 9
    assert fake.received == Counter({u.key: 1 for u in users})


class RowByRowFake(SendFake):
    """Sends one message per recipient with no deduplication (SMTP): the connection drops after
    ``fail_after`` messages of every attempt, and the destination reports what it already sent."""

    def __init__(
        self, *, max_batch: int, fail_after: int | None, error: type[DestinationError] = TransientError
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.fail_after = fail_after
        self.error = error

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.calls.append(([r.key for r in records], idempotency_key))
        sent: list[RowResult] = []
        for number, r in enumerate(records):
            if self.fail_after is not None and number == self.fail_after:
                raise self.error("421 connection dropped", partial=sent)
            self.received[r.key] += 1
            sent.append(RowResult(key=r.key, ok=True, code="250"))
        return sent


def test_a_batch_failing_part_way_settles_what_was_sent_and_a_rerun_never_resends_it(store, clock) -> None:
    fake = RowByRowFake(max_batch=10, fail_after=2)
    users = line_users(10)
    with pytest.raises(DestinationUnavailable) as stopped:
        run(store, fake, users, clock, max_attempts=3)
    # three attempts, two messages each before the drop: six sent, four never sent
    assert [len(keys) for keys, _ in fake.calls] == [10, 8, 6]
    assert stopped.value.summary.delivered == 6 and stopped.value.summary.failed == 4
    statuses = Counter(row["status"] for row in store.ledger(AUDIENCE, fake.name, INTERVAL))
    assert statuses == {"sent": 6, "failed": 4}

    fake.fail_after = None  # the relay is back; the task is retried in a new process
    summary = run(store, fake, users, clock)
    assert summary.delivered == 4
    assert fake.received == Counter({u.key: 1 for u in users})  # exactly once each


def test_a_batch_refused_part_way_settles_what_was_sent_and_a_rerun_never_resends_it(store, clock) -> None:
    fake = RowByRowFake(max_batch=10, fail_after=3, error=DestinationError)  # e.g. SMTP 535 mid-batch
    users = line_users(10)
    with pytest.raises(SyncError) as stopped:
        run(store, fake, users, clock)
    assert len(fake.calls) == 1  # never retried
    assert stopped.value.summary.delivered == 3 and stopped.value.summary.failed == 7

    fake.fail_after = None  # the credentials are fixed; the task is run again
    summary = run(store, fake, users, clock)
    assert summary.delivered == 7
    assert fake.received == Counter({u.key: 1 for u in users})


@pytest.mark.parametrize("accepted", [True, False], ids=["after the call", "before the call"])
def test_process_killed_after_claiming_then_rerun_delivers_everyone_exactly_once(store, clock, accepted) -> None:
    fake = SendFake(max_batch=3)
    users = line_users(9)
    fake.script = [None, ("after", Killed()) if accepted else Killed()]
    with pytest.raises(Killed):
        run(store, fake, users, clock)
    ledger = {row["key"]: row["status"] for row in store.ledger(AUDIENCE, fake.name, INTERVAL)}
    assert Counter(ledger.values()) == {"sent": 3, "claimed": 3}

    # the killed call ended: the rerun takes its claims over at once, under the same key
    summary = run(store, fake, users, clock)
    assert summary.skipped == 0 and summary.delivered == 6
    assert fake.received == Counter({u.key: 1 for u in users})
    assert all(row["status"] == "sent" for row in store.ledger(AUDIENCE, fake.name, INTERVAL))


# --------------------------------------------------------------------------------------------
# docs/reliability.md #21: a dead claimant's claims are taken over; unsent rows never "succeed"
# --------------------------------------------------------------------------------------------


def test_a_run_killed_with_sigkill_mid_send_is_taken_over_at_once_without_double_sends(tmp_path: Path) -> None:
    """kill -9 of a real process after its second request was accepted, before it was confirmed:
    the immediate rerun (default lease) finds the claimant's process gone, closes the dead run as
    failed and resends its claims under their idempotency key, so each user gets one message."""
    import signal
    import subprocess
    import sys
    import time

    from crash_harness import AUDIENCE as HARNESS_AUDIENCE
    from crash_harness import KILLED_RUN, FileSendFake, received
    from crash_harness import line_users as harness_users

    url = f"sqlite:///{tmp_path / 'activation.sqlite'}"
    out, ready = tmp_path / "line.jsonl", tmp_path / "ready"
    harness = Path(__file__).with_name("crash_harness.py")
    child = subprocess.Popen([sys.executable, str(harness), url, str(out), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, f"the sending process ended early ({child.returncode})"
            assert time.monotonic() < deadline, "the sending process never reached its second request"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    users = harness_users(9)
    with ActivationStore(url) as store:
        assert store.run(KILLED_RUN)["status"] == "running"
        ledger = Counter(row["status"] for row in store.ledger(HARNESS_AUDIENCE, "line_multicast", INTERVAL))
        assert ledger == {"sent": 3, "claimed": 3}

        summary = sync(store, FileSendFake(out), HARNESS_AUDIENCE, users, interval=INTERVAL, run_id="rerun")

        assert summary.delivered == 6 and summary.skipped == 0
        assert received(out) == Counter({u.key: 1 for u in users})
        killed = store.run(KILLED_RUN)
        assert killed["status"] == "failed"
        assert f"its process {child.pid}" in killed["error"] and "taken over by run rerun" in killed["error"]
        assert store.run("rerun")["status"] == "succeeded"
        assert all(row["status"] == "sent" for row in store.ledger(HARNESS_AUDIENCE, "line_multicast", INTERVAL))


def test_a_rerun_closes_a_dead_runs_record_but_not_one_a_live_retry_reuses(store, clock) -> None:
    """A run record whose every claimant is dead ends failed when the next sync of the pair
    starts; one whose run ID a live retry reuses stays running."""
    import socket

    from yorisoi.activation.delivery.engine import _process_started

    now = datetime.now(UTC)
    here = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_started(os.getpid())}
    for run_id, owners in (("dead-run", ["gone"]), ("retried-run", ["first-try", "live-retry"])):
        store.start_run(
            run_id, audience=AUDIENCE, destination="line_multicast", interval=INTERVAL, mode="diff", started_at=now
        )
        for owner in owners:
            store.register_claimant(owner, run_id=run_id, now=now, **here)
            if owner != "live-retry":
                store.heartbeat(owner, now, ended=True)
    run(store, SendFake(), line_users(2), clock, run_id="next")
    assert store.run("dead-run")["status"] == "failed" and "taken over by run next" in store.run("dead-run")["error"]
    assert store.run("retried-run")["status"] == "running"


def test_rows_the_destination_left_unanswered_end_the_run_failed_and_a_rerun_sends_them(store, clock) -> None:
    class Forgetful(SendFake):
        """Accepts a batch but answers for all rows but the last."""

        def deliver(self, operation, records, *, idempotency_key):
            return super().deliver(operation, records, idempotency_key=idempotency_key)[:-1]

    users = line_users(3)
    with pytest.raises(SyncError, match="1 row\\(s\\) were not confirmed") as stopped:
        run(store, Forgetful(max_batch=3), users, clock, run_id="forgetful")
    assert stopped.value.summary.delivered == 2 and store.run("forgetful")["status"] == "failed"
    fake = SendFake(max_batch=3)
    assert run(store, fake, users, clock).delivered == 1 and fake.received == Counter({users[-1].key: 1})


class BlockingSend(SendFake):
    """Its ``block_on``-th request waits (before accepting) until ``release`` is set; later
    requests (another run's too) go through."""

    def __init__(self, block_on: int) -> None:
        super().__init__(max_batch=3)
        self.block_on = block_on
        self.blocked = threading.Event()
        self.release = threading.Event()

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        if len(self.calls) + 1 == self.block_on and not self.blocked.is_set():
            self.blocked.set()
            assert self.release.wait(60)
        return super().deliver(operation, records, idempotency_key=idempotency_key)


def test_rows_a_live_run_holds_leave_the_rerun_deferred_never_succeeded(tmp_path: Path, clock) -> None:
    """A rerun while the first run is alive (mid-request) leaves that run's claims alone and ends
    deferred, raising; once the first run finishes, a retry finds everything sent, each once."""
    url = f"sqlite:///{tmp_path / 'activation.sqlite'}"
    users = line_users(9)
    fake = BlockingSend(block_on=2)
    first: dict = {}

    def first_run() -> None:
        with ActivationStore(url) as own:
            first["summary"] = run(own, fake, users, clock, run_id="first")

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert fake.blocked.wait(60)
        with ActivationStore(url) as store, pytest.raises(SyncDeferred, match="left 3 row") as deferred:
            run(store, fake, users, clock, run_id="second")
    finally:
        fake.release.set()
        thread.join(60)
    assert deferred.value.summary.delivered == 3  # the third batch nobody held
    with ActivationStore(url) as store:
        assert store.run("second")["status"] == "deferred"
        assert "still alive" in store.run("second")["error"]
        assert store.run("first")["status"] == "succeeded" and first["summary"].delivered == 6
        retry = run(store, fake, users, clock, run_id="second")
        assert retry.delivered == 0 and store.run("second")["status"] == "succeeded"
    assert fake.received == Counter({u.key: 1 for u in users})


@pytest.mark.parametrize(
    ("claimant", "dead"),
    [
        ({"host": "other-host", "heartbeat_seconds_ago": 10}, None),
        ({"host": "other-host", "heartbeat_seconds_ago": 600}, "no heartbeat from process"),
        ({"ended": True}, "its sync ended"),
        ({"pid": "gone"}, "is gone"),
        ({"pid_started": "reused"}, "is gone"),
        ({}, None),
    ],
    ids=["other host, beating", "other host, silent", "ended", "process gone", "pid reused", "this process"],
)
def test_a_claimant_is_dead_when_ended_gone_or_silent_past_the_lease(claimant: dict, dead: str | None) -> None:
    import socket

    from yorisoi.activation.delivery.engine import _process_started

    now = datetime.now(UTC)
    gone = 2**22 + 12345  # above Linux's pid_max default: no such process
    row = {
        "host": claimant.get("host", socket.gethostname()),
        "pid": gone if claimant.get("pid") == "gone" else os.getpid(),
        "pid_started": "1" if claimant.get("pid_started") == "reused" else _process_started(os.getpid()),
        "heartbeat_at": now - timedelta(seconds=claimant.get("heartbeat_seconds_ago", 0)),
        "ended_at": now if claimant.get("ended") else None,
    }
    why = claimant_dead(row, now, 120.0)
    assert (why is None) if dead is None else (dead in why), why


def test_a_live_claimant_beats_its_heartbeat_and_records_its_end(store, clock) -> None:
    seen: list[dict] = []

    class Watching(SendFake):
        def deliver(self, operation, records, *, idempotency_key):
            owners = {row["owner"] for row in store.ledger(AUDIENCE, self.name, INTERVAL)}
            before = store.claimants(owners)
            threading.Event().wait(1.3)  # longer than the heartbeat period at a 4 s lease
            seen.extend([*before.values(), *store.claimants(owners).values()])
            return super().deliver(operation, records, idempotency_key=idempotency_key)

    run(store, Watching(max_batch=3), line_users(3), clock, claim_lease=4.0)
    before, during = seen
    assert during["heartbeat_at"] > before["heartbeat_at"] and during["ended_at"] is None
    assert store.claimants([before["owner"]])[before["owner"]]["ended_at"] is not None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL on 127.0.0.1:5432 (database test), dropped afterwards."""
    import sqlalchemy as sa

    base = os.environ.get("YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"activation_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def claim_race(url: str) -> tuple[set[str], set[str], list[str]]:
    """Two processes' worth of connections claim the same 5,000 recipients at once."""
    keys = [f"U{i:05d}" for i in range(5000)]
    held: dict[str, set[str]] = {}
    barrier = threading.Barrier(2, timeout=60)

    def claim(owner: str) -> None:
        store = ActivationStore(url)
        barrier.wait()
        got = store.claim(
            audience=AUDIENCE,
            destination="sms",
            channel="sms",
            interval=INTERVAL,
            keys=keys,
            person_ids=keys,
            claim_id=idempotency_key("x", keys=keys),
            owner=owner,
            now=datetime.now(UTC),
        )
        held[owner] = set(keys) if got is None else got
        store.close()

    threads = [threading.Thread(target=claim, args=(owner,)) for owner in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return held["a"], held["b"], keys


def test_claims_are_atomic_between_concurrent_runs(tmp_path: Path) -> None:
    """Two writers claiming the same recipients: each row goes to exactly one of them."""
    first, second, keys = claim_race(f"sqlite:///{tmp_path / 'shared.sqlite'}")
    assert first.isdisjoint(second) and first | second == set(keys)


@pytest.mark.postgres
def test_the_store_works_the_same_on_postgresql(postgres_url: str, clock: FakeClock) -> None:
    first, second, keys = claim_race(postgres_url)
    assert first.isdisjoint(second) and first | second == set(keys)

    with ActivationStore(postgres_url) as store:
        fake = SendFake(max_batch=3)
        users = line_users(9)
        fake.script = [None, ("after", Killed())]
        with pytest.raises(Killed):
            run(store, fake, users, clock)
        summary = run(store, fake, users, clock, claim_lease=0)
        assert summary.delivered == 6
        assert fake.received == Counter({u.key: 1 for u in users})
        assert store.sent_counts("line", datetime.now(UTC) - timedelta(hours=1)) == {u.person_id: 1 for u in users}
        list_fake = ListFake()
        run(store, list_fake, people("aoi", "ren"), clock)
        run(store, list_fake, people("aoi"), clock, suppressed=opted_out("ren"), interval="2026-11-02")
        assert set(list_fake.members) == {"aoi@example.jp"}
        assert set(store.load_snapshot(AUDIENCE, list_fake.name)) == {"aoi@example.jp"}


# --------------------------------------------------------------------------------------------
# docs/reliability.md #5: retry 429 / 5xx with backoff and Retry-After, capped; never other 4xx
# --------------------------------------------------------------------------------------------


def test_429_with_retry_after_then_500_then_200(store, clock) -> None:
    fake = ListFake()
    fake.script = [TransientError("429", status=429, retry_after=2.0), TransientError("500", status=500)]
    summary = run(store, fake, people("aoi"), clock)
    assert summary.delivered == 1
    assert clock.sleeps == [2.0, 1.0]  # Retry-After honoured; then base * 2**(2-1)
    assert len(fake.calls) == 3 and len({key for _, _, key in fake.calls}) == 1


def test_waits_carry_jitter_but_never_undercut_retry_after(store, clock) -> None:
    fake = ListFake()
    fake.script = [TransientError("429", status=429, retry_after=2.0)]
    sync(
        store,
        fake,
        AUDIENCE,
        people("aoi"),
        interval=INTERVAL,
        sleep=clock.sleep,
        clock=clock.clock,
        jitter=lambda: 0.9,
    )
    assert clock.sleeps == [pytest.approx(2.45)]


def test_attempts_are_capped(store, clock) -> None:
    fake = ListFake()
    fake.script = [TransientError("503", status=503)] * 10
    with pytest.raises(DestinationUnavailable):
        run(store, fake, people("aoi", "ren"), clock, max_attempts=4)
    assert len(fake.calls) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    rows = store.changelog(store.runs(AUDIENCE)[-1]["run_id"])
    assert {(r["status"], r["code"]) for r in rows} == {("failed", "503")}
    assert store.runs(AUDIENCE)[-1]["status"] == "failed"


def test_a_400_is_never_retried(store, clock) -> None:
    fake = ListFake()
    fake.script = [BatchRejected("400 invalid email", status=400, code="invalid_email")]
    summary = run(store, fake, people("aoi"), clock)
    assert len(fake.calls) == 1 and clock.sleeps == []
    assert summary.rejected == 1
    assert [(r["key"], r["code"]) for r in store.rejects(summary.run_id)] == [("aoi@example.jp", "invalid_email")]


def test_another_4xx_stops_the_run_without_retrying(store, clock) -> None:
    fake = ListFake(max_batch=1)
    fake.script = [DestinationError("403 Forbidden")]
    with pytest.raises(SyncError, match="403"):
        run(store, fake, people("aoi", "ren"), clock)
    assert len(fake.calls) == 1 and clock.sleeps == []
    rows = {r["key"]: r["status"] for r in store.changelog(store.runs(AUDIENCE)[-1]["run_id"])}
    assert rows == {"aoi@example.jp": "failed", "ren@example.jp": "skipped"}


# --------------------------------------------------------------------------------------------
# docs/reliability.md #6: rejects isolated by splitting; suppression re-checked before a retry
# --------------------------------------------------------------------------------------------


def test_a_poisoned_row_is_isolated_and_after_opt_out_never_retried(store, clock) -> None:
    fake = ListFake(max_batch=8)
    members = people(*[f"m{i}" for i in range(8)])
    fake.poisoned = {"m5@example.jp"}
    summary = run(store, fake, members, clock)
    assert summary.delivered == 7 and summary.rejected == 1
    rejects = store.rejects(summary.run_id)
    assert [(r["run_id"], r["key"], r["code"]) for r in rejects] == [
        (summary.run_id, "m5@example.jp", "invalid_contact")
    ]
    assert "invalid contact" in rejects[0]["reason"]
    assert set(fake.members) == {r.key for r in members} - {"m5@example.jp"}

    # still in the audience, not confirmed: the next run tries it again, alone
    fake.calls.clear()
    run(store, fake, members, clock, interval="2026-11-02")
    assert [keys for _, keys, _ in fake.calls] == [["m5@example.jp"]]

    # opted out: never sent again
    fake.calls.clear()
    summary = run(store, fake, members, clock, suppressed=opted_out("m5"), interval="2026-11-03")
    assert fake.calls == []
    assert [(r["key"], r["status"]) for r in store.changelog(summary.run_id)] == [("m5@example.jp", "skipped")]


def test_suppression_is_checked_again_before_a_retry(store, clock) -> None:
    fake = ListFake()
    fake.script = [TransientError("503", status=503)]
    out: set[str] = set()

    def suppressed(person_ids: set[str]) -> set[str]:
        found = person_ids & out
        out.add("Pren")  # ren opts out while the first attempt fails
        return found

    summary = run(store, fake, people("aoi", "ren", "mei"), clock, suppressed=suppressed)
    assert fake.calls[0][1] == ["aoi@example.jp", "ren@example.jp", "mei@example.jp"]
    assert fake.calls[1][1] == ["aoi@example.jp", "mei@example.jp"]
    assert "ren@example.jp" not in fake.members
    rows = {r["key"]: (r["status"], r["reason"]) for r in store.changelog(summary.run_id)}
    assert rows["ren@example.jp"][0] == "skipped" and "suppressed" in rows["ren@example.jp"][1]
    assert summary.delivered == 2 and summary.skipped == 1


# --------------------------------------------------------------------------------------------
# docs/reliability.md #7: the client-side rate limit keeps below the published one
# --------------------------------------------------------------------------------------------


def test_token_bucket_keeps_the_fake_below_its_limit(store, clock) -> None:
    members = people(*[f"m{i}" for i in range(60)])
    unlimited = LimitedFake(clock, limit=10, rate=None)
    run(store, unlimited, members, clock, interval="2026-11-01")
    assert unlimited.too_many > 0  # the fake does enforce its limit

    limited = LimitedFake(clock, limit=10, rate=9.0)
    limited.name = "esp_list_limited"
    start = clock.now
    summary = run(store, limited, members, clock, interval="2026-11-02")
    assert limited.too_many == 0
    assert summary.delivered == 60
    assert clock.now - start == pytest.approx(59 / 9.0)


def test_token_bucket_spacing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock.clock, sleep=clock.sleep)
    stamps = []
    for _ in range(9):
        bucket.acquire()
        stamps.append(clock.now)
    assert stamps == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    clock.now += 10  # idle: the burst is still one token
    bucket.acquire()
    bucket.acquire()
    assert clock.now == pytest.approx(12.25)


# --------------------------------------------------------------------------------------------
# docs/reliability.md #8: a run record and a per-row changelog that reconcile with the destination
# --------------------------------------------------------------------------------------------


def test_changelog_succeeded_reconciles_with_what_the_fake_received(store, clock) -> None:
    fake = ListFake(max_batch=4)
    run(store, fake, people("a1", "a2", "a3", "a4", "a5"), clock)
    fake.accepted.clear()
    fake.poisoned = {"b2@example.jp"}
    fake.script = [None, TransientError("503", status=503)]
    current = people("a1", "a2", "b1", "b2", "b3", "b4") + people("a3", rank="platinum")
    summary = run(store, fake, current, clock, interval="2026-11-02")

    succeeded = {(r["operation"], r["key"]) for r in store.changelog(summary.run_id) if r["status"] == "succeeded"}
    received = {
        (op.value if op != Operation.ADD or key != "a3@example.jp" else "update", key) for op, key in fake.accepted
    }
    assert succeeded == received
    assert len(succeeded) == summary.delivered == 6  # 2 removes, 1 update, 3 of 4 adds
    assert sorted(store.changed_people(summary.run_id)) == ["Pa3", "Pb1", "Pb3", "Pb4"]
    record = store.run(summary.run_id)
    assert record is not None
    assert (record["status"], record["adds"], record["updates"], record["removes"]) == ("succeeded", 4, 1, 2)
    assert (record["delivered"], record["rejected"]) == (6, 1)
    assert record["finished_at"] >= record["started_at"]


# --------------------------------------------------------------------------------------------
# Dry run and test sends
# --------------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_writes_planned_rows(store, clock) -> None:
    fake = ListFake()
    run(store, fake, people("aoi", "ren"), clock)
    fake.calls.clear()
    snapshot = store.load_snapshot(AUDIENCE, fake.name)
    summary = run(
        store, fake, people("aoi", "mei") + people("ren", rank="platinum")[:0], clock, mode="dry_run", interval="x"
    )
    assert fake.calls == []
    assert store.load_snapshot(AUDIENCE, fake.name) == snapshot
    planned = {(r["operation"], r["key"]) for r in store.changelog(summary.run_id) if r["status"] == "planned"}
    assert planned == {("add", "mei@example.jp"), ("remove", "ren@example.jp")}
    assert (summary.adds, summary.removes, summary.delivered) == (1, 1, 0)

    send = SendFake()
    summary = run(store, send, line_users(4), clock, mode="dry_run")
    assert send.calls == [] and store.ledger(AUDIENCE, send.name) == []
    assert len([r for r in store.changelog(summary.run_id) if r["status"] == "planned"]) == 4


def test_test_mode_sends_only_to_the_seed_list(store, clock) -> None:
    fake = SendFake()
    seeds = [Record(key="Useed1", person_id="test:Useed1", fields={"variant": "A"}, variant="A")]
    summary = run(store, fake, line_users(5), clock, mode="test", test_recipients=seeds)
    assert [keys for keys, _ in fake.calls] == [["Useed1"]]
    assert summary.delivered == 1
    assert store.load_snapshot(AUDIENCE, fake.name) == {}
    assert store.ledger(AUDIENCE, fake.name) == []
    with pytest.raises(ValueError, match="test_recipients"):
        run(store, fake, line_users(5), clock, mode="test")


# --------------------------------------------------------------------------------------------
# What the audience step reads
# --------------------------------------------------------------------------------------------


def test_sent_counts_and_audiences_count_confirmed_sends_only(store, clock) -> None:
    fake = SendFake(max_batch=2)
    users = line_users(4)
    fake.script = [None, TransientError("503", status=503)]
    with pytest.raises(DestinationUnavailable):
        run(store, fake, users, clock, max_attempts=1)
    since = datetime.now(UTC) - timedelta(hours=1)
    assert store.sent_counts("line", since) == {"P0": 1, "P1": 1}
    assert store.sent_counts("email", since) == {}
    assert store.sent_counts("line", datetime.now(UTC) + timedelta(hours=1)) == {}
    assert store.sent_audiences("P0") == {AUDIENCE} and store.sent_audiences("P3") == set()


def test_members_are_written_and_the_latest_computation_is_read_back(store) -> None:
    first = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {
            "run_id": "r1",
            "audience": AUDIENCE,
            "person_id": "P1",
            "grp": "treatment",
            "variant": "A",
            "computed_at": first,
        }
    ]
    assert store.write_members(rows) == 1
    later = datetime(2026, 11, 2, tzinfo=UTC)
    store.write_members(
        [
            {"run_id": "r2", "audience": AUDIENCE, "person_id": p, "grp": g, "variant": None, "computed_at": later}
            for p, g in (("P2", "treatment"), ("P3", "control"))
        ]
    )
    latest = store.last_members(AUDIENCE)
    assert [(m["person_id"], m["grp"], m["run_id"]) for m in latest] == [
        ("P2", "treatment", "r2"),
        ("P3", "control", "r2"),
    ]
    assert latest[0]["computed_at"] == later
    assert store.last_members("nobody") == []


def test_the_store_url_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yorisoi.activation.delivery.store import default_url

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.delenv("YORISOI_ACTIVATION_URL", raising=False)
    assert default_url() == f"sqlite:///{tmp_path / 'var' / 'activation' / 'activation.sqlite'}"
    monkeypatch.setenv("YORISOI_ACTIVATION_URL", "postgresql+psycopg://yorisoi@db/yorisoi_activation")
    assert default_url() == "postgresql+psycopg://yorisoi@db/yorisoi_activation"
