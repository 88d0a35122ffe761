"""What every destination implements: the contract between the sync engine and a channel.

The engine (yorisoi.activation.delivery.engine) decides *what* changes (adds, updates, removes against the
last confirmed snapshot), claims each recipient in the idempotency ledger, limits the rate,
retries and splits rejected batches. A destination only knows *how* to deliver one batch to its
system and how to read that system's answer:

- it returns one :class:`RowResult` per record when the system answers per row;
- it raises :class:`TransientError` when the batch may succeed later (429, 5xx, timeouts; with
  the server's ``Retry-After`` when it gave one). A destination that sends row by row (SMS, SMTP)
  and fails part-way puts the rows it already has an answer for in ``partial``: the engine settles
  those (a message sent is recorded as sent, so a rerun in another process never sends it again)
  and retries only the rest;
- it raises :class:`BatchRejected` when the system refused the batch as a whole for its content
  (a 400 naming no row): the engine then splits the batch to find the bad rows.

A destination never sees a column outside its allow-list: the engine drops every other column
before the call, and refuses to start when the audience asks for a column the destination does not
allow (docs/reliability.md #14).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload


class Operation(StrEnum):
    ADD = "add"  # a member the destination does not have yet (list sync) / a recipient to send to
    UPDATE = "update"  # a member whose allowed fields changed since the last confirmed sync
    REMOVE = "remove"  # left the audience, opted out or erased: an explicit removal, never silence


@dataclass(frozen=True)
class Record:
    """One recipient as the destination sees it. ``key`` is the destination's identifier (an
    email address, a LINE user ID, an E.164 phone number, or the person ID for files)."""

    key: str
    person_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    variant: str | None = None


@dataclass(frozen=True)
class RowResult:
    key: str
    ok: bool
    code: str | None = None  # the system's own code, e.g. "409", "invalid_email"
    reason: str | None = None
    already_done: bool = False  # the system says it had it (LINE 409 on a retry key): counts as delivered


class RowResults(Sequence[RowResult]):
    """One :class:`RowResult` per record without building a million objects: every record is
    accepted except those in ``failures`` (key → its result). File destinations return it."""

    def __init__(self, records: Sequence[Record], failures: Mapping[str, RowResult] | None = None) -> None:
        self.records = records
        self.failures = dict(failures or {})

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> RowResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RowResult]: ...
    def __getitem__(self, index: int | slice) -> RowResult | Sequence[RowResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        key = self.records[index].key
        return self.failures.get(key) or RowResult(key=key, ok=True)


@dataclass(frozen=True)
class RunContext:
    """Handed to ``destination.begin_run`` before the first request."""

    run_id: str
    audience: str
    destination: str
    interval: str
    mode: str


class DestinationError(Exception):
    """Base class of the errors a destination raises for a whole batch.

    ``partial``: the answers the destination already had before it failed (one RowResult per
    row it sent or refused). The engine settles those whatever the error; for a transient error
    it retries only the rows without an answer."""

    def __init__(self, message: str, *, partial: Sequence[RowResult] = ()) -> None:
        super().__init__(message)
        self.partial = list(partial)


class TransientError(DestinationError):
    """The batch may succeed if sent again: 429, 5xx, timeouts, dropped connections."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        partial: Sequence[RowResult] = (),
    ) -> None:
        super().__init__(message, partial=partial)
        self.status = status
        self.retry_after = retry_after


class BatchRejected(DestinationError):
    """The system refused the batch for its content without naming the row: split it."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Destination(ABC):
    """A channel endpoint. Subclasses set the class attributes and implement :meth:`deliver`."""

    name: str  # as configured, e.g. "line_multicast"
    channel: str  # email, line, sms, dm, s3 ... (consent is checked per channel)
    key_field: str  # the member column that becomes Record.key, e.g. "email"
    allowed_columns: frozenset[str]  # the only fields that may leave (besides the key)
    supports: frozenset[Operation] = frozenset({Operation.ADD})
    max_batch: int = 500
    rate_per_second: float | None = None  # client-side limit, below the system's published one
    # A list that cannot drop one member (a LINE upload audience) removes by rebuilding: after
    # ``start_rebuild()`` its ADD batches fill a new copy of the list, and one REMOVE call
    # (holding every member to drop) publishes that copy in place of the old list. Until the
    # REMOVE succeeds the old list stays as it was, so a failed rebuild changes nothing.
    rebuilds: bool = False

    @abstractmethod
    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        """Deliver one batch. ``idempotency_key`` is stable for the same (run interval, batch of
        recipients), so a retry of the same batch carries the same key (LINE's X-Line-Retry-Key).
        Return one RowResult per record, or raise TransientError / BatchRejected."""

    def start_rebuild(self) -> None:
        """Begin a rebuild (``rebuilds`` destinations only): the next ADD batches go to a new copy."""
        raise NotImplementedError(f"{self.name} does not rebuild")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (default: nothing to release)."""
