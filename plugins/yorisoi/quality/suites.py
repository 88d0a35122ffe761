"""Suite files: `expectations/<layer>/<schema>.<table>.yml`, one per table, read into typed objects
and then into Great Expectations 1.x `ExpectationSuite`s.

A suite file::

    suite: raw.ecommerce__customers      # GX suite name
    table: raw.ecommerce__customers      # schema.table in the warehouse
    description: ...                      # plain words, auditors read it
    scope: latest_batch                   # latest_batch | whole_table | aggregate (say why in a comment)
    freshness: {column: updated_at}       # optional: adds the table measure hours_since_latest
    metrics:                              # optional: more table measures, SQL over the table `t`
      duplicate_keys: count(*) - count(distinct t.id)   # `{seeds}`: the dbt seeds folder (raw suites
                                                        # run before dbt: read_csv('{seeds}/stores.csv'))
    aggregate:                            # scope aggregate only: the profile GX validates
      group_by: [channel, status]
      measures: {orders: count(*), null_order_keys: count(*) filter (where order_key is null)}
    expectations:                         # GX validates them on the rows in scope (or the profile)
      - type: expect_column_values_to_not_be_null
        kwargs: {column: id}
        meta: {notes: "..."}
        severity: error                   # error (default) stops the gate; warning is reported only
    table_expectations:                   # GX validates them on the one-row frame of table measures
      - type: expect_column_values_to_be_between
        kwargs: {column: hours_since_latest, max_value: 72}

Each file becomes one or two GX suites: `<suite>` on the rows in scope (or the aggregate
profile) and `<suite>.table` on the table measures (row_count, previous_row_count,
row_count_change_ratio, hours_since_latest and the file's own `metrics`). GX evaluates every
expectation; this module only checks the file's shape and names the file and line of a mistake.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..sources.registry import OUTCOME_KINDS, PROJECT_ROOT, Registry, load_registry

if TYPE_CHECKING:
    import great_expectations as gx

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SEEDS_DIR = PROJECT_ROOT / "dbt_project" / "seeds"  # `{seeds}` in a suite's SQL: the dbt seeds' CSV files
LAYERS = ("raw", "marts")
SCOPES = ("latest_batch", "whole_table", "aggregate")
SEVERITIES = ("error", "warning")
BATCH_COLUMN = "_loaded_at"  # set by landing.py on every raw row: when its batch landed
TABLE_SUITE_SUFFIX = ".table"
# Table measures every suite has (hours_since_latest only with `freshness`).
BUILTIN_MEASURES = ("row_count", "previous_row_count", "row_count_change_ratio", "hours_since_latest")
# The marts something downstream consumes (activation, exports, the analysts' database, marketing):
# each must have a suite.
CONSUMED_MARTS = (
    "dim_customers",
    "bridge_customer_identities",
    "fct_orders",
    "fct_order_lines",
    "consent_ledger",
    "deliverable_customers",
    "deliverable_exclusions",
    "customer_traits",
    "customer_status",
    "customer_rfm",
    "trigger_audiences",
    "segment_4r",
)
# Columns holding personal data. GX keeps and renders up to 20 unexpected values per expectation
# (validation results, Data Docs, the alert), so on these columns only expectations that reveal no
# values are allowed; anything else about them is written as a table measure (a count in SQL).
PERSONAL_COLUMNS = frozenset(
    {
        "email",
        "phone",
        "name",
        "full_name",
        "first_name",
        "last_name",
        "name_kana",
        "first_name_kana",
        "last_name_kana",
        "address",
        "address1",
        "city",
        "zip",
        "postal_code",
        "birth_date",
        "line_user_id",
        "anonymous_id",
        "url",
    }
)
VALUE_FREE_TYPES = frozenset({"expect_column_to_exist", "expect_column_values_to_not_be_null"})
_TOP_KEYS = {
    "suite",
    "table",
    "description",
    "scope",
    "freshness",
    "metrics",
    "aggregate",
    "expectations",
    "table_expectations",
}
_ENTRY_KEYS = {"type", "kwargs", "meta", "severity"}
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# The raw gate runs before dbt: raw suites may read raw tables and the seed files, not dbt's schemas.
_DBT_SCHEMAS = re.compile(r"\b(reference|staging|intermediate|marts|snapshots)\.", re.IGNORECASE)


class SuiteError(ValueError):
    """A suite file is invalid; the message starts with `file:line`."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite file, as written (GX checks its arguments when the suite is built)."""

    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    severity: str
    line: int

    def describe(self) -> str:
        """`expect_x(column=y)`: the expectation and the column(s) it is about."""
        about = [f"{k}={self.kwargs[k]}" for k in ("column", "column_A", "column_B", "column_list") if k in self.kwargs]
        return f"{self.type}({', '.join(about)})"


@dataclass(frozen=True)
class SuiteSpec:
    """A suite file: what to validate, how (`scope`), and the expectations."""

    path: Path
    layer: str
    name: str
    table: str
    description: str
    scope: str
    expectations: tuple[ExpectationSpec, ...]
    table_expectations: tuple[ExpectationSpec, ...]
    metrics: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    measures: dict[str, str] = field(default_factory=dict)
    freshness_column: str | None = None

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]

    @property
    def table_suite_name(self) -> str:
        return self.name + TABLE_SUITE_SUFFIX

    @property
    def relpath(self) -> str:
        try:
            return self.path.relative_to(PROJECT_ROOT).as_posix()
        except ValueError:
            return str(self.path)

    def measure_names(self) -> tuple[str, ...]:
        """Columns of the one-row frame of table measures."""
        builtins = [m for m in BUILTIN_MEASURES if m != "hours_since_latest" or self.freshness_column]
        return (*builtins, *self.metrics)

    def to_gx_suites(self) -> dict[str, gx.ExpectationSuite]:
        """The GX suites of this file: `{"rows": <suite>, "table": <suite>.table}` (either may be
        absent when the file has no expectations of that kind). Raises SuiteError naming the file
        and line of an expectation GX does not know or whose arguments it rejects."""
        import great_expectations as gx
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        out: dict[str, gx.ExpectationSuite] = {}
        for kind, name, entries in (
            ("rows", self.name, self.expectations),
            ("table", self.table_suite_name, self.table_expectations),
        ):
            if not entries:
                continue
            what = (
                f"table measures of {self.table}"
                if kind == "table"
                else f"{self.table}, {self.scope.replace('_', ' ')}"
            )
            expectations = []
            for e in entries:
                meta = {**e.meta, "severity": e.severity, "source": f"{self.relpath}:{e.line}"}
                try:
                    config = ExpectationConfiguration(type=e.type, kwargs=dict(e.kwargs), meta=meta)
                    expectations.append(config.to_domain_obj())
                except Exception as exc:  # GX raises its own not-found error and pydantic validation errors
                    detail = " ".join(str(exc).split())
                    raise SuiteError(f"{self.relpath}:{e.line}: {e.type}: {detail}") from exc
            notes = f"**{what}** ({self.relpath})\n\n{self.description}"
            suite = gx.ExpectationSuite(
                name=name,
                expectations=expectations,
                meta={"notes": {"format": "markdown", "content": [notes]}},
            )
            out[kind] = suite
        return out


class _LineDict(dict):
    """A YAML mapping that remembers the line it starts on."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise SuiteError(f"{loader.name}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read(path: Path) -> _LineDict:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from exc
    loader = _Loader(text)
    loader.name = _rel(path)
    try:
        doc = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise SuiteError(f"{_rel(path)}:{line}: not valid YAML: {exc.problem or exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(doc, _LineDict):
        raise SuiteError(f"{_rel(path)}:1: expected a mapping with suite, table, scope and expectations")
    return doc


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def _line(node: Any, default: int) -> int:
    return getattr(node, "line", default)


def _sql_map(doc: _LineDict, key: str, where: str) -> dict[str, str]:
    value = doc.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise SuiteError(f"{where}:{_line(value, doc.line)}: '{key}' must map names to SQL expressions")
    for name in value:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SuiteError(f"{where}:{_line(value, doc.line)}: {key}: {name!r} is not a lower_snake_case name")
    seeds = str(SEEDS_DIR).replace("'", "''")
    return {k: " ".join(v.split()).replace("{seeds}", seeds) for k, v in value.items()}


def _entries(doc: _LineDict, key: str, where: str) -> tuple[ExpectationSpec, ...]:
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise SuiteError(f"{where}:{doc.line}: '{key}' must be a list of expectations")
    out = []
    for item in items:
        if not isinstance(item, _LineDict):
            raise SuiteError(f"{where}:{doc.line}: every entry of '{key}' is a mapping with type and kwargs")
        at = f"{where}:{item.line}"
        unknown = set(item) - _ENTRY_KEYS
        if unknown:
            raise SuiteError(f"{at}: unknown key(s) {sorted(unknown)}; an entry has {sorted(_ENTRY_KEYS)}")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind.startswith("expect_"):
            raise SuiteError(f"{at}: 'type' must name a GX expectation in snake_case, e.g. expect_column_to_exist")
        kwargs, meta = item.get("kwargs") or {}, item.get("meta") or {}
        if not isinstance(kwargs, dict) or not isinstance(meta, dict):
            raise SuiteError(f"{at}: 'kwargs' and 'meta' must be mappings")
        severity = item.get("severity", "error")
        if severity not in SEVERITIES:
            raise SuiteError(f"{at}: severity {severity!r} is not one of {list(SEVERITIES)}")
        out.append(ExpectationSpec(kind, dict(kwargs), dict(meta), severity, item.line))
    return tuple(out)


def parse_suite(path: Path) -> SuiteSpec:
    """Read and check one suite file (shape, names, scope); GX checks the expectations later
    (`SuiteSpec.to_gx_suites`)."""
    path = Path(path)
    where = _rel(path)
    doc = _read(path)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise SuiteError(f"{where}:{doc.line}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("suite", "table", "description", "scope"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise SuiteError(f"{where}:{doc.line}: '{key}' is required (a string)")
    layer = path.parent.name
    table = doc["table"]
    if layer not in LAYERS:
        raise SuiteError(f"{where}:1: suite files live in expectations/<layer>/ with layer one of {list(LAYERS)}")
    if not re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", table) or not table.startswith(f"{layer}."):
        raise SuiteError(f"{where}:{doc.line}: table {table!r} must be '{layer}.<table>' (the schema is the layer)")
    if path.name != f"{table}.yml":
        raise SuiteError(f"{where}:1: the file of table {table} must be named {table}.yml")
    scope = doc["scope"]
    if scope not in SCOPES:
        raise SuiteError(f"{where}:{doc.line}: scope {scope!r} is not one of {list(SCOPES)}")
    if scope == "latest_batch" and layer != "raw":
        raise SuiteError(f"{where}:{doc.line}: scope latest_batch needs {BATCH_COLUMN}, which only raw tables have")

    freshness = doc.get("freshness")
    freshness_column = None
    if freshness is not None:
        if (
            not isinstance(freshness, dict)
            or not isinstance(freshness.get("column"), str)
            or set(freshness) != {"column"}
        ):
            raise SuiteError(f"{where}:{_line(freshness, doc.line)}: freshness must be {{column: <timestamp column>}}")
        freshness_column = freshness["column"]

    metrics = _sql_map(doc, "metrics", where)
    clash = set(metrics) & set(BUILTIN_MEASURES)
    if clash:
        raise SuiteError(f"{where}:{_line(doc.get('metrics'), doc.line)}: metrics {sorted(clash)} are built in")

    group_by: tuple[str, ...] = ()
    measures: dict[str, str] = {}
    aggregate = doc.get("aggregate")
    if scope == "aggregate":
        if not isinstance(aggregate, dict) or set(aggregate) - {"group_by", "measures"} or "measures" not in aggregate:
            raise SuiteError(
                f"{where}:{_line(aggregate, doc.line)}: scope aggregate needs aggregate: {{group_by, measures}}"
            )
        raw_group = aggregate.get("group_by") or []
        if not isinstance(raw_group, list) or not all(isinstance(c, str) and _NAME.fullmatch(c) for c in raw_group):
            raise SuiteError(f"{where}:{aggregate.line}: aggregate.group_by must be a list of column names")
        group_by = tuple(raw_group)
        measures = _sql_map(aggregate, "measures", where)
    elif aggregate is not None:
        raise SuiteError(f"{where}:{_line(aggregate, doc.line)}: 'aggregate' belongs to scope aggregate only")

    if layer == "raw":
        for name, sql in {**metrics, **measures}.items():
            if _DBT_SCHEMAS.search(sql):
                raise SuiteError(
                    f"{where}:{doc.line}: {name} reads a schema dbt builds, but the raw gate runs before dbt; "
                    f"read the seed CSV instead: read_csv('{{seeds}}/<seed>.csv')"
                )
    expectations = _entries(doc, "expectations", where)
    table_expectations = _entries(doc, "table_expectations", where)
    for e in expectations:
        touched = {e.kwargs.get(k) for k in ("column", "column_A", "column_B")} | set(e.kwargs.get("column_list") or [])
        personal = sorted(c for c in touched & PERSONAL_COLUMNS if c)
        if personal and e.type not in VALUE_FREE_TYPES:
            raise SuiteError(
                f"{where}:{e.line}: {e.type} on {personal}: the column holds personal data and GX would keep the "
                f"failing values in Data Docs and alerts; write it as a metric (a count in SQL) and check that instead"
            )
    if not expectations and not table_expectations:
        raise SuiteError(f"{where}:{doc.line}: the suite has no expectations")

    spec = SuiteSpec(
        path=path,
        layer=layer,
        name=doc["suite"],
        table=table,
        description=" ".join(doc["description"].split()),
        scope=scope,
        expectations=expectations,
        table_expectations=table_expectations,
        metrics=metrics,
        group_by=group_by,
        measures=measures,
        freshness_column=freshness_column,
    )
    known = set(spec.measure_names())
    for e in table_expectations:
        column = e.kwargs.get("column")
        if column is not None and column not in known:
            raise SuiteError(f"{where}:{e.line}: table measure {column!r} does not exist; have {sorted(known)}")
    if scope == "aggregate":
        profile = set(group_by) | set(measures)
        for e in expectations:
            column = e.kwargs.get("column")
            if column is not None and column not in profile:
                raise SuiteError(f"{where}:{e.line}: {column!r} is not a group_by column or measure of the profile")
    return spec


@cache
def _load_dir(root: Path) -> tuple[SuiteSpec, ...]:
    specs = []
    for layer in LAYERS:
        specs += [parse_suite(p) for p in sorted((root / layer).glob("*.yml"))]
    names = [s.name for s in specs]
    for s in specs:
        if names.count(s.name) > 1:
            raise SuiteError(f"{s.relpath}: suite name {s.name!r} is used by more than one file")
    return tuple(specs)


def load_suites(
    layer: str | None = None, tables: list[str] | tuple[str, ...] | None = None, *, root: Path | None = None
) -> list[SuiteSpec]:
    """The suite files of `layer` (both layers when None), optionally only for `tables` (given as
    `schema.table` or `table`). Raises SuiteError for a bad file or an unknown table."""
    if layer is not None and layer not in LAYERS:
        raise SuiteError(f"layer {layer!r} is not one of {list(LAYERS)}")
    specs = [s for s in _load_dir(Path(root or EXPECTATIONS_DIR).resolve()) if layer is None or s.layer == layer]
    if tables:
        wanted = {t if "." in t else f"{layer or '*'}.{t}" for t in tables}
        chosen = [s for s in specs if s.table in wanted or f"*.{s.table_name}" in wanted]
        found = {s.table for s in chosen} | {f"*.{s.table_name}" for s in chosen}
        missing = sorted(w for w in wanted if w not in found)
        if missing:
            raise SuiteError(f"no suite for {missing} in {root or EXPECTATIONS_DIR}")
        return chosen
    return specs


def expected_tables(layer: str) -> list[str]:
    """Tables that must have a suite: every raw table of the source registry, and CONSUMED_MARTS.
    Not the activation store's (kind `store`): Yorisoi writes them itself under its own keys and
    constraints, and they exist only after the first send; nor the messaging channels' reports
    (kind `messaging`), which, like the store, feed only the campaign facts."""
    if layer == "raw":
        return sorted(
            f"raw.{t.raw_name}"
            for s in load_registry().sources.values()
            if s.kind not in OUTCOME_KINDS
            for t in s.tables.values()
        )
    if layer == "marts":
        return sorted(f"marts.{m}" for m in CONSUMED_MARTS)
    raise SuiteError(f"layer {layer!r} is not one of {list(LAYERS)}")


@dataclass(frozen=True)
class Adapted:
    """What following the brand's registry did to the raw suites: the suites to run, the suites
    left out (their table's source is disabled), and the expectations dropped (file:line and why)."""

    specs: list[SuiteSpec]
    skipped: list[str]
    dropped: list[str]


def follow_registry(specs: list[SuiteSpec], registry: Registry | None = None) -> Adapted:
    """Fit the raw suites to what the brand has: a suite whose table belongs to a disabled source
    is not run (its table exists empty: not a failure, no freshness); an expectation about a column
    the mapping leaves out (always null in raw) is dropped, and so is freshness on such a column.
    Suites of other layers, and of tables the registry does not know, are kept as written."""
    from ..sources.catalog import mapped_columns, raw_schema

    registry = registry or load_registry()
    by_raw = {f"raw.{t.raw_name}": (registry.sources[t.source], t) for t in registry.tables()}
    kept: list[SuiteSpec] = []
    skipped: list[str] = []
    dropped: list[str] = []
    for spec in specs:
        if spec.layer != "raw" or spec.table not in by_raw:
            kept.append(spec)
            continue
        source, table = by_raw[spec.table]
        if not table.enabled:
            skipped.append(spec.name)
            continue
        mapped, schema = mapped_columns(source, table), raw_schema(table)
        if mapped is None or schema is None:
            kept.append(spec)
            continue
        unmapped = set(schema.names) - mapped

        def about_unmapped(e: ExpectationSpec, unmapped: set[str] = unmapped) -> bool:
            touched = {e.kwargs.get(k) for k in ("column", "column_A", "column_B")}
            touched |= set(e.kwargs.get("column_list") or [])
            return bool(touched & unmapped)

        rows = tuple(e for e in spec.expectations if not about_unmapped(e))
        freshness = spec.freshness_column if spec.freshness_column not in unmapped else None
        table_rows = tuple(
            e
            for e in spec.table_expectations
            if freshness is not None or e.kwargs.get("column") != "hours_since_latest"
        )
        for e in (*spec.expectations, *spec.table_expectations):
            if e not in rows and e not in table_rows:
                dropped.append(f"{spec.relpath}:{e.line}: {e.describe()}: not mapped for this brand")
        kept.append(
            dataclasses.replace(spec, expectations=rows, table_expectations=table_rows, freshness_column=freshness)
        )
    return Adapted(kept, skipped, dropped)
