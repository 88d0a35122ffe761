# ruff: noqa: S608 - statements are assembled from catalogue names (quoted) and fixed rules; values are bound
"""Erasure (削除依頼) that removes the personal data everywhere: docs/privacy.md, docs/reliability.md #19.

Two steps, both safe to run again:

1. :func:`tombstone_requests` turns each pending erasure request (``marts.erasure_tombstones``,
   the call centre's 削除依頼 resolved to a person by the customer build, not yet in
   ``raw._erasures``) into tombstones: keyed hashes of the person's IDs (person, source records,
   account and card numbers, LINE user IDs, call-centre requests) and of their contact values
   (email, phone, name, kana) read from the raw rows. The raw values are never stored.
2. :func:`purge` removes what the tombstones mark, from the tombstones alone (so a crash half-way
   is finished by the next run, and rows a late run wrote are caught too):

   - the raw tables (``yorisoi.privacy.tombstones.RULES``: rows deleted, orders unlinked);
   - every other warehouse table holding a person's rows (a ``person_id`` / ``record_key``
     column: marts, incremental history, the dbt snapshot), and the analysts' and role databases;
   - the lake's Parquet files (rewritten without the rows, to a temporary name, then renamed);
   - the drop files kept after processing (``processed/`` and ``quarantine/`` on the SFTP
     server: rewritten in their encoding with a new manifest, or deleted when no row is left);
   - the activation store: audience membership deleted; the record of provision (sync changelog,
     rejects, send ledger, send history) kept with the contact key and person ID replaced by
     their keyed hash (``erased:<hex>``). Rows of ``sync_snapshots`` stay until the sync engine
     has removed the person from the destination (they are what tells it to): the purge counts
     them as ``awaiting_destinations`` and the next run, after the removal, finds nothing.

:func:`erase` runs both and writes one operation-log entry (``erase``).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .tombstones import KINDS, RULES, STRONG_KINDS, TOMBSTONES_DDL, Tombstones, erased_hash, resolve_secret

if TYPE_CHECKING:
    import paramiko

    from ..sources.landing import Lake, Warehouse
    from ..sources.registry import Source

log = logging.getLogger(__name__)

# The identity bridge's source -> the kind of key its source ID is.
SOURCE_KINDS = {"ecommerce": "ecommerce_customer", "oms": "oms_customer", "pos": "member_card", "line": "line_user"}
# Derived-table columns that hold IDs: person_id, from_person_id, record_key, record_a,
# customer_id, ec_customer_id, card_no, line_user_id, request_no, source_id, customer_code...
ID_COLUMN = re.compile(
    r"(^|_)(person_id|record_key|record_[ab]|customer_id|card_no|user_id|request_no|source_id|customer_code)$"
)
ID_KINDS = frozenset(STRONG_KINDS - {"email", "phone"})
# Derived tables whose rows outlive the person, as the raw orders they come from do (RULES:
# orders are unlinked, not deleted): the purge empties these columns instead of deleting the row,
# so the sales stay and the row is what the next build, incremental or full, gives for the
# unlinked raw order (an anonymous order). The incremental fct_orders would not read the order
# again (its raw row did not change as a landing), and its lines would lose their order.
UNLINKED_TABLES = {"fct_orders": ("person_id", "customer_record"), "orders": ("person_id",)}
INTEGER_TYPES = frozenset({"BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT", "UINTEGER"})
ERASED_PREFIX = "erased:"
_TEMP_SUFFIX = ".erasure.tmp"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PurgeReport:
    """Rows and files the purge changed, by place."""

    raw: dict[str, int] = field(default_factory=dict)
    warehouse: dict[str, int] = field(default_factory=dict)
    databases: dict[str, int] = field(default_factory=dict)
    lake_files: dict[str, int] = field(default_factory=dict)
    drop_files: dict[str, int] = field(default_factory=dict)
    activation: dict[str, int] = field(default_factory=dict)
    awaiting_destinations: int = 0

    @property
    def rows(self) -> int:
        return sum(
            sum(d.values())
            for d in (self.raw, self.warehouse, self.databases, self.lake_files, self.drop_files, self.activation)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": self.rows}


@dataclass
class ErasureResult:
    requests: list[str]
    tombstones: int
    purge: PurgeReport

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "tombstones": self.tombstones, "purge": self.purge.to_dict()}


# ---- step 1: requests -> tombstones -------------------------------------------------------------


def _relation_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchone()[0]
    )


def pending_requests(con: duckdb.DuckDBPyConnection) -> list[tuple[str, datetime, list[str]]]:
    """(request number, when taken, person IDs) of the erasure requests the customer build has
    resolved that no erasure has tombstoned yet."""
    if not _relation_exists(con, "marts", "erasure_tombstones"):
        return []
    return con.execute(
        "select request_no, min(requested_at), list(distinct person_id order by person_id) "
        "from marts.erasure_tombstones "
        "where request_no not in (select request_no from raw._erasures) "
        "group by request_no order by request_no"
    ).fetchall()


def _keys_of(con: duckdb.DuckDBPyConnection, person_ids: list[str]) -> dict[str, list[str]]:
    """The person's keys in clear, by kind (only in memory, only during this call's caller)."""
    keys: dict[str, set[str]] = {"person": set(person_ids)}
    rows = con.execute(
        "select record_key from marts.erasure_tombstones where person_id in (select unnest(?))", [person_ids]
    ).fetchall()
    keys.setdefault("record", set()).update(r[0] for r in rows)
    if _relation_exists(con, "marts", "bridge_customer_identities"):
        for record_key, source, source_id in con.execute(
            "select record_key, source, source_id from marts.bridge_customer_identities "
            "where person_id in (select unnest(?))",
            [person_ids],
        ).fetchall():
            keys["record"].add(record_key)
            if source in SOURCE_KINDS:
                keys.setdefault(SOURCE_KINDS[source], set()).add(source_id)
    if _relation_exists(con, "intermediate", "int_callcenter_requests_resolved"):
        # Not a request matched by the name alone: it may be a namesake's, whose opt-out the
        # purge would delete with it.
        rows = con.execute(
            "select distinct request_no from intermediate.int_callcenter_requests_resolved "
            "where person_id in (select unnest(?)) and matched_by <> 'name_only'",
            [person_ids],
        ).fetchall()
        keys.setdefault("callcenter_request", set()).update(r[0] for r in rows)
    clear = {kind: _normalised(kind, values) for kind, values in keys.items()}
    # Contact values held in the person's raw rows: tombstoned too, so the verification can look for them.
    for raw_name, rule in RULES.items():
        if not rule.personal or not _relation_exists(con, "raw", raw_name):
            continue
        columns = _columns(con, "raw", raw_name)
        links = [link for link in rule.links if link.column in columns and clear.get(link.kind)]
        if not links:
            continue
        where = " or ".join(f"{_normalised_sql(link.kind, _q(link.column))} in (select unnest(?))" for link in links)
        selects = [f"cast({expr} as varchar) as c{i}" for i, expr in enumerate(rule.personal)]
        found = con.sql(
            f"select {', '.join(selects)} from raw.{_q(raw_name)} where {where}",
            params=[clear[link.kind] for link in links],
        ).to_arrow_table()
        for i, kind in enumerate(rule.personal.values()):
            values = KINDS[kind](found[f"c{i}"]).drop_null().to_pylist()
            clear.setdefault(kind, [])
            clear[kind] = sorted(set(clear[kind]) | set(values))
    return {k: v for k, v in clear.items() if v}


def _normalised(kind: str, values: Iterable[str]) -> list[str]:
    arr = KINDS[kind](pa.array([str(v) for v in values if v is not None], type=pa.string()))
    return sorted(set(arr.drop_null().to_pylist()))


def _normalised_sql(kind: str, column: str) -> str:
    """SQL twin of the ID kinds' normalisation (trimmed text; OMS codes upper-cased), used only to
    find the rows of IDs already normalised in Python."""
    text = f"nullif(trim(cast({column} as varchar)), '')"
    return f"upper({text})" if kind == "oms_customer" else text


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    return dict(
        con.execute(
            "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    )


def tombstone_requests(con: duckdb.DuckDBPyConnection, secret: bytes) -> tuple[list[str], int]:
    """Tombstone every pending erasure request (one transaction); returns the request numbers
    and the number of new tombstones."""
    con.execute(TOMBSTONES_DDL)
    done: list[str] = []
    added = 0
    con.execute("begin")
    try:
        for request_no, requested_at, person_ids in pending_requests(con):
            keys = _keys_of(con, person_ids)
            before = con.execute("select count(*) from raw._erasure_tombstones").fetchone()[0]
            for kind, values in keys.items():
                hashes = erased_hash(pa.array(values, type=pa.string()), secret).to_pylist()
                con.execute(
                    "insert or ignore into raw._erasure_tombstones select unnest(?), ?, ?, now()",
                    [hashes, kind, request_no],
                )
            added += con.execute("select count(*) from raw._erasure_tombstones").fetchone()[0] - before
            con.execute(
                "insert into raw._erasures values (?, ?, ?, 'tombstoned', now(), null, ?)",
                [request_no, requested_at, sum(len(v) for v in keys.values()), json.dumps(sorted(keys))],
            )
            done.append(request_no)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return done, added


# ---- step 2: purge by tombstones ---------------------------------------------------------------


def _hit_values(con: duckdb.DuckDBPyConnection, relation: str, column: str, kind: str, stones: Tombstones) -> list:
    """Distinct values of `relation.column` tombstoned under `kind`, as stored (typed)."""
    values = con.sql(f"select distinct {_q(column)} from {relation} where {_q(column)} is not null").to_arrow_table()
    values = values.column(0)
    return pc.filter(values, stones.hits(values, kind)).to_pylist()


def _purge_raw(con: duckdb.DuckDBPyConnection, stones: Tombstones, report: PurgeReport) -> None:
    for raw_name, rule in RULES.items():
        if not _relation_exists(con, "raw", raw_name):
            continue
        relation = f"raw.{_q(raw_name)}"
        columns = _columns(con, "raw", raw_name)
        conditions, params = [], []
        for link in rule.links:
            if link.column not in columns:
                continue
            hit = _hit_values(con, relation, link.column, link.kind, stones)
            if hit:
                conditions.append(f"{_q(link.column)} in (select unnest(?))")
                params.append(hit)
        if not conditions:
            continue
        where = " or ".join(conditions)
        if rule.action == "delete":
            n = con.execute(f"delete from {relation} where {where}", params).fetchone()[0]
        else:
            sets = ", ".join(f"{_q(c)} = null" for c in rule.unlink if c in columns)
            n = con.execute(f"update {relation} set {sets} where {where}", params).fetchone()[0]
        if n:
            report.raw[raw_name] = n


def _id_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    """Columns of a derived table that can hold an erased person's ID (by name, see ID_COLUMN)."""
    return [
        c
        for c, t in _columns(con, schema, table).items()
        if ID_COLUMN.search(c) and (t == "VARCHAR" or t in INTEGER_TYPES)
    ]


def _purge_person_tables(
    con: duckdb.DuckDBPyConnection, stones: Tombstones, counts: dict[str, int], *, prefix: str = ""
) -> None:
    """Delete the erased people's rows from every base table outside `raw` (staging and
    intermediate tables, marts, incremental history, the dbt snapshot, the analysts' copy): every
    row holding an erased ID (person, source record, account, card, LINE user, request). These
    tables derive from raw, so the next build would drop the rows too; the incremental ones
    (history, merges, tombstones) would not. The orders (UNLINKED_TABLES) are unlinked instead."""
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema <> 'raw' and table_catalog = current_database() "
        "order by 1, 2"
    ).fetchall()
    for schema, table in tables:
        relation = f"{_q(schema)}.{_q(table)}"
        conditions, params = [], []
        for column in _id_columns(con, schema, table):
            hit: set = set()
            for kind in ID_KINDS & stones.kinds():
                hit.update(_hit_values(con, relation, column, kind, stones))
            if hit:
                conditions.append(f"{_q(column)} in (select unnest(?))")
                params.append(sorted(hit))
        if conditions:
            where = " or ".join(conditions)
            unlink = UNLINKED_TABLES.get(table, ())
            if unlink and set(unlink) <= set(_columns(con, schema, table)):
                sets = ", ".join(f"{_q(c)} = null" for c in unlink)
                n = con.execute(f"update {relation} set {sets} where {where}", params).fetchone()[0]
            else:
                n = con.execute(f"delete from {relation} where {where}", params).fetchone()[0]
            if n:
                counts[f"{prefix}{schema}.{table}"] = n


def purge_warehouse(wh: Warehouse, stones: Tombstones, report: PurgeReport) -> None:
    """Raw tables and every derived table of the warehouse, in one transaction."""
    con = wh.connect()
    try:
        con.execute("begin")
        try:
            _purge_raw(con, stones, report)
            _purge_person_tables(con, stones, report.warehouse)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.close()


def purge_databases(files: Iterable[Path], stones: Tombstones, report: PurgeReport) -> None:
    """The analysts' database and the role databases: copies of marts, person rows deleted."""
    for path in files:
        if not path.exists():
            continue
        con = duckdb.connect(str(path))
        try:
            con.execute("begin")
            _purge_person_tables(con, stones, report.databases, prefix=f"{path.name}:")
            con.execute("commit")
        finally:
            con.close()


def _lake_files(lake: Lake, raw_name: str) -> list[Path]:
    source, _, table = raw_name.partition("__")
    return sorted((lake.local_root / "raw" / source / table).glob("**/*.parquet"))


def purge_lake(lake: Lake, stones: Tombstones, report: PurgeReport) -> None:
    """Rewrite each Parquet file holding an erased person's rows without them (unlinked, for
    orders): written beside it under a temporary name, then renamed over it (atomic), then
    uploaded for an S3 lake."""
    for raw_name, rule in RULES.items():
        for path in _lake_files(lake, raw_name):
            schema = pq.read_schema(path)
            link_columns = [link.column for link in rule.links if link.column in schema.names]
            if not link_columns:
                continue
            if not pc.any(stones.matches(rule, pq.read_table(path, columns=link_columns))).as_py():
                continue
            table, n = stones.apply(rule, pq.read_table(path))
            temp = path.with_name(path.name + _TEMP_SUFFIX)
            pq.write_table(table, temp, compression="zstd")
            os.replace(temp, path)
            lake.publish(path)
            report.lake_files[str(path.relative_to(lake.local_root))] = n


def purge_drop_files(
    sftp: paramiko.SFTPClient, source: Source, stones: Tombstones, report: PurgeReport, *, wh: Warehouse | None = None
) -> None:
    """Rewrite the drop files kept on the server (``processed/``, ``quarantine/``) holding an erased
    person's rows (`yorisoi.sources.sftp_files.purge_kept_file`). The new content is recorded as
    loaded in ``raw._files``, so a rewritten file moved back to the inbox is not loaded again."""
    from ..sources.sftp_files import REASON_SUFFIX, _is_data_file, _listing, purge_kept_file

    folders = [str(source.options.get(k, k)).rstrip("/") for k in ("processed", "quarantine")]
    for table in source.tables.values():
        if table.raw_name not in RULES:
            continue
        feed, pattern = str(table.options["feed"]), str(table.options["pattern"])
        for folder in folders:
            remote_folder = posixpath.join(folder, feed)
            for name, attr in sorted(_listing(sftp, remote_folder).items()):
                if name.endswith(REASON_SUFFIX) or not _is_data_file(name, pattern, attr):
                    continue
                remote = posixpath.join(remote_folder, name)
                n, digest, kept = purge_kept_file(sftp, remote, table, stones)
                if n:
                    report.drop_files[remote] = n
                if digest and wh is not None:
                    wh.record_file(
                        sha256=digest,
                        source=source.name,
                        feed=feed,
                        file_name=name,
                        rows=kept,
                        status="loaded",
                        reason="rewritten by erasure",
                        batch_id="erasure",
                    )


def purge_activation_store(store_url: str | None, stones: Tombstones, report: PurgeReport) -> None:
    """Audience membership deleted; the record of provision kept with hashed keys and person IDs;
    destination snapshots left for the sync engine's removal (counted)."""
    import sqlalchemy as sa

    from ..activation.delivery.store import ActivationStore

    with ActivationStore(store_url) as store, store.engine.begin() as conn:
        people = [r[0] for r in conn.execute(sa.text("select distinct person_id from audience_members"))]
        for table in ("sync_changelog", "sync_rejects", "send_ledger", "send_history", "sync_snapshots"):
            people += [r[0] for r in conn.execute(sa.text(f"select distinct person_id from {table}"))]
        values = pa.array(sorted({p for p in people if p and not p.startswith(ERASED_PREFIX)}), type=pa.string())
        erased = pc.filter(values, stones.hits(values, "person")).to_pylist()
        if not erased:
            return
        hashed = dict(zip(erased, erased_hash(pa.array(erased), stones.secret).to_pylist(), strict=True))
        n = conn.execute(
            sa.text("delete from audience_members where person_id in :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": erased},
        ).rowcount
        if n:
            report.activation["audience_members"] = n
        for table, has_key in (
            ("sync_changelog", True),
            ("sync_rejects", True),
            ("send_ledger", True),
            ("send_history", False),
        ):
            rows = conn.execute(
                sa.text(
                    f"select distinct person_id{', key' if has_key else ''} from {table} where person_id in :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": erased},
            ).all()
            if not rows:
                continue
            if has_key:
                keys = pa.array([r[1] for r in rows], type=pa.string())
                key_hash = erased_hash(KINDS["record"](keys), stones.secret).to_pylist()
                reason = ", reason = null" if table != "send_ledger" else ""
                params = [
                    {"p": r[0], "k": r[1], "np": ERASED_PREFIX + hashed[r[0]], "nk": ERASED_PREFIX + h}
                    for r, h in zip(rows, key_hash, strict=True)
                ]
                sql = f"update {table} set person_id = :np, key = :nk{reason} where person_id = :p and key = :k"
            else:
                params = [{"p": r[0], "np": ERASED_PREFIX + hashed[r[0]]} for r in rows]
                sql = f"update {table} set person_id = :np where person_id = :p"
            conn.execute(sa.text(sql), params)
            report.activation[table] = len(params)
        report.awaiting_destinations = conn.execute(
            sa.text("select count(*) from sync_snapshots where person_id in :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": erased},
        ).scalar_one()


@dataclass
class Stores:
    """Where personal data lives: the warehouse (with its lake), the other DuckDB files, the
    SFTP drop server (a connected client and the registry source) and the activation store."""

    warehouse: Warehouse
    databases: list[Path] = field(default_factory=list)
    sftp: paramiko.SFTPClient | None = None
    sftp_source: Source | None = None
    activation_url: str | None = None
    use_activation_store: bool = True


def purge(stores: Stores, stones: Tombstones) -> PurgeReport:
    """Remove every row the tombstones mark, in every store."""
    report = PurgeReport()
    if not stones:
        return report
    purge_warehouse(stores.warehouse, stones, report)
    purge_databases(stores.databases, stones, report)
    purge_lake(stores.warehouse.lake, stones, report)
    if stores.sftp is not None and stores.sftp_source is not None:
        purge_drop_files(stores.sftp, stores.sftp_source, stones, report, wh=stores.warehouse)
    if stores.use_activation_store:
        purge_activation_store(stores.activation_url, stones, report)
    con = stores.warehouse.connect()
    try:
        con.execute(
            "update raw._erasures set status = case when ? > 0 then 'awaiting_destinations' else 'purged' end, "
            "purged_at = now() where status <> 'purged'",
            [report.awaiting_destinations],
        )
    finally:
        con.close()
    return report


def erase(stores: Stores, *, secret: bytes | None = None) -> ErasureResult:
    """Tombstone the pending erasure requests, purge every store, and write the operation log."""
    from ..audit import record

    secret = secret or resolve_secret()
    con = stores.warehouse.connect()
    try:
        requests, added = tombstone_requests(con, secret)
        stones = Tombstones.load(con, secret)
    finally:
        con.close()
    report = purge(stores, stones)
    result = ErasureResult(requests, added, report)
    record(
        "erase",
        "personal data (削除依頼)",
        rows=report.rows,
        details={
            "requests": requests,
            "tombstones_added": added,
            "at": datetime.now(UTC).isoformat(),
            **{k: v for k, v in report.to_dict().items() if k != "rows"},
        },
    )
    log.info("erasure: %s", json.dumps(result.to_dict(), ensure_ascii=False))
    return result
