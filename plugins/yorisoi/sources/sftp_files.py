"""Load the SFTP drops (the registry's `files` source, `sftp`) safely: docs/reliability.md #10 and #12.

The caller brings a paramiko ``SFTPClient`` whose connection pinned the server's host key
(docs/reliability.md #11: in the DAG, ``SFTPHook(ssh_conn_id=...).get_conn()`` with ``host_key`` in the
connection's extra). For every registry table (``feed`` + ``pattern``) the files in
``<inbox>/<feed>/`` go through these gates, in order:

1. **complete**: a data file is read only when its manifest ``<file>.manifest.json`` is there
   (partners write it after the file). No manifest (or one that is not valid JSON yet):
   "waiting", the file is left alone; once the file is older than ``max_wait`` (server mtime
   against ``now``) it is "timed out" and raises an alert, and still stays.
2. **new**: content already loaded (same SHA-256 in ``raw._files``, under any name) is not
   loaded again; the file is moved to ``<processed>/<feed>/`` and reported as a duplicate.
3. **intact**: bytes and SHA-256 must equal the manifest's. A truncated or rewritten file is
   quarantined.
4. **decodable**: the registry encoding is used (``cp932``, never ``shift_jis``, which cannot
   read ①, ㈱, 髙 or 﨑; ``utf-8-sig``; ``utf-8``), a BOM is stripped whatever the encoding, and
   undecodable bytes quarantine the file with their byte offset and line.
5. **same columns**: the header must equal the registry's ``source`` column names, in order.
   Extra, missing, renamed or reordered columns (column drift) quarantine the file, and the
   report then says downstream must stop (:attr:`DropReport.should_stop_downstream`).
6. **rows**: DuckDB's ``read_csv`` types the columns on the decoded UTF-8 text (``columns``,
   ``dateformat``, ``timestampformat``, ``store_rejects``), so Python stays out of the row loop.
   Rows it cannot read (bad date, non-numeric integer, wrong number of fields, ...) and rows
   with an empty primary key go to ``raw._rejects`` with their physical line number (header =
   line 1) and a reason; the rows read plus the rows rejected must equal the manifest's row
   count, else the file is quarantined: no row is ever skipped silently.
7. **landed**: the good rows, renamed to the registry's column names, are upserted by primary
   key (``Warehouse.batch``, batch id ``<run_id>:<table>:<sha256[:12]>``), the file is recorded
   as loaded in ``raw._files``, then it is moved to ``<processed>/<feed>/``.

Moves are renames on the server; folders are created as needed and an existing target name
gets a numbered suffix (``sales_202411.1.csv``) instead of being overwritten. Quarantined files
get a ``<file>.reason.txt`` beside them. A crash between landing and the move is harmless: the
rerun either lands the same rows again (upsert by primary key, same batch files replaced) or
finds the content loaded and only moves the file.
"""

from __future__ import annotations

import codecs
import csv
import errno
import fnmatch
import hashlib
import json
import logging
import mmap
import posixpath
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ..privacy.tombstones import RULES, Tombstones
from ..runbook import next_step
from .registry import Column, Source, Table
from .screening import CONTROL_CHARACTERS, FLAGS_SCHEMA, KANA, REJECTS_SCHEMA, store_flags

if TYPE_CHECKING:
    import paramiko

    from .landing import Warehouse

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
REASON_SUFFIX = ".reason.txt"

LOADED = "loaded"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
WAITING = "waiting"
TIMED_OUT = "timed_out"

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
}
_MONEY_READ_TYPE = "DECIMAL(38, 12)"
_UTF8_BOM = codecs.BOM_UTF8
_CHUNK = 8 << 20  # bytes read at a time when downloading and decoding
_ROWS_PER_PART = 1_000_000  # rows per Parquet part handed to the warehouse
_SHIFT_JIS_NAMES = {"shift_jis", "shift-jis", "sjis", "s_jis", "shiftjis", "csshiftjis", "ms_kanji"}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class FileOutcome:
    """What happened to one data file in the inbox.

    ``status`` is one of ``loaded``, ``duplicate``, ``quarantined``, ``waiting``, ``timed_out``.
    ``rows`` counts rows landed, ``rejects`` rows sent to ``raw._rejects``, ``erased`` rows of
    erased people left out (and removed from the file kept in ``processed/``); ``moved_to`` is the
    file's path on the server after the move; ``age`` (waiting / timed out) is the time since the
    file's server mtime; ``seconds`` holds timings per step (download, decode, parse, land).
    """

    table: str
    feed: str
    file: str
    status: str = WAITING
    reason: str | None = None
    sha256: str | None = None
    bytes: int = 0
    rows: int = 0
    rejects: int = 0
    erased: int = 0
    column_drift: bool = False
    moved_to: str | None = None
    age: timedelta | None = None
    batch_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "age"}
        out["age_seconds"] = None if self.age is None else round(self.age.total_seconds())
        return out


@dataclass
class TableReport:
    """One registry table's share of a run: rows landed and rejected, and its files by status."""

    table: str
    rows_loaded: int = 0
    rejects: int = 0
    loaded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)  # file -> reason
    waiting: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)


class DropsStopped(RuntimeError):
    """Raised by :meth:`DropReport.raise_for_stop`: a file was quarantined (column drift, a
    truncated file, undecodable bytes, ...), so downstream tasks must not run on partial data."""


@dataclass
class DropReport:
    """The outcome of :func:`ingest_drops`: per table (``tables``) and per file (``files``)."""

    source: str
    run_id: str
    max_wait: timedelta
    tables: dict[str, TableReport] = field(default_factory=dict)
    files: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        self.files.append(outcome)
        t = self.tables.setdefault(outcome.table, TableReport(outcome.table))
        t.rows_loaded += outcome.rows
        t.rejects += outcome.rejects
        if outcome.status == LOADED:
            t.loaded.append(outcome.file)
        elif outcome.status == DUPLICATE:
            t.duplicates.append(outcome.file)
        elif outcome.status == QUARANTINED:
            t.quarantined[outcome.file] = outcome.reason or ""
        elif outcome.status == WAITING:
            t.waiting.append(outcome.file)
        elif outcome.status == TIMED_OUT:
            t.timed_out.append(outcome.file)

    def by_status(self, status: str) -> list[FileOutcome]:
        return [f for f in self.files if f.status == status]

    @property
    def column_drift(self) -> list[FileOutcome]:
        """Files quarantined because their header differs from the registry's columns."""
        return [f for f in self.files if f.column_drift]

    @property
    def should_stop_downstream(self) -> bool:
        """True when any file was quarantined (column drift included): the DAG fails the task."""
        return any(f.status == QUARANTINED for f in self.files)

    def alerts(self) -> list[str]:
        """One line per quarantined or timed-out file, for the on-call channel, each ending with
        what to do (docs/runbook.md)."""
        from ..runbook import next_step

        lines = []
        for f in self.files:
            if f.status == QUARANTINED:
                kind, topic = ("COLUMN DRIFT", "column-drift") if f.column_drift else ("QUARANTINED", "quarantine")
                lines.append(
                    f"[{self.source}] {kind}: {f.feed}/{f.file} (table {f.table}) moved to {f.moved_to}: {f.reason}. "
                    + next_step(topic)
                )
            elif f.status == TIMED_OUT:
                lines.append(
                    f"[{self.source}] TIMEOUT: {f.feed}/{f.file} (table {f.table}): {f.reason}. " + next_step("timeout")
                )
        return lines

    def stop_reason(self) -> str | None:
        """Why downstream must stop (None when it need not)."""
        if not self.should_stop_downstream:
            return None
        quarantined = self.by_status(QUARANTINED)
        drift = self.column_drift
        text = f"{len(quarantined)} file(s) quarantined"
        if drift:
            text += f", {len(drift)} with column drift ({', '.join(f'{f.feed}/{f.file}' for f in drift)})"
        return text + ": downstream must not run on this data"

    def raise_for_stop(self) -> None:
        """Raise :class:`DropsStopped` (listing the alerts) when downstream must stop."""
        if self.should_stop_downstream:
            raise DropsStopped("; ".join([self.stop_reason() or "", *self.alerts()]))

    def summary(self) -> str:
        parts = []
        for t in self.tables.values():
            parts.append(
                f"{t.table}: {t.rows_loaded} rows, {t.rejects} rejects, files loaded {len(t.loaded)}, "
                f"duplicate {len(t.duplicates)}, quarantined {len(t.quarantined)}, waiting {len(t.waiting)}, "
                f"timed out {len(t.timed_out)}"
            )
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for XCom)."""
        return {
            "source": self.source,
            "run_id": self.run_id,
            "max_wait_seconds": round(self.max_wait.total_seconds()),
            "should_stop_downstream": self.should_stop_downstream,
            "alerts": self.alerts(),
            "tables": {name: dict(t.__dict__) for name, t in self.tables.items()},
            "files": [f.to_dict() for f in self.files],
        }


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


class DecodeError(ValueError):
    """Bytes that the file's encoding cannot decode; names the byte offset and the line."""

    def __init__(self, message: str, *, offset: int, line: int):
        super().__init__(message)
        self.offset = offset
        self.line = line


def python_codec(encoding: str) -> str:
    """The Python codec used for a registry encoding: Shift_JIS names map to ``cp932`` (the
    superset Windows systems really write), ``utf-8-sig`` to ``utf-8`` (the BOM is stripped
    separately, for every encoding)."""
    name = encoding.strip().lower()
    if name in _SHIFT_JIS_NAMES or codecs.lookup(name).name in {"shift_jis"}:
        log.warning("encoding %r read as cp932: Shift_JIS cannot decode ①, ㈱, 髙, 﨑", encoding)
        return "cp932"
    codec = codecs.lookup(name).name
    return "utf-8" if codec in {"utf-8", "utf-8-sig"} else codec


_UTF8_RUN = re.compile(rb"(?:[\xe3-\xe9][\x80-\xbf]{2}){3,}")
"""Three or more UTF-8 encoded kana / kanji in a row: in a CP932 file, a sign of UTF-8 text."""


def _refuse_utf8(piece: bytes, offset: int, line: int) -> None:
    """Raise DecodeError when a line of a CP932 `piece` is UTF-8 text: UTF-8 bytes often decode as
    valid CP932 too, as mojibake (ヤマダ becomes 繝､繝槭...), so decoding alone does not catch it."""
    for match in _UTF8_RUN.finditer(piece):
        start = piece.rfind(b"\n", 0, match.start()) + 1
        end = piece.find(b"\n", match.end())
        raw = piece[start : end if end >= 0 else len(piece)].rstrip(b"\r")
        try:
            as_utf8 = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # CP932 text that happens to look like UTF-8 for a few bytes
        at_line = line + piece.count(b"\n", 0, start)
        sample = match.group().decode("utf-8")[:8]
        raise DecodeError(
            f"mixed encodings: line {at_line} is UTF-8 text in a cp932 file ({sample!r} would be read as "
            f"{match.group().decode('cp932', errors='replace')[:8]!r}): {as_utf8[:60]!r}",
            offset=offset + start,
            line=at_line,
        )


def decode_to_utf8(src: Path, dst: Path, encoding: str) -> int:
    """Decode `src` (in the registry `encoding`) into UTF-8 text at `dst`, streamed in chunks cut
    at line ends (``\\n`` is never inside a CP932 or UTF-8 character). A leading UTF-8 BOM is
    dropped whatever the encoding. Returns the number of bytes written.

    :raises DecodeError: with the byte offset (0-based, in `src`) and line (1-based) of the first
        bytes that cannot be decoded, or of a multi-byte character cut off at the end of the file.
    """
    codec = python_codec(encoding)
    passthrough = codec == "utf-8"  # valid UTF-8 is written as it is, after the check
    offset, line, written = 0, 1, 0
    carry = b""
    first = True
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            chunk = fin.read(_CHUNK)
            data = carry + chunk if carry else chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # no line end yet (a very long line): read on
                    carry = data
                    continue
                piece, carry = data[:cut], data[cut:]
            else:
                piece, carry = data, b""
            if first:
                first = False
                if piece.startswith(_UTF8_BOM):
                    piece = piece[len(_UTF8_BOM) :]
                    offset += len(_UTF8_BOM)
            try:
                text = piece.decode(codec)
                if codec == "cp932":
                    _refuse_utf8(piece, offset, line)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                at_line = line + piece.count(b"\n", 0, exc.start)
                bad = piece[exc.start : min(exc.end, exc.start + 4)].hex(" ")
                raise DecodeError(
                    f"cannot decode as {codec} at byte {at} (line {at_line}): bytes {bad}: {exc.reason}",
                    offset=at,
                    line=at_line,
                ) from None
            out = piece if passthrough else text.encode("utf-8")
            fout.write(out)
            written += len(out)
            offset += len(piece)
            line += piece.count(b"\n")
            if not chunk:
                return written


# --------------------------------------------------------------------------------------------
# Registry table → what a file must look like
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    table: Table
    feed: str
    pattern: str
    encoding: str
    date_format: str | None
    timestamp_format: str | None

    @classmethod
    def of(cls, table: Table) -> _Spec:
        where = f"sources.{table.source}.tables.{table.name}"
        missing = [k for k in ("feed", "pattern", "encoding") if not table.options.get(k)]
        if missing:
            raise ValueError(f"{where}: a file table needs {', '.join(missing)}")
        if not table.columns:
            raise ValueError(f"{where}: a file table needs its columns (names, source headers and types)")
        try:
            python_codec(str(table.options["encoding"]))
        except LookupError:
            raise ValueError(f"{where}: unknown encoding {table.options['encoding']!r}") from None
        return cls(
            table=table,
            feed=str(table.options["feed"]),
            pattern=str(table.options["pattern"]),
            encoding=str(table.options["encoding"]),
            date_format=table.options.get("date_format"),
            timestamp_format=table.options.get("timestamp_format"),
        )

    @property
    def header(self) -> list[str]:
        return [c.source for c in self.table.columns]

    def column(self, name: str | None) -> Column | None:
        return next((c for c in self.table.columns if c.name == name), None)

    def label(self, name: str | None) -> str:
        col = self.column(name)
        return f"{col.source} ({col.name})" if col else str(name)

    def expects(self, col: Column) -> str:
        return {
            "integer": "an integer",
            "boolean": "a boolean (true/false)",
            "date": f"a date in the format {self.date_format or '%Y-%m-%d'}",
            "timestamp": f"a timestamp in the format {self.timestamp_format or 'YYYY-MM-DD HH:MM:SS'}",
            "timestamptz": "an ISO 8601 timestamp with a UTC offset",
            "money": f"an amount with at most {self.table.money_scale} decimal places",
        }.get(col.type, col.type)


def describe_drift(found: list[str], expected: list[str]) -> str | None:
    """Why a header differs from the registry's columns, naming the columns; None if it does not."""
    if found == expected:
        return None
    extra = [c for c in found if c not in expected]
    missing = [c for c in expected if c not in found]
    parts = []
    if len(found) == len(expected):
        renamed = [(e, f) for e, f in zip(expected, found, strict=True) if e in missing and f in extra]
        if renamed:
            parts.append("renamed column(s) " + ", ".join(f"{e} -> {f}" for e, f in renamed))
            extra = [c for c in extra if c not in {f for _, f in renamed}]
            missing = [c for c in missing if c not in {e for e, _ in renamed}]
    if extra:
        parts.append("extra column(s) " + ", ".join(extra))
    if missing:
        parts.append("missing column(s) " + ", ".join(missing))
    doubled = sorted({c for c in found if found.count(c) > 1})
    if doubled:
        parts.append("repeated column(s) " + ", ".join(doubled))
    if not parts:
        parts.append("columns in another order")
    return f"column drift: {'; '.join(parts)} (expected {len(expected)} columns: {','.join(expected)})"


# --------------------------------------------------------------------------------------------
# Parsing with DuckDB
# --------------------------------------------------------------------------------------------


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Reject:
    line: int
    reason: str
    raw_line: str


@dataclass
class _Flag:
    line: int
    key: str
    raw_line: str


@dataclass
class _Parsed:
    con: duckdb.DuckDBPyConnection
    records: int  # data records in the file: read + rejected
    rejects: list[_Reject]
    flags: list[_Flag] = field(default_factory=list)


def _line_numbers(path: Path, positions: Iterable[int]) -> dict[int, int]:
    """Physical line (1-based) of each byte position in `path` (positions of record starts)."""
    result: dict[int, int] = {}
    wanted = sorted(set(positions))
    if not wanted:
        return result
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        size = len(mm)
        line, prev = 1, 0
        for pos in wanted:
            start = pos
            while start < size and mm[start] in (0x0A, 0x0D):  # a position on a line end: next line
                start += 1
            line += mm[prev:start].count(b"\n") if start > prev else 0
            prev = max(prev, start)
            result[pos] = line
    return result


def _records(path: Path) -> Iterator[tuple[int, str]]:
    """(start line, raw text) of each data record of a UTF-8 CSV (header and blank lines skipped),
    with Python's csv module. Used only to find rows that DuckDB read but that must be rejected."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8", newline="") as f:
            for text in f:
                consumed.append(text)
                yield text

    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        reader = csv.reader(lines())
        start = 1
        for i, fields in enumerate(reader):
            raw = "".join(consumed).rstrip("\r\n")
            consumed.clear()
            if i > 0 and fields:
                yield start, raw
            start = reader.line_num + 1
    finally:
        csv.field_size_limit(limit)


def _cast_reason(spec: _Spec, column_name: str | None, message: str) -> str:
    col = spec.column(column_name)
    m = re.search(r'Could not convert string "(.*)" to ', message, re.DOTALL)
    if col is None or m is None:
        return f"{spec.label(column_name)}: {message}"
    return f"{spec.label(column_name)}: {m.group(1)!r} is not {spec.expects(col)}"


def _read_type(col: Column) -> str:
    """The type DuckDB reads a column as. Money is read with room for any decimals, so an amount
    with more decimals than the currency's minor unit is rejected by name instead of rounded."""
    return _MONEY_READ_TYPE if col.type == "money" else _DUCKDB_TYPES[col.type]


def _parse(decoded: Path, spec: _Spec, tmp: Path) -> _Parsed:
    """Read the decoded file with DuckDB into table `parsed` (registry column names and types);
    collect rejects with physical line numbers. Raises duckdb.Error if the CSV cannot be read."""
    con = duckdb.connect(config={"temp_directory": str(tmp / "duckdb-tmp")})
    con.execute("set TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"{_lit(c.name)}: {_lit(_read_type(c))}" for c in spec.table.columns) + "}"
    options = [
        "header = true",
        "auto_detect = false",
        "delim = ','",
        "quote = '\"'",
        "escape = '\"'",
        f"columns = {columns}",
        "store_rejects = true",
        "rejects_table = 'csv_rejects'",
        "rejects_scan = 'csv_reject_scans'",
    ]
    if spec.date_format:
        options.append(f"dateformat = {_lit(spec.date_format)}")
    if spec.timestamp_format:
        options.append(f"timestampformat = {_lit(spec.timestamp_format)}")
    con.execute(f"create table parsed as select * from read_csv({_lit(str(decoded))}, {', '.join(options)})")  # noqa: S608

    errors = con.execute(
        "select line_byte_position, error_type::varchar, column_name, csv_line, error_message "
        "from csv_rejects order by line_byte_position, column_idx"
    ).fetchall()
    by_position: dict[int, tuple[dict[str, str], str]] = {}
    for position, error_type, column_name, csv_line, message in errors:
        reasons, _ = by_position.setdefault(position, ({}, (csv_line or "").strip("\r\n")))
        if error_type == "CAST":
            reasons.setdefault(f"cast:{column_name}", _cast_reason(spec, column_name, message))
        elif error_type in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
            m = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message)
            text = f"wrong number of fields: expected {m.group(1)}, found {m.group(2)}" if m else message
            reasons.setdefault("fields", text)
        else:
            reasons.setdefault(f"{error_type}:{column_name}", f"{error_type.lower()}: {message}")
    lines = _line_numbers(decoded, by_position)
    rejects = [
        _Reject(lines[pos], "; ".join(reasons.values()), raw) for pos, (reasons, raw) in sorted(by_position.items())
    ]
    records = con.execute("select count(*) from parsed").fetchone()[0] + len(rejects)

    # Rows the upsert must not see (docs/reliability.md #18): an empty primary key (a rerun could
    # not replace it), a control character in the key, and each earlier row of a key repeated in
    # the file (the last one is kept, as the upsert would). Kana columns that hold other text land
    # and are flagged. Lines are found by walking the records, only when there are such rows.
    pk = spec.table.primary_key
    keys = [c for c in spec.table.columns if c.name in pk]
    empty = " or ".join(
        f"{_ident(c.name)} is null" + (f" or trim({_ident(c.name)}) = ''" if c.type == "string" else "") for c in keys
    )
    control = " or ".join(
        f"regexp_matches({_ident(c.name)}, {_lit(CONTROL_CHARACTERS)})" for c in keys if c.type == "string"
    )
    kana = [c.name for c in spec.table.columns if c.name.endswith("_kana") and c.type == "string"]
    not_kana = " or ".join(f"not regexp_full_match({_ident(c)}, {_lit(KANA)})" for c in kana)
    scale = spec.table.money_scale
    money = [c for c in spec.table.columns if c.type == "money"]
    too_precise = (
        "concat_ws('; ', "
        + ", ".join(
            f"case when {_ident(c.name)} <> round({_ident(c.name)}, {scale}) then "
            f"{_lit(spec.label(c.name) + ': ')} || rtrim(rtrim({_ident(c.name)}::varchar, '0'), '.') "
            f"|| {_lit(f' has more than {scale} decimal places (the source money minor_unit)')} end"
            for c in money
        )
        + ")"
        if money
        else "''"
    )
    key_list = ", ".join(_ident(c) for c in pk)
    found = con.execute(
        f"""
        with checked as (
            select rowid as id, {key_list}, ({empty}) as empty_key, coalesce({control or "false"}, false) as control,
                ({not_kana or "false"}) as not_kana, nullif({too_precise}, '') as too_precise
            from parsed
        ), ranked as (
            select *, case when not (empty_key or control)
                then max(id) over (partition by {key_list}, empty_key or control) end as winner
            from checked
        )
        select id, {key_list}, empty_key, control, coalesce(winner <> id, false) as duplicate, winner,
            coalesce(not_kana, false) as not_kana, too_precise
        from ranked where empty_key or control or winner <> id or coalesce(not_kana, false) or too_precise is not null
        order by id
        """  # noqa: S608 (identifiers quoted)
    ).fetchall()
    flags: list[_Flag] = []
    if found:
        n = len(pk)
        lines_of = _good_lines(
            decoded, {r.line for r in rejects}, {r[0] for r in found} | {r[n + 4] for r in found if r[n + 3]}
        )
        bad_ids = []
        for row in found:
            rid, values, (is_empty, has_control, duplicate, winner, odd_kana, precise) = (
                row[0],
                row[1 : n + 1],
                row[n + 1 :],
            )
            start, raw = lines_of[rid]
            key_text = ", ".join(f"{spec.label(c)}={v!r}" for c, v in zip(pk, values, strict=True))
            if is_empty:
                cols = ", ".join(
                    spec.label(c) for c, v in zip(pk, values, strict=True) if v is None or not str(v).strip()
                )
                rejects.append(_Reject(start, f"empty primary key: {cols}", raw))
            elif has_control:
                rejects.append(_Reject(start, f"control character in primary key: {key_text}", raw))
            elif duplicate:
                rejects.append(
                    _Reject(
                        start, f"duplicate key {key_text}: line {lines_of[winner][0]} has the same key and is kept", raw
                    )
                )
            elif precise:
                rejects.append(_Reject(start, precise, raw))
            if is_empty or has_control or duplicate or precise:
                bad_ids.append(rid)
            elif odd_kana:
                flags.append(_Flag(start, key_text, raw))
        if bad_ids:
            con.execute("delete from parsed where rowid in (select unnest(?))", [bad_ids])
        rejects.sort(key=lambda r: r.line)
    landed_type = "BIGINT" if scale == 0 else f"DECIMAL(18, {scale})"
    for c in money:
        con.execute(f"alter table parsed alter {_ident(c.name)} type {landed_type}")
    return _Parsed(con, records, rejects, flags)


def _good_lines(decoded: Path, rejected_lines: set[int], ids: set[int]) -> dict[int, tuple[int, str]]:
    """(start line, raw text) of the rows of `parsed` whose rowid is in `ids` (rowids number the
    records DuckDB read, in file order, skipping the rejected lines)."""
    out: dict[int, tuple[int, str]] = {}
    last = max(ids)
    good_index = 0
    for start, raw in _records(decoded):
        if start in rejected_lines:
            continue
        if good_index in ids:
            out[good_index] = (start, raw)
        good_index += 1
        if good_index > last:
            break
    return out


# --------------------------------------------------------------------------------------------
# SFTP helpers
# --------------------------------------------------------------------------------------------


def _missing(exc: OSError) -> bool:
    return isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except OSError as exc:
        if _missing(exc):
            return False
        raise
    return True


def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    current = "/" if folder.startswith("/") else ""
    for part in [p for p in folder.split("/") if p]:
        current = posixpath.join(current, part) if current else part
        if _exists(sftp, current):
            continue
        try:
            sftp.mkdir(current)
        except OSError:
            if not _exists(sftp, current):  # not created by someone else meanwhile
                raise


def _listing(sftp: paramiko.SFTPClient, folder: str) -> dict[str, paramiko.SFTPAttributes]:
    try:
        return {a.filename: a for a in sftp.listdir_attr(folder)}
    except OSError as exc:
        if _missing(exc):
            return {}
        raise


def read_drop_file(local: Path, table: Table) -> pa.Table:
    """A decoded (UTF-8) drop file as text columns named like the registry (values as written,
    empty fields as null). Raises pyarrow.ArrowInvalid when it is not such a CSV."""
    from pyarrow import csv as pa_csv

    names = [c.name for c in table.columns]
    return pa_csv.read_csv(
        local,
        read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True, null_values=[""]
        ),
    )


def encode_drop_file(data: pa.Table, table: Table) -> bytes:
    """`data` (text columns, registry names) as the partner wrote it: the file's header and encoding."""
    spec = _Spec.of(table)
    con = duckdb.connect()
    try:
        con.register("kept", data.rename_columns(spec.header))
        with tempfile.TemporaryDirectory(prefix="yorisoi-drop-") as tmp:
            out = Path(tmp) / "kept.csv"
            con.execute(f"copy kept to {_lit(str(out))} (header, delimiter ',', quote '\"')")
            text = out.read_text(encoding="utf-8")
    finally:
        con.close()
    data_bytes = text.encode(python_codec(spec.encoding))
    return (_UTF8_BOM + data_bytes) if spec.encoding.strip().lower() == "utf-8-sig" else data_bytes


def _replace(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, then rename it over `path` (atomic)."""
    temp = path + ".erasure.tmp"
    with sftp.open(temp, "wb") as f:
        f.write(data)
    sftp.posix_rename(temp, path)


def purge_kept_file(
    sftp: paramiko.SFTPClient, remote: str, table: Table, stones: Tombstones
) -> tuple[int, str | None, int]:
    """Rewrite a drop file kept on the server (``processed/``, ``quarantine/``) without the rows of
    erased people (docs/privacy.md): written in its own encoding under a temporary name and renamed
    over the original, its manifest rewritten with the new size, SHA-256 and row count; deleted
    with its manifest when no row is left. Returns the rows removed or unlinked, the new SHA-256
    (None when unchanged or deleted) and the rows kept. A file that cannot be read as CSV (a
    quarantined one) is left as it is."""
    rule = RULES.get(table.raw_name)
    if rule is None or not stones:
        return 0, None, 0
    spec = _Spec.of(table)
    with tempfile.TemporaryDirectory(prefix="yorisoi-drop-") as tmp:
        raw, decoded = Path(tmp) / "raw", Path(tmp) / "utf8.csv"
        sftp.get(remote, str(raw))
        try:
            decode_to_utf8(raw, decoded, spec.encoding)
            data = read_drop_file(decoded, table)
        except (DecodeError, pa.ArrowInvalid) as exc:
            log.warning("erasure: cannot read %s as CSV (%s); left as it is", remote, exc)
            return 0, None, 0
    kept, n = stones.apply(rule, data)
    if n == 0:
        return 0, None, data.num_rows
    if kept.num_rows == 0 and rule.action == "delete":
        sftp.remove(remote)
        if _exists(sftp, remote + MANIFEST_SUFFIX):
            sftp.remove(remote + MANIFEST_SUFFIX)
        log.warning("erasure: %s held only erased people's rows (%d): deleted", remote, n)
        return n, None, 0
    content = encode_drop_file(kept, table)
    digest = hashlib.sha256(content).hexdigest()
    _replace(sftp, remote, content)
    manifest = {"bytes": len(content), "sha256": digest, "rows": kept.num_rows, "rewritten_by": "erasure"}
    _replace(sftp, remote + MANIFEST_SUFFIX, json.dumps(manifest).encode("utf-8"))
    log.warning("erasure: %s rewritten without %d erased people's row(s)", remote, n)
    return n, digest, kept.num_rows


def _download(sftp: paramiko.SFTPClient, remote: str, local: Path) -> tuple[str, int]:
    """Copy a remote file; returns its SHA-256 (hex) and size."""
    digest = hashlib.sha256()
    size = 0
    with sftp.open(remote, "rb") as src, open(local, "wb") as dst:
        src.prefetch()
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fmt_age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return " ".join(f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "min")) if v) or "0min"


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    warehouse: Warehouse
    source: Source
    sftp: paramiko.SFTPClient
    run_id: str
    load_date: date
    now: datetime
    max_wait: timedelta
    inbox: str
    processed: str
    quarantine: str
    workdir: Path

    # ---- moves --------------------------------------------------------------------------------

    def _free_name(self, folder: str, name: str) -> str:
        stem, ext = posixpath.splitext(name)
        for n in range(10_000):
            candidate = name if n == 0 else f"{stem}.{n}{ext}"
            paths = [posixpath.join(folder, candidate + s) for s in ("", MANIFEST_SUFFIX, REASON_SUFFIX)]
            if not any(_exists(self.sftp, p) for p in paths):
                return posixpath.join(folder, candidate)
        raise RuntimeError(f"no free name for {name} in {folder}")

    def move(self, feed: str, name: str, to: str, *, with_manifest: bool) -> str:
        """Rename the data file (and its manifest) into `<to>/<feed>/`; returns the new path."""
        folder = posixpath.join(to, feed)
        _makedirs(self.sftp, folder)
        src = posixpath.join(self.inbox, feed, name)
        for attempt in range(5):
            target = self._free_name(folder, name)
            try:
                self.sftp.rename(src, target)
                break
            except OSError:
                if attempt == 4 or not _exists(self.sftp, target):  # not a name taken meanwhile
                    raise
        if with_manifest:
            self.sftp.rename(src + MANIFEST_SUFFIX, target + MANIFEST_SUFFIX)
        return target

    # ---- outcomes ----------------------------------------------------------------------------

    def wait(self, out: FileOutcome, attr: paramiko.SFTPAttributes, why: str) -> FileOutcome:
        age = None if attr.st_mtime is None else self.now - datetime.fromtimestamp(attr.st_mtime, UTC)
        out.age = age
        if age is not None and age > self.max_wait:
            out.status = TIMED_OUT
            out.reason = (
                f"{why} {_fmt_age(age)} after the file was dropped (max_wait {_fmt_age(self.max_wait)}); "
                f"the file stays in {self.inbox}/{out.feed}/"
            )
            log.error("timed out: %s/%s: %s", out.feed, out.file, out.reason)
        else:
            out.status = WAITING
            out.reason = why
            log.info("waiting: %s/%s: %s", out.feed, out.file, why)
        return out

    def quarantine_file(
        self, out: FileOutcome, reason: str, *, rows: int, batch_id: str, drift: bool = False
    ) -> FileOutcome:
        out.status, out.reason, out.column_drift = QUARANTINED, reason, drift
        out.moved_to = self.move(out.feed, out.file, self.quarantine, with_manifest=True)
        text = "\n".join(
            [
                f"file: {self.inbox}/{out.feed}/{out.file}",
                f"table: {self.source.name}.{out.table}",
                f"run_id: {self.run_id}",
                f"quarantined_at: {self.now.isoformat()}",
                f"sha256: {out.sha256}",
                f"bytes: {out.bytes}",
                f"column_drift: {str(drift).lower()}",
                f"reason: {reason}",
                "",
            ]
        )
        with self.sftp.open(out.moved_to + REASON_SUFFIX, "w") as f:
            f.write(text.encode("utf-8"))
        if out.sha256:
            self.warehouse.record_file(
                sha256=out.sha256,
                source=self.source.name,
                feed=out.feed,
                file_name=out.file,
                rows=rows,
                status=QUARANTINED,
                reason=reason,
                batch_id=batch_id,
            )
        log.error("quarantined %s/%s -> %s: %s", out.feed, out.file, out.moved_to, reason)
        return out

    # ---- one file ----------------------------------------------------------------------------

    def read_manifest(self, remote: str) -> tuple[dict | None, str]:
        try:
            with self.sftp.open(remote, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"manifest is not valid JSON yet ({exc})"
        if not isinstance(manifest, dict):
            return None, "manifest is not a JSON object"
        for key in ("bytes", "sha256", "rows"):
            if key not in manifest:
                return None, f"manifest has no {key!r}"
        return manifest, ""

    def ingest(self, spec: _Spec, name: str, entries: dict[str, paramiko.SFTPAttributes]) -> FileOutcome:
        feed = spec.feed
        attr = entries[name]
        out = FileOutcome(table=spec.table.name, feed=feed, file=name, bytes=attr.st_size or 0)
        remote = posixpath.join(self.inbox, feed, name)
        if name + MANIFEST_SUFFIX not in entries:
            return self.wait(out, attr, "no manifest")
        manifest, problem = self.read_manifest(remote + MANIFEST_SUFFIX)
        if manifest is None:
            return self.wait(out, attr, problem)

        with tempfile.TemporaryDirectory(prefix="drop-", dir=self.workdir) as tmp_name:
            tmp = Path(tmp_name)
            t0 = time.perf_counter()
            out.sha256, out.bytes = _download(self.sftp, remote, tmp / "raw")
            out.seconds["download"] = time.perf_counter() - t0
            # One batch per file content, whatever the run: a rerun after a crash replaces the
            # file's rows and rejects instead of adding to them.
            batch_id = f"{spec.table.name}:{out.sha256[:12]}"
            out.batch_id = batch_id
            manifest_rows = manifest["rows"] if isinstance(manifest["rows"], int) else -1
            ledger_rows = max(manifest_rows, 0)

            if self.warehouse.file_status(out.sha256) == LOADED:
                out.status, out.reason = DUPLICATE, "the same content (SHA-256) was loaded before"
                out.moved_to = self.move(feed, name, self.processed, with_manifest=True)
                log.info("duplicate: %s/%s -> %s", feed, name, out.moved_to)
                stones = self.warehouse.tombstones()
                if stones:  # loaded before an erasure: the copy kept must not hold the erased rows
                    out.erased, _, _ = purge_kept_file(self.sftp, out.moved_to, spec.table, stones)
                return out

            mismatch = []
            if out.bytes != manifest["bytes"]:
                mismatch.append(f"{out.bytes} bytes, manifest says {manifest['bytes']}")
            if out.sha256 != str(manifest["sha256"]).lower():
                mismatch.append(f"SHA-256 {out.sha256} differs from the manifest's {manifest['sha256']}")
            if mismatch:
                truncated = isinstance(manifest["bytes"], int) and out.bytes < manifest["bytes"]
                what = "truncated file" if truncated else "file does not match its manifest"
                return self.quarantine_file(out, f"{what}: {'; '.join(mismatch)}", rows=ledger_rows, batch_id=batch_id)

            t0 = time.perf_counter()
            decoded = tmp / "utf8.csv"
            try:
                decode_to_utf8(tmp / "raw", decoded, spec.encoding)
            except DecodeError as exc:
                return self.quarantine_file(out, str(exc), rows=ledger_rows, batch_id=batch_id)
            out.seconds["decode"] = time.perf_counter() - t0
            (tmp / "raw").unlink()

            try:
                with open(decoded, encoding="utf-8", newline="") as f:
                    header = next(csv.reader(f), [])
            except csv.Error as exc:  # e.g. an unclosed quote: the "header" runs past the csv module's limit
                reason = f"the header line cannot be read ({exc}; an unclosed quote?)"
                return self.quarantine_file(out, reason, rows=ledger_rows, batch_id=batch_id)
            drift = describe_drift(header, spec.header)
            if drift:
                return self.quarantine_file(out, drift, rows=ledger_rows, batch_id=batch_id, drift=True)

            t0 = time.perf_counter()
            try:
                parsed = _parse(decoded, spec, tmp)
            except (duckdb.Error, csv.Error) as exc:
                return self.quarantine_file(out, f"the CSV cannot be read: {exc}", rows=ledger_rows, batch_id=batch_id)
            out.seconds["parse"] = time.perf_counter() - t0
            try:
                if parsed.records != manifest_rows:
                    read, rejected = parsed.records - len(parsed.rejects), len(parsed.rejects)
                    return self.quarantine_file(
                        out,
                        f"row count mismatch: manifest says {manifest['rows']} rows, the file has "
                        f"{parsed.records} ({read} read, {rejected} rejected)",
                        rows=ledger_rows,
                        batch_id=batch_id,
                    )
                t0 = time.perf_counter()
                out.rows, out.rejects, out.erased = self.land(spec, name, batch_id, parsed)
                out.seconds["land"] = time.perf_counter() - t0
            finally:
                parsed.con.close()

        self.warehouse.record_file(
            sha256=out.sha256,
            source=self.source.name,
            feed=feed,
            file_name=name,
            rows=ledger_rows,
            status=LOADED,
            reason=f"{out.rejects} row(s) rejected" if out.rejects else None,
            batch_id=batch_id,
        )
        out.status = LOADED
        out.moved_to = self.move(feed, name, self.processed, with_manifest=True)
        if out.erased:  # the file kept after processing must not hold them either
            _, digest, kept = purge_kept_file(self.sftp, out.moved_to, spec.table, self.warehouse.tombstones())
            if digest:
                self.warehouse.record_file(
                    sha256=digest,
                    source=self.source.name,
                    feed=feed,
                    file_name=name,
                    rows=kept,
                    status=LOADED,
                    reason="rewritten by erasure",
                    batch_id=batch_id,
                )
        log.info(
            "loaded %s/%s: %d rows, %d rejects -> %s (%.1f MB)",
            feed,
            name,
            out.rows,
            out.rejects,
            out.moved_to,
            out.bytes / 1e6,
        )
        return out

    def land(self, spec: _Spec, name: str, batch_id: str, parsed: _Parsed) -> tuple[int, int, int]:
        """Upsert the good rows (one batch), then replace the batch's rejects; returns the rows
        landed, rejected and left out as erased people's."""
        with self.warehouse.batch(spec.table, batch_id=batch_id, load_date=self.load_date, source_file=name) as b:
            reader = parsed.con.sql("select * from parsed order by rowid").to_arrow_reader(_ROWS_PER_PART)
            for part in reader:
                b.write(part)
        if parsed.rejects:  # (building an Arrow table the first time imports pandas: only when needed)
            n = len(parsed.rejects)
            columns = {
                "batch_id": [batch_id] * n,
                "source": [self.source.name] * n,
                "table_name": [spec.table.name] * n,
                "source_file": [name] * n,
                "line": [r.line for r in parsed.rejects],
                "reason": [r.reason for r in parsed.rejects],
                "raw_line": [r.raw_line for r in parsed.rejects],
            }
            self.warehouse.add_rejects(pa.table(columns, schema=REJECTS_SCHEMA))
        if parsed.flags:
            n = len(parsed.flags)
            flags = {
                "batch_id": [batch_id] * n,
                "source": [self.source.name] * n,
                "table_name": [spec.table.name] * n,
                "source_file": [name] * n,
                "line": [f.line for f in parsed.flags],
                "key": [f.key for f in parsed.flags],
                "column_name": [", ".join(c.name for c in spec.table.columns if c.name.endswith("_kana"))] * n,
                "value": [f.raw_line for f in parsed.flags],
                "reason": ["not kana: a kana column holds characters other than kana (mojibake?)"] * n,
            }
            store_flags(self.warehouse, batch_id, spec.table.name, pa.table(flags, schema=FLAGS_SCHEMA))
            log.error(
                "ALERT %s/%s: %d row(s) flagged: not kana (raw._flags). %s", spec.feed, name, n, next_step("flags")
            )
        return b.result.rows, len(parsed.rejects), b.result.erased


def _is_data_file(name: str, pattern: str, attr: paramiko.SFTPAttributes) -> bool:
    if name.endswith((MANIFEST_SUFFIX, REASON_SUFFIX)) or name.startswith("."):
        return False
    if attr.st_mode is not None and not stat.S_ISREG(attr.st_mode):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def ingest_drops(
    warehouse: Warehouse,
    source: Source,
    sftp: paramiko.SFTPClient,
    *,
    run_id: str,
    load_date: date,
    now: datetime,
    tables: list[str] | None = None,
    workdir: Path,
) -> DropReport:
    """Load the complete, new, intact files of `source`'s inbox into ``raw.<source>__<table>``.

    :param warehouse: the warehouse (rows, ``raw._rejects``, the ``raw._files`` ledger).
    :param source: the registry's file source (``kind: files``: ``inbox``, ``processed``,
        ``quarantine`` folders and ``max_wait``; tables with ``feed``, ``pattern``, ``encoding``,
        formats and columns).
    :param sftp: an SFTP client on a connection that pinned the server's host key.
    :param run_id: the Airflow run id (part of every batch id).
    :param load_date: the lake partition the batches land in.
    :param now: the time file ages are measured against (a naive datetime is taken as UTC).
    :param tables: registry table names to load (default: the enabled ones, in registry order).
    :param workdir: a local folder for downloads and decoded copies (each file's are removed after).
    :returns: a :class:`DropReport`; the caller fails the task when ``should_stop_downstream``.
    """
    if source.kind != "files":
        raise ValueError(f"source {source.name!r} is not a file source (kind {source.kind!r})")
    names = list(source.enabled_tables()) if tables is None else list(tables)
    unknown = [n for n in names if n not in source.tables]
    if unknown:
        raise ValueError(f"no table(s) {unknown} in source {source.name!r}; have {sorted(source.tables)}")
    specs = [_Spec.of(source.tables[n]) for n in names]
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(
        warehouse=warehouse,
        source=source,
        sftp=sftp,
        run_id=run_id,
        load_date=load_date,
        now=now,
        max_wait=source.duration("max_wait", "6 hours"),
        inbox=str(source.options.get("inbox", "inbox")).rstrip("/"),
        processed=str(source.options.get("processed", "processed")).rstrip("/"),
        quarantine=str(source.options.get("quarantine", "quarantine")).rstrip("/"),
        workdir=workdir,
    )
    report = DropReport(source=source.name, run_id=run_id, max_wait=run.max_wait)
    listings: dict[str, dict[str, paramiko.SFTPAttributes]] = {}
    claimed: set[tuple[str, str]] = set()
    for spec in specs:
        report.tables.setdefault(spec.table.name, TableReport(spec.table.name))
        if spec.feed not in listings:
            listings[spec.feed] = _listing(sftp, posixpath.join(run.inbox, spec.feed))
        entries = listings[spec.feed]
        for name in sorted(entries):
            if (spec.feed, name) in claimed or not _is_data_file(name, spec.pattern, entries[name]):
                continue
            claimed.add((spec.feed, name))
            report.add(run.ingest(spec, name, entries))
    for line in report.alerts():
        log.error("%s", line)
    log.info("SFTP drops of %s:\n%s", source.name, report.summary())
    return report
