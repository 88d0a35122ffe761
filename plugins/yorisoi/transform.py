"""Run the dbt project (dbt_project/) in-process against the embedded warehouse.

dbt reads its paths and secrets from the environment (dbt_project/profiles.yml); this module
sets them from `yorisoi.paths`, so the CLI, the Airflow tasks and the tests build the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import paths
from .sources.registry import PROJECT_ROOT

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
MATCH_KEY_CONN_ID = "yorisoi_match_key"
# The customer layer: marts and the analysts' tables with everything they depend on, and the
# golden record's history.
# Every staging and intermediate model (some feed no mart yet, e.g. the stewards' list of shared
# keys), every mart with what it reads, and the snapshot.
CUSTOMER_LAYER = "tag:staging tag:intermediate +tag:marts +tag:analytics customers_snapshot"
# The marts rebuilt daily for the as-of day (segments, retention, triggers, targeting, campaign
# outcomes); the customer layer's DAG leaves them to build_segments.
SEGMENT_LAYER = "tag:segments tag:retention tag:triggers tag:targeting tag:campaigns"
# The scheduled builds leave dbt's unit tests out: they test the SQL on fixed rows, not the
# day's data, so they belong to development and CI (tests/transform/test_unit_tests.py), not to
# every morning's run (docs/scale.md).
SCHEDULED_BUILD_FLAGS = ("--exclude-resource-type", "unit_test")

# dbt commands that read the raw tables: every registry table's raw table is created (typed,
# empty) before them, so a brand without some source builds empty models instead of failing.
_READS_WAREHOUSE = frozenset({"build", "run", "test", "snapshot", "seed", "show", "compile", "docs"})

log = logging.getLogger(__name__)


def project_vars() -> dict:
    """The dbt project's vars as dbt_project.yml declares them (identity rules, segment
    thresholds, the brand's time zone), for the Python that must agree with the models."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return project.get("vars") or {}


def local_time_zone() -> str:
    """The brand's time zone (var local_time_zone): naive back-office timestamps are in it, and the
    schedules, as-of days and gates run on its clock. One setting for the models and the Python."""
    return str(project_vars()["local_time_zone"])


class DbtFailed(RuntimeError):
    """A dbt invocation failed (a model error or a failing test)."""


@dataclass
class DbtRun:
    success: bool
    results: list[dict]


def dbt_env(*, demo_key: bool = False) -> dict[str, str]:
    """Environment for a dbt invocation. With `demo_key`, a random match key is created under
    var/keys when none is configured (the demo and tests); otherwise the key must come from
    YORISOI_MATCH_KEY / YORISOI_MATCH_KEY_FILE (the Airflow task sets it from a connection)."""
    env = {
        "YORISOI_WAREHOUSE": str(paths.warehouse_path()),
        "YORISOI_ANALYTICS_DB": str(paths.analytics_path()),
        "DBT_TARGET_PATH": str(paths.var_dir() / "dbt" / "target"),
        "DBT_LOG_PATH": str(paths.var_dir() / "dbt" / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if demo_key and not (os.environ.get("YORISOI_MATCH_KEY") or os.environ.get("YORISOI_MATCH_KEY_FILE")):
        from .privacy.keys import ensure_demo_key

        env["YORISOI_MATCH_KEY_FILE"] = str(ensure_demo_key(paths.match_key_file()))
    return env


def brand_as_of(brand: Path) -> str:
    """The local day a generated brand's data ends on (its manifest's `as_of`), as YYYY-MM-DD:
    the as-of day its segment marts are built for, since the synthetic data never reaches today."""
    manifest = json.loads((brand / "manifest.json").read_text())
    return str(manifest["as_of"])[:10]


def run_dbt(args: list[str], *, demo_key: bool = False, raise_on_failure: bool = True) -> DbtRun:
    """`dbt <args>` in a child process. Not in-process: dbt-duckdb keeps its DuckDB connection
    open for the life of the process, which would lock the warehouse against the readers that
    follow a build (checks, evals, the demo's summary)."""
    env = {**os.environ, **dbt_env(demo_key=demo_key)}
    paths.warehouse_path().parent.mkdir(parents=True, exist_ok=True)
    if _READS_WAREHOUSE & set(args):
        from .sources.catalog import init_raw_tables

        init_raw_tables()
    results_file = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results_file.unlink(missing_ok=True)
    full = [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    log.info("dbt %s", " ".join(args))
    code = "import sys; from dbt.cli.main import cli; sys.exit(cli())"
    proc = subprocess.run([sys.executable, "-c", code, *full], env=env, check=False)  # noqa: S603 - our own interpreter
    rows = []
    if results_file.exists():
        for r in json.loads(results_file.read_text())["results"]:
            rows.append(
                {
                    "node": r["unique_id"],
                    "status": r["status"],
                    "seconds": round(r["execution_time"], 3),
                    "message": r.get("message"),
                }
            )
    success = proc.returncode == 0
    if raise_on_failure and not success:
        failed = [r for r in rows if r["status"] in ("error", "fail")]
        raise DbtFailed(f"dbt {' '.join(args)} failed (exit {proc.returncode}): {failed}")
    return DbtRun(success=success, results=rows)


def match_key_from_airflow() -> None:
    """Put the match-key secret of the Airflow connection `yorisoi_match_key` (its password)
    into this process's environment for dbt, unless the environment already provides one."""
    if os.environ.get("YORISOI_MATCH_KEY") or os.environ.get("YORISOI_MATCH_KEY_FILE"):
        return
    from airflow.sdk import BaseHook

    secret = BaseHook.get_connection(MATCH_KEY_CONN_ID).password
    if not secret:
        from .privacy.keys import MissingMatchKey

        raise MissingMatchKey(f"the Airflow connection {MATCH_KEY_CONN_ID} has no password")
    os.environ["YORISOI_MATCH_KEY"] = secret


def build_results_path(name: str) -> Path:
    """A copy of the run_results.json of the last `name` build (customer_model, segments): the
    target folder's own file is replaced by every dbt command (docs generate included), while the
    activation circuit breaker needs the build's test results."""
    return paths.var_dir() / "dbt" / "builds" / f"{name}.json"


def require_customer_layer(warehouse: Path | None = None) -> None:
    """Skip (AirflowSkipException) a segment build on a warehouse that has no customer layer yet.
    On a new deployment, build_segments' daily schedule fires as soon as the DAG is switched on,
    before the first customer build: a failure there (retried, alerted) would cry wolf, and the
    first customer build triggers the segment build anyway. Run inside the writer pool, so no
    build is writing while it looks."""
    import duckdb
    from airflow.sdk.exceptions import AirflowSkipException

    path = warehouse or paths.warehouse_path()
    built = False
    if path.exists():
        con = duckdb.connect(str(path), read_only=True)
        try:
            built = bool(
                con.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = 'marts' and table_name = 'dim_customers'"
                ).fetchone()[0]
            )
        finally:
            con.close()
    if not built:
        raise AirflowSkipException(f"no customer layer in {path} yet: the first customer build triggers this build")


def require_first_load(warehouse: Path | None = None) -> None:
    """Skip (AirflowSkipException) a customer build while a new deployment's first load is still
    landing: no customer layer yet, and some raw table the build waits on is missing or empty.
    Each landed table triggers the build (its Asset), but the sources land one after another and
    the raw gate fails every empty table ("the table has landed"): without this, the first day
    would fail and alert once per table. Once a customer layer exists, an empty table fails the
    gate loudly as before. Runs inside the writer pool, so nothing lands while it looks."""
    import duckdb
    from airflow.sdk.exceptions import AirflowSkipException

    from .orchestration.assets import registry_raw_assets

    path = warehouse or paths.warehouse_path()
    waited = [asset.name for asset in registry_raw_assets()]  # raw.<table>
    if not path.exists():
        raise AirflowSkipException(f"first load: nothing landed in {path} yet")
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select table_schema, table_name from information_schema.tables where table_schema in ('raw', 'marts')"
            ).fetchall()
        }
        if "marts.dim_customers" in tables:
            return
        empty = [t for t in waited if t not in tables or not con.execute(f"select 1 from {t} limit 1").fetchone()]  # noqa: S608 - registry names
    finally:
        con.close()
    if empty:
        raise AirflowSkipException(f"first load: {len(empty)} raw table(s) not landed yet: {', '.join(empty)}")


def build_task(select: str, *, exclude: str | None = None, results_name: str | None = None) -> dict:
    """Airflow task body: `dbt build --select <select> [--exclude <exclude>]`, without the unit
    tests (SCHEDULED_BUILD_FLAGS). A failing dbt test fails the task without retries (rerunning
    does not fix data); other errors (a busy warehouse file) retry. With `results_name`, the
    build's run_results.json is kept as build_results_path(results_name), pass or fail."""
    from airflow.exceptions import AirflowFailException

    match_key_from_airflow()
    args = ["build", "--select", select, *(["--exclude", exclude] if exclude else []), *SCHEDULED_BUILD_FLAGS]
    run = run_dbt(args, raise_on_failure=False)
    if results_name:
        kept = build_results_path(results_name)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths.var_dir() / "dbt" / "target" / "run_results.json", kept)
    failed_tests = [r for r in run.results if r["status"] == "fail"]
    errors = [r for r in run.results if r["status"] == "error"]
    for r in failed_tests + errors:
        log.error("dbt %s: %s %s", r["status"], r["node"], r["message"])
    if failed_tests:
        raise AirflowFailException(f"{len(failed_tests)} dbt test(s) failed: {[r['node'] for r in failed_tests]}")
    if not run.success:
        raise DbtFailed(f"dbt build --select {select} failed: {[r['node'] for r in errors]}")
    return {
        "models": sum(1 for r in run.results if r["node"].startswith(("model.", "snapshot."))),
        "tests": sum(1 for r in run.results if r["node"].startswith("test.")),
        "warnings": sum(1 for r in run.results if r["status"] == "warn"),
    }
