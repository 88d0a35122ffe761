"""The Airflow Assets that chain the DAGs: one name and URI scheme for every table a DAG publishes
or waits on, so a producer and its consumers can never spell the same table two ways.

Raw tables come from the source registry (`include/sources/registry.yml`): the customer model
waits on every raw table of the brand's enabled sources, so a brand's own registry decides what
triggers it (a disabled source's table never lands, so nothing waits on it).
`tests/test_dag_integrity.py` checks that every asset a DAG waits on is some DAG's output."""

from __future__ import annotations

from airflow.sdk import Asset

from ..sources.registry import OUTCOME_KINDS, Table, load_registry

SCHEME = "duckdb://yorisoi"


def table_asset(schema: str, table: str) -> Asset:
    """The Asset of ``<schema>.<table>`` in the warehouse."""
    return Asset(name=f"{schema}.{table}", uri=f"{SCHEME}/{schema}/{table}")


def raw_asset(table: Table) -> Asset:
    """The Asset of a registry table's raw table (`raw.<source>__<table>`): ingest tasks emit it."""
    return table_asset("raw", table.raw_name)


def mart_asset(name: str) -> Asset:
    """The Asset of a mart (`marts.<name>`)."""
    return table_asset("marts", name)


def registry_raw_assets() -> list[Asset]:
    """Every enabled raw table of the registry (`$YORISOI_REGISTRY` when set), in registry order,
    but the activation store's and the messaging channels' reports (kinds `store`, `messaging`):
    they feed the campaign facts, not the customer model, and a trigger would loop (customer
    build -> segments -> activation -> its landing -> customer build)."""
    return [raw_asset(t) for t in load_registry().tables(enabled_only=True) if t.kind not in OUTCOME_KINDS]
