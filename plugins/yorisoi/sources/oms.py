"""Extract any OMS (通販基幹) through a mapping file, incrementally (`docs/oms-mapping.md`).

A brand's back office keeps its own table and column names. The mapping file (the `oms` source's
``mapping`` in ``include/sources/registry.yml``) says which source table and column hold each
column of Yorisoi's canonical entities, plus optional code tables (``values``) that turn the
brand's codes into canonical values. :func:`load_mapping` checks the file, :func:`extract` reads
one entity as Arrow tables, chunk by chunk, through a server-side cursor, and :func:`ingest_oms`
lands every table of the source in the warehouse, re-reading ``overlap`` behind the watermark.

Canonical types: ``*_at`` columns are ``timestamp[us]`` without zone (Japan wall-clock time, as
the back office keeps it; a zone-aware source column is converted to Asia/Tokyo), ``birth_date``
is ``date32`` (null when empty or not a date), counts are ``int64``, money is ``int64`` whole
units, or ``decimal(18, minor_unit)`` when the registry source's ``money`` has a minor unit, the flags
``*_permission`` and ``blacklisted`` are ``bool``, everything else is ``string``. Every
canonical column of the entity is always present, in the documented order: a column the mapping
does not name comes out as nulls.

The SQL is built with SQLAlchemy Core from the mapping: source names are identifiers, quoted by
the database's dialect, never pasted into SQL text.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from ..runbook import next_step
from .registry import RegistryError, Source, Table, read_yaml
from .screening import Findings, screen

if TYPE_CHECKING:
    from .landing import LandResult, Warehouse

log = logging.getLogger(__name__)

JST = ZoneInfo("Asia/Tokyo")

ENTITIES: dict[str, tuple[str, ...]] = {
    "customers": (
        "customer_id",
        "name",
        "name_kana",
        "phone",
        "email",
        "postal_code",
        "prefecture",
        "address",
        "birth_date",
        "gender",
        "email_permission",
        "dm_permission",
        "call_permission",
        "blacklisted",
        "blacklist_reason",
        "registered_at",
        "updated_at",
    ),
    "orders": (
        "order_id",
        "customer_id",
        "channel",
        "subscription_id",
        "ordered_at",
        "shipped_at",
        "status",
        "subtotal",
        "discount",
        "shipping_fee",
        "points_used",
        "points_earned",
        "total",
        "updated_at",
        "coupon_code",
    ),
    "order_lines": (
        "order_id",
        "line_no",
        "item_code",
        "quantity",
        "unit_price",
        "list_price",
        "amount",
        "order_updated_at",
    ),
    "subscriptions": (
        "subscription_id",
        "customer_id",
        "item_code",
        "cycle_days",
        "started_at",
        "cancelled_at",
        "status",
        "updated_at",
    ),
    "items": ("item_code", "item_name", "category", "brand", "taste", "list_price"),
}
"""Canonical entities and their columns, in output order."""

KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "orders": ("order_id",),
    "order_lines": ("order_id", "line_no"),
    "subscriptions": ("subscription_id",),
    "items": ("item_code",),
}
"""Canonical key of each entity: a mapping must name these columns."""

PARENTS: dict[str, tuple[str, str, str]] = {"order_lines": ("orders", "order_id", "order_updated_at")}
"""Entities without a change timestamp of their own, read through their parent's: (parent
entity, join key, derived column carrying the parent's `updated_at`). Order lines change with
their order, so reading the lines of orders updated since the watermark keeps re-ingestion to
what changed instead of re-reading every line."""

CANONICAL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("orders", "status"): frozenset({"pending", "shipped", "cancelled", "returned"}),
    ("orders", "channel"): frozenset({"phone", "catalogue", "fax", "subscription", "web", "store"}),
}
"""Closed value sets: a code table for these columns may only produce these values."""

_INT_COLUMNS = frozenset(
    {
        "subtotal",
        "discount",
        "shipping_fee",
        "points_used",
        "points_earned",
        "total",
        "line_no",
        "quantity",
        "unit_price",
        "list_price",
        "amount",
        "cycle_days",
    }
)
MONEY_COLUMNS = frozenset({"subtotal", "discount", "shipping_fee", "total", "unit_price", "list_price", "amount"})
"""Amounts: whole units (int64) for a currency without a minor unit (JPY), else
DECIMAL(18, minor_unit) (the registry source's `money`)."""
_FLAG_COLUMNS = frozenset({"email_permission", "dm_permission", "call_permission", "blacklisted"})
_ARROW_TYPES = {
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
_MAPPING_KEYS = {"version", "description", "entities"}
_ENTITY_KEYS = {"table", "columns", "values", "description"}


def column_kind(column: str) -> str:
    """The canonical type of a column: timestamp, date, int, bool or string."""
    if column.endswith("_at"):
        return "timestamp"
    if column == "birth_date":
        return "date"
    if column in _INT_COLUMNS:
        return "int"
    if column in _FLAG_COLUMNS:
        return "bool"
    return "string"


def column_type(column: str, money_scale: int = 0) -> pa.DataType:
    """The Arrow type of a canonical column; amounts in the source's minor unit."""
    if money_scale and column in MONEY_COLUMNS:
        return pa.decimal128(18, money_scale)
    return _ARROW_TYPES[column_kind(column)]


def entity_schema(entity: str, money_scale: int = 0) -> pa.Schema:
    """The Arrow schema :func:`extract` yields for a canonical entity (`money_scale`: decimal
    places of the amounts, 0 for whole units)."""
    return pa.schema([pa.field(c, column_type(c, money_scale)) for c in ENTITIES[entity]])


# --------------------------------------------------------------------------------------------
# The mapping file
# --------------------------------------------------------------------------------------------


def _code(value: object) -> str:
    """A code as text, so that 1, "1", "1 " (CHAR padding), 1.0 and Decimal("1") are one code."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value()
    ):
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class EntityMapping:
    """Where one canonical entity lives in the source database."""

    entity: str
    table: str
    """The table as written in the mapping (``name`` or ``schema.name``)."""
    schema: str | None
    name: str
    columns: dict[str, str]
    """Canonical column → source column, for the columns the source has."""
    values: dict[str, dict[str, object]] = field(default_factory=dict)
    """Canonical column → {source code (as text, trimmed) → canonical value}."""


@dataclass(frozen=True)
class OmsMapping:
    path: Path
    entities: dict[str, EntityMapping]

    def entity(self, name: str) -> EntityMapping:
        try:
            return self.entities[name]
        except KeyError:
            raise RegistryError(f"{self.path}: entities.{name} is not in the mapping") from None


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float)


def _entity(path: Path, entity: str, entry: object, required: Iterable[str]) -> EntityMapping:
    where = f"{path}: entities.{entity}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping with 'table' and 'columns'")
    unknown = sorted(set(entry) - _ENTITY_KEYS)
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {unknown}; expected {sorted(_ENTITY_KEYS)}")
    table = entry.get("table")
    if not isinstance(table, str) or not table.strip():
        raise RegistryError(f"{where}.table: the source table is required (a name, or schema.name)")
    schema, _, name = table.strip().rpartition(".")
    if not name:
        raise RegistryError(f"{where}.table: {table!r} names no table")
    columns = entry.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise RegistryError(f"{where}.columns: expected {{<canonical column>: <source column>}}")
    known = ENTITIES[entity]
    for canonical, source_column in columns.items():
        if canonical not in known:
            raise RegistryError(
                f"{where}.columns.{canonical}: not a canonical column of {entity}; known: {', '.join(known)}"
            )
        if not isinstance(source_column, str) or not source_column.strip():
            raise RegistryError(f"{where}.columns.{canonical}: expected a source column name, got {source_column!r}")
    missing = [c for c in dict.fromkeys(required) if c not in columns]
    if missing:
        raise RegistryError(f"{where}.columns: {', '.join(missing)} must be mapped (key or watermark)")

    values: dict[str, dict[str, object]] = {}
    raw_values = entry.get("values") or {}
    if not isinstance(raw_values, dict):
        raise RegistryError(f"{where}.values: expected {{<canonical column>: {{<source value>: <canonical value>}}}}")
    for canonical, table_ in raw_values.items():
        at = f"{where}.values.{canonical}"
        if canonical not in columns:
            raise RegistryError(f"{at}: not a mapped column of {entity} (map it under 'columns' first)")
        if not isinstance(table_, dict) or not table_:
            raise RegistryError(f"{at}: expected a non-empty {{<source value>: <canonical value>}} table")
        kind = column_kind(canonical)
        allowed = CANONICAL_VALUES.get((entity, canonical))
        codes: dict[str, object] = {}
        for code, value in table_.items():
            if not _scalar(code):
                raise RegistryError(f"{at}: source value {code!r} must be text or a number")
            ok = {
                "string": isinstance(value, str),
                "bool": isinstance(value, bool) or value in (0, 1),
                "int": isinstance(value, int) and not isinstance(value, bool),
            }.get(kind, isinstance(value, str))
            if not ok or value is None:
                raise RegistryError(f"{at}.{code}: {value!r} is not a {kind} value")
            if allowed is not None and value not in allowed:
                raise RegistryError(
                    f"{at}.{code}: {value!r} is not a canonical value; expected one of {sorted(allowed)}"
                )
            if _code(code) in codes:
                raise RegistryError(f"{at}: source value {code!r} is listed twice")
            codes[_code(code)] = value
        values[canonical] = codes
    return EntityMapping(
        entity=entity,
        table=table.strip(),
        schema=schema or None,
        name=name,
        columns={str(k): v.strip() for k, v in columns.items()},
        values=values,
    )


def load_mapping(path: Path | str, tables: Mapping[str, Table] | None = None) -> OmsMapping:
    """Read and check an OMS mapping file; raise :class:`RegistryError` naming the bad entry.

    :param tables: the registry's tables of the ``oms`` source (``source.tables``): each must be
        a canonical entity mapped in the file, with its primary key and watermark columns.
        Without it, every canonical entity is required, with its canonical key.
    """
    path = Path(path)
    doc = read_yaml(path, "OMS mapping", "entities")
    unknown = sorted(set(doc) - _MAPPING_KEYS)
    if unknown:
        raise RegistryError(f"{path}: unknown top-level key(s) {unknown}; expected {sorted(_MAPPING_KEYS)}")
    if doc.get("version", 1) != 1:
        raise RegistryError(f"{path}: version {doc['version']!r} is not supported (expected 1)")

    if tables is None:
        required = {entity: KEYS[entity] for entity in ENTITIES}
    else:
        required = {}
        for name, table in tables.items():
            if name not in ENTITIES:
                raise RegistryError(
                    f"sources.{table.source}.tables.{name}: not a canonical OMS entity; known: {', '.join(ENTITIES)}"
                )
            derived = PARENTS.get(name, (None, None, None))[2]
            mark = [table.watermark] if table.watermark and table.watermark != derived else []
            required[name] = (*table.primary_key, *mark)
    entities = doc["entities"]
    for entity in entities:
        if entity not in ENTITIES:
            raise RegistryError(f"{path}: entities.{entity}: not a canonical entity; known: {', '.join(ENTITIES)}")
    for entity in required:
        if entity not in entities:
            raise RegistryError(f"{path}: entities.{entity}: missing (the oms source reads this entity)")
    return OmsMapping(
        path=path,
        entities={
            entity: _entity(path, entity, entry, required.get(entity, KEYS[entity]))
            for entity, entry in entities.items()
        },
    )


# --------------------------------------------------------------------------------------------
# The query
# --------------------------------------------------------------------------------------------


def select_statement(
    mapping: OmsMapping,
    entity: str,
    *,
    watermark_column: str | None = None,
    since: datetime | str | None = None,
) -> sa.Select:
    """``SELECT <source column> AS <canonical>, ... FROM <table> [WHERE <watermark> >= :since]
    ORDER BY <watermark>``, built with SQLAlchemy Core (identifiers quoted by the dialect).
    `since` is bound as a timestamp, or as text when given as text (SQLite keeps ISO text)."""
    em = mapping.entity(entity)
    source_columns = list(dict.fromkeys(em.columns.values()))
    table = sa.table(em.name, *(sa.column(c) for c in source_columns), schema=em.schema)
    stmt = sa.select(*(table.c[source].label(canonical) for canonical, source in em.columns.items()))
    parent = PARENTS.get(entity)
    if parent is not None and watermark_column == parent[2]:
        pm = mapping.entity(parent[0])
        key, updated = pm.columns[parent[1]], pm.columns["updated_at"]
        ptable = sa.table(pm.name, sa.column(key), sa.column(updated), schema=pm.schema)
        mark = ptable.c[updated]
        stmt = stmt.add_columns(mark.label(parent[2])).select_from(
            table.join(ptable, table.c[em.columns[parent[1]]] == ptable.c[key])
        )
        if since is not None:
            bind_type = sa.String() if isinstance(since, str) else sa.DateTime()
            stmt = stmt.where(mark >= sa.bindparam("since", since, type_=bind_type))
        return stmt.order_by(mark)
    if watermark_column is not None:
        if watermark_column not in em.columns:
            raise RegistryError(
                f"{mapping.path}: entities.{entity}.columns.{watermark_column}: the watermark is not mapped"
            )
        mark = table.c[em.columns[watermark_column]]
        if since is not None:
            bind_type = sa.String() if isinstance(since, str) else sa.DateTime()
            stmt = stmt.where(mark >= sa.bindparam("since", since, type_=bind_type))
        stmt = stmt.order_by(mark)
    elif since is not None:
        raise ValueError("since needs a watermark_column")
    return stmt


# --------------------------------------------------------------------------------------------
# Values → Arrow
# --------------------------------------------------------------------------------------------


class ExtractError(RuntimeError):
    """Extraction failed (database gone, table missing, a value that is not of its type).
    `rows_read`: rows read from the database before the failure."""

    def __init__(self, message: str, *, entity: str, rows_read: int, reason: str):
        super().__init__(message)
        self.entity = entity
        self.rows_read = rows_read
        self.reason = reason


class _BadValue(ValueError):
    def __init__(self, column: str, kind: str, sample: object):
        super().__init__(f"column {column}: {sample!r} is not a {kind}")


_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T].*)?|(\d{4})(\d{2})(\d{2})")


@lru_cache(maxsize=65_536)
def _parse_date(text: str) -> date | None:
    m = _DATE.fullmatch(unicodedata.normalize("NFKC", text).strip())
    if not m:
        return None
    y, mo, d = (int(g) for g in (m.group(1, 2, 3) if m.group(1) else m.group(4, 5, 6)))
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def _as_date(value: object) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value  # type: ignore[return-value]
    if isinstance(value, datetime):
        return value.date()
    return _parse_date(str(value))


def _infer(values: Sequence[object]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types (SQLite is dynamic)
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _blank_to_null(arr: pa.Array, *, zero_dates: bool = False) -> pa.Array:
    arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    blank = pc.equal(arr, "")
    if zero_dates:  # MySQL-style "0000-00-00 00:00:00" means no date
        blank = pc.or_(blank, pc.starts_with(arr, "0000-00-00"))
    return pc.if_else(blank, pa.scalar(None, pa.string()), arr)


def _cast(arr: pa.Array, to: pa.DataType, column: str, kind: str) -> pa.Array:
    try:
        return arr.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        for value in arr:  # the error path only: find an example to show
            if value.is_valid:
                try:
                    pa.array([value.as_py()], arr.type).cast(to)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    raise _BadValue(column, kind, value.as_py()) from exc
        raise _BadValue(column, kind, "?") from exc


def _to_arrow(values: Sequence[object], column: str, money_scale: int = 0) -> pa.Array:
    kind = column_kind(column)
    target = _ARROW_TYPES[kind]
    if money_scale and column in MONEY_COLUMNS:
        arr = _infer(values)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            arr = _blank_to_null(arr)
        # text and DECIMAL columns must fit exactly (a lost digit is refused, by name); a FLOAT
        # column holds binary approximations and is rounded to the minor unit
        return _cast(arr, pa.decimal128(18, money_scale), column, f"amount with at most {money_scale} decimals")
    if kind == "date":
        return pa.array([_as_date(v) for v in values], pa.date32())
    arr = _infer(values)
    t = arr.type
    if pa.types.is_null(t) or t == target:
        return arr.cast(target)
    if kind == "timestamp":
        if pa.types.is_timestamp(t) and t.tz is not None:
            arr = pc.local_timestamp(arr.cast(pa.timestamp(t.unit, "Asia/Tokyo")))
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = _blank_to_null(arr, zero_dates=True)
        elif not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            raise _BadValue(column, "timestamp", arr[0].as_py())
        return _cast(arr, target, column, "timestamp")
    if kind == "int":
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = _blank_to_null(arr)
        return _cast(arr, target, column, "whole number")
    if kind == "bool":
        if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t):
            return pc.not_equal(_cast(arr, pa.int64(), column, "flag (1/0)"), 0)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = pc.utf8_lower(_blank_to_null(arr))
        return _cast(arr, target, column, "flag (1/0, true/false)")
    # string
    if pa.types.is_decimal(t) or pa.types.is_floating(t):
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):  # numeric codes: 1.0 → "1"
            arr = arr.cast(pa.int64())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _cast(arr, target, column, "UTF-8 text")
    return arr.cast(target)


class _CodeTable:
    """A `values` code table applied to a column, remembering codes it did not know."""

    def __init__(self, codes: dict[str, object]):
        self.codes = codes
        self.memo: dict[object, object] = {}
        self.unknown: Counter[str] = Counter()

    def apply(self, values: Sequence[object]) -> list[object]:
        memo, out = self.memo, []
        for v in values:  # database values are scalars, hence hashable
            if v is None:
                out.append(None)
            elif v in memo:
                out.append(memo[v])
            else:
                code = _code(v)
                if code in self.codes:
                    memo[v] = self.codes[code]
                    out.append(memo[v])
                else:
                    self.unknown[code] += 1
                    out.append(v)
        return out


def _chunk_table(
    rows: Sequence[Sequence[object]],
    names: Sequence[str],
    entity: str,
    codes: dict[str, _CodeTable],
    money_scale: int = 0,
) -> pa.Table:
    schema = entity_schema(entity, money_scale)
    by_name = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    arrays = []
    for f in schema:
        if f.name in by_name:
            values = by_name[f.name]
            if f.name in codes:
                values = codes[f.name].apply(values)
            arrays.append(_to_arrow(values, f.name, money_scale))
        else:
            arrays.append(pa.nulls(len(rows), f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _chunk_without_bad_rows(
    rows: Sequence[Sequence[object]],
    names: Sequence[str],
    entity: str,
    codes: dict[str, _CodeTable],
    rows_before: int,
    on_bad_row: Callable[[int, str, dict], None],
    money_scale: int = 0,
) -> pa.Table:
    """The error path of a chunk holding a bad value: type each row alone to find the bad ones,
    hand each to `on_bad_row` (position in the read, reason naming the column), keep the rest."""
    probe = {column: _CodeTable(table.codes) for column, table in codes.items()}
    kept = []
    for i, row in enumerate(rows):
        try:
            _chunk_table([row], names, entity, probe, money_scale)
        except _BadValue as exc:
            record = dict(zip(names, row, strict=True))
            key = ", ".join(f"{c}={record.get(c)!r}" for c in KEYS[entity] if c in record)
            on_bad_row(rows_before + i + 1, f"record {key}: bad value in {exc}", record)
        else:
            kept.append(row)
    return _chunk_table(kept, names, entity, codes, money_scale)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".strip()


def _reflect(conn: sa.Connection, mapping: OmsMapping, em: EntityMapping, watermark_column: str | None) -> bool:
    """Check that the mapped columns exist; return True if the watermark column holds text."""
    try:
        reflected = sa.inspect(conn).get_columns(em.name, schema=em.schema)
    except sa.exc.NoSuchTableError:
        raise RegistryError(
            f"{mapping.path}: entities.{em.entity}.table: {em.table!r} not found in the database"
        ) from None
    exact = {c["name"]: c for c in reflected}
    folded = {c["name"].lower(): c for c in reflected}
    case_sensitive = conn.dialect.name == "postgresql"
    found = {}
    for canonical, source in em.columns.items():
        col = exact.get(source) or (None if case_sensitive else folded.get(source.lower()))
        if col is None:
            raise RegistryError(
                f"{mapping.path}: entities.{em.entity}.columns.{canonical}: column {source!r} not in table "
                f"{em.table!r} (it has: {', '.join(exact)})"
            )
        found[canonical] = col
    if watermark_column is None:
        return False
    if conn.dialect.name == "sqlite":
        return True  # SQLite has no timestamp storage: the OMS keeps ISO text
    return isinstance(found[watermark_column]["type"], sa.String)


def extract(
    engine: sa.Engine,
    mapping: OmsMapping,
    entity: str,
    *,
    since: datetime | None,
    watermark_column: str | None,
    chunk_rows: int = 50_000,
    on_bad_row: Callable[[int, str, dict], None] | None = None,
    money_scale: int = 0,
) -> Iterator[pa.Table]:
    """Read one canonical entity from the OMS, yielding Arrow tables of at most `chunk_rows` rows
    (schema :func:`entity_schema`), through a server-side cursor so memory stays flat.

    :param since: read only rows whose `watermark_column` is at or after it (Japan wall-clock
        time; an aware datetime is converted); None reads the whole table.
    :param watermark_column: the canonical watermark column (e.g. ``updated_at``); rows come
        ordered by it. None: no filter, no order.
    :param on_bad_row: called as ``on_bad_row(position, reason, row)`` for a row holding a value
        that is not of its canonical type (a price of ``"abc"``), which is then left out; the rest
        of the chunk is kept. None: such a value fails the extraction.
    :param money_scale: decimal places of the amounts (the registry source's ``money.minor_unit``):
        0 lands them as whole units (int64), more as DECIMAL(18, money_scale).
    :raises RegistryError: the table or a mapped column is not in the database.
    :raises ExtractError: the database failed during the read (the message names the entity and
        the rows read so far), or a value is not of its canonical type.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    em = mapping.entity(entity)
    via_parent = entity in PARENTS and watermark_column == PARENTS[entity][2]
    if watermark_column is not None and watermark_column not in em.columns and not via_parent:
        raise RegistryError(
            f"{mapping.path}: entities.{entity}.columns.{watermark_column}: the watermark is not mapped"
        )
    if since is not None and watermark_column is None:
        raise ValueError("since needs a watermark_column")
    if since is not None and since.tzinfo is not None:
        since = since.astimezone(JST).replace(tzinfo=None)
    codes = {column: _CodeTable(table) for column, table in em.values.items()}
    rows_read = 0
    started = time.monotonic()
    stage = "could not connect"

    def fail(exc: BaseException, reason: str) -> ExtractError:
        return ExtractError(
            f"OMS entity {entity!r} (table {em.table!r}): {reason} after {rows_read} rows read",
            entity=entity,
            rows_read=rows_read,
            reason=reason,
        )

    try:
        with engine.connect() as conn:
            stage = "could not read the table definition"
            if via_parent:
                pm = mapping.entity(PARENTS[entity][0])
                _reflect(conn, mapping, em, None)
                text_mark = _reflect(conn, mapping, pm, "updated_at")
            else:
                text_mark = _reflect(conn, mapping, em, watermark_column)
            bound: datetime | str | None = since
            if since is not None and text_mark:
                bound = since.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
            stmt = select_statement(mapping, entity, watermark_column=watermark_column, since=bound)
            if conn.dialect.name in ("mysql", "mariadb"):
                # A streamed result waits on us between chunks: do not let the server give up.
                conn.exec_driver_sql("SET SESSION net_write_timeout = 3600")
            stage = "the query failed"
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
            names = list(result.keys())
            stage = "the read failed"
            for rows in result.partitions():
                try:
                    part = _chunk_table(rows, names, entity, codes, money_scale)
                except _BadValue as exc:
                    if on_bad_row is None:
                        raise fail(exc, f"bad value in {exc}") from exc
                    part = _chunk_without_bad_rows(rows, names, entity, codes, rows_read, on_bad_row, money_scale)
                rows_read += len(rows)
                yield part
    except sa.exc.DBAPIError as exc:
        raise fail(exc, f"{stage} ({_short(exc)})") from exc
    for column, table in codes.items():
        if table.unknown:
            shown = ", ".join(f"{code!r} ×{n}" for code, n in table.unknown.most_common(10))
            log.warning("OMS %s.%s: codes not in the mapping's values, kept as is: %s", entity, column, shown)
    elapsed = time.monotonic() - started
    log.info(
        "OMS %s: %d rows from %s in %.1f s (%.0f rows/s)%s",
        entity,
        rows_read,
        em.table,
        elapsed,
        rows_read / elapsed if elapsed else 0.0,
        f", since {since}" if since else "",
    )


# --------------------------------------------------------------------------------------------
# Ingestion into the warehouse
# --------------------------------------------------------------------------------------------


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _since(warehouse: Warehouse, table: Table, batch_id: str, overlap: timedelta, ceiling: datetime) -> datetime | None:
    """Where to start reading: the watermark (never later than `ceiling`, the run's upper bound)
    minus the overlap, or None for a full read.

    A rerun of a batch that already landed rows reads in full: it replaces that batch's files in
    the lake, which must keep holding everything the first run read."""
    if not table.watermark:
        return None
    mark = warehouse.get_watermark(table)
    if mark is None:
        return None
    if datetime.fromisoformat(mark) > ceiling:  # left in the future by a row stamped ahead
        log.error(
            "ALERT %s: watermark %s is after now (%s); reading from now. %s",
            table.raw_name,
            mark,
            ceiling,
            next_step("flags"),
        )
        mark = ceiling.isoformat()
    con = warehouse.connect()
    try:
        try:
            landed = con.execute(
                f"select count(*) from raw.{_qi(table.raw_name)} where _batch_id = ?",  # noqa: S608 (quoted)
                [batch_id],
            ).fetchone()[0]
        except duckdb.CatalogException:
            landed = 0
    finally:
        con.close()
    if landed:
        log.info("%s: batch %s already landed %d rows; reading the whole table again", table.raw_name, batch_id, landed)
        return None
    return datetime.fromisoformat(mark) - overlap


def ingest_oms(
    warehouse: Warehouse,
    source: Source,
    engine: sa.Engine,
    *,
    run_id: str,
    load_date: date,
    tables: list[str] | None = None,
    chunk_rows: int = 50_000,
    now: datetime | None = None,
) -> dict[str, LandResult]:
    """Extract the OMS tables of `source` through its mapping and land them in the warehouse.

    Each table is one batch, ``<run_id>:<table>``: rows at or after (watermark − ``overlap``)
    when the table has a watermark and one was landed, else the whole table. On a failure the
    table's batch lands nothing (its raw table and watermark are unchanged) and an
    :class:`ExtractError` names the source, the table and the rows read so far; tables landed
    before it in the same call stay landed.

    Rows go through :func:`yorisoi.sources.screening.screen`: rows without a key, with a control
    character in it or repeating a key of the same chunk go to ``raw._rejects`` (never raw); rows
    stamped after `now` land, are flagged in ``raw._flags`` and do not move the watermark past `now`.

    :param tables: registry table names to ingest (default: the source's enabled ones, in order).
    :param now: the run's upper bound (default: the current time; an aware time is converted to
        Japan wall-clock time, as the OMS keeps it).
    :returns: the :class:`~yorisoi.sources.landing.LandResult` per table.
    """
    mapping_name = source.options.get("mapping")
    if not mapping_name:
        raise RegistryError(f"sources.{source.name}: 'mapping' is required for an OMS source")
    names = list(source.enabled_tables()) if tables is None else list(tables)
    for name in names:
        if name not in source.tables:
            raise RegistryError(f"sources.{source.name}.tables.{name}: no such table; have {sorted(source.tables)}")
    mapping = load_mapping(source.folder / str(mapping_name), source.enabled_tables())
    overlap = source.duration("overlap", "0 days")
    now = datetime.now(JST) if now is None else now
    if now.tzinfo is not None:
        now = now.astimezone(JST).replace(tzinfo=None)

    results: dict[str, LandResult] = {}
    for name in names:
        table = source.tables[name]
        batch_id = f"{run_id}:{name}"
        since = _since(warehouse, table, batch_id, overlap, now)
        findings = Findings(table, batch_id)
        parts = extract(
            engine,
            mapping,
            name,
            since=since,
            watermark_column=table.watermark,
            chunk_rows=chunk_rows,
            on_bad_row=findings.reject,
            money_scale=table.money_scale,
        )
        read = rejected = 0
        try:
            with (
                closing(parts),
                warehouse.batch(
                    table, batch_id=batch_id, load_date=load_date, watermark=table.watermark, ceiling=now
                ) as batch,
            ):
                for part in parts:
                    # rows left out of this chunk for a bad value count in the positions of later chunks
                    read += len(findings.rejects) - rejected
                    batch.write(screen(part, findings, first_line=read + 1, watermark=table.watermark, ceiling=now))
                    read += part.num_rows
                    rejected = len(findings.rejects)
        except ExtractError as exc:
            raise ExtractError(
                f"OMS source {source.name!r}, table {name!r}: {exc.reason} after {exc.rows_read} rows read; "
                f"nothing landed (raw.{table.raw_name} and its watermark are unchanged)",
                entity=name,
                rows_read=exc.rows_read,
                reason=exc.reason,
            ) from exc
        findings.store(warehouse)
        results[name] = batch.result
        log.info("OMS %s: landed %d rows (%s)", name, batch.result.rows, f"since {since}" if since else "full read")
    return results
