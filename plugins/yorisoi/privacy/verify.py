# ruff: noqa: S608 - statements are assembled from catalogue names (quoted); values are bound
"""Prove an erasure: look for every erased key in every store (docs/reliability.md #19).

The erased keys are known only as tombstones (keyed hashes), so the scan hashes what it finds:
every distinct text and integer value of every column, normalised each way a key can be
(trimmed ID, OMS code, email, phone, name, kana), is looked up among the tombstones. Stores:

- the warehouse: raw tables, staging views, intermediate tables, marts, snapshots (every
  schema but the tombstones themselves);
- the other DuckDB files: the analysts' database and the role databases;
- the lake's Parquet files;
- the drop files kept on the SFTP server (``processed/``, ``quarantine/``);
- the activation store (contact keys and person IDs).

A hit on an ID, an email, a phone number or a LINE user ID is a residual. A hit on a name alone
is reported apart, as a possible namesake (another customer may have the same name), and does
not fail the check.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .tombstones import KINDS, STRONG_KINDS, Tombstones

if TYPE_CHECKING:
    import paramiko

    from .erasure import Stores

_INTEGER_TYPES = {"BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT", "UINTEGER"}
_SKIPPED = {("raw", "_erasure_tombstones"), ("raw", "_erasures")}


@dataclass(frozen=True)
class Residual:
    store: str  # warehouse, analytics.duckdb, lake, sftp, activation
    location: str  # table, file
    column: str
    kind: str
    values: int  # distinct values found

    @property
    def strong(self) -> bool:
        return self.kind in STRONG_KINDS

    def __str__(self) -> str:
        return f"{self.store}: {self.location}.{self.column}: {self.values} erased {self.kind} value(s)"


@dataclass
class VerifyReport:
    tombstones: int
    scanned: dict[str, int] = field(default_factory=dict)  # store -> tables / files scanned
    found: list[Residual] = field(default_factory=list)

    @property
    def residuals(self) -> list[Residual]:
        return [r for r in self.found if r.strong]

    @property
    def namesakes(self) -> list[Residual]:
        return [r for r in self.found if not r.strong]

    @property
    def ok(self) -> bool:
        return not self.residuals

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "tombstones": self.tombstones,
            "scanned": self.scanned,
            "residuals": [r.__dict__ for r in self.residuals],
            "possible_namesakes": [r.__dict__ for r in self.namesakes],
        }


class _Scan:
    """Collects (store, location, column) -> distinct values, then looks all of them up at once
    (one HMAC per distinct value and normalisation across the whole scan)."""

    def __init__(self, stones: Tombstones):
        self.stones = stones
        self.columns: list[tuple[str, str, str, set[str]]] = []

    def add(self, store: str, location: str, column: str, values: Iterable[object]) -> None:
        distinct = {str(v) for v in values if v is not None}
        if distinct:
            self.columns.append((store, location, column, distinct))

    def results(self) -> list[Residual]:
        every = set().union(*(c[3] for c in self.columns)) if self.columns else set()
        hits = self.stones.hit_values(sorted(every), KINDS)
        by_value: dict[str, set[str]] = {}
        for kind, values in hits.items():
            for value in values:
                by_value.setdefault(value, set()).add(kind)
        found = []
        for store, location, column, distinct in self.columns:
            kinds: dict[str, int] = {}
            for value in distinct & by_value.keys():
                for kind in by_value[value]:
                    kinds[kind] = kinds.get(kind, 0) + 1
            found += [Residual(store, location, column, k, n) for k, n in sorted(kinds.items())]
        return found


def _scan_duckdb(con: duckdb.DuckDBPyConnection, store: str, scan: _Scan) -> int:
    from .duckdb_udfs import register, set_match_key

    register(con, scan.stones.secret)  # the staging views normalise and hash with these
    set_match_key(con, scan.stones.secret)
    relations = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = current_database() order by 1, 2"
    ).fetchall()
    n = 0
    for schema, table in relations:
        if (schema, table) in _SKIPPED:
            continue
        columns = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
        wanted = [c for c, t in columns if t == "VARCHAR" or t in _INTEGER_TYPES]
        if not wanted:
            continue
        n += 1
        selects = ", ".join(f'cast("{c}" as varchar) as "{c}"' for c in wanted)
        data = con.sql(f'select {selects} from "{schema}"."{table}"').to_arrow_table()  # a view is computed once
        for column in wanted:
            scan.add(store, f"{schema}.{table}", column, pc.unique(data[column]).to_pylist())
    return n


def _scan_lake(root: Path, scan: _Scan) -> int:
    import pyarrow.parquet as pq

    files = sorted(root.glob("raw/**/*.parquet"))
    for path in files:
        data = pq.read_table(path)
        for field_ in data.schema:
            if (
                pa.types.is_string(field_.type)
                or pa.types.is_large_string(field_.type)
                or pa.types.is_integer(field_.type)
            ):
                scan.add("lake", str(path.relative_to(root)), field_.name, pc.unique(data[field_.name]).to_pylist())
    return len(files)


def _drop_files(sftp: paramiko.SFTPClient, source) -> Iterator[tuple[str, object]]:
    from ..sources.sftp_files import REASON_SUFFIX, _is_data_file, _listing, _Spec

    for folder in (str(source.options.get(k, k)).rstrip("/") for k in ("processed", "quarantine")):
        for table in source.tables.values():
            spec = _Spec.of(table)
            remote_folder = posixpath.join(folder, spec.feed)
            for name, attr in sorted(_listing(sftp, remote_folder).items()):
                if not name.endswith(REASON_SUFFIX) and _is_data_file(name, spec.pattern, attr):
                    yield posixpath.join(remote_folder, name), spec


def _scan_drop_files(sftp: paramiko.SFTPClient, source, scan: _Scan) -> int:
    from ..sources.sftp_files import decode_to_utf8, python_codec, read_drop_file

    n = 0
    for remote, spec in _drop_files(sftp, source):
        with tempfile.TemporaryDirectory(prefix="yorisoi-verify-") as tmp:
            raw, decoded = Path(tmp) / "raw", Path(tmp) / "utf8.csv"
            sftp.get(remote, str(raw))
            try:
                decode_to_utf8(raw, decoded, spec.encoding)
                table = read_drop_file(decoded, spec.table)
            except ValueError:  # DecodeError, pyarrow.ArrowInvalid
                # unreadable as CSV (a quarantined file): every line is looked at as one value
                text = raw.read_bytes().decode(python_codec(spec.encoding), "replace")
                table = pa.table({"line": text.splitlines()})
        n += 1
        for column in table.column_names:
            scan.add("sftp", remote, column, table[column].to_pylist())
    return n


def _scan_activation(url: str | None, scan: _Scan) -> int:
    import sqlalchemy as sa

    from ..activation.delivery.store import ActivationStore, metadata

    with ActivationStore(url) as store, store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for column in ("key", "person_id"):
                if column in table.c:
                    rows = conn.execute(sa.select(table.c[column]).distinct()).scalars().all()
                    scan.add("activation", table.name, column, rows)
    return len(metadata.sorted_tables)


def verify(stores: Stores, stones: Tombstones) -> VerifyReport:
    """Scan every store for the tombstoned keys."""
    report = VerifyReport(tombstones=sum(len(v) for v in stones.by_kind.values()))
    scan = _Scan(stones)
    con = stores.warehouse.connect(read_only=True)
    try:
        report.scanned["warehouse"] = _scan_duckdb(con, "warehouse", scan)
    finally:
        con.close()
    for path in stores.databases:
        if path.exists():
            con = duckdb.connect(str(path), read_only=True)
            try:
                report.scanned[path.name] = _scan_duckdb(con, path.name, scan)
            finally:
                con.close()
    report.scanned["lake files"] = _scan_lake(stores.warehouse.lake.local_root, scan)
    if stores.sftp is not None and stores.sftp_source is not None:
        report.scanned["drop files"] = _scan_drop_files(stores.sftp, stores.sftp_source, scan)
    if stores.use_activation_store:
        report.scanned["activation store tables"] = _scan_activation(stores.activation_url, scan)
    report.found = scan.results()
    return report
