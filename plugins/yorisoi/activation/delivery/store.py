# ruff: noqa: S608 - statements are assembled from this module's fixed table and column names; values are bound
"""What the activation layer remembers: members, runs, changes, rejects, snapshots and the ledger.

:class:`ActivationStore` keeps eight tables in any SQLAlchemy database (created on first use). The
embedded default is SQLite at ``<var>/activation/activation.sqlite`` in WAL mode with a busy
timeout, every write transaction ``BEGIN IMMEDIATE`` so that several processes (Airflow mapped
tasks) queue for the write lock instead of failing; PostgreSQL works the same (``postgresql+
psycopg://...``). Other databases are refused: the bulk statements use ``ON CONFLICT``, SQLite's
``json_each`` and PostgreSQL's ``unnest``.

=====================  ============================================================================
table                  one row per
=====================  ============================================================================
``audience_members``   (run, audience, person): who was in the audience, in which group (treatment
                       / control) and variant, when it was computed (written by the membership step)
``sync_runs``          sync run: audience, destination, interval, mode (full | diff | dry_run |
                       test), status (running | succeeded | failed | deferred), counts, error
``sync_changelog``     change sent (or planned, or not sent) in a run: key, person, operation (add |
                       update | remove), status (succeeded | rejected | failed | skipped | planned),
                       the system's code and the reason (docs/reliability.md #8)
``sync_rejects``       row the destination refused: run, key, code, reason (docs/reliability.md #6)
``sync_snapshots``     (audience, destination, key): the last state the destination CONFIRMED, with
                       the hash of the fields it holds; written only after confirmation
                       (docs/reliability.md #3)
``send_ledger``        (audience, destination, interval, key): claimed atomically before the
                       fallible call (status ``claimed``), then ``sent`` or ``failed``
                       (docs/reliability.md #4). ``claim_id`` is the batch's idempotency key, ``owner`` the
                       sync call holding the claim
``send_history``       (audience, person): the ledger's sent rows that retention pruned, folded into
                       a count of run intervals, the first send and the last interval folded
``sync_claimants``     ledger owner (one sync call): its run, host, process ID and the process's
                       start time, its last heartbeat, and when it ended; what a rerun reads to
                       tell a live claimant from a dead one (docs/reliability.md #21)
=====================  ============================================================================

Bulk writes never loop over rows in Python: a batch's keys travel as one JSON array (SQLite,
``json_each``) or as arrays (PostgreSQL, ``unnest``) inside set-based ``INSERT ... SELECT`` /
``UPDATE`` statements, so a 1 M-row file claims, settles and logs in a few statements.

Times are stored as naive UTC and returned timezone-aware (UTC).

:meth:`ActivationStore.prune` applies the retention of include/destinations.yml (``defaults.
retention``): old members, sync runs with their changelog and rejects, and old ledger rows (folded
into ``send_history`` first) go in set-based DELETEs; ``sync_snapshots`` are never pruned.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ... import paths

if TYPE_CHECKING:
    from ..selection.definitions import Retention

log = logging.getLogger(__name__)

# ledger statuses
CLAIMED = "claimed"
SENT = "sent"
FAILED = "failed"

# changelog statuses
SUCCEEDED = "succeeded"
REJECTED = "rejected"
SKIPPED = "skipped"
PLANNED = "planned"
# a row whose batch failed without an answer per row (retries exhausted, an error): not confirmed
NOT_CONFIRMED = "failed"

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_CHUNK = 1_000_000  # rows per bulk statement: bounds one parameter's size


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored as naive UTC and read back as an aware UTC datetime."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_KEY = sa.String(512)  # an email address, an E.164 number, a LINE user ID, an order number
_NAME = sa.String(200)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY in SQLite

metadata = sa.MetaData()

audience_members = sa.Table(
    "audience_members",
    metadata,
    sa.Column("run_id", _NAME, primary_key=True),
    sa.Column("audience", _NAME, primary_key=True),
    sa.Column("person_id", _KEY, primary_key=True),
    sa.Column("grp", sa.String(40), nullable=False),
    sa.Column("variant", sa.String(100)),
    sa.Column("computed_at", UTCDateTime(), nullable=False),
    sa.Index("ix_audience_members_latest", "audience", "computed_at"),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("run_id", _NAME, primary_key=True),
    sa.Column("audience", _NAME, nullable=False),
    sa.Column("destination", _NAME, nullable=False),
    sa.Column("interval", _NAME, nullable=False),
    sa.Column("mode", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("adds", sa.Integer, nullable=False, default=0),
    sa.Column("updates", sa.Integer, nullable=False, default=0),
    sa.Column("removes", sa.Integer, nullable=False, default=0),
    sa.Column("delivered", sa.Integer, nullable=False, default=0),
    sa.Column("rejected", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Index("ix_sync_runs_audience", "audience", "destination", "started_at"),
)

sync_changelog = sa.Table(
    "sync_changelog",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", _NAME, nullable=False),
    sa.Column("audience", _NAME, nullable=False),
    sa.Column("destination", _NAME, nullable=False),
    sa.Column("key", _KEY, nullable=False),
    sa.Column("person_id", _KEY),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("code", sa.String(100)),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_sync_changelog_run", "run_id"),
)

sync_rejects = sa.Table(
    "sync_rejects",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", _NAME, nullable=False),
    sa.Column("audience", _NAME, nullable=False),
    sa.Column("destination", _NAME, nullable=False),
    sa.Column("key", _KEY, nullable=False),
    sa.Column("person_id", _KEY),
    sa.Column("code", sa.String(100)),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_sync_rejects_run", "run_id"),
)

sync_snapshots = sa.Table(
    "sync_snapshots",
    metadata,
    sa.Column("audience", _NAME, primary_key=True),
    sa.Column("destination", _NAME, primary_key=True),
    sa.Column("key", _KEY, primary_key=True),
    sa.Column("person_id", _KEY, nullable=False),
    sa.Column("fields_hash", sa.String(64)),  # None where the destination cannot be sent an update
    sa.Column("confirmed_at", UTCDateTime(), nullable=False),
)

send_ledger = sa.Table(
    "send_ledger",
    metadata,
    sa.Column("audience", _NAME, primary_key=True),
    sa.Column("destination", _NAME, primary_key=True),
    sa.Column("interval", _NAME, primary_key=True),
    sa.Column("key", _KEY, primary_key=True),  # the primary key is the UNIQUE claim
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("person_id", _KEY, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("claim_id", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(64)),
    sa.Column("claimed_at", UTCDateTime(), nullable=False),
    sa.Column("done_at", UTCDateTime()),
    # frequency caps read by channel and time; claimed_at (never updated, unlike status and
    # done_at) keeps the index out of the settle UPDATE
    sa.Index("ix_send_ledger_channel", "channel", "claimed_at"),
)

send_history = sa.Table(
    "send_history",
    metadata,
    sa.Column("audience", _NAME, primary_key=True),
    sa.Column("person_id", _KEY, primary_key=True),
    sa.Column("sends", sa.Integer, nullable=False),  # distinct run intervals among the folded rows
    sa.Column("first_sent_at", UTCDateTime(), nullable=False),
    # every sent ledger row of this person and audience up to this interval has been folded
    sa.Column("last_interval", _NAME, nullable=False),
)

sync_claimants = sa.Table(
    "sync_claimants",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("run_id", _NAME, nullable=False),
    sa.Column("host", _NAME, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("pid_started", sa.String(40)),  # the process's start time (Linux /proc): a reused pid differs
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime()),  # the sync call returned or raised: it sends nothing more
    sa.Index("ix_sync_claimants_run", "run_id"),
)

# The longest a claim can stay open before it is settled: sent_counts looks back this much before
# `since` in the index on claimed_at, then filters on done_at exactly.
MAX_CLAIM_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LedgerRow:
    """A recipient's row in the ledger for one (audience, destination, interval)."""

    key: str
    person_id: str
    status: str
    claim_id: str
    owner: str | None
    claimed_at: datetime


@dataclass(frozen=True)
class Change:
    """A changelog row that is not a plain success: rejected, failed or skipped (with a reason)."""

    key: str
    person_id: str | None
    status: str
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Claim:
    """Which ledger rows a settle applies to: ``owner``'s rows of group ``claim_id``;
    ``whole_group`` when the batch is every row this owner holds in the group."""

    channel: str
    interval: str
    owner: str
    claim_id: str
    whole_group: bool


def default_url() -> str:
    """``YORISOI_ACTIVATION_URL`` when set (a SQLAlchemy URL, e.g.
    ``postgresql+psycopg://yorisoi:…@db/yorisoi_activation`` where several workers export at
    once), else ``sqlite:///<var>/activation/activation.sqlite`` (the folder is created)."""
    if url := os.environ.get("YORISOI_ACTIVATION_URL"):
        return url
    folder = paths.var_dir() / "activation"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'activation.sqlite'}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(n: int, size: int = _CHUNK) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _part(values: Sequence[Any], part: slice) -> Sequence[Any]:
    """``values[part]`` without copying when the part is all of it."""
    return values if part.start == 0 and part.stop >= len(values) else values[part]


class ActivationStore:
    """The activation tables in one database.

    :param url: a SQLAlchemy URL; None is the embedded SQLite file (:func:`default_url`).
        PostgreSQL: ``postgresql+psycopg://user@127.0.0.1:5432/db``.
    :param busy_timeout: seconds a SQLite writer waits for another process's write lock.
    """

    def __init__(self, url: str | None = None, *, busy_timeout: float = 120.0) -> None:
        self.url = url or default_url()
        parsed = sa.engine.make_url(self.url)
        dialect = parsed.get_backend_name()
        if dialect not in SUPPORTED_DIALECTS:
            raise ValueError(f"ActivationStore supports {', '.join(SUPPORTED_DIALECTS)}, not {dialect}")
        self.dialect = dialect
        self._local = threading.local()
        if dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, connect_args={"timeout": busy_timeout})
            _sqlite_pragmas(self.engine, busy_timeout)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self._create_tables()

    def _create_tables(self) -> None:
        """``create_all``; processes starting together on a new database race to create the same
        tables (PostgreSQL then refuses the loser's CREATE): try again, the tables are there."""
        for attempt in range(1, 4):
            try:
                metadata.create_all(self.engine)
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                if attempt == 3:
                    raise
                time.sleep(0.2 * attempt)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ActivationStore({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads (in SQLite a plain BEGIN, not waiting for the write lock)."""
        with self.engine.connect() as conn:
            yield conn.execution_options(yorisoi_read=True)

    # ---- bulk plumbing --------------------------------------------------------------------

    def _rows(self, name: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> tuple[str, dict[str, Any]]:
        """A derived table ``name(columns)`` over column lists ``values`` (strings or None), and
        its parameters: one JSON array in SQLite, one array per column in PostgreSQL. Within
        :meth:`settle` the same lists are serialised once for all its statements."""
        memo = getattr(self._local, "memo", None)
        if memo is None:
            return self._rows_now(name, columns, values)
        key = (name, tuple(columns), tuple(map(id, values)))
        if key not in memo:
            memo[key] = self._rows_now(name, columns, values)
        return memo[key]

    def _rows_now(
        self, name: str, columns: Sequence[str], values: Sequence[Sequence[Any]]
    ) -> tuple[str, dict[str, Any]]:
        if self.dialect == "sqlite":
            if len(columns) == 1:
                sql = f"(SELECT value AS {columns[0]} FROM json_each(:{name})) AS {name}"
                column = values[0] if isinstance(values[0], list) else list(values[0])
                return sql, {name: json.dumps(column, ensure_ascii=False)}
            parts = ", ".join(f"json_extract(value, '$[{i}]') AS {c}" for i, c in enumerate(columns))
            sql = f"(SELECT {parts} FROM json_each(:{name})) AS {name}"
            return sql, {name: json.dumps(list(zip(*values, strict=True)), ensure_ascii=False)}
        arrays = ", ".join(f"CAST(:{name}_{i} AS TEXT[])" for i in range(len(columns)))
        params = {f"{name}_{i}": list(v) for i, v in enumerate(values)}
        return f"unnest({arrays}) AS {name}({', '.join(columns)})", params

    @staticmethod
    def _exec(conn: Connection, sql: str, params: Mapping[str, Any], times: Sequence[str] = ()) -> sa.CursorResult:
        statement = sa.text(sql)
        if times:
            statement = statement.bindparams(*(sa.bindparam(t, type_=UTCDateTime()) for t in times))
        return conn.execute(statement, dict(params))

    # ---- runs -----------------------------------------------------------------------------

    def start_run(
        self, run_id: str, *, audience: str, destination: str, interval: str, mode: str, started_at: datetime
    ) -> None:
        """Record a run as ``running`` (a rerun under the same id starts its record again)."""
        row = {
            "run_id": run_id,
            "audience": audience,
            "destination": destination,
            "interval": interval,
            "mode": mode,
            "status": "running",
            "started_at": _utc(started_at),
            "finished_at": None,
            "adds": 0,
            "updates": 0,
            "removes": 0,
            "delivered": 0,
            "rejected": 0,
            "skipped": 0,
            "error": None,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sync_runs).where(sync_runs.c.run_id == run_id))
            conn.execute(sa.insert(sync_runs), row)

    def finish_run(
        self, run_id: str, *, status: str, counts: Mapping[str, int], finished_at: datetime, error: str | None = None
    ) -> None:
        """Close a run's record with its status, counts and error."""
        values = {k: int(v) for k, v in counts.items() if k in sync_runs.c}
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.run_id == run_id)
                .values(status=status, finished_at=_utc(finished_at), error=error, **values)
            )

    # ---- claimants: who holds ledger claims, and whether it still lives --------------------

    def register_claimant(
        self, owner: str, *, run_id: str, host: str, pid: int, pid_started: str | None, now: datetime
    ) -> None:
        """Record the sync call ``owner`` (its process) before it claims anything."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(sync_claimants),
                {
                    "owner": owner,
                    "run_id": run_id,
                    "host": host,
                    "pid": pid,
                    "pid_started": pid_started,
                    "heartbeat_at": _utc(now),
                    "ended_at": None,
                },
            )

    def heartbeat(self, owner: str, now: datetime, *, ended: bool = False) -> None:
        """The claimant is alive at ``now`` (``ended``: it returned and holds no send in flight)."""
        values: dict[str, Any] = {"heartbeat_at": _utc(now)}
        if ended:
            values["ended_at"] = _utc(now)
        with self.engine.begin() as conn:
            conn.execute(sa.update(sync_claimants).where(sync_claimants.c.owner == owner).values(**values))

    def claimants(self, owners: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The registered claimants among ``owners`` (claims older than registration have none)."""
        wanted = sorted({o for o in owners if o})
        if not wanted:
            return {}
        with self._read() as conn:
            rows = conn.execute(sa.select(sync_claimants).where(sync_claimants.c.owner.in_(wanted))).mappings()
            return {row["owner"]: dict(row) for row in rows}

    def running_claimants(self, audience: str, destination: str) -> list[dict[str, Any]]:
        """Claimants whose run is still recorded ``running`` for (audience, destination), with
        the run's record fields ``status`` and ``started_at``."""
        c, r = sync_claimants.c, sync_runs.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(sync_claimants, r.status, r.started_at)
                .join(sync_runs, r.run_id == c.run_id)
                .where(r.audience == audience, r.destination == destination, r.status == "running")
            ).mappings()
            return [dict(row) for row in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's record, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(sync_runs).where(sync_runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def runs(self, audience: str | None = None, destination: str | None = None) -> list[dict[str, Any]]:
        """Run records, oldest first, optionally for one audience and/or destination."""
        query = sa.select(sync_runs).order_by(sync_runs.c.started_at)
        if audience is not None:
            query = query.where(sync_runs.c.audience == audience)
        if destination is not None:
            query = query.where(sync_runs.c.destination == destination)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- snapshots ------------------------------------------------------------------------

    def load_snapshot(self, audience: str, destination: str) -> dict[str, tuple[str, str | None]]:
        """The last confirmed state: key → (person_id, fields_hash)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(sync_snapshots.c.key, sync_snapshots.c.person_id, sync_snapshots.c.fields_hash).where(
                    sync_snapshots.c.audience == audience, sync_snapshots.c.destination == destination
                )
            )
            return {key: (person, digest) for key, person, digest in rows}

    def drop_from_snapshot(self, audience: str, destination: str, keys: Sequence[str]) -> None:
        """Forget keys a send-type destination cannot be told to remove (a message cannot be
        recalled): if they come back, they are new again."""
        if not keys:
            return
        with self.engine.begin() as conn:
            self._snapshot_delete(conn, audience, destination, keys)

    def _snapshot_delete(self, conn: Connection, audience: str, destination: str, keys: Sequence[str]) -> None:
        for part in _chunks(len(keys)):
            src, params = self._rows("src", ["k"], [_part(keys, part)])
            self._exec(
                conn,
                f"DELETE FROM sync_snapshots WHERE audience = :audience AND destination = :destination "
                f"AND key IN (SELECT k FROM {src})",
                {"audience": audience, "destination": destination, **params},
            )

    def _snapshot_upsert(
        self,
        conn: Connection,
        audience: str,
        destination: str,
        keys: Sequence[str],
        person_ids: Sequence[str],
        hashes: Sequence[str | None] | None,
        at: datetime,
    ) -> None:
        for part in _chunks(len(keys)):
            columns, values = ["k", "p"], [_part(keys, part), _part(person_ids, part)]
            if hashes is not None:
                columns.append("h")
                values.append(_part(hashes, part))
            src, params = self._rows("src", columns, values)
            digest = "h" if hashes is not None else "NULL"
            self._exec(
                conn,
                f"INSERT INTO sync_snapshots (audience, destination, key, person_id, fields_hash, confirmed_at) "
                f"SELECT :audience, :destination, k, p, {digest}, :at FROM {src} WHERE true "
                f"ON CONFLICT (audience, destination, key) DO UPDATE SET person_id = excluded.person_id, "
                f"fields_hash = excluded.fields_hash, confirmed_at = excluded.confirmed_at",
                {"audience": audience, "destination": destination, "at": _utc(at), **params},
                times=("at",),
            )

    # ---- the ledger -----------------------------------------------------------------------

    def ledger_state(self, audience: str, destination: str, interval: str) -> dict[str, LedgerRow]:
        """Every ledger row of one (audience, destination, interval), by key."""
        t = send_ledger.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.key, t.person_id, t.status, t.claim_id, t.owner, t.claimed_at).where(
                    t.audience == audience, t.destination == destination, t.interval == interval
                )
            )
            return {r[0]: LedgerRow(*r) for r in rows}

    def claim(
        self,
        *,
        audience: str,
        destination: str,
        channel: str,
        interval: str,
        keys: Sequence[str],
        person_ids: Sequence[str],
        claim_id: str,
        owner: str,
        now: datetime,
    ) -> set[str] | None:
        """Claim new recipients: insert their ledger rows as ``claimed`` unless a row exists
        (someone has or had them). One transaction. Returns None when every key was claimed
        (the common case, no read-back), else the set of keys this owner now holds."""
        if not keys:
            return set()
        inserted = 0
        with self.engine.begin() as conn:
            for part in _chunks(len(keys)):
                same = _part(person_ids, part) == _part(keys, part)
                src, params = self._rows(
                    "src",
                    ["k"] if same else ["k", "p"],
                    [_part(keys, part)] if same else [_part(keys, part), _part(person_ids, part)],
                )
                result = self._exec(
                    conn,
                    f'INSERT INTO send_ledger (audience, destination, "interval", key, channel, person_id, status, '
                    f"claim_id, owner, claimed_at, done_at) "
                    f"SELECT :audience, :destination, :interval, k, :channel, {'k' if same else 'p'}, :claimed, "
                    f":claim_id, :owner, :now, NULL FROM {src} WHERE true "
                    f'ON CONFLICT (audience, destination, "interval", key) DO NOTHING',
                    {
                        "audience": audience,
                        "destination": destination,
                        "interval": interval,
                        "channel": channel,
                        "claimed": CLAIMED,
                        "claim_id": claim_id,
                        "owner": owner,
                        "now": _utc(now),
                        **params,
                    },
                    times=("now",),
                )
                inserted += max(0, result.rowcount or 0)
            if inserted == len(keys):
                return None
            return self._held(conn, audience, destination, interval, owner, claim_id)

    def reclaim(
        self,
        *,
        audience: str,
        destination: str,
        interval: str,
        keys: Sequence[str],
        old_claim_id: str,
        claim_id: str,
        owner: str,
        now: datetime,
        stale_before: datetime | None = None,
        dead_owners: Sequence[str] = (),
    ) -> set[str]:
        """Take over unconfirmed rows of group ``old_claim_id``: those ``failed``, those
        ``claimed`` by one of ``dead_owners`` (the caller found their process dead), or, when
        given, ``claimed`` before ``stale_before``. Atomic: of two processes racing, the second
        finds the rows freshly claimed and takes none. Returns the keys this owner now holds."""
        if not keys:
            return set()
        stale = "claimed_at < :stale_before" if stale_before is not None else "false"
        dead = ", ".join(f":dead_{i}" for i in range(len(dead_owners))) or "NULL"
        with self.engine.begin() as conn:
            for part in _chunks(len(keys)):
                src, params = self._rows("src", ["k"], [_part(keys, part)])
                self._exec(
                    conn,
                    f"UPDATE send_ledger SET owner = :owner, status = :claimed, claim_id = :claim_id, "
                    f"claimed_at = :now, done_at = NULL "
                    f'WHERE audience = :audience AND destination = :destination AND "interval" = :interval '
                    f"AND claim_id = :old_claim_id AND status <> :sent "
                    f"AND (status = :failed OR {stale} OR owner IN ({dead})) "
                    f"AND key IN (SELECT k FROM {src})",
                    {
                        "owner": owner,
                        "claimed": CLAIMED,
                        "claim_id": claim_id,
                        "now": _utc(now),
                        "audience": audience,
                        "destination": destination,
                        "interval": interval,
                        "old_claim_id": old_claim_id,
                        "sent": SENT,
                        "failed": FAILED,
                        **({"stale_before": _utc(stale_before)} if stale_before is not None else {}),
                        **{f"dead_{i}": o for i, o in enumerate(dead_owners)},
                        **params,
                    },
                    times=("now", "stale_before") if stale_before is not None else ("now",),
                )
            return self._held(conn, audience, destination, interval, owner, claim_id)

    def rekey(
        self, *, audience: str, destination: str, interval: str, owner: str, claim_id: str, new_claim_id: str
    ) -> None:
        """Move the rows ``owner`` holds in group ``claim_id`` to ``new_claim_id`` (the batch it
        sends is smaller than the one it tried to claim, so it carries another idempotency key)."""
        t = send_ledger.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(send_ledger)
                .where(
                    t.audience == audience,
                    t.destination == destination,
                    t.interval == interval,
                    t.owner == owner,
                    t.claim_id == claim_id,
                    t.status == CLAIMED,
                )
                .values(claim_id=new_claim_id)
            )

    @staticmethod
    def _held(conn: Connection, audience: str, destination: str, interval: str, owner: str, claim_id: str) -> set[str]:
        t = send_ledger.c
        rows = conn.execute(
            sa.select(t.key).where(
                t.audience == audience,
                t.destination == destination,
                t.interval == interval,
                t.owner == owner,
                t.claim_id == claim_id,
                t.status == CLAIMED,
            )
        )
        return {r[0] for r in rows}

    def release(self, *, audience: str, destination: str, interval: str, owner: str, claim_id: str) -> None:
        """Mark every row this owner still holds in group ``claim_id`` as ``failed`` (the batch
        ended without a confirmation); a rerun may resend them under the same idempotency key."""
        t = send_ledger.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(send_ledger)
                .where(
                    t.audience == audience,
                    t.destination == destination,
                    t.interval == interval,
                    t.owner == owner,
                    t.claim_id == claim_id,
                    t.status == CLAIMED,
                )
                .values(status=FAILED)
            )

    # ---- settling a batch -----------------------------------------------------------------

    def settle(
        self,
        *,
        run_id: str,
        audience: str,
        destination: str,
        operation: str,
        at: datetime,
        keys: Sequence[str],
        person_ids: Sequence[str],
        hashes: Sequence[str | None] | None = None,
        codes: Sequence[str | None] | None = None,
        others: Sequence[Change] = (),
        claim: Claim | None = None,
        snapshot: str | None = None,
    ) -> None:
        """Record one batch's outcome in one transaction.

        ``keys`` / ``person_ids`` (``hashes``, ``codes`` optional, same length) are the rows the
        destination confirmed: their ledger rows become ``sent``, the snapshot is updated
        (``snapshot="upsert"``: the destination holds them with these fields; ``"delete"``: it
        confirmed their removal; None: test sends, no snapshot) and the changelog says
        ``succeeded``. ``others`` are the batch's other rows: ``rejected`` (also written to
        ``sync_rejects``) and ``failed`` rows become ``failed`` in the ledger, ``skipped`` rows
        (suppressed before a retry) leave it. ``claim`` names the ledger rows (None: a list sync,
        no ledger)."""
        at = _utc(at)
        self._local.memo = {}
        try:
            self._settle(
                run_id, audience, destination, operation, at, keys, person_ids, hashes, codes, others, claim, snapshot
            )
        finally:
            self._local.memo = None

    def _settle(
        self,
        run_id: str,
        audience: str,
        destination: str,
        operation: str,
        at: datetime,
        keys: Sequence[str],
        person_ids: Sequence[str],
        hashes: Sequence[str | None] | None,
        codes: Sequence[str | None] | None,
        others: Sequence[Change],
        claim: Claim | None,
        snapshot: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            if claim is not None:
                self._settle_ledger(conn, audience, destination, claim, keys, others, at)
            if snapshot == "upsert" and keys:
                self._snapshot_upsert(conn, audience, destination, keys, person_ids, hashes, at)
            elif snapshot == "delete" and keys:
                self._snapshot_delete(conn, audience, destination, keys)
            self._log(conn, run_id, audience, destination, operation, SUCCEEDED, keys, person_ids, at, codes=codes)
            for status in (REJECTED, NOT_CONFIRMED, SKIPPED):
                rows = [c for c in others if c.status == status]
                if rows:
                    self._log(
                        conn,
                        run_id,
                        audience,
                        destination,
                        operation,
                        status,
                        [c.key for c in rows],
                        [c.person_id for c in rows],
                        at,
                        codes=[c.code for c in rows],
                        reasons=[c.reason for c in rows],
                    )
            rejected = [c for c in others if c.status == REJECTED]
            if rejected:
                conn.execute(
                    sa.insert(sync_rejects),
                    [
                        {
                            "run_id": run_id,
                            "audience": audience,
                            "destination": destination,
                            "key": c.key,
                            "person_id": c.person_id,
                            "code": c.code,
                            "reason": c.reason,
                            "at": at,
                        }
                        for c in rejected
                    ],
                )

    def _settle_ledger(
        self,
        conn: Connection,
        audience: str,
        destination: str,
        claim: Claim,
        keys: Sequence[str],
        others: Sequence[Change],
        at: datetime,
    ) -> None:
        scope = (
            'WHERE audience = :audience AND destination = :destination AND "interval" = :interval '
            "AND owner = :owner AND status = :claimed"
        )
        base = {
            "audience": audience,
            "destination": destination,
            "interval": claim.interval,
            "owner": claim.owner,
            "claimed": CLAIMED,
        }
        failed = [c.key for c in others if c.status in (REJECTED, NOT_CONFIRMED)]
        released = [c.key for c in others if c.status == SKIPPED]
        for subset, sql in (
            (failed, f"UPDATE send_ledger SET status = :failed {scope}"),
            (released, f"DELETE FROM send_ledger {scope}"),
        ):
            for part in _chunks(len(subset)):
                src, params = self._rows("src", ["k"], [_part(subset, part)])
                self._exec(conn, f"{sql} AND key IN (SELECT k FROM {src})", {**base, "failed": FAILED, **params})
        if not keys:
            return
        if claim.whole_group:
            # every row still claimed in the group was confirmed: one set-based statement
            self._exec(
                conn,
                f"UPDATE send_ledger SET status = :sent, done_at = :at {scope} AND claim_id = :claim_id",
                {**base, "sent": SENT, "at": at, "claim_id": claim.claim_id},
                times=("at",),
            )
            return
        for part in _chunks(len(keys)):
            src, params = self._rows("src", ["k"], [_part(keys, part)])
            self._exec(
                conn,
                f"UPDATE send_ledger SET status = :sent, done_at = :at {scope} AND key IN (SELECT k FROM {src})",
                {**base, "sent": SENT, "at": at, **params},
                times=("at",),
            )

    # ---- changelog ------------------------------------------------------------------------

    def log_changes(
        self,
        *,
        run_id: str,
        audience: str,
        destination: str,
        operation: str,
        status: str,
        keys: Sequence[str],
        person_ids: Sequence[str | None],
        at: datetime,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Changelog rows sharing one status, code and reason (planned rows, skipped rows)."""
        if not keys:
            return
        with self.engine.begin() as conn:
            self._log(
                conn,
                run_id,
                audience,
                destination,
                operation,
                status,
                keys,
                person_ids,
                _utc(at),
                code=code,
                reason=reason,
            )

    def _log(
        self,
        conn: Connection,
        run_id: str,
        audience: str,
        destination: str,
        operation: str,
        status: str,
        keys: Sequence[str],
        person_ids: Sequence[str | None],
        at: datetime,
        *,
        codes: Sequence[str | None] | None = None,
        reasons: Sequence[str | None] | None = None,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        if not keys:
            return
        if codes is not None and not any(codes):
            codes = None
        if reasons is not None and not any(reasons):
            reasons = None
        for part in _chunks(len(keys)):
            same = _part(person_ids, part) == _part(keys, part)
            columns, values = ["k"], [_part(keys, part)]
            if not same:
                columns.append("p")
                values.append(_part(person_ids, part))
            for name, column in (("c", codes), ("r", reasons)):
                if column is not None:
                    columns.append(name)
                    values.append(_part(column, part))
            src, params = self._rows("src", columns, values)
            self._exec(
                conn,
                f"INSERT INTO sync_changelog (run_id, audience, destination, key, person_id, operation, status, "
                f"code, reason, at) SELECT :run_id, :audience, :destination, k, {'k' if same else 'p'}, :operation, "
                f":status, {'c' if codes is not None else ':code'}, {'r' if reasons is not None else ':reason'}, :at "
                f"FROM {src}",
                {
                    "run_id": run_id,
                    "audience": audience,
                    "destination": destination,
                    "operation": operation,
                    "status": status,
                    "code": code,
                    "reason": reason,
                    "at": at,
                    **params,
                },
                times=("at",),
            )

    def changelog(self, run_id: str | None = None, *, audience: str | None = None) -> list[dict[str, Any]]:
        """Changelog rows (of one run, or one audience), in the order written."""
        query = sa.select(sync_changelog).order_by(sync_changelog.c.id)
        if run_id is not None:
            query = query.where(sync_changelog.c.run_id == run_id)
        if audience is not None:
            query = query.where(sync_changelog.c.audience == audience)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def changed_people(
        self, run_id: str, *, statuses: Sequence[str] = (SUCCEEDED,), operations: Sequence[str] = ("add", "update")
    ) -> list[str]:
        """The person IDs of a run's changelog rows with these statuses and operations (by default
        the people whose data reached the destination), without building a dict per row."""
        t = sync_changelog.c
        query = (
            sa.select(t.person_id)
            .where(t.run_id == run_id, t.status.in_(list(statuses)), t.operation.in_(list(operations)))
            .order_by(t.id)
        )
        with self._read() as conn:
            return [person for (person,) in conn.execute(query) if person]

    def rejects(self, run_id: str | None = None, *, audience: str | None = None) -> list[dict[str, Any]]:
        """Rows the destinations refused (of one run, or one audience)."""
        query = sa.select(sync_rejects).order_by(sync_rejects.c.id)
        if run_id is not None:
            query = query.where(sync_rejects.c.run_id == run_id)
        if audience is not None:
            query = query.where(sync_rejects.c.audience == audience)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def ledger(self, audience: str, destination: str, interval: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows of one audience and destination (and interval), by key."""
        t = send_ledger.c
        query = sa.select(send_ledger).where(t.audience == audience, t.destination == destination).order_by(t.key)
        if interval is not None:
            query = query.where(t.interval == interval)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- read by the audience step (frequency caps, arbitration) ----------------------------

    def sent_counts(self, channel: str, since: datetime) -> dict[str, int]:
        """person_id → messages sent to them on ``channel`` since ``since`` (confirmed sends of
        every audience and send-type destination; DM and 同梱物 files count as their channel)."""
        since = _utc(since)
        t = send_ledger.c
        lower = datetime.fromtimestamp(since.timestamp() - MAX_CLAIM_SECONDS, UTC)
        query = (
            sa.select(t.person_id, sa.func.count())
            .where(t.channel == channel, t.claimed_at >= lower, t.status == SENT, t.done_at >= since)
            .group_by(t.person_id)
        )
        with self._read() as conn:
            return {person: int(n) for person, n in conn.execute(query)}

    def sent_audiences(self, person_id: str, since: datetime | None = None) -> set[str]:
        """The audiences whose messages reached ``person_id`` (since ``since``, if given). Not
        indexed by person (the index would slow every claim): for one person at a time."""
        t = send_ledger.c
        query = sa.select(t.audience).distinct().where(t.person_id == person_id, t.status == SENT)
        if since is not None:
            query = query.where(t.done_at >= _utc(since))
        with self._read() as conn:
            return {r[0] for r in conn.execute(query)}

    # ---- audience members ---------------------------------------------------------------

    def write_members(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert (or replace) audience members: mappings with ``run_id, audience, person_id,
        grp, variant, computed_at``. Returns the number of rows written."""
        groups: dict[tuple[str, str, datetime], tuple[list[str], list[str], list[str | None]]] = {}
        for row in rows:
            group = groups.setdefault((row["run_id"], row["audience"], _utc(row["computed_at"])), ([], [], []))
            group[0].append(str(row["person_id"]))
            group[1].append(str(row["grp"]))
            variant = row.get("variant")
            group[2].append(None if variant is None else str(variant))
        written = 0
        with self.engine.begin() as conn:
            for (run_id, audience, computed_at), (people, grps, variants) in groups.items():
                for part in _chunks(len(people)):
                    src, params = self._rows(
                        "src", ["p", "g", "v"], [_part(people, part), _part(grps, part), _part(variants, part)]
                    )
                    self._exec(
                        conn,
                        f"INSERT INTO audience_members (run_id, audience, person_id, grp, variant, computed_at) "
                        f"SELECT :run_id, :audience, p, g, v, :computed_at FROM {src} WHERE true "
                        f"ON CONFLICT (run_id, audience, person_id) DO UPDATE SET grp = excluded.grp, "
                        f"variant = excluded.variant, computed_at = excluded.computed_at",
                        {"run_id": run_id, "audience": audience, "computed_at": computed_at, **params},
                        times=("computed_at",),
                    )
                written += len(people)
        return written

    def last_members(self, audience: str) -> list[dict[str, Any]]:
        """The members of the audience's latest computation (the run with the newest
        ``computed_at``): dicts with ``run_id, person_id, grp, variant, computed_at``."""
        t = audience_members.c
        with self._read() as conn:
            latest = conn.execute(
                sa.select(t.run_id)
                .where(t.audience == audience)
                .order_by(t.computed_at.desc(), t.run_id.desc())
                .limit(1)
            ).scalar()
            if latest is None:
                return []
            rows = conn.execute(
                sa.select(t.run_id, t.person_id, t.grp, t.variant, t.computed_at)
                .where(t.audience == audience, t.run_id == latest)
                .order_by(t.person_id)
            ).mappings()
            return [dict(r) for r in rows]

    # ---- retention ------------------------------------------------------------------------

    def send_history(self, audiences: Sequence[str]) -> list[dict[str, Any]]:
        """What the exit conditions read (arbitration's ``send_history``), all-time: per audience
        of ``audiences`` and person, ``sends`` (the distinct run intervals in which the audience
        reached the person, on any destination: ledger rows ``sent``) and ``first_sent_at`` (the
        earliest such row's ``done_at``, else ``claimed_at``). Rows :meth:`prune` removed count
        through their summary in ``send_history``; ledger rows only above its ``last_interval``."""
        if not audiences:
            return []
        t, h = send_ledger.c, send_history.c
        folded_already = sa.exists().where(
            h.audience == t.audience, h.person_id == t.person_id, t.interval <= h.last_interval
        )
        live = (
            sa.select(
                t.audience,
                t.person_id,
                sa.func.count(sa.distinct(t.interval)).label("sends"),
                sa.func.min(sa.func.coalesce(t.done_at, t.claimed_at)).label("first_sent_at"),
            )
            .where(t.status == SENT, t.audience.in_(list(audiences)), ~folded_already)
            .group_by(t.audience, t.person_id)
        )
        folded = sa.select(h.audience, h.person_id, h.sends, h.first_sent_at).where(h.audience.in_(list(audiences)))
        both = sa.union_all(live, folded).subquery()
        query = sa.select(
            both.c.audience,
            both.c.person_id,
            sa.cast(sa.func.sum(both.c.sends), sa.Integer).label("sends"),
            sa.func.min(both.c.first_sent_at).label("first_sent_at"),
        ).group_by(both.c.audience, both.c.person_id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def prune(self, now: datetime, retention: Retention, dry_run: bool = False) -> dict[str, int]:
        """Delete the rows ``retention`` (include/destinations.yml ``defaults.retention``) no
        longer keeps, counted back from ``now``, and return how many per table; ``send_history``
        counts the (audience, person) summaries that took in pruned sends. ``dry_run`` counts the
        same rows and changes nothing.

        - ``audience_members`` computed more than ``audience_members_days`` ago, except each
          audience's latest run (the one :meth:`last_members` returns, however old);
        - ``sync_runs`` started more than ``sync_days`` ago, with their ``sync_changelog`` and
          ``sync_rejects`` rows (rows go with their run); ``sync_claimants`` silent that long;
        - ``send_ledger`` rows sent (or, unsettled, claimed) more than ``send_ledger_days`` ago,
          the sent ones folded into ``send_history`` in the same transaction, so that
          :meth:`send_history` answers as before;
        - ``sync_snapshots``: never (they are what the destinations hold).

        Each table is one transaction of set-based statements. Changelog and rejects go before
        their runs, so a prune that stops half-way leaves the runs for the next one to find."""
        now = _utc(now)

        def cutoff(days: int) -> dict[str, Any]:
            return {"cutoff": now - timedelta(days=days)}

        sync = cutoff(retention.sync_days)
        counts = {
            "audience_members": self._prune(
                "audience_members", _OLD_MEMBERS, cutoff(retention.audience_members_days), dry_run
            ),
            "sync_changelog": self._prune("sync_changelog", _OLD_RUN_ROWS, sync, dry_run),
            "sync_rejects": self._prune("sync_rejects", _OLD_RUN_ROWS, sync, dry_run),
            "sync_runs": self._prune("sync_runs", _OLD_RUNS, sync, dry_run),
            # a claimant silent that long holds no claim a rerun has not taken over
            "sync_claimants": self._prune("sync_claimants", "heartbeat_at < :cutoff", sync, dry_run),
        }
        ledger = {**cutoff(retention.send_ledger_days), "sent": SENT}
        with self._read() if dry_run else self.engine.begin() as conn:
            if dry_run:
                folded = self._exec(conn, f"SELECT COUNT(*) FROM ({_FOLD}) AS f", ledger, times=("cutoff",)).scalar()
            else:
                if self.dialect == "postgresql":
                    # what is folded must be what is deleted: no claim or settle in between
                    # (SQLite's BEGIN IMMEDIATE already holds the database's write lock)
                    conn.exec_driver_sql("LOCK TABLE send_ledger IN EXCLUSIVE MODE")
                folded = self._exec(
                    conn,
                    "INSERT INTO send_history (audience, person_id, sends, first_sent_at, last_interval) "
                    f"{_FOLD} ON CONFLICT (audience, person_id) DO UPDATE SET "
                    "sends = send_history.sends + excluded.sends, "
                    "first_sent_at = CASE WHEN excluded.first_sent_at < send_history.first_sent_at "
                    "THEN excluded.first_sent_at ELSE send_history.first_sent_at END, "
                    "last_interval = excluded.last_interval",
                    ledger,
                    times=("cutoff",),
                ).rowcount
            counts["send_history"] = int(folded or 0)
            counts["send_ledger"] = self._prune_in(conn, "send_ledger", _OLD_LEDGER, ledger, dry_run)
        log.info("activation store %s: %s", "prune (dry run)" if dry_run else "pruned", counts)
        return counts

    def _prune(self, table: str, where: str, params: Mapping[str, Any], dry_run: bool) -> int:
        with self._read() if dry_run else self.engine.begin() as conn:
            return self._prune_in(conn, table, where, params, dry_run)

    def _prune_in(self, conn: Connection, table: str, where: str, params: Mapping[str, Any], dry_run: bool) -> int:
        """Delete (or, dry run, count) ``table``'s rows matching ``where``."""
        if dry_run:
            sql = f"SELECT COUNT(*) FROM {table} WHERE {where}"
            return int(self._exec(conn, sql, params, times=("cutoff",)).scalar() or 0)
        return int(self._exec(conn, f"DELETE FROM {table} WHERE {where}", params, times=("cutoff",)).rowcount)


# ---- retention: the statements of ActivationStore.prune (:cutoff is bound per table) ------------

# Each audience's latest run, chosen as ActivationStore.last_members chooses it.
_LATEST_RUNS = (
    "SELECT a.audience, (SELECT m.run_id FROM audience_members AS m WHERE m.audience = a.audience "
    "ORDER BY m.computed_at DESC, m.run_id DESC LIMIT 1) FROM (SELECT DISTINCT audience FROM audience_members) AS a"
)
_OLD_MEMBERS = f"computed_at < :cutoff AND (audience, run_id) NOT IN ({_LATEST_RUNS})"
_OLD_RUNS = "started_at < :cutoff"
# Changelog and reject rows go with their run, found through the run_id index.
_OLD_RUN_ROWS = f"run_id IN (SELECT run_id FROM sync_runs WHERE {_OLD_RUNS})"
# A ledger row's age is that of its send (done_at), or of its claim while unsettled. Per audience
# and person, only the intervals below the first one still holding a row younger than the cutoff
# go: a run interval is never split between send_history and the ledger, and every sent row at or
# below send_history.last_interval has left the ledger (what ActivationStore.send_history relies
# on). A claimed or failed row younger than the cutoff (so within every frequency-cap window)
# stays, and holds back the intervals above it. The summary is exact as long as the rows of one
# interval are claimed within send_ledger_days of each other (retries and reruns come within
# days); an interval claimed again after it was folded (a backfill with --as-of) counts once.
_KEPT = (
    'kept AS (SELECT audience, person_id, MIN("interval") AS first_kept FROM send_ledger '
    "WHERE COALESCE(done_at, claimed_at) >= :cutoff GROUP BY audience, person_id)"
)
_PRUNABLE = (
    "FROM send_ledger AS l LEFT JOIN kept ON kept.audience = l.audience AND kept.person_id = l.person_id "
    'WHERE COALESCE(l.done_at, l.claimed_at) < :cutoff AND (kept.first_kept IS NULL OR l."interval" < kept.first_kept)'
)
# Matched on the primary key, in one uncorrelated subquery (the statement must start with DELETE:
# Python's sqlite3 reports no rowcount for one that starts with WITH).
_OLD_LEDGER = (
    f'(audience, destination, "interval", key) IN '
    f'(WITH {_KEPT} SELECT l.audience, l.destination, l."interval", l.key {_PRUNABLE})'
)
# The sent rows about to go, per audience and person, beyond what send_history already holds (an
# interval at or below its last_interval was counted when it was folded).
_FOLD = (
    f'WITH {_KEPT}, gone AS (SELECT l.audience, l.person_id, l."interval", '
    f"COALESCE(l.done_at, l.claimed_at) AS sent_at {_PRUNABLE} AND l.status = :sent) "
    'SELECT g.audience, g.person_id, COUNT(DISTINCT g."interval") AS sends, MIN(g.sent_at) AS first_sent_at, '
    'MAX(g."interval") AS last_interval FROM gone AS g LEFT JOIN send_history AS h '
    "ON h.audience = g.audience AND h.person_id = g.person_id "
    'WHERE h.last_interval IS NULL OR g."interval" > h.last_interval GROUP BY g.audience, g.person_id'
)


def _sqlite_pragmas(engine: sa.Engine, busy_timeout: float) -> None:
    """WAL (readers never wait for the writer), a busy timeout, and BEGIN IMMEDIATE for every
    transaction, so a writer takes the lock up front and waits its turn instead of failing with
    'database is locked' when upgrading a read transaction."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA journal_size_limit=67108864")  # shrink the WAL back after a big batch
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-131072")  # 128 MiB
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("yorisoi_read") else "BEGIN IMMEDIATE")
