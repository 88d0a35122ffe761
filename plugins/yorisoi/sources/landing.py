"""Landing: raw Parquet in the lake, then the `raw` schema of the warehouse.

Every batch is written as Parquet under `<lake>/raw/<source>/<table>/load_date=YYYY-MM-DD/` (a local
folder, or S3 when the lake is an `s3://` URL), then upserted into `raw.<source>__<table>` in one
DuckDB transaction, keyed by the table's primary key, with `_loaded_at`, `_source_file` and
`_batch_id`. A rerun of the same batch rewrites its files and replaces its rows, so data is never
duplicated and never lost; the watermark moves in the same transaction as the rows.

Before a part is written anywhere, rows of erased people are dropped (or unlinked, for orders)
against the erasure tombstones (`yorisoi.privacy.tombstones`, docs/reliability.md #19): a source
that delivers them again cannot bring them back. The batch counts and logs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..privacy.tombstones import RULES, TOMBSTONES_DDL, Tombstones
from .registry import Table

log = logging.getLogger(__name__)

LEDGER_DDL = """
create schema if not exists raw;
create table if not exists raw._watermarks (
    source varchar, table_name varchar, watermark varchar, batch_id varchar, updated_at timestamptz,
    primary key (source, table_name));
create table if not exists raw._rejects (
    batch_id varchar, source varchar, table_name varchar, source_file varchar, line bigint,
    reason varchar, raw_line varchar, rejected_at timestamptz);
create table if not exists raw._files (
    sha256 varchar primary key, source varchar, feed varchar, file_name varchar, rows bigint,
    status varchar, reason varchar, batch_id varchar, recorded_at timestamptz);
"""


@dataclass(frozen=True)
class LandResult:
    table: str
    rows: int
    files: int
    bytes: int
    watermark: str | None
    erased: int = 0  # rows of erased people dropped or unlinked on the way in


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Lake:
    """Where raw Parquet goes: a local folder, or an S3 bucket (files are staged locally first,
    loaded into DuckDB from there, and uploaded with boto3 / the Airflow S3 hook's client)."""

    def __init__(self, root: str | Path, *, staging: Path | None = None, s3_client=None):
        self.url = str(root)
        self.is_s3 = self.url.startswith("s3://")
        self.local_root = Path(staging) if self.is_s3 else Path(root)
        if self.is_s3 and staging is None:
            raise ValueError("an S3 lake needs a local staging folder")
        self._s3 = s3_client

    def folder(self, source: str, table: str, load_date: date) -> Path:
        return self.local_root / "raw" / source / table / f"load_date={load_date.isoformat()}"

    def publish(self, path: Path) -> str:
        """Upload a staged file to S3 (no-op for a local lake); returns its URI."""
        rel = path.relative_to(self.local_root).as_posix()
        if not self.is_s3:
            return str(path)
        bucket, _, prefix = self.url[len("s3://") :].partition("/")
        key = f"{prefix.rstrip('/')}/{rel}" if prefix else rel
        self._s3.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"


class Warehouse:
    """The DuckDB warehouse file. DuckDB allows one writer: writers are serialised by an Airflow
    pool of one slot, and a writer that still finds the file locked retries for a while."""

    def __init__(self, path: Path | str, lake: Lake):
        self.path = Path(path)
        self.lake = lake

    def connect(self, *, read_only: bool = False, attempts: int = 30) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for i in range(attempts):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or i == attempts - 1:
                    raise
                log.warning("warehouse %s is locked by another writer; retrying (%d/%d)", self.path, i + 1, attempts)
                time.sleep(min(2.0, 0.1 * 2**i))
        if not read_only:
            con.execute(LEDGER_DDL)
            con.execute(TOMBSTONES_DDL)
        return con

    def tombstones(self) -> Tombstones:
        """The erasure tombstones, with the match-key secret when there are any (no secret, no
        landing: the rows of erased people could not be recognised)."""
        if not self.path.exists():
            return Tombstones({}, None)
        con = self.connect()
        try:
            found = Tombstones.load(con, None)
        finally:
            con.close()
        if found:
            from ..privacy.tombstones import resolve_secret

            found.secret = resolve_secret()
        return found

    # ---- batches ----------------------------------------------------------------------------

    def batch(
        self,
        table: Table,
        *,
        batch_id: str,
        load_date: date,
        source_file: str | None = None,
        watermark: str | None = None,
        ceiling: datetime | None = None,
    ) -> BatchWriter:
        """A batch to stream parts into: `with wh.batch(...) as b: b.write(part)`. On a clean exit
        the parts are upserted in one transaction; on an error nothing reaches the warehouse.
        `ceiling`: the run's upper bound; the watermark never moves past it (docs/reliability.md #17)."""
        return BatchWriter(self, table, batch_id, load_date, source_file, watermark, ceiling)

    def land(
        self,
        table: Table,
        parts: Iterable[pa.Table],
        *,
        batch_id: str,
        load_date: date,
        source_file: str | None = None,
        watermark: str | None = None,
    ) -> LandResult:
        """Write `parts` (streamed: each part becomes one Parquet file) and upsert them into
        `raw.<source>__<table>`. Rows whose primary key appears twice keep the last one.
        `watermark`: a column whose maximum becomes the table's new watermark."""
        with self.batch(
            table, batch_id=batch_id, load_date=load_date, source_file=source_file, watermark=watermark
        ) as b:
            for part in parts:
                b.write(part)
        return b.result

    def _upsert(
        self,
        table: Table,
        files: list[Path],
        *,
        batch_id: str,
        source_file: str | None,
        watermark: str | None,
        ceiling: datetime | None = None,
    ) -> str | None:
        target = f"raw.{_quote(table.raw_name)}"
        file_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        pk = ", ".join(_quote(c) for c in table.primary_key)
        con = self.connect()
        try:
            con.execute("begin")
            con.execute(
                f"create temp table incoming as select * exclude (filename, file_row_number) "  # noqa: S608
                f"from read_parquet({file_list}, filename = true, file_row_number = true, union_by_name = true, "
                f"hive_partitioning = false) "
                f"qualify row_number() over (partition by {pk} order by filename desc, file_row_number desc) = 1"
            )
            _create_or_evolve(con, target, "incoming")
            con.execute(f"delete from {target} where ({pk}) in (select ({pk}) from incoming)")  # noqa: S608
            con.execute(
                f"insert into {target} by name select *, now() as _loaded_at, ? as _source_file, "  # noqa: S608
                "? as _batch_id from incoming",
                [source_file, batch_id],
            )
            new_mark = None
            if watermark:
                # rows past the run's upper bound (a row stamped 2099) land but do not move the mark
                below = "" if ceiling is None else f" filter (where {_quote(watermark)} <= $ceiling)"
                value = con.execute(
                    f"select max({_quote(watermark)}){below} from incoming",  # noqa: S608
                    {} if ceiling is None else {"ceiling": ceiling},
                ).fetchone()[0]
                new_mark = self._advance(con, table, value, batch_id, ceiling)
            con.execute("commit")
            return new_mark
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.close()

    @staticmethod
    def ensure_table(con: duckdb.DuckDBPyConnection, table: Table, schema: pa.Schema) -> bool:
        """Create `raw.<source>__<table>` typed and empty from `schema` if it does not exist (or
        add the columns it lacks), on an open writer connection. Returns True if it was created."""
        target = f"raw.{_quote(table.raw_name)}"
        existed = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?",
            [table.raw_name],
        ).fetchall()[0][0]
        con.register("_empty_batch", schema.empty_table())
        try:
            _create_or_evolve(con, target, "_empty_batch")
        finally:
            con.unregister("_empty_batch")
        return not existed

    @staticmethod
    def _advance(
        con: duckdb.DuckDBPyConnection, table: Table, value: object, batch_id: str, ceiling: datetime | None = None
    ) -> str | None:
        old = con.execute(
            "select watermark from raw._watermarks where source = ? and table_name = ?", [table.source, table.name]
        ).fetchone()
        past = old is not None and ceiling is not None and _as_datetime(old[0]) > ceiling
        if value is None and past:
            value = ceiling  # a mark left in the future before the bound existed comes back to it
        if value is None:
            return None
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        if old and not past and _as_datetime(old[0]) >= _as_datetime(text):
            return old[0]
        con.execute(
            "insert or replace into raw._watermarks values (?, ?, ?, ?, now())",
            [table.source, table.name, text, batch_id],
        )
        return text

    def get_watermark(self, table: Table) -> str | None:
        """The highest watermark value landed so far for the table (ISO text), or None."""
        if not self.path.exists():
            return None
        con = self.connect()
        try:
            row = con.execute(
                "select watermark from raw._watermarks where source = ? and table_name = ?", [table.source, table.name]
            ).fetchone()
            return row[0] if row else None
        finally:
            con.close()

    # ---- rejects and files ------------------------------------------------------------------

    def add_rejects(self, rejects: pa.Table) -> int:
        """Append row-level rejects (batch_id, source, table_name, source_file, line, reason,
        raw_line); the same batch's earlier rejects are replaced, so reruns do not pile up."""
        if rejects.num_rows == 0:
            return 0
        con = self.connect()
        try:
            con.register("new_rejects", rejects)
            con.execute("begin")
            con.execute(
                "delete from raw._rejects where (batch_id, table_name) in "
                "(select distinct batch_id, table_name from new_rejects)"
            )
            con.execute("insert into raw._rejects by name select *, now() as rejected_at from new_rejects")
            con.execute("commit")
            return rejects.num_rows
        finally:
            con.close()

    def file_status(self, sha256: str) -> str | None:
        if not self.path.exists():
            return None
        con = self.connect()
        try:
            row = con.execute("select status from raw._files where sha256 = ?", [sha256]).fetchone()
            return row[0] if row else None
        finally:
            con.close()

    def record_file(
        self,
        *,
        sha256: str,
        source: str,
        feed: str,
        file_name: str,
        rows: int,
        status: str,
        reason: str | None,
        batch_id: str,
    ) -> None:
        con = self.connect()
        try:
            con.execute(
                "insert or replace into raw._files values (?, ?, ?, ?, ?, ?, ?, ?, now())",
                [sha256, source, feed, file_name, rows, status, reason, batch_id],
            )
        finally:
            con.close()


class BatchWriter:
    """Parts of one batch, written to the lake as they come; upserted when the batch closes."""

    def __init__(
        self,
        wh: Warehouse,
        table: Table,
        batch_id: str,
        load_date: date,
        source_file: str | None,
        watermark: str | None,
        ceiling: datetime | None = None,
    ):
        self.wh, self.table, self.batch_id = wh, table, batch_id
        self.source_file, self.watermark, self.ceiling = source_file, watermark, ceiling
        self.folder = wh.lake.folder(table.source, table.name, load_date)
        self.safe_batch = batch_id.replace("/", "_").replace(":", "_")
        self.files: list[Path] = []
        self.rows = 0
        self.bytes = 0
        self.erased = 0
        self.result: LandResult | None = None
        self.schema: pa.Schema | None = None
        self.rule = RULES.get(table.raw_name)
        self.tombstones = Tombstones({}, None)

    def __enter__(self) -> BatchWriter:
        if self.rule is not None:
            self.tombstones = self.wh.tombstones()
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f"{self.safe_batch}-*.parquet"):
            stale.unlink()  # a rerun of this batch replaces its files, it does not add to them
        return self

    def write(self, part: pa.Table | pa.RecordBatch) -> None:
        self.schema = part.schema
        if part.num_rows == 0:
            return
        if isinstance(part, pa.RecordBatch):
            part = pa.Table.from_batches([part])
        if self.rule is not None and self.tombstones:
            part, erased = self.tombstones.apply(self.rule, part)
            self.erased += erased
            if part.num_rows == 0:
                return
        path = self.folder / f"{self.safe_batch}-{len(self.files):05d}.parquet"
        pq.write_table(part, path, compression="zstd")
        self.wh.lake.publish(path)
        self.files.append(path)
        self.rows += part.num_rows
        self.bytes += path.stat().st_size

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for path in self.files:  # a failed batch leaves nothing behind in the local lake either
                path.unlink(missing_ok=True)
            return
        if self.erased:
            log.warning(
                "erasure: %d row(s) of erased people %s before landing raw.%s (batch %s)",
                self.erased,
                "dropped" if self.rule.action == "delete" else "unlinked",
                self.table.raw_name,
                self.batch_id,
            )
        if not self.files:  # an empty batch still creates its (typed, empty) raw table
            from .catalog import raw_schema

            schema = self.schema or raw_schema(self.table)
            if schema is not None:
                con = self.wh.connect()
                try:
                    self.wh.ensure_table(con, self.table, schema)
                finally:
                    con.close()
            self.result = LandResult(self.table.raw_name, 0, 0, 0, self.wh.get_watermark(self.table), self.erased)
            return
        mark = self.wh._upsert(
            self.table,
            self.files,
            batch_id=self.batch_id,
            source_file=self.source_file,
            watermark=self.watermark,
            ceiling=self.ceiling,
        )
        log.info(
            "landed %s rows into raw.%s from %d file(s) (batch %s)",
            self.rows,
            self.table.raw_name,
            len(self.files),
            self.batch_id,
        )
        self.result = LandResult(self.table.raw_name, self.rows, len(self.files), self.bytes, mark, self.erased)


def _create_or_evolve(con: duckdb.DuckDBPyConnection, target: str, relation: str) -> None:
    """Create `target` with the columns of `relation` plus the loader's, or add the columns
    `relation` has and `target` lacks (a source added a column: older rows get null), and widen
    a column to text when `relation` has it as text (identifiers, once integers, are strings)."""
    con.execute(
        f"create table if not exists {target} as select *, now() as _loaded_at, "  # noqa: S608
        f"null::varchar as _source_file, null::varchar as _batch_id from {relation} limit 0"
    )
    existing = {r[0]: r[1] for r in con.execute(f"describe {target}").fetchall()}
    for name, dtype, *_ in con.execute(f"describe {relation}").fetchall():
        if name not in existing:
            con.execute(f"alter table {target} add column {_quote(name)} {dtype}")
        elif dtype == "VARCHAR" and existing[name] != "VARCHAR":  # an identifier that became text
            con.execute(f"alter table {target} alter column {_quote(name)} type varchar")


def _as_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)
