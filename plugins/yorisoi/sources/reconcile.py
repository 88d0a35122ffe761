"""Periodic reconciliation: land what incremental reads missed (docs/reliability.md #17).

Incremental reads start at the watermark minus the source's ``overlap``. A correction stamped
older than that (a back office that keeps the original ``updated_at``, or back-dates it) is never
read again. Once a week (DAG ``reconcile_sources``, or ``yorisoi sources reconcile``) each
table of the OMS and the shop API is read in full through the same extractor and row checks, and
compared with raw by primary key and a row hash (DuckDB ``hash`` over the source's columns):

- a key missing from raw, or whose row hash differs, is landed (batch
  ``<run_id>:<table>:reconcile``); the watermark does not move. A raw row newer than the source's
  (by the watermark column) is never replaced by an older one.
- keys only in raw (deleted at the source) are counted, not removed.

The full read streams to a local Parquet file, so memory stays at about one chunk; the comparison
and the landing of the differences are DuckDB queries. Rejects and flags of the read are stored
under the reconciliation's batch id.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from .registry import Source, Table
from .screening import Findings, screen

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .ecommerce import ShopClient
    from .landing import Warehouse

log = logging.getLogger(__name__)

_ROWS_PER_PART = 250_000


@dataclass
class Reconciled:
    """One table's reconciliation: rows read from the source, rows in raw before, keys missing
    from raw, keys whose row differs, rows landed, keys only in raw, rejects, seconds taken."""

    table: str
    source_rows: int = 0
    raw_rows: int = 0
    missing: int = 0
    changed: int = 0
    landed: int = 0
    only_in_raw: int = 0
    rejects: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Scratch:
    """The full read of one table, screened, streamed to a local Parquet file."""

    def __init__(self, table: Table, folder: Path, batch_id: str):
        self.table = table
        self.path = folder / f"{table.name}.parquet"
        self.findings = Findings(table, batch_id)
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.line = 1

    def add(self, part: pa.Table, *, lines: list[int] | None = None, where: str = "", ceiling=None) -> None:
        good = screen(
            part, self.findings, first_line=self.line, lines=lines, where=where, watermark=self.table.watermark,
            ceiling=ceiling,
        )  # fmt: skip
        self.line += part.num_rows
        self.write(good)

    def write(self, good: pa.Table) -> None:
        """Keep rows already screened."""
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, good.schema, compression="zstd")
        if good.num_rows:
            self.writer.write_table(good)
            self.rows += good.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def compare_and_land(
    warehouse: Warehouse, scratch: _Scratch, *, batch_id: str, load_date: date, started: float
) -> Reconciled:
    """Compare the scratch file with raw; land the missing and changed rows (no watermark move)."""
    table = scratch.table
    out = Reconciled(table.name, source_rows=scratch.rows, rejects=len(scratch.findings.rejects))
    scratch.findings.store(warehouse)
    if scratch.writer is None:
        out.seconds = time.monotonic() - started
        return out
    diff = scratch.path.with_suffix(".diff.parquet")
    src = f"read_parquet({_lit(str(scratch.path))})"
    raw = f"raw.{_q(table.raw_name)}"
    con = warehouse.connect()
    try:
        columns = [r[0] for r in con.execute(f"describe select * from {src}").fetchall()]  # noqa: S608
        exists = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?",
            [table.raw_name],
        ).fetchone()[0]
        if exists:
            in_raw = {r[0] for r in con.execute(f"describe {raw}").fetchall()}
            shared = [c for c in columns if c in in_raw]
            s_hash = "hash(" + ", ".join(f"s.{_q(c)}" for c in shared) + ")"
            r_hash = "hash(" + ", ".join(f"r.{_q(c)}" for c in shared) + ")"
            on = " and ".join(f"s.{_q(c)} = r.{_q(c)}" for c in table.primary_key)
            mark = table.watermark if table.watermark in shared else None
            newer_in_raw = f" and not (r.{_q(mark)} > s.{_q(mark)})" if mark else ""
            out.raw_rows = con.execute(f"select count(*) from {raw}").fetchone()[0]  # noqa: S608
            out.missing, out.changed = con.execute(
                f"select count(*) filter (where r.{_q(table.primary_key[0])} is null), "  # noqa: S608
                f"count(*) filter (where r.{_q(table.primary_key[0])} is not null and {s_hash} <> {r_hash}"
                f"{newer_in_raw}) from {src} s left join {raw} r on {on}"
            ).fetchone()
            out.only_in_raw = con.execute(
                f"select count(*) from {raw} r anti join {src} s on {on}"  # noqa: S608
            ).fetchone()[0]
            con.execute(
                f"copy (select s.* from {src} s left join {raw} r on {on} "  # noqa: S608
                f"where r.{_q(table.primary_key[0])} is null or ({s_hash} <> {r_hash}{newer_in_raw})) "
                f"to {_lit(str(diff))} (format parquet)"
            )
        else:
            out.missing = scratch.rows
            con.execute(f"copy (select * from {src}) to {_lit(str(diff))} (format parquet)")  # noqa: S608
    finally:
        con.close()
    if out.missing or out.changed:
        parts = (pa.Table.from_batches([b]) for b in pq.ParquetFile(diff).iter_batches(_ROWS_PER_PART))
        result = warehouse.land(table, parts, batch_id=batch_id, load_date=load_date, source_file="reconcile")
        out.landed = result.rows
    out.seconds = time.monotonic() - started
    level = logging.WARNING if out.landed else logging.INFO
    log.log(level, "reconciled %s: %s", table.raw_name, out.to_dict())
    return out


def reconcile_oms(
    warehouse: Warehouse,
    source: Source,
    engine: sa.Engine,
    *,
    run_id: str,
    load_date: date,
    tables: list[str] | None = None,
    chunk_rows: int = 50_000,
    now: datetime | None = None,
    workdir: Path | None = None,
) -> dict[str, Reconciled]:
    """Read every OMS table of `source` in full and land what raw is missing (see the module)."""
    from .oms import JST, extract, load_mapping

    mapping = load_mapping(source.folder / str(source.options["mapping"]), source.enabled_tables())
    now = datetime.now(JST) if now is None else now
    ceiling = now.astimezone(JST).replace(tzinfo=None) if now.tzinfo else now
    results: dict[str, Reconciled] = {}
    with tempfile.TemporaryDirectory(prefix="reconcile-", dir=workdir) as tmp:
        for name in tables or list(source.enabled_tables()):
            table = source.tables[name]
            batch_id = f"{run_id}:{name}:reconcile"
            started = time.monotonic()
            scratch = _Scratch(table, Path(tmp), batch_id)
            parts = extract(
                engine, mapping, name, since=None, watermark_column=table.watermark, chunk_rows=chunk_rows,
                on_bad_row=scratch.findings.reject, money_scale=table.money_scale,
            )  # fmt: skip
            with closing(parts):
                for part in parts:
                    scratch.add(part, ceiling=ceiling)
            scratch.close()
            results[name] = compare_and_land(
                warehouse, scratch, batch_id=batch_id, load_date=load_date, started=started
            )
    return results


def reconcile_ecommerce(
    warehouse: Warehouse,
    source: Source,
    client: ShopClient,
    *,
    run_id: str,
    load_date: date,
    tables: list[str] | None = None,
    page_limit: int = 250,
    until: datetime | None = None,
    workdir: Path | None = None,
    read: str | None = None,
) -> dict[str, Reconciled]:
    """Read every shop endpoint in full and land what raw is missing; rows stamped after `until`
    (default now) land flagged. ``read``: ``bulk`` or ``rest`` (default: the registry's ``read``;
    ``auto`` reads by one bulk operation per endpoint, the way a full read is meant to be done)."""
    from .ecommerce import FLATTENERS, _iso, _plan, bulk_can_read, land_chunk, read_mode, read_records

    mode = read_mode(source, read)
    bound = datetime.fromisoformat(_iso(until or datetime.now(UTC).replace(microsecond=0)))
    results: dict[str, Reconciled] = {}
    with tempfile.TemporaryDirectory(prefix="reconcile-", dir=workdir) as tmp:
        for parent, children in _plan(source, tables):
            started = time.monotonic()
            resource = str(parent.options["endpoint"]).removesuffix(".json")
            flatten = partial(FLATTENERS[resource], money_scale=parent.money_scale, fields=parent.options.get("fields"))
            scratches = {t.name: _Scratch(t, Path(tmp), f"{run_id}:{t.name}:reconcile") for t in [parent, *children]}
            findings = {name: scratch.findings for name, scratch in scratches.items()}
            lines = dict.fromkeys(scratches, 1)
            # No upper bound: a row stamped in the future, which bounded incremental reads never
            # see, lands here (flagged in raw._flags).
            bulk = mode == "bulk" or (mode == "auto" and bulk_can_read(parent))
            chunks = read_records(
                client, parent, children, findings, bulk=bulk, since=None, until=None, page_limit=page_limit,
                workdir=Path(tmp),
            )  # fmt: skip
            for name, page, numbers, where in chunks:
                land_chunk(
                    flatten, name, page, numbers, where, parent=parent.name, findings=findings,
                    add=lambda table, rows, into=scratches: into[table].write(rows), lines=lines,
                    watermarks={t.name: t.watermark for t in [parent, *children]}, ceiling=bound,
                )  # fmt: skip
            for scratch in scratches.values():  # children first: the parent's rows last, as in ingestion
                scratch.close()
            for scratch in [*list(scratches.values())[1:], scratches[parent.name]]:
                results[scratch.table.name] = compare_and_land(
                    warehouse, scratch, batch_id=scratch.findings.batch_id, load_date=load_date, started=started
                )
    return results


def summary(results: Iterable[Reconciled]) -> str:
    return "\n".join(
        f"{r.table}: {r.source_rows} source rows, {r.raw_rows} in raw, {r.missing} missing, {r.changed} changed, "
        f"{r.landed} landed, {r.only_in_raw} only in raw, {r.rejects} rejected ({r.seconds:.1f} s)"
        for r in results
    )
