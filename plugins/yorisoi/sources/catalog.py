"""What every registry table's raw table looks like before its first row lands, and which of its
columns carry the brand's data.

A brand has some of the sources, not all (`enabled` in the registry), and a new source's first
batch may be empty. The dbt project reads every raw table, so each one is created, typed and
empty, from what the registry and the mappings say (:func:`init_raw_tables`): models whose inputs
are absent then build empty, with no per-model conditionals and no manual step.

Where a raw table's columns come from, per source kind:

- ``files``: the registry's `columns` (name and type);
- ``store``: the same (the activation store's tables, as yorisoi.outcomes.store_source lands them);
- ``messaging``: the same (SMS receipts and LINE statistics, as yorisoi.sources.messaging lands them);
- ``api``: the e-commerce flatteners' schemas (`yorisoi.sources.ecommerce.raw_schemas`);
- ``database``: the canonical entity (`yorisoi.sources.oms.entity_schema`): every canonical
  column is present; the ones the mapping does not name stay null (not *mapped*).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from .registry import Registry, RegistryError, Source, Table, load_registry

log = logging.getLogger(__name__)

FILE_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def file_type(type_name: str, money_scale: int = 0) -> pa.DataType:
    """The Arrow type of a file column of registry type `type_name`: `money` lands as whole units
    (int64) when the source's minor unit is 0, as DECIMAL(18, minor unit) otherwise."""
    if type_name == "money":
        return pa.int64() if money_scale == 0 else pa.decimal128(18, money_scale)
    return FILE_TYPES[type_name]


LOADER_COLUMNS = ("_loaded_at", "_source_file", "_batch_id")
"""Columns landing adds to every raw table."""


def raw_schema(table: Table) -> pa.Schema | None:
    """The columns of `table`'s raw table as its extractor writes them (without the loader's
    columns); None when the registry cannot tell (an API table no flattener produces)."""
    if table.kind in ("files", "store", "messaging"):
        if not table.columns:
            return None
        return pa.schema([(c.name, file_type(c.type, table.money_scale)) for c in table.columns])
    if table.kind == "api":
        from .ecommerce import raw_schemas

        return raw_schemas(table.money_scale).get(table.name)
    if table.kind == "database":
        from .oms import ENTITIES, entity_schema

        return entity_schema(table.name, table.money_scale) if table.name in ENTITIES else None
    return None


def mapped_columns(source: Source, table: Table) -> frozenset[str] | None:
    """The columns of `table`'s raw table that the brand's registry or mapping fills; for a
    database source, the canonical columns its mapping names (and derived ones, such as an order
    line's `order_updated_at`): the rest are always null. None when unknown."""
    schema = raw_schema(table)
    if schema is None:
        return None
    if table.kind != "database":
        return frozenset(schema.names)
    from .oms import PARENTS, load_mapping

    mapping = load_mapping(mapping_path(source), source.enabled_tables())
    entity = mapping.entities.get(table.name)
    if entity is None:
        return frozenset()
    derived = {PARENTS[table.name][2]} if table.name in PARENTS else set()
    return frozenset(entity.columns) | derived


def mapping_path(source: Source) -> Path:
    """The mapping file of a database source (relative to the registry's folder)."""
    name = source.options.get("mapping")
    if not name:
        raise RegistryError(f"sources.{source.name}: 'mapping' is required for a database source")
    return source.folder / str(name)


def init_raw_tables(warehouse=None, registry: Registry | None = None) -> dict[str, str]:
    """Create every registry table's raw table (enabled or not) that does not exist yet, typed
    and empty, in `warehouse` (default: the embedded one); a table whose extractor now writes a
    column it lacks gains it. Idempotent and cheap (one connection, `create table if not
    exists`): `yorisoi sources init`, run before every dbt build and the raw gate. Returns raw
    table → what happened: `created`, `exists` or `no schema` (the registry cannot tell)."""
    if warehouse is None:
        from .. import paths
        from .landing import Lake, Warehouse

        warehouse = Warehouse(paths.warehouse_path(), Lake(paths.lake_dir()))
    registry = registry or load_registry()
    out: dict[str, str] = {}
    con = warehouse.connect()
    try:
        for table in registry.tables():
            schema = raw_schema(table)
            if schema is None:
                out[table.raw_name] = "no schema"
                continue
            out[table.raw_name] = "created" if warehouse.ensure_table(con, table, schema) else "exists"
    finally:
        con.close()
    created = [name for name, what in out.items() if what == "created"]
    if created:
        log.info("created %d empty raw table(s): %s", len(created), ", ".join(created))
    return out
