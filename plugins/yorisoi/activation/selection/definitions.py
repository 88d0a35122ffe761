# ruff: noqa: S608 - SQL is assembled from validated identifiers (mart and column names checked against the marts' YAML, channel names from a fixed list) and this module's table names; values are bound parameters
"""Audiences as code: one YAML file per audience in `audiences/`, and the destination instances
in `include/destinations.yml`, validated on load.

An invalid file stops with an :class:`AudienceError` (or :class:`DestinationConfigError`) that
names the file, the field and what is wrong, e.g.::

    audiences/cart_abandonment.yml: variants: the weights sum to 90; they must sum to 100
    audiences/cart_abandonment.yml: destinations[1].columns: 'email' is not allowed by destination
        line_multicast (allowed: last_product_name, variant)

What an audience file says (see audiences/*.yml for complete examples):

- `name` (the file's stem), `owner`, `description`;
- `selection`: a mart of schema `marts` with optional `filters` (column, op, value; ANDed), or
  `sql`: one read-only SELECT over `marts.*` tables only (anything else is refused);
- `channels` and `destinations` (names from include/destinations.yml; each destination's channel
  must be one of the audience's channels);
- `schedule` (optional cron, local time; without it the audience runs after every segment
  build) and `priority` (1 = first; a higher priority wins a person under the frequency cap);
- `frequency_cap` (at most N messages per person per channel in P days, across audiences; the
  tighter of this and the channel's default in include/destinations.yml applies) and `exit`
  conditions (`goal: purchase` = bought since the first send, `max_sends`, `no_response_after`;
  opted-out, blacklisted and erased people always leave);
- `holdout_percent` (the control group), `variants` (2-4, weights summing to 100);
- `columns`: the fields allowed out (besides each destination's key); a destination may narrow
  them with its own `columns`, never widen them beyond its allow-list (docs/reliability.md #14).
  A column of a `sql` selection is traced to the marts' columns it derives from (sqlglot's
  lineage); one derived from a column tagged pii needs that column in the allow-list
  (docs/reliability.md #20).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ...sources.registry import PROJECT_ROOT

__all__ = [
    "CHANNELS",
    "CONTACT_FIELDS",
    "DEFAULT_AUDIENCES_DIR",
    "DEFAULT_DESTINATIONS_FILE",
    "KIND_CHANNELS",
    "KIND_KEY_FIELD",
    "MEMBER_FIELDS",
    "Audience",
    "AudienceError",
    "BreakerSettings",
    "DestinationConfig",
    "DestinationConfigError",
    "DestinationUse",
    "Destinations",
    "ExitConditions",
    "Filter",
    "FrequencyCap",
    "Retention",
    "Selection",
    "Variant",
    "audiences_dir",
    "destinations_file",
    "load_audience",
    "load_audiences",
    "load_destinations",
    "mart_columns",
    "mart_pii_columns",
    "sql_column_sources",
    "validate_select_sql",
]

DEFAULT_AUDIENCES_DIR = PROJECT_ROOT / "audiences"
DEFAULT_DESTINATIONS_FILE = PROJECT_ROOT / "include" / "destinations.yml"
AUDIENCES_DIR_ENV = "YORISOI_AUDIENCES_DIR"
DESTINATIONS_FILE_ENV = "YORISOI_DESTINATIONS_FILE"
MARTS_MODELS_DIR = PROJECT_ROOT / "dbt_project" / "models" / "marts"
NOT_IN_WAREHOUSE_MARTS = ("analytics",)  # folders under models/marts/ built elsewhere (analytics.duckdb)

# Consent channels (marts.consent_ledger); `call` is never an activation channel.
CHANNELS = ("email", "line", "sms", "dm")
Channel = Literal["email", "line", "sms", "dm"]
Kind = Literal[
    "s3_file", "sftp_dm_list", "sftp_insert_list", "smtp_email", "esp_list", "line_multicast", "line_audience", "sms"
]
# Which consent channels a destination kind may be configured for.
KIND_CHANNELS: dict[str, tuple[str, ...]] = {
    "smtp_email": ("email",),
    "esp_list": ("email",),
    "line_multicast": ("line",),
    "line_audience": ("line",),
    "sms": ("sms",),
    "sftp_dm_list": ("dm",),
    "sftp_insert_list": ("dm",),
    "s3_file": CHANNELS,
}
# The member field that identifies a recipient at each kind (Record.key); the destination class's
# own `key_field` wins when it has one.
KIND_KEY_FIELD: dict[str, str] = {
    "smtp_email": "email",
    "esp_list": "email",
    "line_multicast": "line_user_id",
    "line_audience": "line_user_id",
    "sms": "phone",
    "sftp_dm_list": "person_id",
    "sftp_insert_list": "order_id",
    "s3_file": "person_id",
}
# Member fields the membership step can supply (spec item 4): the golden record's contact fields,
# the person's latest unshipped order (同梱物) and the A/B variant. Anything else must be a column
# of the audience's selection.
CONTACT_FIELDS = ("email", "phone", "line_user_id", "full_name", "name_kana", "postal_code", "prefecture", "address")
ORDER_FIELDS = ("order_id", "order_source", "ordered_at")
MEMBER_FIELDS = ("person_id", *CONTACT_FIELDS, *ORDER_FIELDS, "variant")
RAW_CONTACT_FIELDS = frozenset({"email", "phone"})  # never in a file / analytics export unless allowed
FILE_KINDS = frozenset({"s3_file"})
MESSAGE_KINDS = frozenset({"smtp_email", "line_multicast", "sms"})  # each member gets a message: templates
STATIC_MESSAGE_KINDS = frozenset(
    {"line_multicast"}
)  # one message per request: no per-person placeholders  # exports read by people or tools beyond a messaging system


class AudienceError(ValueError):
    """An audience file is invalid. `problems` lists (field, what is wrong)."""

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = file
        self.problems = problems
        super().__init__(
            "\n".join(f"{file}: {where}: {what}" if where else f"{file}: {what}" for where, what in problems)
        )


class DestinationConfigError(AudienceError):
    """include/destinations.yml is invalid."""


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def audiences_dir() -> Path:
    return Path(os.environ.get(AUDIENCES_DIR_ENV) or DEFAULT_AUDIENCES_DIR)


def destinations_file() -> Path:
    return Path(os.environ.get(DESTINATIONS_FILE_ENV) or DEFAULT_DESTINATIONS_FILE)


# ---- the destinations ----------------------------------------------------------------------------


class FrequencyCap(BaseModel):
    """At most `max_messages` messages per person on a channel in `period_days` days."""

    model_config = ConfigDict(extra="forbid")
    max_messages: int = Field(ge=1)
    period_days: int = Field(ge=1, le=366)


class BreakerSettings(BaseModel):
    """The circuit breaker's thresholds (defaults in include/destinations.yml, overridable per audience)."""

    model_config = ConfigDict(extra="forbid")
    # Skip the export when the audience's size changed by more than this share of the last run's
    # (0.5 = ±50 %) ...
    max_size_change: float | None = Field(default=None, gt=0)
    # ... and by more than this many people (small audiences swing a lot in relative terms).
    min_size_change_rows: int | None = Field(default=None, ge=0)
    require_dbt: bool | None = None
    require_quality: bool | None = None


class DestinationConfig(BaseModel):
    """One destination instance. Options beyond the common ones (bucket, remote_dir, encoding,
    list_id, ...) are passed to the destination class as keyword arguments."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Kind
    channel: Channel
    conn_id: str | None = None
    rate_per_second: float | None = Field(default=None, gt=0)
    max_batch: int | None = Field(default=None, ge=1)  # None: the class's own (files: the whole run)
    allowed_columns: list[str]
    raw_contact_allowed: bool = False  # file exports may carry raw email / phone only when true
    description: str = ""
    # The seed list for test sends (テスト配信): a key (address, LINE ID, phone...) or a mapping
    # with `key` and sample values of the columns.
    test_recipients: list[str | dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _kind_fits(self) -> DestinationConfig:
        if self.channel not in KIND_CHANNELS[self.kind]:
            raise ValueError(
                f"channel {self.channel!r} does not fit kind {self.kind!r} "
                f"(allowed: {', '.join(KIND_CHANNELS[self.kind])})"
            )
        unknown = [
            c for c in self.allowed_columns if c not in MEMBER_FIELDS and not re.fullmatch(r"[a-z][a-z0-9_]*", c)
        ]
        if unknown:
            raise ValueError(f"allowed_columns: {unknown} are not column names")
        if self.kind in FILE_KINDS and not self.raw_contact_allowed:
            raw = sorted(RAW_CONTACT_FIELDS & set(self.allowed_columns))
            if raw:
                raise ValueError(
                    f"allowed_columns: {raw} are raw contact data, which a {self.kind} export may carry only with "
                    "raw_contact_allowed: true (docs/reliability.md #14)"
                )
        return self

    @property
    def key_field(self) -> str:
        """The member field that becomes Record.key (option `key_field`, else the kind's)."""
        return str((self.model_extra or {}).get("key_field") or KIND_KEY_FIELD[self.kind])

    def options(self) -> dict[str, Any]:
        """The whole configuration as the factory receives it."""
        return self.model_dump(exclude_none=True)


class Retention(BaseModel):
    """How long the activation store keeps each kind of row (`ActivationStore.prune`), in days."""

    model_config = ConfigDict(extra="forbid")
    # audience_members rows older than this go; each audience's latest run always stays (the
    # breaker compares the next run's size with it)
    audience_members_days: int = Field(default=90, ge=1)
    # sync_runs with their sync_changelog and sync_rejects rows: the record of what went to whom
    sync_days: int = Field(default=1095, ge=1)
    # send_ledger rows (folded into send_history for the exit conditions first). Longer than any
    # frequency cap can look back (period_days <= 366), so caps always see every send they count.
    send_ledger_days: int = Field(default=400, ge=367)


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frequency_caps: dict[Channel, FrequencyCap] = Field(default_factory=dict)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retention: Retention = Field(default_factory=Retention)


class _DestinationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: _Defaults = Field(default_factory=_Defaults)
    destinations: list[DestinationConfig]


@dataclass(frozen=True)
class Destinations:
    """include/destinations.yml: the destination instances, the channels' default frequency caps,
    the breaker's default thresholds and the activation store's retention."""

    by_name: Mapping[str, DestinationConfig]
    frequency_caps: Mapping[str, FrequencyCap]
    breaker: BreakerSettings
    file: str = ""
    retention: Retention = field(default_factory=Retention)

    def __getitem__(self, name: str) -> DestinationConfig:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(
                f"no destination {name!r} in {self.file} (known: {', '.join(sorted(self.by_name))})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __iter__(self):
        return iter(self.by_name.values())


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] in ("literal_error", "enum") and "input" in err:
            msg = f"{err['input']!r}: {msg}"
        out.append((where, msg))
    return out


def _read_yaml(path: Path, error: type[AudienceError]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(_rel(path), [("", f"cannot read the file: {e.strerror}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(_rel(path), [("", f"not valid YAML: {e}")]) from None


def load_destinations(path: str | os.PathLike[str] | None = None) -> Destinations:
    """Load and validate include/destinations.yml (or `path`)."""
    path = Path(path or destinations_file())
    data = _read_yaml(path, DestinationConfigError)
    if not isinstance(data, dict):
        raise DestinationConfigError(_rel(path), [("", "must be a mapping with 'destinations'")])
    try:
        parsed = _DestinationsFile.model_validate(data)
    except ValidationError as e:
        raise DestinationConfigError(_rel(path), _problems(e)) from None
    names = [d.name for d in parsed.destinations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DestinationConfigError(_rel(path), [("destinations", f"names used twice: {dupes}")])
    return Destinations(
        by_name={d.name: d for d in parsed.destinations},
        frequency_caps=dict(parsed.defaults.frequency_caps),
        breaker=parsed.defaults.breaker,
        file=_rel(path),
        retention=parsed.defaults.retention,
    )


# ---- the marts an audience may read --------------------------------------------------------------


@cache
def _mart_docs(models_dir: str | None = None) -> dict[str, tuple[dict[str, Any], ...]]:
    """`{model: column entries}` of every model in schema `marts`, from the marts' YAML docs."""
    root = Path(models_dir) if models_dir else MARTS_MODELS_DIR
    out: dict[str, tuple[dict[str, Any], ...]] = {}
    for yml in sorted(root.glob("*/_*.yml")):
        if yml.parent.name in NOT_IN_WAREHOUSE_MARTS:
            continue
        doc = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        for model in doc.get("models") or []:
            out[model["name"]] = tuple(model.get("columns") or [])
    return out


def mart_columns(models_dir: str | None = None) -> dict[str, tuple[str, ...]]:
    """`{model: columns}` of every model in schema `marts`, from the marts' YAML docs (so an
    audience is checked without opening the warehouse)."""
    return {model: tuple(c["name"] for c in cols) for model, cols in _mart_docs(models_dir).items()}


def mart_pii_columns(models_dir: str | None = None) -> dict[str, frozenset[str]]:
    """`{model: columns tagged pii}` (tag `pii` or meta `pii: true`, as the role databases read
    them) of every mart that has any."""
    from ...roles import _column_is_pii

    out = {
        model: frozenset(c["name"] for c in cols if _column_is_pii(c)) for model, cols in _mart_docs(models_dir).items()
    }
    return {model: cols for model, cols in out.items() if cols}


_FORBIDDEN_FUNCTIONS = re.compile(
    r"^(getenv|current_setting|read_\w+|query|query_table|glob|sniff_csv|parquet_\w+|duckdb_\w+|pragma_\w+|"
    r"load|install|sql_auto_complete|which_secret|json_serialize_sql|ducklake_\w+|iceberg_\w+|delta_\w+)$",
    re.IGNORECASE,
)


def validate_select_sql(sql: str, marts: Iterable[str] | None = None) -> list[str]:
    """Problems with an audience's SQL (empty when fine): it must be one read-only SELECT whose
    tables are all `marts.<model>` (or CTEs it defines), with no table functions (read_csv, ...)
    and no function that reads the environment or files. DuckDB's own parser decides."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        return [f"does not parse: {str(e).splitlines()[0]}"]
    if len(statements) != 1:
        return [f"must be exactly one statement, found {len(statements)}"]
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        return [f"must be a read-only SELECT; found a {kind.name} statement"]
    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("select json_serialize_sql(?)", [sql]).fetchall()[0][0])
    finally:
        con.close()
    if tree.get("error"):
        return [f"must be a read-only SELECT: {tree.get('error_message')}"]
    known = set(marts) if marts is not None else None
    ctes: set[str] = set()
    tables: list[tuple[str, str, str]] = []
    problems: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("cte_map"), dict):
                ctes.update(e["key"].lower() for e in node["cte_map"].get("map", []))
            t = node.get("type")
            if t == "BASE_TABLE":
                tables.append((node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", "")))
            elif t == "TABLE_FUNCTION":
                fn = (node.get("function") or {}).get("function_name", "?")
                problems.append(f"reads the table function {fn}(); only marts tables may be read")
            elif node.get("class") == "FUNCTION" and _FORBIDDEN_FUNCTIONS.match(str(node.get("function_name", ""))):
                problems.append(f"calls {node['function_name']}(), which is not allowed in an audience")
            for k, v in node.items():
                if t == "TABLE_FUNCTION" and k == "function":
                    walk(v.get("arguments") if isinstance(v, dict) else None)  # said once, arguments still walked
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    problems = list(dict.fromkeys(problems))
    for catalog, schema, table in tables:
        if not schema and not catalog and table.lower() in ctes:
            continue
        if schema.lower() != "marts" or catalog.lower() not in ("", "warehouse"):
            shown = ".".join(p for p in (catalog, schema, table) if p)
            problems.append(f"reads {shown}; only tables of schema marts may be read (write marts.<table>)")
        elif known is not None and table not in known:
            problems.append(f"reads marts.{table}, which is not a mart (see dbt_project/models/marts)")
    return problems


def sql_output_columns(sql: str, marts: Mapping[str, tuple[str, ...]]) -> tuple[list[str] | None, str | None]:
    """`(columns, problem)` of a validated SELECT, bound against empty stand-ins of the marts
    (untyped columns, from the YAML docs): the columns it returns, or the binder's
    complaint about a column or table that does not exist. `(None, None)` when the stand-ins'
    types keep it from binding (it is checked on the warehouse when it runs)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("attach ':memory:' as warehouse")  # the warehouse file's catalog name
        con.execute("use warehouse")
        con.execute("create schema marts")
        for name in sql_marts(sql):
            cols = marts.get(name)
            if cols:
                # untyped (NULL) stand-ins compare and cast with anything
                con.execute(f'create view marts."{name}" as select {", ".join(f"null as {c}" for c in cols)}')
        try:
            described = con.execute(f"select * from ({sql}) limit 0").description
        except duckdb.BinderException as e:
            text = str(e).splitlines()[0]
            if "not found" in text or "does not exist" in text or "does not have a column" in text:
                return None, text
            return None, None
        except duckdb.Error:
            return None, None
        return [d[0] for d in described], None
    finally:
        con.close()


class LineageError(ValueError):
    """sqlglot could not trace an audience's SQL to the marts' columns."""


def sql_column_sources(
    sql: str, marts: Mapping[str, tuple[str, ...]], columns: Iterable[str]
) -> dict[str, set[tuple[str, str]]]:
    """`{output column: {(mart, column)}}`: every marts column each of `columns` of a validated
    SELECT derives from, through aliases, casts, functions, CASE (its conditions included: a
    branch chosen by a birthday tells the birthday), subqueries, CTEs, unions and `*`, by
    sqlglot's column lineage over the marts' documented columns. Raises LineageError when it
    cannot say (the caller refuses the column: docs/reliability.md #14)."""
    from sqlglot import errors, exp, parse_one
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.qualify import qualify

    schema = {"marts": {name: dict.fromkeys(cols, "VARCHAR") for name, cols in marts.items()}}
    try:
        tree = parse_one(sql, dialect="duckdb")
        for table in tree.find_all(exp.Table):
            if table.catalog.lower() == "warehouse":  # the warehouse file's catalog name
                table.set("catalog", None)
        tree = qualify(tree, schema=schema, dialect="duckdb")
        out: dict[str, set[tuple[str, str]]] = {}
        for column in columns:
            root = lineage(column, tree, schema=schema, dialect="duckdb")
            out[column] = {
                (node.expression.name, parse_one(node.name, into=exp.Column).name)
                for node in root.walk()
                if isinstance(node.expression, exp.Table)
            }
    except (errors.SqlglotError, KeyError, ValueError) as e:
        raise LineageError(f"cannot trace its columns to the marts' columns ({str(e).splitlines()[0]})") from None
    return out


def sql_marts(sql: str) -> list[str]:
    """The marts a (validated) SELECT reads, in order of appearance."""
    import duckdb

    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("select json_serialize_sql(?)", [sql]).fetchall()[0][0])
    finally:
        con.close()
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            is_mart = node.get("type") == "BASE_TABLE" and str(node.get("schema_name", "")).lower() == "marts"
            if is_mart and node["table_name"] not in found:
                found.append(node["table_name"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return found


# ---- an audience ---------------------------------------------------------------------------------

FilterOp = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null", "between"]


class Filter(BaseModel):
    """`column op value`, e.g. {column: lifetime_spend, op: ">=", value: 5000}."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    op: FilterOp = "="
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Filter:
        if self.op in ("is null", "is not null"):
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.op in ("in", "not in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list as value")
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("op 'between' needs a list of two values")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"op {self.op!r} needs one value (use 'is null' for nulls)")
        return self

    def sql(self) -> tuple[str, list[Any]]:
        col = f'"{self.column}"'
        if self.op in ("is null", "is not null"):
            return f"{col} {self.op}", []
        if self.op in ("in", "not in"):
            return f"{col} {self.op} ({', '.join('?' for _ in self.value)})", list(self.value)
        if self.op == "between":
            return f"{col} between ? and ?", list(self.value)
        return f"{col} {self.op} ?", [self.value]


class Selection(BaseModel):
    """Either `mart` (+ `filters`) or `sql`."""

    model_config = ConfigDict(extra="forbid")
    mart: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$")
    filters: list[Filter] = Field(default_factory=list)
    sql: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Selection:
        if (self.mart is None) == (self.sql is None):
            raise ValueError("give either 'mart' (with optional 'filters') or 'sql', not both or neither")
        if self.sql is not None and self.filters:
            raise ValueError("'filters' go with 'mart'; write conditions into the sql")
        return self

    def marts(self) -> list[str]:
        return [self.mart] if self.mart else sql_marts(self.sql or "")

    def query(self) -> tuple[str, list[Any]]:
        """The selection as SQL with parameters."""
        if self.sql is not None:
            return self.sql.strip().rstrip(";"), []
        where, params = [], []
        for f in self.filters:
            clause, values = f.sql()
            where.append(clause)
            params += values
        sql = f'select * from marts."{self.mart}"' + (f" where {' and '.join(where)}" if where else "")
        return sql, params


class ExitConditions(BaseModel):
    """When a person leaves the audience (besides opting out, blacklisting and erasure, always)."""

    model_config = ConfigDict(extra="forbid")
    goal: Literal["purchase"] | None = None  # bought (a counted order) since this audience's first send
    max_sends: int | None = Field(default=None, ge=1)  # cap reached: this many sends of this audience
    no_response_after: int | None = Field(default=None, ge=1)  # this many sends without a response


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    weight: int = Field(ge=1, le=100)
    description: str = ""


class MessageTemplate(BaseModel):
    """A message per variant: `body` (and `subject` for email) with {column} placeholders."""

    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1)
    subject: str | None = None


class DestinationUse(BaseModel):
    """A destination the audience goes to: the columns it gets (default: the audience's), the
    message `templates` per variant (key a variant name or `default`; email, LINE and SMS), and
    other `options` for the destination class."""

    model_config = ConfigDict(extra="forbid")
    name: str
    columns: list[str] | None = None
    templates: dict[str, MessageTemplate] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("templates", mode="before")
    @classmethod
    def _plain_bodies(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): {"body": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    owner: str = Field(min_length=1)
    description: str = Field(min_length=1)
    selection: Selection
    channels: list[Channel] = Field(min_length=1)
    destinations: list[DestinationUse] = Field(min_length=1)
    schedule: str | None = None
    priority: int = Field(ge=1, le=1000)
    frequency_cap: FrequencyCap | None = None
    exit: ExitConditions = Field(default_factory=ExitConditions)
    holdout_percent: float = Field(default=10.0, ge=0, le=50)
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="A", weight=100)])
    columns: list[str] = Field(default_factory=list)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    enabled: bool = True
    source_file: str = Field(default="", exclude=True)

    @field_validator("destinations", mode="before")
    @classmethod
    def _names_to_uses(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 10 * * *' = every day at 10:00 local time)")
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Variant]) -> list[Variant]:
        if len(value) == 1 and value[0].weight == 100:
            return value  # no A/B test
        if not 2 <= len(value) <= 4:
            raise ValueError(f"an A/B test has 2 to 4 variants, found {len(value)}")
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique: {names}")
        total = sum(v.weight for v in value)
        if total != 100:
            raise ValueError(f"the weights sum to {total}; they must sum to 100")
        return value

    @model_validator(mode="after")
    def _unique_lists(self) -> Audience:
        for name, values in (("channels", self.channels), ("destinations", [d.name for d in self.destinations])):
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: listed twice: {sorted({v for v in values if values.count(v) > 1})}")
        return self

    # ---- what the other modules ask -------------------------------------------------------------

    @property
    def holdout_share(self) -> float:
        return self.holdout_percent / 100.0

    def destination_columns(self, destination: str) -> list[str]:
        use = next(d for d in self.destinations if d.name == destination)
        return list(use.columns if use.columns is not None else self.columns)

    @property
    def destination_names(self) -> list[str]:
        return [d.name for d in self.destinations]

    def selection_columns(self) -> list[str]:
        """Columns asked for that must come from the selection (not the standard member fields)."""
        wanted = set(self.columns)
        for d in self.destinations:
            wanted |= set(d.columns or ())
        return sorted(wanted - set(MEMBER_FIELDS))


def _check_against(
    audience: Audience, destinations: Destinations, marts: Mapping[str, tuple[str, ...]]
) -> list[tuple[str, str]]:
    """Cross-file checks: marts and columns exist, destinations exist and allow the columns."""
    problems: list[tuple[str, str]] = []
    if audience.source_file and Path(audience.source_file).stem != audience.name:
        problems.append(("name", f"{audience.name!r} must equal the file name ({Path(audience.source_file).stem!r})"))
    sel = audience.selection
    available: set[str] | None
    if sel.mart is not None:
        if sel.mart not in marts:
            problems.append(("selection.mart", f"{sel.mart!r} is not a mart (known: {', '.join(sorted(marts))})"))
            available = None
        else:
            available = set(marts[sel.mart])
            if "person_id" not in available:
                problems.append(("selection.mart", f"{sel.mart!r} has no person_id column: it is not a list of people"))
            for i, f in enumerate(sel.filters):
                if f.column not in available:
                    problems.append(
                        (f"selection.filters[{i}].column", f"unknown column {f.column!r} in marts.{sel.mart}")
                    )
    else:
        sql_problems = validate_select_sql(sel.sql or "", marts)
        problems += [("selection.sql", p) for p in sql_problems]
        available = None  # unknown until it runs, unless it binds against the marts' columns
        if not sql_problems:
            out, problem = sql_output_columns(sel.sql or "", marts)
            if problem:
                problems.append(("selection.sql", problem))
            elif out is not None:
                available = set(out)
                if "person_id" not in available:
                    problems.append(("selection.sql", f"returns no person_id column (it returns {out})"))
    # Columns allowed out.
    for where, cols in [("columns", audience.columns)] + [
        (f"destinations[{i}].columns", d.columns) for i, d in enumerate(audience.destinations) if d.columns is not None
    ]:
        for c in cols:
            if c in MEMBER_FIELDS:
                continue
            if available is not None and c not in available:
                source = f"marts.{sel.mart}" if sel.mart else "the selection's sql"
                problems.append(
                    (
                        where,
                        f"unknown column {c!r}: not a member field ({', '.join(MEMBER_FIELDS)}) "
                        f"nor a column of {source}",
                    )
                )
            elif not re.fullmatch(r"[a-z_][a-z0-9_]*", c):
                problems.append((where, f"{c!r} is not a column name"))
    for i, d in enumerate(audience.destinations):
        if d.columns is not None and not set(d.columns) <= set(audience.columns):
            extra = sorted(set(d.columns) - set(audience.columns))
            problems.append((f"destinations[{i}].columns", f"{extra} are not in the audience's columns"))
    # Destinations and channels.
    seen_channels: set[str] = set()
    for i, d in enumerate(audience.destinations):
        if d.name not in destinations:
            problems.append(
                (
                    f"destinations[{i}]",
                    f"unknown destination {d.name!r} (known in {destinations.file}: "
                    f"{', '.join(sorted(destinations.by_name))})",
                )
            )
            continue
        cfg = destinations[d.name]
        seen_channels.add(cfg.channel)
        if cfg.channel not in audience.channels:
            problems.append(
                (f"destinations[{i}]", f"{d.name} sends on channel {cfg.channel!r}, which is not in channels")
            )
        cols = audience.destination_columns(d.name)
        forbidden = [c for c in cols if c not in cfg.allowed_columns and c != cfg.key_field]
        if forbidden:
            own = d.columns is not None
            problems.append(
                (
                    f"destinations[{i}].columns" if own else "columns",
                    f"{', '.join(repr(c) for c in forbidden)} not allowed by destination {d.name} "
                    f"(allowed: {', '.join(cfg.allowed_columns) or 'nothing beyond its key'})"
                    + ("" if own else f"; give {d.name} its own 'columns'"),
                )
            )
        if d.templates is not None:
            problems += _check_templates(audience, i, d, cols, cfg)
        elif cfg.kind in MESSAGE_KINDS:
            problems.append((f"destinations[{i}].templates", f"{d.name} sends messages: give a template per variant"))
    if sel.sql is not None and not any(where == "selection.sql" for where, _ in problems):
        problems += _check_lineage(audience, destinations, marts)
    missing = [c for c in audience.channels if c not in seen_channels]
    if missing and not any(p[0].startswith("destinations[") for p in problems):
        problems.append(("channels", f"{missing} have no destination"))
    return problems


def _check_lineage(
    audience: Audience, destinations: Destinations, marts: Mapping[str, tuple[str, ...]]
) -> list[tuple[str, str]]:
    """Each column the SQL selection sends out is traced to the marts' columns it derives from;
    one that derives from a column tagged pii leaves only for a destination whose allow-list
    names that pii column (a name is no disguise: `substr(phone, 2) as favourite_category`)."""
    outgoing = audience.selection_columns()
    if not outgoing:
        return []
    try:
        sources = sql_column_sources(audience.selection.sql or "", marts, outgoing)
    except LineageError as e:
        return [("selection.sql", f"{e}; the columns {outgoing} cannot be checked against the allow-lists")]
    pii = mart_pii_columns()
    problems = []
    for i, use in enumerate(audience.destinations):
        if use.name not in destinations:
            continue
        cfg = destinations[use.name]
        for column in audience.destination_columns(use.name):
            leaked = sorted(
                f"marts.{mart}.{col}"
                for mart, col in sources.get(column, ())
                if col in pii.get(mart, ()) and col not in cfg.allowed_columns
            )
            if leaked:
                problems.append(
                    (
                        f"destinations[{i}].columns" if use.columns is not None else "columns",
                        f"{column!r} derives from {', '.join(leaked)}, tagged pii, which destination {use.name} "
                        "does not allow (docs/reliability.md #14)",
                    )
                )
    return problems


def _check_templates(
    audience: Audience, i: int, use: DestinationUse, columns: list[str], cfg: DestinationConfig
) -> list[tuple[str, str]]:
    import string

    problems = []
    variant_names = {v.name for v in audience.variants}
    templates = use.templates or {}
    for key, template in templates.items():
        where = f"destinations[{i}].templates.{key}"
        if key != "default" and key not in variant_names:
            problems.append((where, f"{key!r} is not a variant ({', '.join(sorted(variant_names))}) nor 'default'"))
        if cfg.kind == "smtp_email" and not template.subject:
            problems.append((where, "an email needs a subject"))
        if cfg.kind != "smtp_email" and template.subject:
            problems.append((where, f"a {cfg.kind} message has no subject"))
        for text in (template.subject, template.body):
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(text or "") if name is not None}
            except ValueError as e:
                problems.append((where, f"not a valid template: {e}"))
                continue
            if names and cfg.kind in STATIC_MESSAGE_KINDS:
                problems.append(
                    (
                        where,
                        f"{cfg.kind} sends one message to a whole batch: no {{column}} placeholders ({sorted(names)})",
                    )
                )
                continue
            outside = sorted(n for n in names if n not in columns)
            if outside:
                problems.append((where, f"uses {outside}, which are not among this destination's columns {columns}"))
    if "default" not in templates:
        uncovered = sorted(variant_names - set(templates))
        if uncovered:
            problems.append((f"destinations[{i}].templates", f"no template for variants {uncovered} (nor a 'default')"))
    return problems


def load_audience(
    path: str | os.PathLike[str],
    destinations: Destinations | None = None,
    *,
    marts: Mapping[str, tuple[str, ...]] | None = None,
) -> Audience:
    """Load and validate one audience file against the destinations and the marts."""
    path = Path(path)
    data = _read_yaml(path, AudienceError)
    if not isinstance(data, dict):
        raise AudienceError(_rel(path), [("", "must be a mapping (name, owner, description, selection, ...)")])
    try:
        audience = Audience.model_validate({**data, "source_file": str(path)})
    except ValidationError as e:
        raise AudienceError(_rel(path), _problems(e)) from None
    problems = _check_against(
        audience, destinations or load_destinations(), marts if marts is not None else mart_columns()
    )
    if problems:
        raise AudienceError(_rel(path), problems)
    return audience


@dataclass
class Audiences:
    """Every audience file of a folder, by name, in priority order (then by name)."""

    by_name: dict[str, Audience] = field(default_factory=dict)
    destinations: Destinations | None = None

    def __getitem__(self, name: str) -> Audience:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no audience {name!r} (known: {', '.join(sorted(self.by_name))})") from None

    def __iter__(self):
        return iter(sorted(self.by_name.values(), key=lambda a: (a.priority, a.name)))

    def __len__(self) -> int:
        return len(self.by_name)


def load_audiences(
    folder: str | os.PathLike[str] | None = None,
    destinations: Destinations | None = None,
    *,
    marts: Mapping[str, tuple[str, ...]] | None = None,
) -> Audiences:
    """Every `*.yml` / `*.yaml` in `folder` (default: audiences/ at the repository root). All files
    are checked; the error lists the problems of every bad file."""
    folder = Path(folder or audiences_dir())
    destinations = destinations or load_destinations()
    marts = marts if marts is not None else mart_columns()
    found: dict[str, Audience] = {}
    errors: list[AudienceError] = []
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        try:
            audience = load_audience(path, destinations, marts=marts)
        except AudienceError as e:
            errors.append(e)
            continue
        if audience.name in found:
            errors.append(
                AudienceError(
                    _rel(path), [("name", f"{audience.name!r} is also defined in {found[audience.name].source_file}")]
                )
            )
            continue
        found[audience.name] = audience
    if len(errors) == 1:
        raise errors[0]
    if errors:
        combined = AudienceError(_rel(folder), [])
        combined.problems = [(f"{e.file}: {where}", what) for e in errors for where, what in e.problems]
        combined.args = ("\n".join(str(e) for e in errors),)
        raise combined
    return Audiences(by_name=found, destinations=destinations)
