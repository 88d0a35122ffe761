"""The matrix holds on the data, with the XS brand built: the analyst's connection sees no raw
email or phone anywhere and cannot reach the warehouse; the role databases hold no column the
dbt manifest tags pii and none of the golden record's personal values; a content author gets
aggregates only; and on a server warehouse the grants the matrix drives reach the analytics
models and no model with personal data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from yorisoi import roles
from yorisoi.transform import run_dbt
from yorisoi_kit.scale_run import ScaleRun, using_var

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d{8,15}|\b0\d{1,4}[-\s]?\d{1,4}[-\s]?\d{3,4}\b")
NON_ADMIN = ("scenario_author", "content_author", "analyst")


@pytest.fixture(scope="module")
def var(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A runtime folder over the built XS brand (its warehouse, analysts' database and dbt
    target linked, not copied) with the role databases built from them; yorisoi.paths points at
    it meanwhile."""
    var = tmp_path_factory.mktemp("roles_var")
    for name in ("warehouse.duckdb", "analytics.duckdb", "dbt"):
        (var / name).symlink_to(xs.work / name)
    with using_var(var):
        built = roles.build_role_databases()  # the build's manifest, found where dbt left it
        assert set(built) == {"scenario_author", "content_author"}
        yield var


@pytest.fixture(scope="module")
def manifest(xs: ScaleRun) -> dict:
    return roles.load_manifest(xs.work / "dbt" / "target" / "manifest.json")


def tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        "select table_schema, table_name from information_schema.tables where table_catalog = current_database() "
        "order by 1, 2"
    ).fetchall()


def columns(con: duckdb.DuckDBPyConnection, schema: str, table: str, *, text_only: bool = False) -> list[str]:
    where = " and data_type = 'VARCHAR'" if text_only else ""
    return [
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns where table_catalog = current_database() "
            f"and table_schema = ? and table_name = ?{where}",
            [schema, table],
        ).fetchall()
    ]


def text_values(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) of every distinct non-empty text value in the database."""
    for schema, table in tables(con):
        for column in columns(con, schema, table, text_only=True):
            for (v,) in con.execute(f'select distinct "{column}" from "{schema}"."{table}"').fetchall():
                if v:
                    yield f"{schema}.{table}", column, v


def test_the_analyst_sees_no_raw_email_or_phone_anywhere(var: Path) -> None:
    con = roles.connect("analyst")
    assert {t for _, t in tables(con)} >= {"customer_profiles", "orders"}
    scanned = 0
    for table, column, value in text_values(con):
        scanned += 1
        assert not EMAIL.search(value), f"email in {table}.{column}"
        assert not PHONE.search(value), f"phone number in {table}.{column}"
    assert scanned > 1000


@pytest.mark.parametrize("role", NON_ADMIN)
def test_a_non_admin_connection_cannot_reach_the_warehouse(var: Path, role: str) -> None:
    con = roles.connect(role)
    assert [d for (d,) in con.execute("select database_name from duckdb_databases()").fetchall()] == [
        roles.load_matrix().role(role).data.file if role == "analyst" else role,
        "system",
        "temp",
    ]
    for sql in (
        f"attach '{var / 'warehouse.duckdb'}' as wh (read_only)",
        f"select count(*) from '{var / 'warehouse.duckdb'}'",
        f"select * from read_parquet('{var}/**/*.parquet')",
        f"copy (select 1) to '{var / 'leak.csv'}'",
        "set enable_external_access = true",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    with pytest.raises(duckdb.Error):
        con.execute("create table main.x as select 1")  # read-only
    assert not (var / "leak.csv").exists()


def test_the_admin_reads_everything(var: Path) -> None:
    """The same scans find personal data where it is (so they can fail)."""
    con = roles.connect("admin")
    emails = [v for (v,) in con.execute("select email from marts.dim_customers where email is not null").fetchall()]
    assert emails and all(EMAIL.search(v) for v in emails)
    assert con.execute("select count(*) from analytics.customer_profiles").fetchall()[0][0] > 0


@pytest.mark.parametrize("role", ["scenario_author", "content_author"])
def test_a_role_database_holds_no_personal_data(var: Path, manifest: dict, xs: ScaleRun, role: str) -> None:
    described = roles.manifest_relations(manifest)
    pii_names = {c for rel in described.values() for c in rel.pii}
    assert {"email", "phone", "full_name", "address", "line_user_id"} <= pii_names
    wh = duckdb.connect(str(xs.warehouse), read_only=True)
    personal = {
        v
        for (row) in wh.execute(
            "select full_name, name_kana, email, phone, address, line_user_id from marts.dim_customers"
        ).fetchall()
        for v in row
        if v
    }
    wh.close()
    assert len(personal) > 1000
    spec = roles.load_matrix().role(role).data
    con = roles.connect(role)
    copied = [(s, t) for s, t in tables(con) if not t.startswith("_")]
    assert copied
    for schema, table in copied:
        assert spec.covers(schema, table), f"{schema}.{table} is not among the {role}'s relations"
        cols = set(columns(con, schema, table))
        assert not cols & described[(schema, table)].pii, f"pii column in {schema}.{table}"
        assert not cols & pii_names, f"a column named like personal data in {schema}.{table}"
        assert cols <= described[(schema, table)].documented
    for table, column, value in text_values(con):
        assert value not in personal, f"a customer's personal value in {table}.{column}"
        assert not EMAIL.search(value), f"email in {table}.{column}"


def test_the_scenario_author_gets_masked_customers_and_the_content_author_aggregates(var: Path) -> None:
    scenario = roles.connect("scenario_author")
    names = {f"{s}.{t}" for s, t in tables(scenario)}
    assert {"marts.dim_customers", "marts.deliverable_customers", "marts.segment_4r", "marts.customer_rfm"} <= names
    assert not names & {"marts.bridge_customer_identities", "marts.erasure_tombstones"}
    assert "person_id" in columns(scenario, "marts", "dim_customers")
    assert scenario.execute("select count(*) from marts.deliverable_customers").fetchall()[0][0] > 100
    content = roles.connect("content_author")
    assert content.execute("select count(*) from marts.segment_4r").fetchall()[0][0] > 0
    for schema, table in tables(content):
        assert not set(columns(content, schema, table)) & roles.PERSON_LEVEL_COLUMNS, f"{schema}.{table}"


def test_the_copy_is_an_allow_list_of_documented_columns(var: Path, manifest: dict, tmp_path: Path) -> None:
    """A column the YAML does not describe stays out, even if nobody tagged it pii."""
    changed = json.loads(json.dumps(manifest))
    node = changed["nodes"]["model.yorisoi.dim_customers"]
    del node["columns"]["gender"]
    db = roles.build_role_database("scenario_author", manifest=changed, out_dir=tmp_path)
    assert "gender" in db.dropped["marts.dim_customers"] and "email" in db.dropped["marts.dim_customers"]
    con = duckdb.connect(str(db.path), read_only=True)
    assert "gender" not in columns(con, "marts", "dim_customers")


def test_an_aggregate_only_role_refuses_customer_rows(var: Path, manifest: dict, tmp_path: Path) -> None:
    doc = yaml.safe_load(roles.ROLES_FILE.read_text(encoding="utf-8"))
    doc["roles"]["content_author"]["data"]["relations"].append("marts.customer_rfm")
    path = tmp_path / "roles.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(roles.RolesError, match="aggregates only"):
        roles.build_role_database("content_author", manifest=manifest, out_dir=tmp_path, matrix=roles.load_matrix(path))
    assert not (tmp_path / "content_author.duckdb").exists()


def test_the_matrix_drives_the_grants_on_server_warehouses(tmp_path: Path) -> None:
    """Parsed with the matrix's vars: the analytics models grant select to the analyst's
    warehouse roles; no model with a pii column grants anything to them; and what they are
    granted is exactly what DuckDB puts in the analysts' file."""
    grantees = set(roles.dbt_vars()["analyst_roles"])
    assert grantees
    with using_var(tmp_path):
        run_dbt(["parse", "--vars", json.dumps(roles.dbt_vars())], demo_key=True)
        manifest = roles.load_manifest()
    models = {n["unique_id"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    granted = {uid for uid, n in models.items() if grantees & set((n["config"].get("grants") or {}).get("select", []))}
    analytics = {uid for uid, n in models.items() if n["fqn"][1:3] == ["marts", "analytics"]}
    pii = roles.pii_models(manifest)
    assert len(pii) >= 5 and "model.yorisoi.dim_customers" in pii
    assert analytics and granted == analytics
    assert not granted & set(pii)
    for uid in analytics:
        assert set(models[uid]["config"]["grants"]["select"]) == grantees
    assert {uid for uid, n in models.items() if n["database"] == "analytics"} == analytics


def test_the_build_command_needs_a_role_that_runs_the_pipeline(var: Path) -> None:
    from typer.testing import CliRunner

    denied = CliRunner().invoke(roles.roles_app, ["build", "--role", "scenario_author"])
    assert denied.exit_code == 1 and "may not run_dags" in denied.stderr
    built = CliRunner().invoke(roles.roles_app, ["build", "--role", "admin"])
    assert built.exit_code == 0, built.output
    assert (var / "roles" / "scenario_author.duckdb").exists() and (var / "roles" / "content_author.duckdb").exists()
