"""The operation log (操作ログ): who exported or read personal data, when, how much, where to.

One JSON object per line in `<audit_dir>/operations.jsonl` (default var/audit/, moved by
$YORISOI_AUDIT_DIR), outside the DuckDB warehouse so its single-writer lock can never make an
entry wait or be lost. Each entry records:

- `seq` (1, 2, ...), `at` (UTC, ISO 8601), `actor` and `actor_via` (a principal the calling code
  names, else the Airflow task running now, else the OS user), `os_user` (the process's effective
  user, from the kernel: never self-declared), `declared_actor` ($YORISOI_ACTOR: a claim, kept
  apart from the actor), `role` ($YORISOI_ROLE or the command's --role), `context` (DAG, task, run,
  try, map index and who triggered it, read from the task runner's live context, never from the
  AIRFLOW_CTX_* variables a finished task leaves in the environment), `host`, `pid`;
- `action` and `object` (what was done to what), `rows`, `destination`, `file_sha256` (of the file
  exported), the person IDs concerned: inline (`person_ids`) when there are at most
  INLINE_PERSON_IDS, otherwise in a sidecar file `persons/<sha256>.txt` (one ID per line, named
  by its own hash) that the entry names (`person_ids_file`), with `person_count` either way;
- `evidence` (an export: per person sent, the consent that allowed it: channel, consent ID, since
  when, the system and record that carry it), inline up to INLINE_PERSON_IDS rows, else in a
  sidecar `evidence/<sha256>.jsonl.gz` (gzip: a million people's consent compresses about tenfold)
  the entry names (`evidence_file`), so "why was P sent this"
  is answered as of the send (:func:`evidence_for`);
- `prev`, the `hash` of the entry before (64 zeros for the first), and `hash`, the SHA-256 of the
  entry's canonical JSON (sorted keys, no spaces, UTF-8) without `hash`.

The chain makes an edited or deleted line detectable (`verify()`), and `operations.head` (the
last seq and hash, rewritten on every append) catches a truncated tail. Appends are serialised by
an exclusive `flock` on `operations.lock`, written with O_APPEND in one write() and fsync'd before
`record()` returns: concurrent processes (Airflow tasks, CLI users) lose nothing. POSIX only.

This makes tampering evident, not impossible: someone who can rewrite the whole file and the
head can rebuild the chain. Copy the head hash somewhere else now and then (it is printed by
`yorisoi audit --verify`), and on Linux `chattr +a operations.jsonl` lets the file only grow.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import pwd
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from .. import paths

LOG_NAME = "operations.jsonl"
HEAD_NAME = "operations.head"
LOCK_NAME = "operations.lock"
PERSONS_DIR = "persons"
EVIDENCE_DIR = "evidence"
GENESIS = "0" * 64
INLINE_PERSON_IDS = 20
ACTOR_ENV = "YORISOI_ACTOR"
ROLE_ENV = "YORISOI_ROLE"
FORMAT_VERSION = 2  # 2: actor from the OS or the live Airflow task, os_user, declared_actor, evidence


def audit_dir() -> Path:
    return paths.audit_dir()


def canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict) -> str:
    """SHA-256 of the entry without its `hash` field."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def sha256_of(file: str | os.PathLike | bytes) -> str:
    """SHA-256 of bytes, or of a file's content (streamed)."""
    if isinstance(file, bytes | bytearray | memoryview):
        return hashlib.sha256(file).hexdigest()
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- who is acting ------------------------------------------------------------------------------


def os_user() -> str:
    """The process's effective user as the kernel knows it (not $USER, not a claim)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _airflow_context() -> dict[str, str] | None:
    """The Airflow task running now, from the task runner's live context (`get_current_context`),
    or None outside a task. Never the AIRFLOW_CTX_* environment variables: a task exports them and
    they stay in the process after it ends, naming a task that is no longer running."""
    if "airflow.sdk" not in sys.modules:  # never import Airflow for this: no task without it
        return None
    try:
        from airflow.sdk import get_current_context

        live = get_current_context()
    except Exception:  # outside a task there is no live context
        return None
    ti = live.get("ti") or live.get("task_instance")
    dag_run = live.get("dag_run")
    map_index = getattr(ti, "map_index", None)
    ctx = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": map_index if map_index not in (None, -1) else None,
        "triggered_by": getattr(dag_run, "triggering_user_name", None),
    }
    ctx = {k: str(v) for k, v in ctx.items() if v not in (None, "")}
    return ctx if ctx.get("dag_id") and ctx.get("task_id") else None


def resolve_actor(actor: str | None = None) -> tuple[str, str, dict[str, str]]:
    """(actor, how it was known, Airflow context): `actor` if the calling code names one, else
    the Airflow task running now (`airflow:<dag_id>.<task_id>`), else the OS user. $YORISOI_ACTOR
    is never the actor: anyone can set it (record() keeps it as `declared_actor`)."""
    ctx = _airflow_context() or {}
    if actor:
        return actor, "argument", ctx
    if ctx:
        return f"airflow:{ctx['dag_id']}.{ctx['task_id']}", "airflow", ctx
    return os_user(), "os", ctx


# --- writing ------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_person_ids(folder: Path, person_ids: list[str]) -> tuple[str, str]:
    """The sidecar of a large entry: content-addressed, so writing it twice is harmless."""
    return _write_sidecar(folder, PERSONS_DIR, "txt", "".join(f"{p}\n" for p in person_ids).encode("utf-8"))


def _write_sidecar(folder: Path, subdir: str, ext: str, data: bytes) -> tuple[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{subdir}/{digest}.{ext}"
    target = folder / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data)
    return rel, digest


def _last_line(fd: int) -> bytes | None:
    """The last complete line of the log (None when empty). A torn last line (a crash mid-write)
    is returned as is; `verify()` reports it."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0:
        return None
    buf = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        body = buf[:-1] if buf.endswith(b"\n") else buf
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1 :]
    return buf[:-1] if buf.endswith(b"\n") else buf


def record(
    action: str,
    object: str,
    *,
    rows: int | None = None,
    destination: str | None = None,
    file_sha256: str | None = None,
    person_ids: Iterable[str] = (),
    actor: str | None = None,
    role: str | None = None,
    details: dict[str, Any] | None = None,
    evidence: list[dict[str, Any]] | None = None,
    log_dir: Path | None = None,
) -> dict:
    """Append one entry to the operation log and return it (durable when this returns)."""
    folder = Path(log_dir or audit_dir())
    folder.mkdir(parents=True, exist_ok=True)
    who, via, ctx = resolve_actor(actor)
    ids = [str(p) for p in person_ids]
    entry: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "actor": who,
        "actor_via": via,
        "os_user": os_user(),
        "declared_actor": os.environ.get(ACTOR_ENV) or None,
        "role": role or os.environ.get(ROLE_ENV) or None,
        "context": ctx,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "action": action,
        "object": object,
        "rows": rows,
        "destination": destination,
        "file_sha256": file_sha256,
        "person_count": len(ids),
        "person_ids": ids if len(ids) <= INLINE_PERSON_IDS else None,
        "person_ids_file": None,
        "details": details or {},
    }
    if len(ids) > INLINE_PERSON_IDS:
        entry["person_ids_file"], _ = _write_person_ids(folder, ids)
    if evidence is not None:
        rows = [json.loads(json.dumps(e, default=str, ensure_ascii=False)) for e in evidence]
        if len(rows) <= INLINE_PERSON_IDS:
            entry["evidence"] = rows
        else:
            data = gzip.compress(b"".join(canonical(e) + b"\n" for e in rows), mtime=0)  # same rows, same bytes
            entry["evidence_file"], _ = _write_sidecar(folder, EVIDENCE_DIR, "jsonl.gz", data)
    lock = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(folder / LOG_NAME, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            last = _last_line(fd)
            prev_seq, prev_hash = 0, GENESIS
            if last is not None:
                try:
                    previous = json.loads(last)
                    prev_seq, prev_hash = int(previous["seq"]), str(previous["hash"])
                except (ValueError, KeyError, TypeError):
                    # A torn or damaged last line: chain to the head, so the damage stays visible
                    # to verify() and the log keeps growing.
                    prev_seq, prev_hash = _read_head(folder)
            entry["seq"] = prev_seq + 1
            entry["prev"] = prev_hash
            entry["hash"] = entry_hash(entry)
            line = canonical(entry) + b"\n"
            end = os.lseek(fd, 0, os.SEEK_END)
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line  # never glue an entry onto a torn line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        _write_atomically(folder / HEAD_NAME, canonical({"seq": entry["seq"], "hash": entry["hash"]}) + b"\n")
    finally:
        os.close(lock)  # closing releases the flock
    return entry


def _read_head(folder: Path) -> tuple[int, str]:
    try:
        head = json.loads((folder / HEAD_NAME).read_text(encoding="utf-8"))
        return int(head["seq"]), str(head["hash"])
    except (OSError, ValueError, KeyError):
        return 0, GENESIS


def record_export(
    actor: str | None,
    what: str,
    rows: int,
    destination: str,
    file: str | os.PathLike | bytes | None,
    *,
    person_ids: Iterable[str] = (),
    role: str | None = None,
    details: dict[str, Any] | None = None,
    evidence: list[dict[str, Any]] | None = None,
    log_dir: Path | None = None,
) -> dict:
    """Log an export: `what` (e.g. "audience trigger_vip_reached"), its `rows`, where it went,
    the SHA-256 of the exported file (a path, or the bytes sent), the person IDs in it and the
    consent `evidence` that allowed each. Call it after the destination confirmed, before
    reporting success. `actor` None: resolved as usual. A run that wrote several files lists
    each (path and SHA-256) in `details["files"]`."""
    details = dict(details or {})
    if isinstance(file, str | os.PathLike):
        details.setdefault("file", os.fspath(file))
    return record(
        "export",
        what,
        rows=rows,
        destination=destination,
        file_sha256=None if file is None else sha256_of(file),
        person_ids=person_ids,
        actor=actor,
        role=role,
        details=details,
        evidence=evidence,
        log_dir=log_dir,
    )


# --- reading ------------------------------------------------------------------------------------


def iter_entries(log_dir: Path | None = None) -> Iterator[dict]:
    """Every well-formed entry, oldest first (damaged lines are skipped; `verify()` reports them)."""
    path = Path(log_dir or audit_dir()) / LOG_NAME
    if not path.exists():
        return
    with open(path, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            if not raw:
                continue
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def person_ids_of(entry: dict, log_dir: Path | None = None) -> list[str]:
    if entry.get("person_ids") is not None:
        return list(entry["person_ids"])
    if entry.get("person_ids_file"):
        path = Path(log_dir or audit_dir()) / entry["person_ids_file"]
        return path.read_text(encoding="utf-8").splitlines()
    return []


def evidence_of(entry: dict, log_dir: Path | None = None) -> list[dict]:
    """The consent evidence an export entry recorded (inline or from its sidecar)."""
    if entry.get("evidence") is not None:
        return list(entry["evidence"])
    if entry.get("evidence_file"):
        path = Path(log_dir or audit_dir()) / entry["evidence_file"]
        return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line]
    return []


def evidence_for(person_id: str, log_dir: Path | None = None) -> list[dict]:
    """Why person `person_id` was sent what: each export entry that names them, with the consent
    evidence recorded for them at the time (`{"entry": ..., "consent": [...]}`), oldest first."""
    out = []
    for entry in list_entries(person=person_id, action="export", log_dir=log_dir):
        consent = [e for e in evidence_of(entry, log_dir) if e.get("person_id") == person_id]
        out.append({"entry": entry, "consent": consent})
    return out


def _as_utc(value: date | datetime | str | None, *, end: bool) -> datetime | None:
    """A bound of a filter: a date means the whole UTC day; a naive datetime is UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1) if end else value, time(0))
        return value.replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def list_entries(
    *,
    person: str | None = None,
    since: date | datetime | str | None = None,
    until: date | datetime | str | None = None,
    destination: str | None = None,
    action: str | None = None,
    log_dir: Path | None = None,
) -> list[dict]:
    """Entries matching every filter given: a person ID among the entry's person IDs, `at` from
    `since` (inclusive) up to `until` (a date: to the end of that UTC day; a datetime: exclusive),
    `destination` containing the text, `action` equal."""
    lo, hi = _as_utc(since, end=False), _as_utc(until, end=True)
    out = []
    for e in iter_entries(log_dir):
        at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        if (lo and at < lo) or (hi and at >= hi):
            continue
        if destination and destination not in (e.get("destination") or ""):
            continue
        if action and e.get("action") != action:
            continue
        if person and person not in person_ids_of(e, log_dir):
            continue
        out.append(e)
    return out


@dataclass
class Verification:
    ok: bool
    entries: int  # entries checked (all of them when ok)
    head_seq: int
    head_hash: str
    broken_line: int | None = None  # 1-based line number of the first broken entry
    broken_seq: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.entries} entries, chain intact, head seq {self.head_seq} hash {self.head_hash}"
        seq = f" (seq {self.broken_seq})" if self.broken_seq is not None else ""
        return f"BROKEN at line {self.broken_line}{seq}: {self.reason}"


def verify(log_dir: Path | None = None) -> Verification:
    """Recompute the chain: every line parses, its hash matches its content, its seq follows and
    its prev is the hash of the line before; sidecar files match their names; the last entry is
    the one the head file names. Reports the first broken entry."""
    folder = Path(log_dir or audit_dir())
    path = folder / LOG_NAME
    prev_seq, prev_hash, n = 0, GENESIS, 0

    def broken(line: int, seq: int | None, reason: str) -> Verification:
        return Verification(False, n, prev_seq, prev_hash, line, seq, reason)

    if path.exists():
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    return broken(lineno, None, "torn line (no newline): a write did not finish")
                try:
                    e = json.loads(raw)
                    seq, stored = int(e["seq"]), e["hash"]
                except (ValueError, KeyError, TypeError):
                    return broken(lineno, None, "not a valid entry")
                if entry_hash(e) != stored:
                    return broken(lineno, seq, "content does not match its hash: the entry was edited")
                if seq != prev_seq + 1:
                    return broken(lineno, seq, f"seq {seq} follows {prev_seq}: entries are missing")
                if e.get("prev") != prev_hash:
                    return broken(
                        lineno, seq, "prev is not the hash of the entry before: an entry was removed or replaced"
                    )
                for key, what in (("person_ids_file", "person-ID file"), ("evidence_file", "evidence file")):
                    if e.get(key):
                        side = folder / e[key]
                        if not side.exists():
                            return broken(lineno, seq, f"{what} {e[key]} is missing")
                        if side.name.split(".", 1)[0] != sha256_of(side):
                            return broken(lineno, seq, f"{what} {e[key]} was changed")
                prev_seq, prev_hash, n = seq, stored, n + 1
    head_seq, head_hash = _read_head(folder)
    if (head_seq, head_hash) != (prev_seq, prev_hash):
        return Verification(
            False,
            n,
            prev_seq,
            prev_hash,
            n + 1,
            head_seq,
            f"the head names seq {head_seq}, the log ends at seq {prev_seq}: entries were removed from the end",
        )
    return Verification(True, n, prev_seq, prev_hash)
