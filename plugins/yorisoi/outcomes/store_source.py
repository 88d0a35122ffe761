"""Land the activation store (what Yorisoi assigned and sent) in the warehouse, like any source.

The campaign-outcome facts (dbt ``marts/campaigns``, docs/campaign-measurement.md) compare who
was assigned to treatment, control and each variant with what they did afterwards; the
assignment and the send ledger live in the activation store (SQLite or PostgreSQL,
``yorisoi.activation.delivery.store``). This extractor reads its tables through SQLAlchemy,
incrementally by a timestamp watermark re-read ``overlap`` behind (a ledger row is settled up to
a day after its claim), and lands them as ``raw.activation__<table>``; the store's retention may
prune old rows, the warehouse keeps them.

Times are stored naive UTC in the store and landed as ``timestamptz`` (UTC).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime

import pyarrow as pa
import sqlalchemy as sa

from ..activation.delivery import store as activation_store
from ..sources.landing import LandResult, Warehouse
from ..sources.oms import _since
from ..sources.registry import RegistryError, Source

log = logging.getLogger(__name__)


def _arrow_type(column: sa.Column) -> pa.DataType:
    if isinstance(column.type, activation_store.UTCDateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(column.type, sa.Integer):
        return pa.int64()
    return pa.string()


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Arrow schema a store table lands with (column order as in the store)."""
    return pa.schema([pa.field(c.name, _arrow_type(c)) for c in table.columns])


def extract(
    engine: sa.Engine,
    name: str,
    *,
    since: datetime | None,
    until: datetime,
    watermark: str | None,
    chunk_rows: int = 50_000,
) -> Iterator[pa.Table]:
    """Rows of store table ``name`` (all, or with ``watermark`` at or after ``since``), with
    ``watermark`` not after ``until`` (the run's upper bound: the watermark never passes it,
    docs/reliability.md #17), as Arrow tables of up to ``chunk_rows`` rows, through a server-side
    cursor."""
    table = activation_store.metadata.tables.get(name)
    if table is None:
        raise RegistryError(
            f"the activation store has no table {name!r}; have {sorted(activation_store.metadata.tables)}"
        )
    schema = arrow_schema(table)
    query = sa.select(table)
    if watermark:
        query = query.where(table.c[watermark] <= until)
        if since is not None:
            query = query.where(table.c[watermark] >= since)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
        for rows in result.partitions(chunk_rows):
            columns = list(zip(*rows, strict=True))
            yield pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)


def ingest_activation(
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
    """Land the store's tables named in ``source`` (default: all, in registry order), one batch
    ``<run_id>:<table>`` each. A store that has not been created yet (no send so far) lands
    nothing: the raw tables stay the empty ones created from the registry's columns."""
    names = list(source.tables) if tables is None else list(tables)
    for name in names:
        if name not in source.tables:
            raise RegistryError(f"sources.{source.name}.tables.{name}: no such table; have {sorted(source.tables)}")
    present = set(sa.inspect(engine).get_table_names())
    overlap = source.duration("overlap", "0 days")
    now = now or datetime.now(UTC)
    results: dict[str, LandResult] = {}
    for name in names:
        table = source.tables[name]
        if name not in present:
            log.info("activation store: no table %s yet (nothing sent so far); nothing to land", name)
            results[name] = LandResult(table.raw_name, 0, 0, 0, warehouse.get_watermark(table))
            continue
        batch_id = f"{run_id}:{name}"
        since = _since(warehouse, table, batch_id, overlap, now)
        parts = extract(engine, name, since=since, until=now, watermark=table.watermark, chunk_rows=chunk_rows)
        with (
            closing(parts),
            warehouse.batch(table, batch_id=batch_id, load_date=load_date, watermark=table.watermark) as batch,
        ):
            for part in parts:
                batch.write(part)
        results[name] = batch.result
        log.info(
            "activation %s: landed %d rows (%s)", name, batch.result.rows, f"since {since}" if since else "full read"
        )
    return results
