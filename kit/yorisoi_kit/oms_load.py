"""Copy the OMS (通販基幹) SQLite database into PostgreSQL, MariaDB or SQLite (`yorisoi oms load`).

The synthetic brand keeps its back office in ``DIR/oms/oms.sqlite``; a real brand's OMS runs on a
server database. This module puts the same tables on such a server so that extraction is
exercised against the real thing: every table is dropped and recreated, with the primary key and
the secondary indexes of the SQLite schema (e.g. ``orders.updated_at``, which incremental
extraction filters on), and its rows are streamed in chunks by the fastest bulk path each
database offers.

Types (``PRAGMA table_info`` declared type → target):

============================  =====================  ==========================  ================
SQLite column                 PostgreSQL             MariaDB                     SQLite
============================  =====================  ==========================  ================
INTEGER                       BIGINT                 BIGINT                      BIGINT
REAL / FLOAT / DOUBLE         DOUBLE PRECISION       DOUBLE                      DOUBLE
NUMERIC / DECIMAL             NUMERIC                DECIMAL(38, 10)             NUMERIC
BOOLEAN                       BOOLEAN                BOOL (TINYINT(1))           BOOLEAN
TEXT (not a key)              TEXT                   TEXT                        TEXT
TEXT (primary-key column)     TEXT                   VARCHAR(n) (1)              TEXT
``*_at`` text, DATETIME,      TIMESTAMP (2)          DATETIME(6) (2)             TEXT (unchanged)
TIMESTAMP
DATE                          DATE                   DATE                        TEXT (unchanged)
BLOB                          BYTEA                  LONGBLOB                    BLOB
============================  =====================  ==========================  ================

(1) MariaDB cannot index TEXT: key columns become VARCHAR(n), n = the longest value in the
    source rounded up to a multiple of 32 (at least 32). MariaDB tables are InnoDB, utf8mb4 with
    the binary collation ``utf8mb4_bin``, so keys compare exactly as in SQLite (the server default
    ``utf8mb4_general_ci`` would treat "ｱ" and "ア", or "a" and "A", as duplicates).

(2) Timestamps: the OMS keeps them as ISO text (``YYYY-MM-DD HH:MM:SS``, JST wall-clock time).
    On the server databases they become real timestamp columns WITHOUT time zone, still holding
    JST wall-clock values (no conversion: the copy stays faithful to the back office; converting
    to UTC is the staging layer's job). The choice is to **parse in the database**: values are
    sent as text and the server parses them (PostgreSQL's COPY input, MariaDB's DATETIME input in
    strict mode), which is faster than parsing in Python and rejects invalid dates loudly.
    Before anything is dropped, every value of every timestamp column is checked in SQLite to
    look like ``YYYY-MM-DD[ HH:MM:SS[.ffffff]]`` (``T`` also accepted); an empty string counts as
    NULL. A column that fails the check stops the load with a :class:`ValueError` naming the
    table, column and an example value. A text column is a timestamp when its name ends in
    ``_at`` (``ordered_at``, ``updated_at``, ...) or its declared type says DATETIME/TIMESTAMP;
    ``birth_date`` is documented as free text and stays text.

Bulk paths: PostgreSQL (``postgresql+psycopg://``) uses ``COPY ... FROM STDIN`` through psycopg's
``cursor.copy`` and loads every table in one transaction (readers see the old tables until the
commit; a failure leaves them untouched). MariaDB (``mysql+pymysql://``, ``mariadb+pymysql://``)
uses pymysql's ``executemany``, which sends multi-row INSERTs of up to ~1 MB; DDL commits
implicitly there, so each table is committed after its rows and a failed run can leave a
partly loaded table (run again: the load is idempotent). Other databases (SQLite) use the
driver's ``executemany``. At most `chunk_rows` rows are held in memory at a time, and the row
count in the target is checked against the rows read before committing.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

OMS_TABLES = ("customers", "orders", "order_lines", "subscriptions", "items")
"""The documented OMS tables, loaded in this order (other tables found in the file follow)."""

_MARIADB_MAX_KEY_CHARS = 768  # InnoDB's 3,072-byte index limit at 4 bytes per utf8mb4 character
_TIMESTAMP_GLOBS = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]",
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9]",
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9]*",
)
_DATE_GLOBS = ("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",)


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # int | float | numeric | bool | text | timestamp | date | blob
    not_null: bool
    key_chars: int = 0  # longest value (characters), measured for text primary-key columns only


@dataclass(frozen=True)
class _Index:
    name: str
    columns: tuple[str, ...]
    unique: bool


@dataclass(frozen=True)
class _SourceTable:
    name: str
    columns: tuple[_Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[_Index, ...] = ()


# --------------------------------------------------------------------------------------------
# Reading the SQLite source
# --------------------------------------------------------------------------------------------


def _q(identifier: str) -> str:
    """Quote an SQLite identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _kind(name: str, declared: str) -> str:
    """The column's kind from its declared type, following SQLite's affinity rules."""
    t = declared.upper()
    if "INT" in t:
        return "int"
    if "DATETIME" in t or "TIMESTAMP" in t:
        return "timestamp"
    if "DATE" in t:
        return "date"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t or not t:
        return "timestamp" if name.lower().endswith("_at") else "text"
    if "BLOB" in t:
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "float"
    if "BOOL" in t:
        return "bool"
    return "numeric"


def _read_schema(source: sqlite3.Connection) -> list[_SourceTable]:
    names = [
        row[0]
        for row in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    ]
    order = {name: i for i, name in enumerate(OMS_TABLES)}
    names.sort(key=lambda name: (order.get(name, len(order)), name))
    tables = []
    for name in names:
        info = source.execute(f"PRAGMA table_info({_q(name)})").fetchall()
        pk = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        columns = [
            _Column(name=row[1], kind=_kind(row[1], row[2] or ""), not_null=bool(row[3]) or row[1] in pk)
            for row in info
        ]
        text_keys = [c for c in columns if c.name in pk and c.kind == "text"]
        if text_keys:
            measures = ", ".join(f"max(length({_q(c.name)}))" for c in text_keys)
            lengths = source.execute(f"SELECT {measures} FROM {_q(name)}").fetchone()  # noqa: S608 (quoted)
            measured = {c.name: int(n or 0) for c, n in zip(text_keys, lengths, strict=True)}
            columns = [
                _Column(c.name, c.kind, c.not_null, measured[c.name]) if c.name in measured else c for c in columns
            ]
        tables.append(
            _SourceTable(name=name, columns=tuple(columns), primary_key=pk, indexes=_read_indexes(source, name))
        )
    return tables


def _read_indexes(source: sqlite3.Connection, table: str) -> tuple[_Index, ...]:
    """Secondary indexes (CREATE INDEX, UNIQUE constraints) on plain columns; the primary key's
    own index is made by the target's PRIMARY KEY. Partial and expression indexes are skipped."""
    indexes = []
    for _, name, unique, origin, partial in source.execute(f"PRAGMA index_list({_q(table)})"):
        if origin == "pk":
            continue
        info = sorted(source.execute(f"PRAGMA index_info({_q(name)})").fetchall())
        columns = tuple(row[2] for row in info)
        if partial or any(column is None for column in columns):
            log.warning("OMS %s: index %s is partial or on an expression; not copied", table, name)
            continue
        indexes.append(_Index(name=name, columns=columns, unique=bool(unique)))
    return tuple(sorted(indexes, key=lambda index: index.name))


def _check_temporal_values(source: sqlite3.Connection, table: _SourceTable) -> None:
    """Raise ValueError if a timestamp/date column holds a value the target could not parse."""
    for column in table.columns:
        if column.kind not in ("timestamp", "date"):
            continue
        globs = _TIMESTAMP_GLOBS if column.kind == "timestamp" else _DATE_GLOBS
        col = _q(column.name)
        condition = " AND ".join(f"NOT ({col} GLOB ?)" for _ in globs)
        bad = source.execute(
            f"SELECT count(*), min({col}) FROM {_q(table.name)} "  # noqa: S608 (identifiers quoted)
            f"WHERE {col} IS NOT NULL AND {col} <> '' AND ({condition})",
            globs,
        ).fetchone()
        if bad[0]:
            raise ValueError(
                f"{table.name}.{column.name}: {bad[0]} value(s) are not ISO "
                f"{'timestamps' if column.kind == 'timestamp' else 'dates'}, e.g. {bad[1]!r}"
            )


def _rows(source: sqlite3.Connection, table: _SourceTable, chunk_rows: int) -> Iterator[list[tuple]]:
    """Yield the table's rows in chunks of at most `chunk_rows` (empty timestamps as NULL)."""
    select = ", ".join(
        f"NULLIF({_q(c.name)}, '')" if c.kind in ("timestamp", "date") else _q(c.name) for c in table.columns
    )
    cursor = source.execute(f"SELECT {select} FROM {_q(table.name)}")  # noqa: S608 (identifiers quoted)
    try:
        while chunk := cursor.fetchmany(chunk_rows):
            yield chunk
    finally:
        cursor.close()


# --------------------------------------------------------------------------------------------
# Target tables
# --------------------------------------------------------------------------------------------


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _target_type(column: _Column, table: _SourceTable, engine: Engine) -> sa.types.TypeEngine:
    dialect = engine.dialect.name
    if column.kind == "int":
        return sa.BigInteger()
    if column.kind == "float":
        return sa.Double()
    if column.kind == "numeric":
        return sa.Numeric(38, 10) if _is_mysql(engine) else sa.Numeric()
    if column.kind == "bool":
        return sa.Boolean()
    if column.kind == "blob":
        return mysql.LONGBLOB() if _is_mysql(engine) else sa.LargeBinary()
    if column.kind in ("timestamp", "date") and dialect == "sqlite":
        return sa.Text()  # SQLite has no such types: keep the ISO text of the source
    if column.kind == "timestamp":
        return mysql.DATETIME(fsp=6) if _is_mysql(engine) else sa.DateTime(timezone=False)
    if column.kind == "date":
        return sa.Date()
    if _is_mysql(engine) and column.name in table.primary_key:
        return sa.String(max(32, math.ceil(column.key_chars / 32) * 32))
    return sa.Text()


def _target_table(table: _SourceTable, metadata: sa.MetaData, engine: Engine, schema: str | None) -> sa.Table:
    columns = [
        sa.Column(
            c.name,
            _target_type(c, table, engine),
            primary_key=c.name in table.primary_key,
            nullable=not c.not_null,
            autoincrement=False,
        )
        for c in table.columns
    ]
    options: dict[str, Any] = {}
    if _is_mysql(engine):
        prefix = engine.dialect.name
        options = {
            f"{prefix}_engine": "InnoDB",
            f"{prefix}_charset": "utf8mb4",
            f"{prefix}_collate": "utf8mb4_bin",
        }
        key_chars = sum(c.type.length or 0 for c in columns if c.primary_key and isinstance(c.type, sa.String))
        if key_chars > _MARIADB_MAX_KEY_CHARS:
            raise ValueError(f"{table.name}: primary key too long for a MariaDB index ({key_chars} characters)")
    return sa.Table(table.name, metadata, *columns, schema=schema, **options)


def _target_indexes(table: _SourceTable, target: sa.Table, engine: Engine) -> list[sa.Index]:
    """The source's secondary indexes on `target` (created after the rows are in: faster)."""
    indexes = []
    for index in table.indexes:
        options: dict[str, Any] = {}
        if _is_mysql(engine):
            # MariaDB indexes TEXT only by a prefix: 255 characters (1,020 bytes) is plenty here.
            prefix = {c: 255 for c in index.columns if isinstance(target.c[c].type, sa.Text)}
            if prefix:
                options[f"{engine.dialect.name}_length"] = prefix
        # Index names are per schema on PostgreSQL: SQLite's autoindex names are made unique.
        name = index.name if not index.name.startswith("sqlite_") else f"ux_{table.name}_{'_'.join(index.columns)}"
        indexes.append(sa.Index(name, *(target.c[c] for c in index.columns), unique=index.unique, **options))
    return indexes


# --------------------------------------------------------------------------------------------
# Bulk writers
# --------------------------------------------------------------------------------------------


def _copy_postgres(conn: Connection, target: sa.Table, chunks: Iterator[list[tuple]]) -> int:
    """COPY the chunks into `target` with psycopg 3's ``cursor.copy`` (text format)."""
    from psycopg import sql

    dbapi = conn.connection.dbapi_connection
    name = sql.Identifier(target.schema, target.name) if target.schema else sql.Identifier(target.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        name, sql.SQL(", ").join(sql.Identifier(c.name) for c in target.columns)
    )
    rows = 0
    with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in chunks:
            for row in chunk:
                copy.write_row(row)
            rows += len(chunk)
    return rows


def _insert_many(conn: Connection, target: sa.Table, chunks: Iterator[list[tuple]]) -> int:
    """Insert the chunks with the driver's executemany (pymysql turns it into multi-row INSERTs)."""
    preparer = conn.dialect.identifier_preparer
    placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    rows = 0
    if placeholder is None:  # a driver with named parameters: let SQLAlchemy bind them
        for chunk in chunks:
            keys = [c.key for c in target.columns]
            conn.execute(target.insert(), [dict(zip(keys, row, strict=True)) for row in chunk])
            rows += len(chunk)
        return rows
    statement = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 (identifiers quoted)
        preparer.format_table(target),
        ", ".join(preparer.quote(c.name) for c in target.columns),
        ", ".join([placeholder] * len(target.columns)),
    )
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for chunk in chunks:
            cursor.executemany(statement, chunk)
            rows += len(chunk)
    finally:
        cursor.close()
    return rows


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def _engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return sa.create_engine(parsed)


def _ensure_schema(conn: Connection, schema: str) -> None:
    if conn.dialect.name == "sqlite":
        raise ValueError("schema is not supported for a SQLite target: put the path in the URL")
    if not sa.inspect(conn).has_schema(schema):
        conn.execute(sa.schema.CreateSchema(schema))


def load_oms(
    sqlite_path: Path,
    url: str,
    *,
    schema: str | None = None,
    chunk_rows: int = 50_000,
) -> dict[str, int]:
    """Copy every table of the OMS SQLite file into the database at `url`, replacing old copies.

    :param sqlite_path: the OMS database (``DIR/oms/oms.sqlite``); opened read-only.
    :param url: SQLAlchemy URL of the target: ``postgresql+psycopg://user@host:5432/db``,
        ``mysql+pymysql://user:password@host:3306/db`` (MariaDB) or ``sqlite:///path.sqlite``.
        Credentials in it are never logged.
    :param schema: PostgreSQL schema or MariaDB database to hold the tables (created if missing);
        None means the URL's default (``public`` / the URL's database). Not for SQLite targets.
    :param chunk_rows: rows read from SQLite and sent per batch; bounds memory use.
    :returns: rows loaded per table, e.g. ``{"customers": 1000, "orders": 9012, ...}``, in load
        order (the documented OMS tables first).
    :raises FileNotFoundError: `sqlite_path` does not exist.
    :raises ValueError: a timestamp column holds text that is not an ISO timestamp, a key is too
        long for MariaDB, `schema` was given for a SQLite target, or `chunk_rows` < 1.
    :raises RuntimeError: the target's row count differs from the rows read (nothing committed on
        PostgreSQL).

    Running it twice gives the same tables: each one is dropped (``DROP TABLE IF EXISTS``, no
    CASCADE: a view built on it makes the load fail rather than silently disappear) and created
    again. See the module docstring for types, timestamps and transactions.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    sqlite_path = Path(sqlite_path)
    if not sqlite_path.is_file():
        raise FileNotFoundError(sqlite_path)

    engine = _engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    loaded: dict[str, int] = {}
    source_uri = sqlite_path.resolve().as_uri() + "?mode=ro"
    try:
        with closing(sqlite3.connect(source_uri, uri=True)) as source, engine.connect() as conn:
            tables = _read_schema(source)
            if not tables:
                raise ValueError(f"{sqlite_path} holds no tables")
            for table in tables:
                _check_temporal_values(source, table)
            # Build every target definition first: a key too long for MariaDB fails before any DDL.
            metadata = sa.MetaData()
            targets = [_target_table(table, metadata, engine, schema) for table in tables]

            single_transaction = engine.dialect.name == "postgresql"
            use_copy = single_transaction and engine.dialect.driver == "psycopg"
            if _is_mysql(engine):
                # Invalid dates must fail, never become 0000-00-00 (non-strict modes do that).
                conn.exec_driver_sql(
                    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
                    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
                )
            if schema is not None:
                _ensure_schema(conn, schema)
                if not single_transaction:
                    conn.commit()

            for table, target in zip(tables, targets, strict=True):
                started = time.monotonic()
                conn.execute(sa.schema.DropTable(target, if_exists=True))
                conn.execute(sa.schema.CreateTable(target))
                chunks = _rows(source, table, chunk_rows)
                written = (_copy_postgres if use_copy else _insert_many)(conn, target, chunks)
                for index in _target_indexes(table, target, engine):
                    index.create(conn)
                counted = conn.execute(sa.select(sa.func.count()).select_from(target)).scalar_one()
                if counted != written:
                    raise RuntimeError(f"{table.name}: read {written} rows, target holds {counted}")
                if not single_transaction:
                    conn.commit()
                loaded[table.name] = written
                log.info("OMS %s: %d rows to %s in %.1f s", table.name, written, shown, time.monotonic() - started)
            conn.commit()
    finally:
        engine.dispose()
    return loaded
