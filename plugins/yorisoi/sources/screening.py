"""Row checks between an extractor and the landing (docs/reliability.md #17 and #18).

Every part an extractor reads (a chunk of OMS rows, a page of API records) goes through
:func:`screen` before it is written to the lake:

- **rejected** (``raw._rejects``, with the record's position, a reason and the record as JSON;
  never in raw): a primary key that is null or empty (a null key could never be replaced by a
  rerun, so every rerun would add another copy), a key holding a control character (NUL, tab,
  line feed...), and the losers when the same key comes twice in one part (the last one wins,
  as the landing's upsert would keep it; each earlier one is rejected naming the winner's line).
- **flagged** (``raw._flags``; the row lands): a watermark later than the run's upper bound (a row
  stamped 2099 is data to look at, but must not move the watermark past now: the landing clamps
  the watermark to the same bound), and a kana column (``*_kana``) holding something other than
  kana, as UTF-8 read as CP932 does (ヤマダ becomes 繝､繝槭...).

The checks are Arrow compute kernels over the whole part; Python touches only the rows that fail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ..runbook import next_step
from .registry import Table

if TYPE_CHECKING:
    from .landing import Warehouse

log = logging.getLogger(__name__)

REJECTS_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("source", pa.string()),
        ("table_name", pa.string()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("raw_line", pa.string()),
    ]
)
"""Columns of ``raw._rejects`` a caller provides (``rejected_at`` is added when stored)."""

FLAGS_DDL = """
create table if not exists raw._flags (
    batch_id varchar, source varchar, table_name varchar, source_file varchar, line bigint,
    "key" varchar, column_name varchar, "value" varchar, reason varchar, flagged_at timestamptz);
"""
FLAGS_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("source", pa.string()),
        ("table_name", pa.string()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("key", pa.string()),
        ("column_name", pa.string()),
        ("value", pa.string()),
        ("reason", pa.string()),
    ]
)
"""Columns of ``raw._flags``: rows that landed but need a person (``flagged_at`` added when stored)."""

CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
KANA = r"^[\p{Katakana}\p{Hiragana}ー－ｰﾞﾟ゛゜・･ 　]*$"
"""What a kana column may hold: katakana (full or half width), hiragana, the prolonged sound and
voicing marks, middle dots and spaces."""


def _json(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))


def _key_text(row: dict, key: Sequence[str]) -> str:
    return ", ".join(f"{c}={row.get(c)!r}" for c in key)


@dataclass
class Findings:
    """Rejects and flags of one batch, collected part by part, stored once the batch landed."""

    table: Table
    batch_id: str
    source_file: str | None = None
    rejects: list[dict] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)

    def reject(self, line: int, reason: str, record: dict) -> None:
        self.rejects.append(
            {
                "batch_id": self.batch_id,
                "source": self.table.source,
                "table_name": self.table.name,
                "source_file": self.source_file,
                "line": line,
                "reason": reason,
                "raw_line": _json(record),
            }
        )

    def flag(self, line: int, key: str, column: str, value: object, reason: str) -> None:
        self.flags.append(
            {
                "batch_id": self.batch_id,
                "source": self.table.source,
                "table_name": self.table.name,
                "source_file": self.source_file,
                "line": line,
                "key": key,
                "column_name": column,
                "value": None if value is None else str(value),
                "reason": reason,
            }
        )

    def store(self, warehouse: Warehouse) -> None:
        """Write the batch's rejects (replacing the same batch's earlier ones) and flags; log an
        ALERT line per kind of flag."""
        warehouse.add_rejects(pa.Table.from_pylist(self.rejects, schema=REJECTS_SCHEMA))
        store_flags(warehouse, self.batch_id, self.table.name, pa.Table.from_pylist(self.flags, schema=FLAGS_SCHEMA))
        if self.rejects:
            log.warning(
                "%s: %d row(s) rejected (raw._rejects, batch %s)", self.table.raw_name, len(self.rejects), self.batch_id
            )
        for reason in sorted({f["reason"].split(":")[0] for f in self.flags}):
            n = sum(1 for f in self.flags if f["reason"].startswith(reason))
            log.error(
                "ALERT %s: %d row(s) flagged: %s (raw._flags, batch %s). %s",
                self.table.raw_name,
                n,
                reason,
                self.batch_id,
                next_step("flags"),
            )


def store_flags(warehouse: Warehouse, batch_id: str, table_name: str, flags: pa.Table) -> None:
    """Replace the flags of (batch, table) with `flags` (a rerun of a batch does not pile them up)."""
    con = warehouse.connect()
    try:
        con.execute(FLAGS_DDL)
        con.register("new_flags", flags)
        con.execute("begin")
        con.execute("delete from raw._flags where batch_id = ? and table_name = ?", [batch_id, table_name])
        con.execute("insert into raw._flags by name select *, now() as flagged_at from new_flags")
        con.execute("commit")
    finally:
        con.close()


def _string_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def screen(
    part: pa.Table,
    findings: Findings,
    *,
    first_line: int = 1,
    lines: Sequence[int] | None = None,
    where: str = "",
    watermark: str | None = None,
    ceiling: datetime | None = None,
) -> pa.Table:
    """Check one part; return the rows to land. Rejected rows go to `findings.rejects`, flagged
    rows (landed) to `findings.flags`.

    :param first_line: the position (1-based) of the part's first row in the batch's read, the
        ``line`` of rejects and flags (for an API: the record's number in the run).
    :param lines: the position of each row instead (when rows before were taken out).
    :param where: said in each reason, e.g. ``"page 3"``.
    :param watermark: the table's watermark column; rows later than `ceiling` are flagged.
    :param ceiling: the run's upper bound, of the watermark column's kind (aware for an aware
        column, naive wall-clock for a naive one).
    """
    n = part.num_rows
    if n == 0:
        return part
    line_of = list(range(first_line, first_line + n)) if lines is None else list(lines)
    key = findings.table.primary_key
    at = f" ({where})" if where else ""
    bad = pa.array([False] * n)
    reasons: dict[int, str] = {}

    def mark(mask: pa.Array, reason_of) -> None:
        nonlocal bad
        mask = pc.and_not(pc.fill_null(mask, True), bad)
        idx = pc.indices_nonzero(mask).to_pylist()
        if idx:
            rows = part.take(idx).to_pylist()
            for i, row in zip(idx, rows, strict=True):
                reasons[i] = reason_of(row)
        bad = pc.or_(bad, mask)

    for column in key:
        values = part[column]
        empty = pc.is_null(values)
        if _string_like(values.type):
            empty = pc.or_(empty, pc.equal(pc.utf8_trim_whitespace(values), ""))
        mark(empty, lambda row, c=column: f"no primary key: {c} is empty{at}")
    for column in key:
        values = part[column]
        if _string_like(values.type):
            mark(
                pc.match_substring_regex(values, CONTROL_CHARACTERS),
                lambda row, c=column: f"control character in key {c}: {row[c]!r}{at}",
            )
    # Same key twice: the last one wins (what the upsert keeps); earlier ones are rejected.
    index = pa.array(range(n), pa.int64())
    keyed = part.select(list(key)).append_column("__i", index).filter(pc.invert(bad))
    if keyed.num_rows:
        last = keyed.group_by(list(key), use_threads=False).aggregate([("__i", "max"), ("__i", "count")])
        last = last.filter(pc.greater(last["__i_count"], 1))
        if last.num_rows:
            joined = keyed.join(last, keys=list(key))
            losers = joined.filter(pc.not_equal(joined["__i"], joined["__i_max"]))
            winner_of = dict(zip(losers["__i"].to_pylist(), losers["__i_max"].to_pylist(), strict=True))
            mask = pc.is_in(index, value_set=losers["__i"])
            mark_rows = pc.indices_nonzero(mask).to_pylist()
            for i, row in zip(mark_rows, part.take(mark_rows).to_pylist(), strict=True):
                reasons[i] = (
                    f"duplicate key {_key_text(row, key)}: line {line_of[winner_of[i]]} has the same key "
                    f"and is kept{at}"
                )
            bad = pc.or_(bad, mask)

    for i in sorted(reasons):
        findings.reject(line_of[i], reasons[i], part.slice(i, 1).to_pylist()[0])
    good = part.filter(pc.invert(bad)) if reasons else part
    good_lines = pc.indices_nonzero(pc.invert(bad)) if reasons else index

    def flag(mask: pa.Array, column: str, reason: str) -> None:
        idx = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
        if not idx:
            return
        lines = good_lines.take(pa.array(idx)).to_pylist()
        for line, row in zip(lines, good.take(idx).to_pylist(), strict=True):
            findings.flag(line_of[line], _key_text(row, key), column, row[column], reason + at)

    if watermark and ceiling is not None and watermark in good.column_names and good.num_rows:
        values = good[watermark]
        bound = pa.scalar(ceiling, values.type) if pa.types.is_timestamp(values.type) else pa.scalar(ceiling)
        flag(
            pc.greater(values, bound),
            watermark,
            f"future-dated: {watermark} is after the run's upper bound {ceiling.isoformat()}; "
            "landed, the watermark stays at or before the bound",
        )
    for column in good.column_names:
        if column.endswith("_kana") and _string_like(good[column].type) and good.num_rows:
            flag(
                pc.invert(pc.match_substring_regex(good[column], KANA)),
                column,
                f"not kana: {column} holds characters other than kana (mojibake?)",
            )
    return good
