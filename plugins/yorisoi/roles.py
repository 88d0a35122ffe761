"""The four roles — 管理者 admin, シナリオ設定者 scenario author, コンテンツ設定者 content author,
アナリスト analyst — and what each may see and do, from one matrix: `include/roles.yml`.

**Actions.** `check(role, action)` raises PermissionError unless the matrix lets the role do it;
the CLI commands and (issue 8) the activation layer call it before they act. A typo in an action
or role name is a ValueError, never a silent allow or deny.

**Data, on DuckDB.** DuckDB has no users and no GRANT, and a view cannot safely reach into another
database file, so the boundary is physical — one file per kind of reader:

- admin reads `var/warehouse.duckdb` (every schema, raw personal data included), with
  `var/analytics.duckdb` attached;
- analyst reads `var/analytics.duckdb`, which the dbt models in `marts/analytics` build without
  raw personal data;
- scenario author and content author read a role database `var/roles/<role>.duckdb`, which
  `build_role_databases()` copies from the warehouse after each build: only the relations the
  matrix lists, and of those only the columns the dbt manifest documents and does not tag `pii`
  (an allow-list: a new, undocumented column stays out until someone describes it). A content
  author's database must hold aggregates only; the build refuses a person-level column.

`connect(role)` opens the role's file read-only. For every role but admin the connection is also
locked down with DuckDB's `enable_external_access = false` and `lock_configuration = true`: it
cannot ATTACH the warehouse, read Parquet from the lake, or COPY data out to a file. That stops a
program handed the connection; a person with a shell could still open the warehouse file with
DuckDB directly, so on a shared machine the files also need OS permissions to match the matrix
(warehouse readable by admins only, role databases by their role's group) — the separate files
are what make that possible.

**Data, on server warehouses.** The analytics models carry dbt `grants` (select to
`var('analyst_roles')`); `dbt_vars()` derives that var from the `warehouse_roles` of the roles that
may read analytics, so the matrix drives the grants: `yorisoi dbt build --vars "$(yorisoi roles
dbt-vars)"`.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
import yaml
from rich.table import Table

from . import paths
from .logs import make_console
from .sources.registry import PROJECT_ROOT

ROLES_FILE = PROJECT_ROOT / "include" / "roles.yml"
DOC_FILE = PROJECT_ROOT / "docs" / "roles.md"
ROLE_ENV = "YORISOI_ROLE"
FILE_KINDS = ("warehouse", "analytics", "role")
PII_LEVELS = ("raw", "none")
DOC_BEGIN = "<!-- BEGIN generated from include/roles.yml by `yorisoi roles doc`; edit the YAML, not this table -->"
DOC_END = "<!-- END generated -->"
# Columns that make a row one customer's (or one source record's): an aggregate-only role must
# not receive them.
PERSON_LEVEL_COLUMNS = {"person_id", "record_key", "customer_record", "from_person_id", "to_person_id"}


class RolesError(ValueError):
    """The matrix is invalid, or a role or action name is unknown; the message names it."""


@dataclass(frozen=True)
class Action:
    name: str
    en: str
    ja: str


@dataclass(frozen=True)
class DataAccess:
    file: str
    relations: tuple[str, ...]
    exclude: tuple[str, ...]
    pii: str
    customer_level: bool

    def covers(self, schema: str, relation: str) -> bool:
        """Whether `schema.relation` is among the relations this role reads."""
        name = f"{schema}.{relation}"
        return any(fnmatch.fnmatchcase(name, p) for p in self.relations) and not any(
            fnmatch.fnmatchcase(name, p) for p in self.exclude
        )


@dataclass(frozen=True)
class Role:
    name: str
    ja: str
    description_en: str
    description_ja: str
    data: DataAccess
    warehouse_roles: tuple[str, ...]
    can: frozenset[str]


@dataclass(frozen=True)
class Matrix:
    actions: dict[str, Action]
    roles: dict[str, Role]

    def role(self, name: str) -> Role:
        """A role by its key (`scenario_author`, also `scenario-author`) or Japanese name."""
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in self.roles:
            return self.roles[key]
        for role in self.roles.values():
            if role.ja == name.strip():
                return role
        raise RolesError(f"unknown role {name!r}; roles: {', '.join(self.roles)}")

    def action(self, name: str) -> Action:
        if name not in self.actions:
            raise RolesError(f"unknown action {name!r}; actions: {', '.join(self.actions)}")
        return self.actions[name]


def _require(mapping: dict, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise RolesError(f"{where}: missing {key!r}")
    return mapping[key]


def _parse(doc: dict) -> Matrix:
    actions = {
        name: Action(name, str(_require(a, "en", f"action {name}")), str(_require(a, "ja", f"action {name}")))
        for name, a in (_require(doc, "actions", "roles.yml") or {}).items()
    }
    roles: dict[str, Role] = {}
    for name, r in (_require(doc, "roles", "roles.yml") or {}).items():
        where = f"role {name}"
        d = _require(r, "data", where)
        data = DataAccess(
            file=str(_require(d, "file", where)),
            relations=tuple(_require(d, "relations", where)),
            exclude=tuple(d.get("exclude") or ()),
            pii=str(_require(d, "pii", where)),
            customer_level=bool(_require(d, "customer_level", where)),
        )
        description = _require(r, "description", where)
        role = Role(
            name=name,
            ja=str(_require(r, "ja", where)),
            description_en=str(_require(description, "en", where)),
            description_ja=str(_require(description, "ja", where)),
            data=data,
            warehouse_roles=tuple(r.get("warehouse_roles") or ()),
            can=frozenset(r.get("can") or ()),
        )
        _validate(role, actions)
        roles[name] = role
    return Matrix(actions, roles)


def _validate(role: Role, actions: dict[str, Action]) -> None:
    """The rules that keep the matrix from contradicting itself."""
    where = f"roles.yml, role {role.name}"
    unknown = sorted(role.can - set(actions))
    if unknown:
        raise RolesError(f"{where}: unknown actions {unknown}")
    if role.data.file not in FILE_KINDS:
        raise RolesError(f"{where}: data.file must be one of {FILE_KINDS}, not {role.data.file!r}")
    if role.data.pii not in PII_LEVELS:
        raise RolesError(f"{where}: data.pii must be one of {PII_LEVELS}, not {role.data.pii!r}")
    if (role.data.pii == "raw") != (role.data.file == "warehouse"):
        raise RolesError(f"{where}: raw personal data is in the warehouse file only (pii: raw <=> file: warehouse)")
    if "read_customer_pii" in role.can and role.data.pii != "raw":
        raise RolesError(f"{where}: read_customer_pii needs data.pii: raw")
    if "read_masked_customers" in role.can and not role.data.customer_level:
        raise RolesError(f"{where}: read_masked_customers needs data.customer_level: true")
    if role.data.file == "analytics" and "read_analytics" not in role.can:
        raise RolesError(f"{where}: a role that reads the analytics file needs read_analytics")


def load_matrix(path: Path | None = None) -> Matrix:
    """The role matrix from `include/roles.yml` (or `path`), validated."""
    if path is None:
        return _default_matrix()
    return _parse(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@cache
def _default_matrix() -> Matrix:
    return _parse(yaml.safe_load(ROLES_FILE.read_text(encoding="utf-8")))


def allowed(role: str, action: str, *, matrix: Matrix | None = None) -> bool:
    m = matrix or load_matrix()
    return m.action(action).name in m.role(role).can


def check(role: str, action: str, *, matrix: Matrix | None = None) -> None:
    """Raise PermissionError unless `role` may do `action` (RolesError for unknown names)."""
    m = matrix or load_matrix()
    r, a = m.role(role), m.action(action)
    if a.name in r.can:
        return
    who = [x.name for x in m.roles.values() if a.name in x.can]
    raise PermissionError(
        f"role {r.name} ({r.ja}) may not {a.name} ({a.en}); "
        f"roles that may: {', '.join(who) or 'none'} (include/roles.yml)"
    )


def current_role(explicit: str | None = None, *, matrix: Matrix | None = None) -> str:
    """The role a command acts in: `explicit` (a --role option), else $YORISOI_ROLE. There is no
    default: a command that needs a role and gets none refuses."""
    name = explicit or os.environ.get(ROLE_ENV)
    m = matrix or load_matrix()
    if not name:
        raise RolesError(f"no role: pass --role or set {ROLE_ENV} (one of {', '.join(m.roles)})")
    return m.role(name).name


# --- the dbt manifest: which columns are documented, which are personal data -------------------


def manifest_path() -> Path:
    """Where `dbt parse` / `dbt build` leave the manifest for the current var/."""
    from .transform import dbt_env

    return Path(dbt_env()["DBT_TARGET_PATH"]) / "manifest.json"


def load_manifest(path: Path | None = None) -> dict:
    path = Path(path or manifest_path())
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dbt manifest; run `yorisoi dbt parse` (or a build) first")
    return json.loads(path.read_text(encoding="utf-8"))


def _column_is_pii(col: dict) -> bool:
    config = col.get("config") or {}
    tags = set(col.get("tags") or ()) | set(config.get("tags") or ())
    meta = {**(col.get("meta") or {}), **(config.get("meta") or {})}
    return "pii" in tags or meta.get("pii") is True


@dataclass(frozen=True)
class RelationColumns:
    """A relation's columns as the manifest describes them."""

    node: str
    documented: frozenset[str]
    pii: frozenset[str]


def manifest_relations(manifest: dict, database: str = "warehouse") -> dict[tuple[str, str], RelationColumns]:
    """(schema, relation) -> documented and pii-tagged columns, for the models, seeds and
    snapshots dbt writes to `database`."""
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ("model", "seed", "snapshot") or node.get("database") != database:
            continue
        cols = node.get("columns") or {}
        out[(node["schema"], node.get("alias") or node["name"])] = RelationColumns(
            node["unique_id"],
            frozenset(cols),
            frozenset(name for name, col in cols.items() if _column_is_pii(col)),
        )
    return out


def pii_models(manifest: dict) -> dict[str, set[str]]:
    """Model unique_id -> its pii-tagged columns, for every model that has any."""
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            pii = {name for name, col in (node.get("columns") or {}).items() if _column_is_pii(col)}
            if pii:
                out[node["unique_id"]] = pii
    return out


# --- role databases ----------------------------------------------------------------------------


def role_database_path(role: str) -> Path:
    return paths.roles_dir() / f"{load_matrix().role(role).name}.duckdb"


@dataclass
class RoleDatabase:
    role: str
    path: Path
    tables: dict[str, list[str]] = field(default_factory=dict)  # schema.relation -> columns copied
    dropped: dict[str, list[str]] = field(default_factory=dict)  # schema.relation -> columns left out
    skipped: dict[str, str] = field(default_factory=dict)  # schema.relation -> why not copied


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build_role_database(
    role: str,
    *,
    warehouse: Path | None = None,
    manifest: dict | None = None,
    out_dir: Path | None = None,
    matrix: Matrix | None = None,
) -> RoleDatabase:
    """Copy the relations `role` may read from the warehouse into `<out_dir>/<role>.duckdb`,
    keeping only columns the manifest documents and does not tag pii. Written to a temporary
    file and renamed, so a reader never opens half a database. Run it after each dbt build (it
    reads the warehouse, so it takes the same turn as the other warehouse users)."""
    m = matrix or load_matrix()
    r = m.role(role)
    if r.data.file != "role":
        raise RolesError(f"role {r.name} reads the {r.data.file} file, not a role database")
    warehouse = Path(warehouse or paths.warehouse_path())
    described = manifest_relations(manifest if manifest is not None else load_manifest())
    out_dir = Path(out_dir or paths.roles_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{r.name}.duckdb"
    tmp = out_dir / f".{r.name}.duckdb.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    result = RoleDatabase(r.name, final)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"attach {_sql_str(str(warehouse))} as wh (read_only)")
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables where table_catalog = 'wh' order by 1, 2"
        ).fetchall()
        for schema, relation in relations:
            name = f"{schema}.{relation}"
            if not r.data.covers(schema, relation):
                continue
            info = described.get((schema, relation))
            if info is None:
                result.skipped[name] = "not in the dbt manifest"
                continue
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns where table_catalog = 'wh' "
                    "and table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, relation],
                ).fetchall()
            ]
            keep = [c for c in columns if c in info.documented and c not in info.pii]
            dropped = [c for c in columns if c not in keep]
            if not r.data.customer_level and (person := [c for c in keep if c in PERSON_LEVEL_COLUMNS]):
                raise RolesError(
                    f"role {r.name} may see aggregates only, but {name} has person-level columns {person}; "
                    "remove it from the role's relations in include/roles.yml"
                )
            if dropped:
                result.dropped[name] = dropped
            if not keep:
                result.skipped[name] = "no documented non-personal column"
                continue
            con.execute(f"create schema if not exists {_q(schema)}")
            con.execute(
                f"create table {_q(schema)}.{_q(relation)} as select {', '.join(_q(c) for c in keep)} "  # noqa: S608 - names from the catalog
                f"from wh.{_q(schema)}.{_q(relation)}"
            )
            result.tables[name] = keep
        con.execute("detach wh")
        con.execute(
            "create table main._role_database as select * from (values (?, ?, ?, ?)) "
            "as t(role, built_at, relations, dropped_columns)",
            [
                r.name,
                datetime.now(UTC).replace(tzinfo=None),
                json.dumps(result.tables),
                json.dumps(result.dropped),
            ],
        )
        con.execute("checkpoint")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, final)
    return result


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_role_databases(
    *, warehouse: Path | None = None, manifest: dict | None = None, out_dir: Path | None = None
) -> dict[str, RoleDatabase]:
    """Build the role database of every role whose data is a role database."""
    m = load_matrix()
    manifest = manifest if manifest is not None else load_manifest()
    return {
        r.name: build_role_database(r.name, warehouse=warehouse, manifest=manifest, out_dir=out_dir, matrix=m)
        for r in m.roles.values()
        if r.data.file == "role"
    }


# --- connections -------------------------------------------------------------------------------

LOCKED_DOWN = {"enable_external_access": False, "lock_configuration": True}


def connect(role: str, *, var: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the data `role` may read, and nothing else (see the
    module docstring). `var` points at another runtime folder (default: yorisoi.paths)."""
    r = load_matrix().role(role)
    base = Path(var) if var else paths.var_dir()
    if r.data.file == "warehouse":
        path = base / paths.warehouse_path().name
    elif r.data.file == "analytics":
        path = base / paths.analytics_path().name
    else:
        path = (base / "roles" if var else paths.roles_dir()) / f"{r.name}.duckdb"
    if not path.exists():
        hint = "run `yorisoi roles build` after the dbt build" if r.data.file == "role" else "run the dbt build"
        raise FileNotFoundError(f"{path}: the {r.name} role's database does not exist; {hint}")
    if r.data.file == "warehouse":
        con = duckdb.connect(str(path), read_only=True)
        analytics = base / paths.analytics_path().name
        if analytics.exists():
            con.execute(f"attach {_sql_str(str(analytics))} as analytics (read_only)")
        return con
    return duckdb.connect(str(path), read_only=True, config=dict(LOCKED_DOWN))


def dbt_vars(matrix: Matrix | None = None) -> dict[str, list[str]]:
    """The dbt vars the matrix drives: `analyst_roles`, the server-warehouse roles of every role
    that may read analytics (they get select on the analytics models, and only on them)."""
    m = matrix or load_matrix()
    grantees = sorted({w for r in m.roles.values() if "read_analytics" in r.can for w in r.warehouse_roles})
    return {"analyst_roles": grantees}


# --- the document ------------------------------------------------------------------------------


def render_matrix(matrix: Matrix | None = None) -> str:
    """The Markdown tables of docs/roles.md (between the generated markers)."""
    m = matrix or load_matrix()
    roles = list(m.roles.values())
    files = {
        "warehouse": "`var/warehouse.duckdb` (all schemas) + `analytics.duckdb`",
        "analytics": "`var/analytics.duckdb`",
        "role": "`var/roles/<role>.duckdb`",
    }
    lines = [
        "| role | 役割 | what they do | reads (DuckDB) | raw personal data | customer-level rows |",
        "|---|---|---|---|---|---|",
    ]
    for r in roles:
        file = files[r.data.file].replace("<role>", r.name)
        lines.append(
            f"| `{r.name}` | {r.ja} | {r.description_en}<br>{r.description_ja} | {file} | "
            f"{'yes' if r.data.pii == 'raw' else 'no'} | {'yes' if r.data.customer_level else 'no (aggregates)'} |"
        )
    lines += ["", "| action | 操作 | " + " | ".join(f"`{r.name}`" for r in roles) + " |"]
    lines.append("|---|---|" + "---|" * len(roles))
    for a in m.actions.values():
        marks = " | ".join("✓" if a.name in r.can else "—" for r in roles)
        lines.append(f"| `{a.name}`: {a.en} | {a.ja} | {marks} |")
    lines += ["", "| role | relations it reads | left out |", "|---|---|---|"]
    for r in roles:
        rel = ", ".join(f"`{p}`" for p in r.data.relations)
        excl = ", ".join(f"`{p}`" for p in r.data.exclude) or "—"
        lines.append(f"| `{r.name}` | {rel} | {excl} |")
    lines += [
        "",
        "Server-warehouse roles granted select on the analytics models (dbt var `analyst_roles`): "
        + (", ".join(f"`{w}`" for w in dbt_vars(m)["analyst_roles"]) or "none"),
    ]
    return "\n".join(lines) + "\n"


def render_doc(text: str, matrix: Matrix | None = None) -> str:
    """`text` (docs/roles.md) with its generated block replaced by the current matrix."""
    head, sep, rest = text.partition(DOC_BEGIN)
    _, sep2, tail = rest.partition(DOC_END)
    if not sep or not sep2:
        raise RolesError(f"{DOC_FILE.name}: the generated-block markers are missing")
    return f"{head}{DOC_BEGIN}\n{render_matrix(matrix)}{DOC_END}{tail}"


# --- the `yorisoi roles` commands ----------------------------------------------------------------

roles_app = typer.Typer(help="The role matrix (include/roles.yml) and the role databases.", no_args_is_help=True)
_console = make_console()


@roles_app.command("show")
def show_command() -> None:
    """Print who may do what."""
    m = load_matrix()
    table = Table("action", *[f"{r.name}\n{r.ja}" for r in m.roles.values()], title="include/roles.yml")
    for a in m.actions.values():
        table.add_row(f"{a.name}\n[dim]{a.ja}[/dim]", *["✓" if a.name in r.can else "—" for r in m.roles.values()])
    _console.print(table)


@roles_app.command("build")
def build_command(
    role: Annotated[str | None, typer.Option(help=f"acting role (else ${ROLE_ENV})")] = None,
) -> None:
    """Rebuild the role databases (var/roles/<role>.duckdb) from the warehouse and the dbt
    manifest: the relations each role may read, without personal-data columns."""
    try:
        check(current_role(role), "run_dags")
        built = build_role_databases()
    except (PermissionError, RolesError, FileNotFoundError) as e:
        typer.echo(f"yorisoi roles build: {e}", err=True)
        raise typer.Exit(1 if isinstance(e, PermissionError) else 2) from e
    for db in built.values():
        dropped = sum(len(c) for c in db.dropped.values())
        _console.print(
            f"{db.role}: {len(db.tables)} relations → {db.path} ({dropped} columns left out)", soft_wrap=True
        )


@roles_app.command("doc")
def doc_command(
    check_only: Annotated[bool, typer.Option("--check", help="exit 1 when docs/roles.md is out of date")] = False,
) -> None:
    """Rewrite the generated tables of docs/roles.md from include/roles.yml."""
    current = DOC_FILE.read_text(encoding="utf-8")
    wanted = render_doc(current)
    if check_only:
        raise typer.Exit(0 if wanted == current else 1)
    DOC_FILE.write_text(wanted, encoding="utf-8")
    _console.print(f"wrote {DOC_FILE}")


@roles_app.command("dbt-vars")
def dbt_vars_command() -> None:
    """Print the dbt vars the matrix drives, for `yorisoi dbt build --vars "$(yorisoi roles dbt-vars)"`."""
    typer.echo(json.dumps(dbt_vars()))
