"""Sync one audience to one destination: check, diff, claim, send, settle, log.

:func:`sync` is what an export task calls, once per (audience, destination, interval)::

    summary = sync(store, destination, "vip_reached", records, interval="2026-11-01")

1. **Check** (before anything is sent, docs/reliability.md #3 and 14): every record has a non-empty key and
   person ID, keys are unique, and no record carries a field outside the destination's allow-list.
   Otherwise :class:`InvalidRecords` is raised and the run is recorded as failed.
2. **Diff** against the last confirmed snapshot (``sync_snapshots``): keys not in it are *adds*;
   keys whose fields hash changed are *updates* (destinations that keep a list only); keys in it
   but no longer current are *removes*. People in ``suppressed(person_ids)`` (opted out, erased,
   blacklisted since the audience was computed) count as not current. ``mode="full"`` resends
   every current member, and in a list destination sends an explicit REMOVE for every suppressed
   record too, but never re-adds a suppressed person (docs/reliability.md #2). ``dry_run`` stops here and
   writes the plan as ``planned`` changelog rows; ``test`` sends only ``test_recipients``
   (テスト配信) and never touches the snapshot or the ledger.
3. **Send** removes first, then updates, then adds, in batches of ``destination.max_batch``:

   - *Send-type* destinations (no REMOVE: LINE multicast, SMS, email, DM / 同梱物 / S3 files) go
     through the ledger (docs/reliability.md #4): each batch is claimed in ``send_ledger`` *before* the
     call; a recipient already ``sent`` in the interval is skipped; a recipient another live run
     claimed is skipped; a recipient whose claim ``failed`` or whose claimant is dead is taken
     over and resent in its original group under the group's original idempotency key, so a
     destination that deduplicates by key (LINE's ``X-Line-Retry-Key``) delivers it once. Removes
     only leave the snapshot: a sent message cannot be recalled.

     A claimant is the sync call holding claims (``sync_claimants``, docs/reliability.md #21): it
     registers its host, process ID and the process's start time before claiming, beats a
     heartbeat from a thread while it runs and records its end when it returns or raises. It is
     dead when it ended, when it ran on this host and its process is gone (``kill -9``: known at
     once), or when its heartbeat is older than ``claim_lease`` seconds (another host). A rerun
     first closes the dead claimants' runs still recorded ``running`` as ``failed``. Rows a live
     claimant holds are left to it and the run ends ``deferred``, raising :class:`SyncDeferred`
     (the task fails, alerts and is retried); rows the destination left unconfirmed end it
     ``failed`` (:class:`SyncError`): rows left unsent never end a run ``succeeded``.
   - *List* destinations (ADD / UPDATE / REMOVE: an ESP list, a LINE audience) are idempotent by
     nature: the snapshot, written only after confirmation, is what makes a rerun send only the
     unconfirmed rows.
   - A list that cannot drop one member (``destination.rebuilds``: a LINE upload audience) is
     rebuilt when anyone must leave it: every current member goes into a new copy, and one
     REMOVE call publishes the copy in place of the old list. Only a published rebuild changes
     the snapshot, so a rebuild that fails part-way is started again by the next run.

   Every request takes a token from a :class:`~.ratelimit.TokenBucket` at
   ``destination.rate_per_second`` (docs/reliability.md #7). :class:`~.destinations.base.TransientError`
   is retried with exponential backoff and jitter, never sooner than its ``retry_after``, at most
   ``max_attempts`` attempts, with the same idempotency key (rows its ``partial`` answers settle
   at once and leave the retry; so do those of any other error); suppression is checked again before
   every retry, and newly suppressed rows leave the batch. Any other error is never retried
   (docs/reliability.md #5). :class:`~.destinations.base.BatchRejected` splits the batch in halves until
   the bad rows stand alone; they go to ``sync_rejects`` (docs/reliability.md #6).
4. **Settle** each batch in one transaction: ledger rows ``sent`` / ``failed``, the snapshot, the
   changelog (``succeeded`` / ``rejected`` / ``failed`` / ``skipped``) and rejects (docs/reliability.md #8).

A batch whose retries run out stops the run (the destination is down): its rows are recorded as
``failed``, the rest as ``skipped``, and :class:`DestinationUnavailable` is raised for the task to
fail and be retried; another error stops it the same way with :class:`SyncError`. Both carry the
:class:`SyncSummary`.

Destinations that need the run's names (file destinations name files by audience and interval and
write the run ID into the manifest) implement ``begin_run(context: RunContext)``; the engine calls
it before the first request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

from .destinations.base import (
    BatchRejected,
    Destination,
    Operation,
    Record,
    RowResult,
    RowResults,
    RunContext,
    TransientError,
)
from .ratelimit import TokenBucket
from .store import NOT_CONFIRMED, PLANNED, REJECTED, SENT, SKIPPED, ActivationStore, Change, Claim, LedgerRow

log = logging.getLogger(__name__)

MODES = ("full", "diff", "dry_run", "test")
DEFAULT_CLAIM_LEASE = 120.0  # seconds of heartbeat silence after which a claimant on another host is dead
HEARTBEAT_SECONDS = 15.0  # how often a claimant beats (at most a quarter of the lease)
BACKOFF_BASE = 0.5  # seconds: the first backoff, and the scale of the jitter
BACKOFF_CAP = 60.0  # the longest computed backoff (a Retry-After is honoured in full)
_KEY_NAMESPACE = uuid.UUID("8b5f3c1e-6a1d-4d5e-9a57-7f1a0c2b9e01")


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncSummary:
    """What one sync did. ``adds`` / ``updates`` / ``removes`` are the planned changes;
    ``delivered`` rows the destination confirmed, ``rejected`` rows it refused, ``skipped`` rows
    not sent on purpose (already sent this interval, claimed by another run, suppressed, a removal
    a send cannot undo, not attempted after a failure); ``failed`` rows sent without a
    confirmation (a rerun resends them); ``seconds`` by the ``clock`` given to :func:`sync`."""

    run_id: str
    audience: str
    destination: str
    mode: str
    adds: int
    updates: int
    removes: int
    delivered: int
    rejected: int
    skipped: int
    seconds: float
    failed: int = 0


class InvalidRecords(ValueError):
    """The records break the contract (null or duplicate keys, fields outside the allow-list):
    nothing was sent."""


class SyncError(RuntimeError):
    """A sync stopped before the end; ``summary`` says what it did until then."""

    def __init__(self, message: str, summary: SyncSummary) -> None:
        super().__init__(message)
        self.summary = summary


class DestinationUnavailable(SyncError):
    """A batch still failed transiently after ``max_attempts`` attempts: the run stopped."""


class SyncDeferred(SyncError):
    """Rows were left unsent because a live run holds their claims: the run is recorded
    ``deferred`` (never ``succeeded``) and a retry sends what the other run did not."""


def _process_started(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/<pid>/stat, clock ticks since boot),
    or None where there is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_alive(pid: int, started: str | None) -> bool:
    """Process ``pid`` runs and, when its start time was recorded, is the same process (a pid
    reused by another process is not the claimant)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return started is None or _process_started(pid) in (None, started)


def claimant_dead(claimant: Mapping[str, Any], now: datetime, lease: float) -> str | None:
    """Why the claimant (a ``sync_claimants`` row) is dead, or None while it may still send."""
    if claimant.get("ended_at") is not None:
        return f"its sync ended at {claimant['ended_at']:%Y-%m-%d %H:%M:%S} UTC"
    if claimant["host"] == socket.gethostname() and not _process_alive(claimant["pid"], claimant["pid_started"]):
        return f"its process {claimant['pid']} on {claimant['host']} is gone"
    silent = (now - claimant["heartbeat_at"]).total_seconds()
    if silent > lease:
        return f"no heartbeat from process {claimant['pid']} on {claimant['host']} for {silent:.0f} s"
    return None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def fields_hash(record: Record) -> str:
    """A stable hash of what a list destination holds for a record (its fields and variant):
    marshal format 2 of the sorted items (no object sharing, so the same values always give the
    same bytes), JSON for values marshal cannot write (dates...)."""
    items = (sorted(record.fields.items()), record.variant)
    try:
        payload = marshal.dumps(items, 2)
    except ValueError:
        payload = json.dumps(items, default=str, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def idempotency_key(*scope: str, keys: Sequence[str]) -> str:
    """A UUID determined by ``scope`` and the *set* of recipient keys: the same batch of the
    same (audience, destination, interval) always gets the same key (LINE needs a UUID)."""
    digest = hashlib.sha256("\x1f".join(scope).encode("utf-8"))
    digest.update(b"\x1d")
    digest.update("\x1e".join(sorted(keys)).encode("utf-8"))
    return str(uuid.UUID(bytes=digest.digest()[:16], version=5))


def _code(status: int | None) -> str | None:
    return None if status is None else str(status)


def _chunks(items: Sequence[Record], size: int) -> Iterator[list[Record]]:
    size = max(1, int(size))
    if isinstance(items, list) and len(items) <= size:
        yield items  # one batch: no copy
        return
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def check_records(records: Sequence[Record], destination: Destination, what: str = "records") -> None:
    """Raise :class:`InvalidRecords` unless every record has a key and a person ID, keys are
    unique and every field is on the destination's allow-list (its key field included)."""
    problems: list[str] = []
    keys = list(map(attrgetter("key"), records))
    if set(map(type, keys)) - {str} or "" in keys:
        missing = [i for i, k in enumerate(keys) if not isinstance(k, str) or not k]
        problems.append(f"{len(missing)} {what} without a key (first at positions {missing[:5]})")
    people = list(map(attrgetter("person_id"), records))
    if None in people or "" in people:
        no_person = [r.key for r in records if not r.person_id]
        problems.append(f"{len(no_person)} {what} without a person_id (keys {no_person[:5]})")
    if len(set(keys)) != len(keys):
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        problems.append(f"{len(dupes)} duplicate key(s) in {what}, e.g. {dupes[:5]}")
    allowed = set(destination.allowed_columns) | {destination.key_field}
    columns: set[str] = set()
    for shape in set(map(tuple, map(attrgetter("fields"), records))):
        columns.update(shape)
    extra = sorted(columns - allowed)
    if extra:
        problems.append(
            f"{what} carry field(s) {extra} that destination {destination.name!r} does not allow "
            f"(allowed: {sorted(allowed)})"
        )
    if problems:
        raise InvalidRecords("; ".join(problems))


# --------------------------------------------------------------------------------------------
# One batch's outcome
# --------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    delivered: list[Record] = field(default_factory=list)
    codes: list[str | None] = field(default_factory=list)
    others: list[Change] = field(default_factory=list)
    unavailable: TransientError | None = None
    fatal: BaseException | None = None

    @property
    def stopped(self) -> bool:
        return self.unavailable is not None or self.fatal is not None

    def deliver(self, records: Sequence[Record], code: str | None = None) -> None:
        self.delivered.extend(records)
        self.codes.extend([code] * len(records))

    def reject(self, record: Record, code: str | None, reason: str | None) -> None:
        self.others.append(Change(record.key, record.person_id, REJECTED, code, reason))

    def fail(self, records: Sequence[Record], code: str | None, reason: str) -> None:
        self.others.extend(Change(r.key, r.person_id, NOT_CONFIRMED, code, reason) for r in records)

    def skip(self, records: Sequence[Record], reason: str) -> None:
        self.others.extend(Change(r.key, r.person_id, SKIPPED, None, reason) for r in records)


@dataclass
class _Plan:
    removes: list[Record] = field(default_factory=list)
    updates: list[Record] = field(default_factory=list)
    adds: list[Record] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, list[Record], str]] = field(default_factory=list)  # (operation, rows, reason)
    dropped: list[Record] = field(default_factory=list)  # removes a send-type destination cannot do
    current: list[Record] = field(default_factory=list)  # every current member (rebuilding destinations)


# --------------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------------


class _Sync:
    def __init__(
        self,
        store: ActivationStore,
        destination: Destination,
        audience: str,
        records: Sequence[Record],
        *,
        interval: str,
        mode: str,
        suppressed: Callable[[set[str]], set[str]] | None,
        test_recipients: Sequence[Record] | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        max_attempts: int,
        run_id: str | None,
        jitter: Callable[[], float],
        claim_lease: float,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if mode == "test" and test_recipients is None:
            raise ValueError("mode='test' needs test_recipients (the seed list)")
        self.store = store
        self.destination = destination
        self.audience = audience
        self.records = records
        self.interval = str(interval)
        self.mode = mode
        self.suppressed = suppressed
        self.test_recipients = list(test_recipients or [])
        self.sleep = sleep
        self.clock = clock
        self.max_attempts = max_attempts
        self.owner = uuid.uuid4().hex
        self.run_id = run_id or self.owner
        self.jitter = jitter
        self.claim_lease = claim_lease
        self.name = destination.name
        self.supports = frozenset(destination.supports)
        self.send_type = Operation.REMOVE not in self.supports
        self.rebuilds = bool(getattr(destination, "rebuilds", False)) and not self.send_type
        # 50 ms of burst lets the run catch up after a slow request or the ledger's bookkeeping
        # (with no burst it reached 70-89 % of the rate); a destination set at 95 % of a published
        # limit still stays below it in any one second.
        self.bucket = (
            TokenBucket(
                destination.rate_per_second,
                capacity=max(1.0, math.ceil(destination.rate_per_second / 20)),
                clock=clock,
                sleep=sleep,
            )
            if destination.rate_per_second
            else None
        )
        self.counts: Counter[str] = Counter()
        self.started = clock()

    # ---- bookkeeping ----------------------------------------------------------------------

    def summary(self) -> SyncSummary:
        c = self.counts
        return SyncSummary(
            run_id=self.run_id,
            audience=self.audience,
            destination=self.name,
            mode=self.mode,
            adds=c["adds"],
            updates=c["updates"],
            removes=c["removes"],
            delivered=c["delivered"],
            rejected=c["rejected"],
            skipped=c["skipped"],
            seconds=self.clock() - self.started,
            failed=c["failed"],
        )

    def _finish(self, status: str, error: str | None = None) -> None:
        self.store.finish_run(
            self.run_id, status=status, counts=self.counts, finished_at=datetime.now(UTC), error=error
        )

    def _log(self, operation: str, status: str, rows: Sequence[Record], reason: str | None = None) -> None:
        if not rows:
            return
        self.store.log_changes(
            run_id=self.run_id,
            audience=self.audience,
            destination=self.name,
            operation=operation,
            status=status,
            keys=[r.key for r in rows],
            person_ids=[r.person_id for r in rows],
            at=datetime.now(UTC),
            reason=reason,
        )
        if status == SKIPPED:
            self.counts["skipped"] += len(rows)

    # ---- the claimant: liveness for the ledger (docs/reliability.md #21) --------------------

    def _close_dead_runs(self) -> None:
        """Runs of this (audience, destination) still recorded ``running`` whose claimant died
        end ``failed``, saying why; their claims are taken over by this run."""
        now = datetime.now(UTC)
        by_run: dict[str, list[str | None]] = {}
        for claimant in self.store.running_claimants(self.audience, self.name):
            by_run.setdefault(claimant["run_id"], []).append(claimant_dead(claimant, now, self.claim_lease))
        for run_id, deaths in by_run.items():
            if None in deaths:  # a rerun under the same run ID is alive: the record is its own
                continue
            why = deaths[-1]
            log.error("sync run %s died (%s): run %s takes over its claims", run_id, why, self.run_id)
            self.store.finish_run(
                run_id,
                status="failed",
                counts={},
                finished_at=now,
                error=f"died: {why}; its claims are taken over by run {self.run_id}",
            )

    def _register(self) -> None:
        pid = os.getpid()
        self.store.register_claimant(
            self.owner,
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=pid,
            pid_started=_process_started(pid),
            now=datetime.now(UTC),
        )
        self._stop_beating = threading.Event()
        every = max(1.0, min(HEARTBEAT_SECONDS, self.claim_lease / 4))

        def beat() -> None:
            while not self._stop_beating.wait(every):
                try:
                    self.store.heartbeat(self.owner, datetime.now(UTC))
                except Exception as exc:  # the next beat tries again; the lease allows a few misses
                    log.warning("heartbeat of sync run %s failed: %s", self.run_id, exc)

        self._heart = threading.Thread(target=beat, name=f"sync-heartbeat-{self.owner[:8]}", daemon=True)
        self._heart.start()

    def _unregister(self) -> None:
        self._stop_beating.set()
        self._heart.join()
        self.store.heartbeat(self.owner, datetime.now(UTC), ended=True)

    def _dead_owners(self, state: Mapping[str, LedgerRow], now: datetime) -> set[str]:
        """Owners of other runs' open claims in ``state`` whose claimant is dead. A claim made
        before claimants were recorded is dead once older than the lease."""
        newest: dict[str, datetime] = {}
        for row in state.values():
            if row.status == "claimed" and row.owner and row.owner != self.owner:
                newest[row.owner] = max(row.claimed_at, newest.get(row.owner, row.claimed_at))
        known = self.store.claimants(newest)
        stale_before = now - timedelta(seconds=self.claim_lease)
        return {
            owner
            for owner, claimed_at in newest.items()
            if (claimed_at < stale_before if owner not in known else claimant_dead(known[owner], now, self.claim_lease))
        }

    # ---- the run --------------------------------------------------------------------------

    def run(self) -> SyncSummary:
        if not (self.send_type and self.mode in ("diff", "full")):
            return self._run()  # no ledger claims
        self._close_dead_runs()
        self._register()
        try:
            return self._run()
        finally:
            self._unregister()

    def _run(self) -> SyncSummary:
        self.store.start_run(
            self.run_id,
            audience=self.audience,
            destination=self.name,
            interval=self.interval,
            mode=self.mode,
            started_at=datetime.now(UTC),
        )
        try:
            check_records(self.records, self.destination)
            if self.mode == "test":
                check_records(self.test_recipients, self.destination, "test recipients")
        except InvalidRecords as exc:
            self._finish("failed", f"InvalidRecords: {exc}")
            raise
        try:
            plan = self._plan()
            if self.mode == "dry_run":
                self._log_plan(plan)
            else:
                self._execute(plan)
        except SyncError as exc:
            self._finish("failed", str(exc))
            raise
        except Exception as exc:
            self._finish("failed", f"{type(exc).__name__}: {exc}")
            raise SyncError(f"sync of {self.audience} to {self.name} failed: {exc}", self.summary()) from exc
        if self.counts["failed"]:  # sent without a confirmation (a row the answer left out)
            message = (
                f"sync of {self.audience} to {self.name} ({self.interval}): {self.counts['failed']} row(s) were not "
                "confirmed by the destination; a rerun resends them under the same idempotency key"
            )
            log.error(message)
            self._finish("failed", message)
            raise SyncError(message, self.summary())
        if self.counts["deferred"]:
            message = (
                f"sync of {self.audience} to {self.name} ({self.interval}) left {self.counts['deferred']} row(s) "
                "unsent: another run that is still alive holds their claims; a retry sends what it does not"
            )
            log.error(message)
            self._finish("deferred", message)
            raise SyncDeferred(message, self.summary())
        self._finish("succeeded")
        summary = self.summary()
        log.info(
            "%s → %s (%s, %s): +%d ~%d -%d, delivered %d, rejected %d, skipped %d, failed %d in %.1f s",
            self.audience,
            self.name,
            self.mode,
            self.interval,
            summary.adds,
            summary.updates,
            summary.removes,
            summary.delivered,
            summary.rejected,
            summary.skipped,
            summary.failed,
            summary.seconds,
        )
        return summary

    def _suppressed_of(self, records: Sequence[Record]) -> set[str]:
        if self.suppressed is None or not records:
            return set()
        return set(self.suppressed({r.person_id for r in records}))

    def _plan(self) -> _Plan:
        plan = _Plan()
        if self.mode == "test":
            out = self._suppressed_of(self.test_recipients)
            plan.adds = [r for r in self.test_recipients if r.person_id not in out]
            plan.skipped.append(
                ("add", [r for r in self.test_recipients if r.person_id in out], "suppressed at export time")
            )
            self.counts["adds"] = len(plan.adds)
            return plan

        full = self.mode == "full"
        out = self._suppressed_of(self.records)
        snapshot = self.store.load_snapshot(self.audience, self.name)
        tracks_fields = not self.send_type
        if tracks_fields:
            plan.hashes = {r.key: fields_hash(r) for r in self.records if r.person_id not in out}

        if not snapshot and not out:
            plan.adds = list(self.records)  # the first sync: everyone is new
        else:
            current: set[str] = set()
            suppressed_new: list[Record] = []
            for r in self.records:
                if r.person_id in out:
                    if r.key not in snapshot:
                        suppressed_new.append(r)
                    continue
                current.add(r.key)
                before = snapshot.get(r.key)
                if before is None:
                    plan.adds.append(r)
                elif self.send_type:
                    if full:
                        plan.adds.append(r)
                elif full or before[1] != plan.hashes[r.key]:
                    plan.updates.append(r)
            leaving = [Record(key=k, person_id=p) for k, (p, _) in snapshot.items() if k not in current]
            if self.send_type:
                plan.dropped = leaving
            else:
                plan.removes = leaving
                if full:
                    # a full resync tells the destination again that these people are out
                    plan.removes.extend(Record(key=r.key, person_id=r.person_id) for r in suppressed_new)
                    suppressed_new = []
            plan.skipped.append(("add", suppressed_new, "suppressed at export time: not sent"))
        if self.rebuilds:
            plan.current = [r for r in self.records if r.person_id not in out]
        self.counts["adds"] = len(plan.adds)
        self.counts["updates"] = len(plan.updates)
        self.counts["removes"] = len(plan.removes)
        return plan

    def _log_plan(self, plan: _Plan) -> None:
        for operation, rows, reason in plan.skipped:
            self._log(operation, SKIPPED, rows, reason)
        adds = plan.adds
        if self.send_type and adds:
            state = self.store.ledger_state(self.audience, self.name, self.interval)
            if state:
                done = [r for r in adds if (row := state.get(r.key)) is not None and row.status == SENT]
                self._log("add", SKIPPED, done, "already sent in this interval")
                adds = [r for r in adds if (row := state.get(r.key)) is None or row.status != SENT]
        self._log("remove", PLANNED, plan.removes)
        self._log("update", PLANNED, plan.updates)
        self._log("add", PLANNED, adds)
        self._log("remove", SKIPPED, plan.dropped, "left the audience: a sent message cannot be recalled")

    def _execute(self, plan: _Plan) -> None:
        for operation, rows, reason in plan.skipped:
            self._log(operation, SKIPPED, rows, reason)
        if plan.dropped:
            self.store.drop_from_snapshot(self.audience, self.name, [r.key for r in plan.dropped])
            self._log("remove", SKIPPED, plan.dropped, "left the audience: a sent message cannot be recalled")
        if not (plan.removes or plan.updates or plan.adds):
            return
        begin = getattr(self.destination, "begin_run", None)
        if callable(begin):
            begin(RunContext(self.run_id, self.audience, self.name, self.interval, self.mode))

        if self.rebuilds and plan.removes and self.mode != "test":
            stop = self._rebuild(plan)
            if stop is not None:
                raise stop
            return
        snapshot = None if self.mode == "test" else "upsert"
        hashes = plan.hashes or None
        steps: list[tuple[str, Operation, list[Record], str | None]] = [
            ("remove", Operation.REMOVE, plan.removes, None if self.mode == "test" else "delete"),
            (
                "update",
                Operation.UPDATE if Operation.UPDATE in self.supports else Operation.ADD,
                plan.updates,
                snapshot,
            ),
            ("add", Operation.ADD, plan.adds, snapshot),
        ]
        pending = [(kind, op, rows, snap) for kind, op, rows, snap in steps if rows]
        for index, (kind, op, rows, snap) in enumerate(pending):
            if op not in self.supports:
                self._log(kind, SKIPPED, rows, f"{self.name} does not support {op.value}")
                continue
            if self.send_type and self.mode != "test":
                stop = self._send_with_ledger(kind, op, rows, snap)
            else:
                stop = self._send_list(kind, op, rows, snap, hashes)
            if stop is not None:
                for later_kind, _, later_rows, _ in pending[index + 1 :]:
                    self._log(later_kind, SKIPPED, later_rows, f"not attempted: {stop}")
                raise type(stop)(str(stop), self.summary()) from stop.__cause__

    # ---- list destinations (and test sends) ----------------------------------------------

    def _send_list(
        self, kind: str, op: Operation, rows: list[Record], snapshot: str | None, hashes: Mapping[str, str] | None
    ) -> SyncError | None:
        scope = (self.audience, self.name, self.interval, kind, self.mode)
        batches = list(_chunks(rows, self.destination.max_batch))
        for number, batch in enumerate(batches):
            outcome = _Outcome()
            self._send(op, batch, idempotency_key(*scope, keys=[r.key for r in batch]), outcome)
            self._settle(kind, outcome, None, snapshot if snapshot else None, hashes)
            if outcome.stopped:
                rest = [r for later in batches[number + 1 :] for r in later]
                self._log(kind, SKIPPED, rest, f"not attempted: {self._stop_reason(outcome)}")
                return self._stop_error(outcome)
        return None

    # ---- lists that remove by rebuilding ----------------------------------------------------

    def _rebuild(self, plan: _Plan) -> SyncError | None:
        """Fill a new copy of the list with every current member, then publish it in place of the
        old one with a single REMOVE call. Only a published rebuild changes the snapshot: until
        then the old list is live, so the removals are reported failed and the next run rebuilds
        again."""
        self.destination.start_rebuild()
        kind_of = {r.key: "add" for r in plan.adds} | {r.key: "update" for r in plan.updates}
        scope = (self.audience, self.name, self.interval, "rebuild", self.mode)
        filled = _Outcome()
        batches = list(_chunks(plan.current, self.destination.max_batch))
        for number, batch in enumerate(batches):
            self._send(Operation.ADD, batch, idempotency_key(*scope, keys=[r.key for r in batch]), filled)
            if filled.stopped:
                rest = [r for later in batches[number + 1 :] for r in later]
                filled.skip(rest, f"not attempted: {self._stop_reason(filled)}")
                break
        published = _Outcome()
        if not filled.stopped:
            keys = [r.key for r in plan.removes]
            self._send(Operation.REMOVE, plan.removes, idempotency_key(*scope, "publish", keys=keys), published)
        by_kind: dict[str, _Outcome] = {kind: _Outcome() for kind in ("remove", "update", "add", "rebuild")}
        for change in filled.others:  # rejected or failed uploads
            by_kind[kind_of.get(change.key, "rebuild")].others.append(change)
        if published.stopped or filled.stopped:
            stop = published if published.stopped else filled
            reason = f"the rebuilt list was not published: {self._stop_reason(stop)}"
            failed = {c.key for c in filled.others}
            for kind, rows in (("remove", plan.removes), ("update", plan.updates), ("add", plan.adds)):
                by_kind[kind].fail([r for r in rows if r.key not in failed], None, reason)
            for kind, outcome in by_kind.items():
                self._settle(kind, outcome, None, None, None)
            return self._stop_error(stop)
        for record, code in zip(filled.delivered, filled.codes, strict=True):
            kind = kind_of.get(record.key)
            if kind is not None:
                by_kind[kind].deliver([record], code)
        by_kind["remove"] = published
        # rows the new copy refused (or that opted out during a retry) are not in the list any more
        self.store.drop_from_snapshot(self.audience, self.name, [c.key for c in filled.others])
        self._settle("remove", by_kind.pop("remove"), None, "delete", None)
        for kind, outcome in by_kind.items():
            self._settle(kind, outcome, None, "upsert" if kind != "rebuild" else None, plan.hashes)
        return None

    # ---- send-type destinations: the ledger ------------------------------------------------

    def _send_with_ledger(self, kind: str, op: Operation, rows: list[Record], snapshot: str | None) -> SyncError | None:
        channel = self.destination.channel
        state = self.store.ledger_state(self.audience, self.name, self.interval)
        fresh: list[Record] = rows
        regroups: dict[str, list[Record]] = {}
        dead: set[str] = set()
        if state:
            dead = self._dead_owners(state, datetime.now(UTC))
            fresh = []
            done: list[Record] = []
            busy: list[Record] = []
            for r in rows:
                row = state.get(r.key)
                if row is None:
                    fresh.append(r)
                elif row.status == SENT:
                    done.append(r)
                elif row.status == "claimed" and row.owner != self.owner and row.owner not in dead:
                    busy.append(r)
                else:
                    regroups.setdefault(row.claim_id, []).append(r)
            self._log(kind, SKIPPED, done, "already sent in this interval")
            self._log(kind, SKIPPED, busy, "claimed by another run that is still alive: deferred")
            self.counts["deferred"] += len(busy)
        group_sizes = Counter(row.claim_id for row in state.values()) if state else Counter()
        scope = (self.audience, self.name, self.interval, kind)

        # (batch, idempotency key or None for a fresh batch, old claim id)
        work: list[tuple[list[Record], str | None, str | None]] = []
        for claim_id, members in regroups.items():
            whole = len(members) == group_sizes[claim_id] and len(members) <= self.destination.max_batch
            for batch in _chunks(members, self.destination.max_batch):
                key = claim_id if whole else idempotency_key(claim_id, keys=[r.key for r in batch])
                work.append((batch, key, claim_id))
        work.extend((batch, None, None) for batch in _chunks(fresh, self.destination.max_batch))

        for number, (batch, planned_key, old) in enumerate(work):
            keys = list(map(attrgetter("key"), batch))
            people = list(map(attrgetter("person_id"), batch))
            key = planned_key or idempotency_key(*scope, keys=keys)
            now = datetime.now(UTC)
            if old is None:
                held = self.store.claim(
                    audience=self.audience,
                    destination=self.name,
                    channel=channel,
                    interval=self.interval,
                    keys=keys,
                    person_ids=people,
                    claim_id=key,
                    owner=self.owner,
                    now=now,
                )
            else:
                held = self.store.reclaim(
                    audience=self.audience,
                    destination=self.name,
                    interval=self.interval,
                    keys=keys,
                    old_claim_id=old,
                    claim_id=key,
                    owner=self.owner,
                    now=now,
                    dead_owners=sorted(dead),
                )
            if held is not None and len(held) < len(batch):
                # another run claimed these since the ledger was read: sent by now, or still its own
                latest = self.store.ledger_state(self.audience, self.name, self.interval)
                lost = [r for r in batch if r.key not in held]
                sent = [r for r in lost if (row := latest.get(r.key)) is not None and row.status == SENT]
                pending = [r for r in lost if (row := latest.get(r.key)) is None or row.status != SENT]
                self._log(kind, SKIPPED, sent, "already sent in this interval")
                self._log(kind, SKIPPED, pending, "claimed by another run that is still alive: deferred")
                self.counts["deferred"] += len(pending)
                batch = [r for r in batch if r.key in held]
                keys = list(map(attrgetter("key"), batch))
                people = list(map(attrgetter("person_id"), batch))
                if not batch:
                    continue
                if old is None:  # the claimed set differs from the key's: key what is sent
                    new_key = idempotency_key(key, keys=[r.key for r in batch])
                    self.store.rekey(
                        audience=self.audience,
                        destination=self.name,
                        interval=self.interval,
                        owner=self.owner,
                        claim_id=key,
                        new_claim_id=new_key,
                    )
                    key = new_key
            outcome = _Outcome()
            try:
                self._send(op, batch, key, outcome)
            except Exception:
                # not a destination error (a bug): the claims become failed, never silently sent
                self.store.release(
                    audience=self.audience,
                    destination=self.name,
                    interval=self.interval,
                    owner=self.owner,
                    claim_id=key,
                )
                raise
            claim = Claim(channel=channel, interval=self.interval, owner=self.owner, claim_id=key, whole_group=True)
            self._settle(kind, outcome, claim, snapshot, None, known=(batch, keys, people))
            if outcome.stopped:
                rest = [r for later, _, _ in work[number + 1 :] for r in later]
                self._log(kind, SKIPPED, rest, f"not attempted: {self._stop_reason(outcome)}")
                return self._stop_error(outcome)
        return None

    # ---- one batch: rate limit, retries, splits ----------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        spread = min(1.0, max(0.0, float(self.jitter()))) * BACKOFF_BASE
        if retry_after is not None:
            return max(0.0, float(retry_after)) + spread
        return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1) + spread)

    def _recheck(self, op: Operation, batch: list[Record], outcome: _Outcome) -> list[Record]:
        """Suppression again before a retry: drop people who opted out meanwhile."""
        if op == Operation.REMOVE or self.suppressed is None:
            return batch
        out = self._suppressed_of(batch)
        if not out:
            return batch
        gone = [r for r in batch if r.person_id in out]
        outcome.skip(gone, "suppressed before a retry: not sent")
        return [r for r in batch if r.person_id not in out]

    def _send(self, op: Operation, batch: list[Record], key: str, outcome: _Outcome) -> None:
        attempt = 0
        while True:
            attempt += 1
            if self.bucket is not None:
                self.bucket.acquire()
            try:
                results = self.destination.deliver(op, batch, idempotency_key=key)
            except TransientError as exc:
                if exc.partial:
                    batch = self._take_partial(batch, exc.partial, outcome)
                    if not batch:
                        return
                if attempt >= self.max_attempts:
                    outcome.fail(batch, _code(exc.status), f"gave up after {attempt} attempt(s): {exc}")
                    outcome.unavailable = exc
                    return
                wait = self._backoff(attempt, exc.retry_after)
                log.warning(
                    "%s %s of %d row(s) to %s: %s (status %s); retry %d of %d in %.2f s",
                    self.audience,
                    op.value,
                    len(batch),
                    self.name,
                    exc,
                    exc.status,
                    attempt,
                    self.max_attempts - 1,
                    wait,
                )
                self.sleep(wait)
                batch = self._recheck(op, batch, outcome)
                if not batch:
                    return
                continue  # same idempotency key: the system may have accepted the first attempt
            except BatchRejected as exc:
                if len(batch) == 1:
                    outcome.reject(batch[0], exc.code or _code(exc.status), str(exc))
                    return
                batch = self._recheck(op, batch, outcome)
                middle = len(batch) // 2
                halves = [half for half in (batch[:middle], batch[middle:]) if half]
                for number, half in enumerate(halves):
                    self._send(op, half, idempotency_key(key, keys=[r.key for r in half]), outcome)
                    if outcome.stopped:
                        for rest in halves[number + 1 :]:
                            outcome.skip(rest, f"not attempted: {self._stop_reason(outcome)}")
                        return
                return
            except Exception as exc:  # another 4xx, an auth error...: never retried
                if getattr(exc, "partial", None):
                    batch = self._take_partial(batch, exc.partial, outcome)
                outcome.fail(batch, _code(getattr(exc, "status", None)), f"{type(exc).__name__}: {exc}")
                outcome.fatal = exc
                return
            self._take(batch, results, outcome)
            return

    def _take_partial(self, batch: list[Record], partial: Sequence[RowResult], outcome: _Outcome) -> list[Record]:
        """Settle the rows a failed batch already has answers for; return the rest to retry."""
        answered = {res.key for res in partial}
        done = [r for r in batch if r.key in answered]
        self._take(done, partial, outcome)
        return [r for r in batch if r.key not in answered]

    @staticmethod
    def _take(batch: list[Record], results: Sequence[RowResult], outcome: _Outcome) -> None:
        if isinstance(results, RowResults) and results.records is batch:
            if not results.failures:
                outcome.deliver(batch)
                return
            by_key: Mapping[str, RowResult] = results.failures
            for r in batch:
                result = by_key.get(r.key)
                if result is None or result.ok:
                    outcome.deliver([r], result.code if result is not None else None)
                else:
                    outcome.reject(r, result.code, result.reason)
            return
        by_key = {res.key: res for res in results}
        for r in batch:
            result = by_key.get(r.key)
            if result is None:
                outcome.fail([r], None, "the destination returned no result for this row")
            elif result.ok or result.already_done:
                code = result.code or ("already_done" if result.already_done else None)
                outcome.deliver([r], code)
            else:
                outcome.reject(r, result.code, result.reason)

    # ---- settling ------------------------------------------------------------------------

    def _settle(
        self,
        kind: str,
        outcome: _Outcome,
        claim: Claim | None,
        snapshot: str | None,
        hashes: Mapping[str, str] | None,
        known: tuple[list[Record], list[str], list[str]] | None = None,
    ) -> None:
        if (
            known is not None
            and not outcome.others
            and not any(outcome.codes)
            and len(outcome.delivered) == len(known[0])
        ):
            keys, people = known[1], known[2]  # the whole batch was confirmed: same rows
        else:
            keys = list(map(attrgetter("key"), outcome.delivered))
            people = list(map(attrgetter("person_id"), outcome.delivered))
        codes = outcome.codes if any(outcome.codes) else None
        self.store.settle(
            run_id=self.run_id,
            audience=self.audience,
            destination=self.name,
            operation=kind,
            at=datetime.now(UTC),
            keys=keys,
            person_ids=people,
            hashes=[hashes.get(k) for k in keys] if hashes and snapshot == "upsert" else None,
            codes=codes,
            others=outcome.others,
            claim=claim,
            snapshot=snapshot,
        )
        status = Counter(c.status for c in outcome.others)
        self.counts["delivered"] += len(keys)
        self.counts["rejected"] += status[REJECTED]
        self.counts["failed"] += status[NOT_CONFIRMED]
        self.counts["skipped"] += status[SKIPPED]

    def _stop_reason(self, outcome: _Outcome) -> str:
        if outcome.unavailable is not None:
            return f"{self.name} unavailable after {self.max_attempts} attempt(s): {outcome.unavailable}"
        return f"{type(outcome.fatal).__name__}: {outcome.fatal}"

    def _stop_error(self, outcome: _Outcome) -> SyncError:
        reason = self._stop_reason(outcome)
        if outcome.unavailable is not None:
            error: SyncError = DestinationUnavailable(reason, self.summary())
            error.__cause__ = outcome.unavailable
        else:
            error = SyncError(reason, self.summary())
            error.__cause__ = outcome.fatal
        return error


def sync(
    store: ActivationStore,
    destination: Destination,
    audience: str,
    records: Sequence[Record],
    *,
    interval: str,
    mode: str = "diff",
    suppressed: Callable[[set[str]], set[str]] | None = None,
    test_recipients: Sequence[Record] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    max_attempts: int = 5,
    run_id: str | None = None,
    jitter: Callable[[], float] = random.random,
    claim_lease: float = DEFAULT_CLAIM_LEASE,
) -> SyncSummary:
    """Sync ``records`` (the audience's current treatment members for this destination) to
    ``destination``; see the module docstring for the steps.

    :param store: the activation store (snapshots, ledger, changelog).
    :param destination: where to send; its ``max_batch``, ``rate_per_second``, ``supports`` and
        ``allowed_columns`` are honoured.
    :param audience: the audience's name.
    :param records: one per recipient; keys unique and non-empty, fields within the allow-list.
    :param interval: the run interval (e.g. the Airflow data interval start); a send-type
        destination sends a recipient at most once per (audience, destination, interval).
    :param mode: ``diff`` (changes since the last confirmed sync), ``full`` (everything current,
        and explicit removals), ``dry_run`` (plan only), ``test`` (only ``test_recipients``).
    :param suppressed: called with a set of person IDs, returns those who must not be contacted
        now (checked at the start and again before every retry).
    :param test_recipients: the seed list for ``mode="test"``.
    :param sleep: waits (backoff, rate limit); ``clock``: monotonic seconds. Tests pass fakes.
    :param max_attempts: attempts per batch for transient errors, the first included.
    :param run_id: this run's ID (default: a new UUID); a rerun may reuse it.
    :param jitter: a number in [0, 1) per backoff (``random.random``).
    :param claim_lease: seconds of heartbeat silence after which another run's claimant counts
        as dead (on this host a claimant whose process is gone is dead at once).
    :returns: the :class:`SyncSummary`.
    :raises InvalidRecords: the records break the contract; nothing was sent.
    :raises DestinationUnavailable: a batch kept failing transiently; the run stopped.
    :raises SyncDeferred: a live run holds claims on some rows; they were left to it.
    :raises SyncError: another error stopped the run.
    """
    return _Sync(
        store,
        destination,
        audience,
        records,
        interval=interval,
        mode=mode,
        suppressed=suppressed,
        test_recipients=test_recipients,
        sleep=sleep,
        clock=clock,
        max_attempts=max_attempts,
        run_id=run_id,
        jitter=jitter,
        claim_lease=claim_lease,
    ).run()


def planned(store: ActivationStore, run_id: str) -> list[dict[str, Any]]:
    """The changelog rows of a dry run (``status='planned'``)."""
    return [row for row in store.changelog(run_id) if row["status"] == PLANNED]


__all__ = [
    "DEFAULT_CLAIM_LEASE",
    "MODES",
    "DestinationUnavailable",
    "InvalidRecords",
    "LedgerRow",
    "SyncDeferred",
    "SyncError",
    "SyncSummary",
    "check_records",
    "claimant_dead",
    "fields_hash",
    "idempotency_key",
    "planned",
    "sync",
]
