"""Gather everything the data-definition document says into one typed model.

Inputs, each read as data (nothing here imports dbt, Great Expectations or Airflow):
- the source registry (`include/sources/registry.yml`): source systems, raw tables, their primary
  keys, update method and schedule, and for file drops the columns as the files name them;
- dbt's `manifest.json` and `catalog.json` (`dbt docs generate`): every source, model, seed and
  snapshot with descriptions, PII tags and masking (`meta`), tests and dependencies, and the
  column types as built in the warehouse;
- the Great Expectations suites (`expectations/<layer>/<schema>.<table>.yml`, plain YAML);
- audience definitions (`audiences/*.yml`), when they exist;
- the identity rules (`vars.identity.rules` in dbt_project.yml).

The model itself is in `model.py`; the plain-YAML readers in `readers.py`; the texts the document
supplies for columns Yorisoi's own code creates in `fixed.py`.

Which DAG rebuilds a model is decided with the same selectors the DAGs pass to dbt
(`yorisoi.transform.CUSTOMER_LAYER`, `SEGMENT_LAYER`), so the document cannot drift from them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from .. import paths
from ..sources.landing import LEDGER_DDL
from ..sources.registry import PROJECT_ROOT, Registry, load_registry
from ..transform import CUSTOMER_LAYER, DBT_PROJECT_DIR, SEGMENT_LAYER
from .fixed import LOADER_COLUMNS, LOADER_TABLES, SNAPSHOT_COLUMNS
from .model import (
    AudienceDoc,
    CheckDoc,
    ColumnDoc,
    DatabaseDoc,
    DataDefinition,
    EdgeDoc,
    GateResultDoc,
    LinkDoc,
    SchemaDoc,
    SourceSystemDoc,
    TableDoc,
)
from .readers import describe_kwargs, identity_rules, read_audiences, read_suites, ref_name

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
AUDIENCES_DIR = PROJECT_ROOT / "audiences"
LAYERS = ("raw", "staging", "intermediate", "marts", "analytics", "reference", "snapshots")
DBT_RESOURCES = ("model", "seed", "snapshot")
# A data test's `where` placeholder (dbt_project/macros/test_slices.sql) and what it keeps, for the reader.
UNTESTED_ROWS = (
    "__untested_rows__",
    "built_at after the last run in which this check passed: the rows it has not passed yet",
)

# The dbt DAGs: what each builds (dbt selectors) and when it runs. Mirrors dags/build_*.py.
DBT_DAGS = (
    # (dag_id, select, exclude, frequency key)
    ("build_segments", SEGMENT_LAYER, None, "daily_0530"),
    ("build_customer_model", CUSTOMER_LAYER, SEGMENT_LAYER, "on_arrival"),
)
SCHEDULE_FREQUENCY = {
    "@continuous": "realtime",
    "@hourly": "hourly",
    "@daily": "daily",
    "@weekly": "weekly",
    "@monthly": "monthly",
}
# The identity path: records of every source get a record_key here and a person_id in the bridge.
IDENTITY_RECORDS = "int_identity_records"
IDENTITY_BRIDGE = "bridge_customer_identities"
PERSON_TABLE = "dim_customers"

# --- dbt node helpers -------------------------------------------------------------------------


def _meta(col: dict) -> dict:
    return {**(col.get("meta") or {}), **((col.get("config") or {}).get("meta") or {})}


def _ja(node: dict) -> str:
    """The Japanese description the dbt YAML gives under `meta.description_ja`."""
    return " ".join(str(_meta(node).get("description_ja") or "").split())


def _tags(node: dict) -> list[str]:
    return sorted(set(node.get("tags") or []) | set((node.get("config") or {}).get("tags") or []))


def _layer(node: dict) -> str:
    kind = node["resource_type"]
    if kind == "source":
        return "raw"
    if kind == "seed":
        return "reference"
    if kind == "snapshot":
        return "snapshots"
    if "analytics" in _tags(node):
        return "analytics"
    fqn_layer = node["fqn"][1] if len(node["fqn"]) > 2 else ""
    return fqn_layer if fqn_layer in LAYERS else "marts"


def select(expression: str, nodes: dict[str, dict], parents: dict[str, set[str]]) -> set[str]:
    """The nodes a dbt selector picks, for the subset used here: space-separated unions of
    `name` or `tag:x`, with `+` before (ancestors) and/or after (descendants)."""
    children: dict[str, set[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(child)
    chosen: set[str] = set()
    for token in expression.split():
        core = token.strip("+")
        if core.startswith("tag:"):
            base = {i for i, n in nodes.items() if core[4:] in _tags(n)}
        else:
            base = {i for i, n in nodes.items() if n["name"] == core}
        chosen |= base
        if token.startswith("+"):
            chosen |= _closure(base, parents)
        if token.endswith("+"):
            chosen |= _closure(base, children)
    return chosen & set(nodes)


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- the collector ----------------------------------------------------------------------------


class _Collector:
    def __init__(self, manifest: dict, catalog: dict, registry: Registry) -> None:
        self.manifest = manifest
        self.catalog = catalog
        self.registry = registry
        self.nodes = {i: n for i, n in manifest["nodes"].items() if n["resource_type"] in DBT_RESOURCES}
        self.sources = manifest["sources"]
        self.tests = {i: n for i, n in manifest["nodes"].items() if n["resource_type"] == "test"}
        self.parents: dict[str, set[str]] = {
            i: {d for d in n.get("depends_on", {}).get("nodes", []) if d in self.nodes or d in self.sources}
            for i, n in self.nodes.items()
        }
        self.tables: dict[str, TableDoc] = {}
        self.registry_tables = {t.raw_name: (s, t) for s in registry.sources.values() for t in s.tables.values()}

    # databases -------------------------------------------------------------------------------
    def database_file(self, name: str) -> tuple[str, str]:
        if name == paths.analytics_path().stem or name == "analytics":
            return paths.analytics_path().name, "analytics"
        return paths.warehouse_path().name, "warehouse"

    # update method and frequency ---------------------------------------------------------------
    def schedules(self) -> dict[str, tuple[str, str]]:
        """dbt node id -> (DAG id, frequency key) of the DAG that builds it."""
        out: dict[str, tuple[str, str]] = {}
        for dag_id, sel, exclude, freq in DBT_DAGS:
            chosen = select(sel, self.nodes, self.parents)
            if exclude:
                chosen -= select(exclude, self.nodes, self.parents)
            for node_id in chosen:
                out.setdefault(node_id, (dag_id, freq))
        return out

    # tables ----------------------------------------------------------------------------------
    def source_table(self, source_id: str, node: dict) -> TableDoc:
        registry_entry = self.registry_tables.get(node["identifier"])
        cat = self.catalog.get("sources", {}).get(source_id)
        db_file, _ = self.database_file(node["database"])
        doc = TableDoc(
            id=source_id,
            name=node["identifier"],
            relation=f"{node['database']}.{node['schema']}.{node['identifier']}",
            resource="source",
            layer="raw",
            database=node["database"],
            database_file=db_file,
            schema=node["schema"],
            materialization="table",
            description=(node.get("description") or "").strip(),
            description_ja=_ja(node),
            path=node.get("original_file_path", ""),
            tags=_tags(node),
            built=cat is not None,
            arrival=str((node.get("source_meta") or {}).get("frequency") or ""),
        )
        logical: dict[str, str] = {}
        if registry_entry:
            src, tbl = registry_entry
            doc.description = doc.description or tbl.description  # one description, not both
            doc.primary_key = list(tbl.primary_key)
            doc.update_method = src.method
            doc.schedule = src.schedule
            doc.update_frequency = SCHEDULE_FREQUENCY.get(src.schedule, "cron")
            doc.updated_by = f"ingest_{src.name}"
            doc.source_system = src.name
            logical = {c.name: c.source for c in tbl.columns} or self.oms_fields(src, tbl.name)
        declared = node.get("columns") or {}
        names = self._catalog_columns(cat) or (
            [c.name for c in registry_entry[1].columns] + list(LOADER_COLUMNS) if registry_entry else []
        )
        names += [n for n in declared if n.lower() not in {x.lower() for x in names}]
        types = {c["name"]: c["type"] for c in (cat or {}).get("columns", {}).values()}
        if not types and registry_entry:
            types = {c.name: c.type for c in registry_entry[1].columns}
        for pos, name in enumerate(names, 1):
            col = declared.get(name) or declared.get(name.lower()) or {}
            meta = _meta(col)
            c = ColumnDoc(
                name=name,
                position=pos,
                type=types.get(name, ""),
                description=(col.get("description") or "").strip(),
                description_ja=_ja(col),
            )
            c.logical_name = logical.get(name, "")
            c.is_key = name in doc.primary_key
            c.tags = _tags(col)
            if not c.description and name in LOADER_COLUMNS:
                c.description, c.description_ja = LOADER_COLUMNS[name]
                c.description_origin = "loader"
            elif not c.description:
                c.description_origin = "none"
            if "pii" in meta or "pii" in c.tags:
                c.pii = bool(meta.get("pii", True))
                c.masking = str(meta.get("masking") or "")
                c.masking_ja = str(meta.get("masking_ja") or "")
            elif name in LOADER_COLUMNS:
                c.pii = False
            else:
                c.pii, c.pii_basis = None, "undeclared"
            doc.columns.append(c)
        return doc

    def oms_fields(self, src, table: str) -> dict[str, str]:
        """Canonical column -> the brand's OMS column, from the source's mapping file."""
        mapping = src.options.get("mapping")
        if not mapping:
            return {}
        try:
            doc = yaml.safe_load((src.folder / mapping).read_text("utf-8")) or {}
        except OSError:
            return {}
        entity = (doc.get("entities") or {}).get(table) or {}
        where = entity.get("table", table)
        return {canon: f"{where}.{col}" for canon, col in (entity.get("columns") or {}).items()}

    def dbt_table(self, node_id: str, node: dict, schedules: dict[str, tuple[str, str]]) -> TableDoc:
        cat = self.catalog.get("nodes", {}).get(node_id)
        kind = node["resource_type"]
        db_file, _ = self.database_file(node["database"])
        name = node.get("alias") or node["name"]
        doc = TableDoc(
            id=node_id,
            name=name,
            relation=f"{node['database']}.{node['schema']}.{name}",
            resource=kind,
            layer=_layer(node),
            database=node["database"],
            database_file=db_file,
            schema=node["schema"],
            materialization=kind if kind != "model" else node["config"].get("materialized", ""),
            description=(node.get("description") or "").strip(),
            description_ja=_ja(node),
            path=node.get("original_file_path", ""),
            tags=_tags(node),
            built=cat is not None,
        )
        if kind == "seed":
            doc.update_method, doc.update_frequency, doc.updated_by = "manual", "on_change", "steward"
        elif node_id in schedules:
            dag_id, freq = schedules[node_id]
            doc.update_method, doc.update_frequency, doc.updated_by = "automatic", freq, dag_id
        else:
            doc.update_method, doc.update_frequency, doc.updated_by = "manual", "on_demand", "hand"
        declared = node.get("columns") or {}
        types = {c["name"]: c["type"] for c in (cat or {}).get("columns", {}).values()}
        names = self._catalog_columns(cat)
        names += [n for n in declared if n.lower() not in {x.lower() for x in names}]
        inherit_from = self._snapshot_relation(node) if kind == "snapshot" else None
        for pos, col_name in enumerate(names, 1):
            col = declared.get(col_name) or declared.get(col_name.lower()) or {}
            meta = _meta(col)
            c = ColumnDoc(
                name=col_name,
                position=pos,
                type=types.get(col_name, ""),
                description=(col.get("description") or "").strip(),
                description_ja=_ja(col),
                tags=_tags(col),
                in_warehouse=col_name in types or not doc.built,
            )
            c.pii = bool(meta.get("pii")) or "pii" in c.tags
            c.masking = str(meta.get("masking") or "")
            c.masking_ja = str(meta.get("masking_ja") or "")
            if not c.description and inherit_from is not None:
                self._inherit(c, inherit_from)
            if not c.description:
                c.description_origin = "none"
            doc.columns.append(c)
        if inherit_from is not None:
            doc.primary_key = [node["config"].get("unique_key") or ""] if node["config"].get("unique_key") else []
        return doc

    def _snapshot_relation(self, node: dict) -> dict | None:
        parents = [p for p in node.get("depends_on", {}).get("nodes", []) if p in self.nodes]
        return self.nodes[parents[0]] if len(parents) == 1 else None

    def _inherit(self, col: ColumnDoc, relation: dict) -> None:
        """A snapshot copies its relation's columns: their description, PII flag and masking hold."""
        if col.name in SNAPSHOT_COLUMNS:
            col.description, col.description_ja = SNAPSHOT_COLUMNS[col.name]
            col.description_origin = "dbt_snapshot"
            return
        src = (relation.get("columns") or {}).get(col.name)
        if not src or not (src.get("description") or "").strip():
            return
        meta = _meta(src)
        col.description = src["description"].strip()
        col.description_ja = _ja(src)
        col.description_origin = "inherited"
        if not col.pii and (meta.get("pii") or "pii" in _tags(src)):
            col.pii, col.masking = True, str(meta.get("masking") or "")
            col.masking_ja = str(meta.get("masking_ja") or "")
        col.pii_basis = "inherited" if col.pii else col.pii_basis
        col.pii_basis_ref = f"{relation['name']}.{col.name}"

    def loader_tables(self) -> list[TableDoc]:
        ddl = _parse_ddl(LEDGER_DDL)
        db_name = paths.warehouse_path().stem
        out = []
        for name, spec in LOADER_TABLES.items():
            types = ddl.get(name, {})
            doc = TableDoc(
                id=f"loader.raw.{name}",
                name=name,
                relation=f"{db_name}.raw.{name}",
                resource="loader",
                layer="raw",
                database=db_name,
                database_file=paths.warehouse_path().name,
                schema="raw",
                materialization="table",
                description=spec["description"][0],
                description_ja=spec["description"][1],
                primary_key=list(spec["primary_key"]),
                update_method="automatic",
                update_frequency="on_ingest",
                updated_by="ingest_*",
                path="plugins/yorisoi/sources/landing.py",
            )
            for pos, (col_name, col_type) in enumerate(types.items(), 1):
                en, ja = spec["columns"].get(col_name, ("", ""))
                masking, masking_ja = spec.get("pii", {}).get(col_name, ("", ""))
                doc.columns.append(
                    ColumnDoc(
                        name=col_name,
                        position=pos,
                        type=col_type.upper(),
                        description=en,
                        description_ja=ja,
                        description_origin="loader" if en else "none",
                        pii=bool(masking),
                        masking=masking,
                        masking_ja=masking_ja,
                        is_key=col_name in spec["primary_key"],
                    )
                )
            out.append(doc)
        return out

    @staticmethod
    def _catalog_columns(cat: dict | None) -> list[str]:
        if not cat:
            return []
        return [c["name"] for c in sorted(cat["columns"].values(), key=lambda c: c["index"])]

    # keys, checks, links ------------------------------------------------------------------------
    def checks_and_keys(self) -> list[CheckDoc]:
        checks = []
        unique: dict[str, set[str]] = {}
        not_null: dict[str, set[str]] = {}
        combos: dict[str, list[str]] = {}
        for test in self.tests.values():
            meta = test.get("test_metadata") or {}
            name = meta.get("name") or test["name"]
            kwargs = {k: v for k, v in (meta.get("kwargs") or {}).items() if k not in ("model", "column_name")}
            column = test.get("column_name") or ", ".join(kwargs.get("columns") or [])
            attached = test.get("attached_node")
            targets = (
                [attached] if attached else [d for d in test.get("depends_on", {}).get("nodes", []) if d in self.tables]
            )
            severity = str((test.get("config") or {}).get("severity") or "").lower()
            detail = describe_kwargs(kwargs) if meta else (test.get("description") or test["original_file_path"])
            where = str((test.get("config") or {}).get("where") or "")
            if where:
                detail = ", ".join(filter(None, [detail, f"where {where.replace(*UNTESTED_ROWS)}"]))
            for target in targets:
                if target not in self.tables:
                    continue
                checks.append(CheckDoc(target, column or "", "dbt", name, detail, severity))
            if attached and name == "unique" and test.get("column_name"):
                unique.setdefault(attached, set()).add(test["column_name"])
            if attached and name == "not_null" and test.get("column_name"):
                not_null.setdefault(attached, set()).add(test["column_name"])
            if attached and name == "unique_combination":
                combos.setdefault(attached, list(kwargs.get("columns") or []))
        for table in self.tables.values():
            if table.primary_key or table.resource not in DBT_RESOURCES:
                continue
            keys = unique.get(table.id, set()) & not_null.get(table.id, set())
            ordered = [c.name for c in table.columns if c.name in keys]
            table.primary_key = ordered[:1] or combos.get(table.id, [])
        for table in self.tables.values():
            for c in table.columns:
                c.is_key = c.is_key or c.name in table.primary_key
        return checks

    def links(self) -> list[LinkDoc]:
        by_name = {t.name: t for t in self.tables.values() if t.resource in DBT_RESOURCES}
        out: list[LinkDoc] = []
        # raw -> staging: the source's primary key travels into its staging model
        for table in self.tables.values():
            if table.layer != "staging":
                continue
            for parent in sorted(self.parents.get(table.id, ())):
                raw = self.tables.get(parent)
                if raw is not None and raw.resource == "source":
                    out.append(LinkDoc("primary_key", raw.id, raw.primary_key, table.id, table.primary_key))
        # staging -> identity records -> bridge -> person
        records, bridge, person = by_name.get(IDENTITY_RECORDS), by_name.get(IDENTITY_BRIDGE), by_name.get(PERSON_TABLE)
        if records is not None:
            # `'<source>' as source, <column> as source_id` in the model: the ID each system contributes
            source_ids = dict(
                re.findall(
                    r"'(\w+)'\s+as\s+source\s*,\s*(?:\w+\.)?(\w+)\s+as\s+source_id",
                    self.nodes[records.id].get("raw_code", ""),
                    flags=re.I,
                )
            )
            for parent in sorted(self.parents.get(records.id, ())):
                stg = self.tables.get(parent)
                if stg is None or stg.layer != "staging":
                    continue
                source = next((self.sources[p] for p in self.parents.get(stg.id, ()) if p in self.sources), None)
                prefix = source["source_name"] if source else stg.name
                id_column = source_ids.get(prefix, "")
                keys = [id_column] if stg.column(id_column) is not None else stg.primary_key
                note = f"record_key = '{prefix}:' || {' || '.join(keys)}"
                out.append(LinkDoc("identity_record", stg.id, keys, records.id, ["record_key"], note))
            if bridge is not None:
                out.append(LinkDoc("identity_bridge", records.id, ["record_key"], bridge.id, ["record_key"]))
        # declared relationships (dbt tests)
        declared: set[tuple[str, str]] = set()
        for test in self.tests.values():
            meta = test.get("test_metadata") or {}
            if meta.get("name") != "relationships" or test.get("attached_node") not in self.tables:
                continue
            kwargs = meta.get("kwargs") or {}
            target = by_name.get(ref_name(str(kwargs.get("to", ""))))
            if target is None:
                continue
            origin = test["attached_node"]
            out.append(LinkDoc("relationship", origin, [test["column_name"]], target.id, [str(kwargs.get("field"))]))
            declared.add((origin, target.id))
        # shared keys: a mart or analytics table carrying an entity's single-column key, untested
        owners = {}
        for t in (person, by_name.get("fct_orders"), by_name.get("dim_products")):
            if t is not None and len(t.primary_key) == 1:
                owners[t.primary_key[0]] = t
        for table in self.tables.values():
            if table.layer not in ("marts", "analytics", "snapshots") or table.resource not in DBT_RESOURCES:
                continue
            for c in table.columns:
                owner = owners.get(c.name)
                if owner is None or owner.id == table.id or (table.id, owner.id) in declared:
                    continue
                out.append(LinkDoc("shared_key", table.id, [c.name], owner.id, [c.name]))
        return out

    # lineage ---------------------------------------------------------------------------------
    def edges(self, audiences: list[AudienceDoc]) -> list[EdgeDoc]:
        out = []
        for table in self.tables.values():
            if table.resource == "source" and table.source_system:
                out.append(EdgeDoc(f"system.{table.source_system}", table.id))
            for parent in sorted(self.parents.get(table.id, ())):
                out.append(EdgeDoc(parent, table.id))
        for aud in audiences:
            out += [EdgeDoc(t, f"audience.{aud.name}") for t in aud.tables]
            out += [EdgeDoc(f"audience.{aud.name}", f"destination.{d}") for d in aud.destinations]
        return out


def _parse_ddl(ddl: str) -> dict[str, dict[str, str]]:
    """`create table ... raw.<name> (col type, ...)` -> {name: {col: type}} (primary key clauses skipped)."""
    out = {}
    for name, body in re.findall(r"create table if not exists raw\.(\w+)\s*\((.*?)\);", ddl, flags=re.S):
        cols = {}
        for part in re.split(r",(?![^()]*\))", body):
            words = part.split()
            if len(words) >= 2 and words[0].lower() != "primary":
                cols[words[0]] = words[1]
        out[name] = cols
    return out


# --- entry point --------------------------------------------------------------------------------


def read_gate_results(folder: Path | None = None) -> list[GateResultDoc]:
    """The latest result of each quality gate (raw, marts), as the gate task published it."""
    folder = folder or paths.var_dir() / "quality" / "latest"
    out = []
    for layer in ("raw", "marts"):
        try:
            r = json.loads((folder / f"{layer}.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        out.append(
            GateResultDoc(
                layer=layer,
                success=bool(r.get("success")),
                validated_at=str(r.get("validated_at") or "")[:19].replace("T", " "),
                suites=int(r.get("suites") or 0),
                rows_validated=int(r.get("rows_validated") or 0),
                failed_expectations=[str(x) for x in r.get("failed_expectations") or []],
                warnings=[str(x) for x in r.get("warnings") or []],
                data_docs=str(r.get("data_docs") or ""),
            )
        )
    return out


def collect(
    manifest_path: Path,
    catalog_path: Path | None,
    *,
    registry: Registry | None = None,
    expectations_dir: Path | None = None,
    audiences_dir: Path | None = None,
    project_file: Path | None = None,
) -> DataDefinition:
    """Read the registry, the dbt manifest and catalog, the suites and audiences into one model."""
    manifest = json.loads(Path(manifest_path).read_text("utf-8"))
    catalog = json.loads(Path(catalog_path).read_text("utf-8")) if catalog_path and Path(catalog_path).exists() else {}
    registry = registry or load_registry()
    col = _Collector(manifest, catalog, registry)

    for source_id, node in sorted(col.sources.items()):
        col.tables[source_id] = col.source_table(source_id, node)
    mapped = {t.name for t in col.tables.values()}
    for loader_table in col.loader_tables():
        col.tables[loader_table.id] = loader_table
    schedules = col.schedules()
    for node_id, node in sorted(col.nodes.items()):
        col.tables[node_id] = col.dbt_table(node_id, node, schedules)
    _infer_raw_pii(col)
    checks = col.checks_and_keys()

    tables = sorted(col.tables.values(), key=lambda t: (LAYERS.index(t.layer), t.resource != "source", t.relation))
    children: dict[str, list[str]] = {}
    for child, ps in col.parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    for t in tables:
        t.upstream = sorted(col.parents.get(t.id, ()))
        t.downstream = sorted(children.get(t.id, ()))
        t.raw_sources = sorted(a for a in _closure({t.id}, col.parents) if a in col.sources)

    order = {t.id: i for i, t in enumerate(tables)}
    suite_checks, suites, unmatched = read_suites(expectations_dir or EXPECTATIONS_DIR, tables)
    audiences = read_audiences(audiences_dir or AUDIENCES_DIR, tables)

    systems = []
    for src in registry.sources.values():
        ids = [t.id for t in tables if t.resource == "source" and t.source_system == src.name]
        missing = [f"registry.{src.name}.{n}" for n, tbl in src.tables.items() if tbl.raw_name not in mapped]
        systems.append(
            SourceSystemDoc(
                name=src.name,
                system=src.system,
                kind=src.kind,
                conn_id=src.conn_id,
                schedule=src.schedule,
                update_method=src.method,
                update_frequency=SCHEDULE_FREQUENCY.get(src.schedule, "cron"),
                description=src.description,
                ingest_dag=f"ingest_{src.name}",
                tables=ids + missing,
            )
        )

    databases = []
    for db in sorted({t.database for t in tables}, key=lambda d: (d != paths.warehouse_path().stem, d)):
        in_db = [t for t in tables if t.database == db]
        schemas = sorted({(t.schema, t.layer) for t in in_db}, key=lambda s: LAYERS.index(s[1]))
        file, role = col.database_file(db)
        databases.append(
            DatabaseDoc(
                name=db,
                file=file,
                role=role,
                schemas=[SchemaDoc(s, layer, sum(1 for t in in_db if t.schema == s)) for s, layer in schemas],
            )
        )

    model = DataDefinition(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dbt_version=str(manifest.get("metadata", {}).get("dbt_version", "")),
        project=str(manifest.get("metadata", {}).get("project_name", "")),
        registry=_relative(registry.path),
        source_systems=systems,
        databases=databases,
        tables=tables,
        links=col.links(),
        identity_rules=identity_rules(project_file or DBT_PROJECT_DIR / "dbt_project.yml"),
        checks=sorted(
            checks + suite_checks,
            key=lambda c: (order.get(c.table, len(order)), c.origin, c.column, c.name, c.detail),
        ),
        audiences=audiences,
        edges=col.edges(audiences),
        suites=suites,
        unmatched_suites=unmatched,
        gaps={},
    )
    model.gaps = find_gaps(model)
    model.gate_results = read_gate_results()
    for system in systems:
        for table_id in system.tables:
            if table_id.startswith("registry."):
                model.gaps.setdefault("unmatched", []).append(f"{table_id}: in the registry, not a dbt source")
    return model


def _infer_raw_pii(col: _Collector) -> None:
    """A raw column nobody declared takes the PII flag of the same-named column of a staging
    model that reads it (marked as inferred, with the column it came from)."""
    for table in col.tables.values():
        if table.resource != "source":
            continue
        readers = [col.tables[i] for i, ps in col.parents.items() if table.id in ps and i in col.tables]
        for c in table.columns:
            if c.pii is not None:
                continue
            for reader in readers:
                staged = reader.column(c.name) if reader.layer == "staging" else None
                if staged is not None and staged.pii:
                    c.pii, c.pii_basis, c.masking = True, "inferred", staged.masking
                    c.masking_ja = staged.masking_ja
                    c.pii_basis_ref = f"{reader.name}.{staged.name}"
                    break


def find_gaps(model: DataDefinition) -> dict[str, list[str]]:
    """What the document cannot say yet, by kind (each entry names `relation.column`)."""
    gaps: dict[str, list[str]] = {
        "table_description": [],
        "missing_description": [],
        "missing_type": [],
        "undeclared_pii": [],
        "pii_without_masking": [],
    }
    for t in model.tables:
        if not t.description:
            gaps["table_description"].append(t.relation)
        for c in t.columns:
            ref = f"{t.relation}.{c.name}"
            if not c.description:
                gaps["missing_description"].append(ref)
            if not c.type:
                gaps["missing_type"].append(ref)
            if c.pii is None:
                gaps["undeclared_pii"].append(ref)
            if c.pii and not c.masking:
                gaps["pii_without_masking"].append(ref)
    return gaps


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
