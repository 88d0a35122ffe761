"""`yorisoi sources check`: before anything runs, what the brand's registry and mappings give the
customer model: per table, which columns carry data and which stay null; per entity of the
customer model, which tables feed it and what will be empty because the brand lacks them.

Reads only the registry (`YORISOI_REGISTRY`) and the mapping files; touches no warehouse, no
network, no database."""

from __future__ import annotations

from dataclasses import dataclass, field

from .registry import Registry, RegistryError, load_registry

# What the customer model makes of each raw table: entity → (what reads it, the raw tables
# feeding it). Kept beside the dbt staging models' sources; a raw table not listed here is
# landed but not read by the customer model.
ENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "customers and identity": (
        "dim_customers, bridge_customer_identities (identity resolution)",
        ("ecommerce__customers", "oms__customers", "sftp__pos_members", "sftp__line_friends", "sftp__line_id_links"),
    ),
    "orders": (
        "fct_orders; segments (status, RFM, deciles, CLV, VIP); purchase triggers",
        ("ecommerce__orders", "oms__orders", "sftp__pos_sales"),
    ),
    "order lines and products": (
        "fct_order_lines, dim_products; product ABC, price buyer, favourite category",
        ("ecommerce__order_lines", "ecommerce__products", "oms__order_lines", "oms__items", "sftp__pos_sales"),
    ),
    "subscriptions (定期)": ("customer_traits: subscription status", ("oms__subscriptions",)),
    "consent and suppression": (
        "consent_ledger, deliverable_customers, deliverable_exclusions",
        (
            "ecommerce__customers",
            "oms__customers",
            "sftp__callcenter_requests",
            "sftp__line_friends",
            "sftp__esp_sends",
        ),
    ),
    "LINE": ("LINE friends and ID links: LINE destinations", ("sftp__line_friends", "sftp__line_id_links")),
    "web behaviour": ("browse and cart abandonment triggers", ("sftp__web_events",)),
    "email engagement": (
        "bounces and unsubscribes from the email provider",
        ("sftp__esp_campaigns", "sftp__esp_sends"),
    ),
}


@dataclass
class TableCheck:
    raw_name: str
    enabled: bool
    columns: list[str] = field(default_factory=list)
    null_columns: list[str] = field(default_factory=list)  # always null: the mapping leaves them out
    problem: str | None = None


@dataclass
class EntityCheck:
    entity: str
    reads: str
    fed_by: list[str]
    empty: bool


@dataclass
class SourcesCheck:
    registry: str
    sources: dict[str, dict] = field(default_factory=dict)
    tables: list[TableCheck] = field(default_factory=list)
    entities: list[EntityCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"raw.{t.raw_name}: {t.problem}" for t in self.tables if t.problem]

    def to_dict(self) -> dict:
        return {
            "registry": self.registry,
            "sources": self.sources,
            "tables": [t.__dict__ for t in self.tables],
            "entities": [e.__dict__ for e in self.entities],
            "problems": self.problems,
        }


def check_sources(registry: Registry | None = None) -> SourcesCheck:
    """What each table and entity gets from the registry and mappings (see the module doc)."""
    from .catalog import mapped_columns, raw_schema

    registry = registry or load_registry()
    out = SourcesCheck(str(registry.path))
    for source in registry.sources.values():
        out.sources[source.name] = {
            "enabled": source.enabled,
            "kind": source.kind,
            "system": source.system,
            "currency": source.currency,
            "tables": sorted(source.enabled_tables()),
        }
        for table in source.tables.values():
            check = TableCheck(table.raw_name, table.enabled)
            out.tables.append(check)
            schema = raw_schema(table)
            if schema is None:
                check.problem = "its columns are unknown (no registry columns, flattener or canonical entity)"
                continue
            check.columns = list(schema.names)
            if not table.enabled:
                continue
            try:
                mapped = mapped_columns(source, table)
            except RegistryError as exc:
                check.problem = str(exc)
                continue
            check.null_columns = [c for c in schema.names if mapped is not None and c not in mapped]
    enabled = {t.raw_name for t in registry.tables(enabled_only=True)}
    known = {t.raw_name for t in registry.tables()}
    for entity, (reads, tables) in ENTITIES.items():
        feeding = [t for t in tables if t in enabled]
        if any(t in known for t in tables):
            out.entities.append(EntityCheck(entity, reads, feeding, empty=not feeding))
    return out
