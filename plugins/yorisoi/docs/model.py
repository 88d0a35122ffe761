"""The typed model of the data-definition document: what `collect` gathers and every renderer
reads. Plain dataclasses; `DataDefinition.to_dict()` is the JSON written next to the document."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ColumnDoc:
    name: str
    position: int
    type: str
    description: str
    description_ja: str = ""
    description_origin: str = "dbt"  # dbt | inherited | dbt_snapshot | loader | none
    pii: bool | None = False  # None: a raw column nobody has declared either way
    pii_basis: str = "declared"  # declared | inherited | inferred | undeclared
    pii_basis_ref: str = ""  # the column the flag was inherited or inferred from
    masking: str = ""
    masking_ja: str = ""
    logical_name: str = ""  # the field as the source system names it (file header, OMS column)
    is_key: bool = False
    tags: list[str] = field(default_factory=list)
    in_warehouse: bool = True


@dataclass
class TableDoc:
    id: str
    name: str
    relation: str
    resource: str  # source | model | seed | snapshot | loader
    layer: str
    database: str
    database_file: str
    schema: str
    materialization: str
    description: str
    description_ja: str = ""
    primary_key: list[str] = field(default_factory=list)
    update_method: str = "automatic"
    update_frequency: str = ""
    schedule: str = ""
    updated_by: str = ""
    source_system: str = ""
    arrival: str = ""
    path: str = ""
    tags: list[str] = field(default_factory=list)
    built: bool = True
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    raw_sources: list[str] = field(default_factory=list)
    columns: list[ColumnDoc] = field(default_factory=list)

    def column(self, name: str) -> ColumnDoc | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


@dataclass
class SourceSystemDoc:
    name: str
    system: str
    kind: str
    conn_id: str
    schedule: str
    update_method: str
    update_frequency: str
    description: str
    ingest_dag: str
    tables: list[str]  # table ids


@dataclass
class SchemaDoc:
    name: str
    layer: str
    tables: int


@dataclass
class DatabaseDoc:
    name: str
    file: str
    role: str  # warehouse | analytics
    schemas: list[SchemaDoc]


@dataclass
class LinkDoc:
    kind: str  # primary_key | identity_record | identity_bridge | relationship | shared_key
    from_table: str
    from_columns: list[str]
    to_table: str
    to_columns: list[str]
    note: str = ""


@dataclass
class IdentityRuleDoc:
    name: str
    priority: int
    keys: list[str]
    description: str


@dataclass
class CheckDoc:
    table: str  # table id
    column: str
    origin: str  # dbt | gx
    name: str
    detail: str
    severity: str = ""
    suite: str = ""


@dataclass
class AudienceDoc:
    name: str
    description: str
    file: str
    tables: list[str]  # table ids it reads
    destinations: list[str]


@dataclass
class EdgeDoc:
    source: str  # node id
    target: str


@dataclass
class GateResultDoc:
    """The latest run of a quality gate (var/quality/latest/<layer>.json), folded into the
    document so its results read offline (the Great Expectations Data Docs load their styling
    from CDNs)."""

    layer: str
    success: bool
    validated_at: str
    suites: int
    rows_validated: int
    failed_expectations: list[str]
    warnings: list[str]
    data_docs: str


@dataclass
class DataDefinition:
    generated_at: str
    dbt_version: str
    project: str
    registry: str
    source_systems: list[SourceSystemDoc]
    databases: list[DatabaseDoc]
    tables: list[TableDoc]
    links: list[LinkDoc]
    identity_rules: list[IdentityRuleDoc]
    checks: list[CheckDoc]
    audiences: list[AudienceDoc]
    edges: list[EdgeDoc]
    suites: list[str]
    unmatched_suites: list[str]
    gaps: dict[str, list[str]]
    gate_results: list[GateResultDoc] = field(default_factory=list)

    def table(self, table_id: str) -> TableDoc:
        return self._index()[table_id]

    def find(self, name: str) -> TableDoc:
        """A table by id, relation, `schema.name` or bare name (the first match)."""
        for t in self.tables:
            if name in (t.id, t.relation, f"{t.schema}.{t.name}", t.name):
                return t
        raise KeyError(name)

    def _index(self) -> dict[str, TableDoc]:
        return {t.id: t for t in self.tables}

    def label(self, node_id: str) -> str:
        """A node's name for people: a table's relation, a system's, audience's or destination's name."""
        index = self._index()
        if node_id in index:
            return index[node_id].relation
        return node_id.split(".", 1)[-1]

    def counts(self) -> dict[str, int]:
        columns = [c for t in self.tables for c in t.columns]
        return {
            "source_systems": len(self.source_systems),
            "source_tables": sum(len(s.tables) for s in self.source_systems),
            "databases": len(self.databases),
            "schemas": sum(len(d.schemas) for d in self.databases),
            "tables": len(self.tables),
            "columns": len(columns),
            "pii_columns": sum(1 for c in columns if c.pii),
            "links": len(self.links),
            "checks": len(self.checks),
            "audiences": len(self.audiences),
        }

    def to_dict(self) -> dict:
        return {"counts": self.counts(), **asdict(self)}
