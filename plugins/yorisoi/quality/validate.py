"""Validate a layer of the warehouse with Great Expectations 1.x.

GX cannot validate DuckDB through a SQL data source (docs/stack.md), so every suite is fed
pandas DataFrames read with a read-only DuckDB connection and validated by GX's pandas data source:

- **the rows in scope**, read in chunks of `CHUNK_ROWS` so memory stays bounded at any scale:
  `latest_batch` = the raw rows landed since the last passing validation of the table
  (`_loaded_at` after the high-water mark kept in the history), `whole_table` = every row;
  or, for `aggregate`, a profile computed in DuckDB (GROUP BY the suite's columns: counts,
  null counts, minima) that stays a few rows however big the table is;
- **the table measures**, one row computed in DuckDB over the whole table: row count, the change
  against the last passing validation, hours since the newest value of the freshness column
  (relative to a reference time that can be pinned), and the suite's own metrics (duplicate keys,
  orphans against another table, ...).

Validation results go to `var/quality/validations/` (GX's filesystem store) and are rendered into
Data Docs under `var/out/docs/quality/index.html`; every validation is also recorded in
`var/quality/history.duckdb` (row counts and high-water marks the next run compares with). That
history is a separate file because the warehouse is only ever opened read-only here: validation
never takes DuckDB's single write lock from dbt or the ingest tasks.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from .. import paths
from ..transform import local_time_zone
from .suites import BATCH_COLUMN, SuiteSpec, follow_registry, load_suites

log = logging.getLogger(__name__)

LOCAL_TIME_ZONE = local_time_zone()  # naive timestamps and dates in the warehouse are local
CHUNK_ROWS = 500_000  # rows per DataFrame handed to GX (env YORISOI_QUALITY_CHUNK_ROWS overrides)
KEEP_RUNS = 30  # validation results kept per suite for Data Docs; older ones are pruned
DOCS_SITE = "quality"
NOW_ENV = "YORISOI_QUALITY_NOW"  # an ISO timestamp pinning "now" for freshness
AS_OF_ENV = "YORISOI_AS_OF"  # the as-of day the marts were built for (start of that local day)


def docs_dir() -> Path:
    """Where Data Docs are published: var/out/docs/quality/ (open index.html)."""
    return paths.out_dir() / "docs" / "quality"


def results_dir() -> Path:
    """GX's validation-results store (JSON), the source Data Docs are rendered from."""
    return paths.var_dir() / "quality" / "validations"


def history_path() -> Path:
    """Every validation: suite, warehouse, success, row count, high-water mark."""
    return paths.var_dir() / "quality" / "history.duckdb"


def reference_time(now: datetime | None = None) -> datetime:
    """ "Now" for freshness: `now` if given, else $YORISOI_QUALITY_NOW (ISO timestamp), else the
    start of the local day $YORISOI_AS_OF (the day the marts describe; the demo pins the synthetic
    brand's 2026-11-01), else the wall clock."""
    if now is not None:
        return now if now.tzinfo else now.replace(tzinfo=UTC)
    if os.environ.get(NOW_ENV):
        pinned = datetime.fromisoformat(os.environ[NOW_ENV])
        return pinned if pinned.tzinfo else pinned.replace(tzinfo=UTC)
    if os.environ.get(AS_OF_ENV):
        day = date.fromisoformat(os.environ[AS_OF_ENV][:10])
        return datetime.combine(day, dtime(0), ZoneInfo(LOCAL_TIME_ZONE))
    return datetime.now(UTC)


def _aware(value: Any) -> datetime | None:
    """A warehouse timestamp as an aware datetime (naive values and dates are local time)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(LOCAL_TIME_ZONE))
    if isinstance(value, date):
        return datetime.combine(value, dtime(0), ZoneInfo(LOCAL_TIME_ZONE))
    raise TypeError(f"not a date or timestamp: {value!r}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect_read_only(path: Path, *, attempts: int = 30) -> duckdb.DuckDBPyConnection:
    """A read-only connection, retried while another process holds the write lock (DuckDB lets
    one process write, and a reader cannot open the file while it does)."""
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}")
    for i in range(attempts):
        try:
            con = duckdb.connect(str(path), read_only=True)
            con.execute("set enable_progress_bar = false")
            return con
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or i == attempts - 1:
                raise
            log.warning("warehouse %s is locked by a writer; retrying (%d/%d)", path, i + 1, attempts)
            time.sleep(min(2.0, 0.1 * 2**i))
    raise AssertionError("unreachable")


# ---- results ------------------------------------------------------------------------------------


@dataclass
class Failure:
    """An expectation that did not pass."""

    suite: str
    expectation: str  # expect_x(column=y)
    severity: str  # error | warning
    details: str  # what GX observed
    source: str  # suite file and line
    notes: str = ""

    def line(self) -> str:
        return f"{self.suite}: {self.expectation}: {self.details} [{self.source}]"


@dataclass
class SuiteResult:
    """One suite file's validation: success, what failed, how many rows, how long."""

    suite: str
    table: str
    scope: str
    file: str
    success: bool
    row_count: int | None
    rows_validated: int  # rows checked: the batch, the table, or (aggregate) every row via the profile
    evaluated: int
    seconds: float
    frame_rows: int = 0  # rows handed to GX as DataFrames (the profile's rows for aggregate)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)
    error: str | None = None
    high_water_mark: datetime | None = None


@dataclass
class LayerResult:
    """A gate's validation of one layer."""

    layer: str
    run_name: str
    warehouse: str
    success: bool
    suites: list[SuiteResult]
    seconds: float  # the validation, without importing GX
    docs_index: Path | None
    gx_import_seconds: float = 0.0
    docs_seconds: float = 0.0  # of `seconds`: pruning old results and rendering Data Docs
    skipped: list[str] = field(default_factory=list)  # suites of disabled sources' tables (not run)

    @property
    def failed(self) -> list[SuiteResult]:
        return [s for s in self.suites if not s.success]

    def message(self) -> str:
        """What failed, in plain words: every failed suite and expectation, and where the docs are."""
        if self.success:
            head = f"quality gate {self.layer}: all {len(self.suites)} suites passed"
        else:
            head = f"quality gate {self.layer} failed: {len(self.failed)} of {len(self.suites)} suites failed"
        lines = [f"{head} (warehouse {self.warehouse}, run {self.run_name})"]
        for s in self.failed:
            count = f" of {s.row_count:,}" if s.row_count is not None and s.scope != "aggregate" else ""
            lines.append(f"- {s.suite} ({s.file}; scope {s.scope}, {s.rows_validated:,}{count} rows validated):")
            if s.error:
                lines.append(f"    error: {s.error}")
            lines += [f"    {f.suite}: {f.expectation}: {f.details}" for f in s.failures]
        if self.skipped:
            lines.append(f"not run (their source is disabled in the registry): {', '.join(self.skipped)}")
        if self.docs_index:
            lines.append(f"Data Docs: {self.docs_index}")
        if not self.success:
            from ..runbook import next_step

            lines.append(next_step("gate"))
        return "\n".join(lines)

    def summary(self) -> dict:
        """A small JSON-able summary (the task's XCom)."""
        return {
            "layer": self.layer,
            "success": self.success,
            "suites": len(self.suites),
            "skipped_suites": self.skipped,
            "failed_suites": [s.suite for s in self.failed],
            "failed_expectations": [f.line() for s in self.suites for f in s.failures],
            "warnings": [f.line() for s in self.suites for f in s.warnings],
            "rows_validated": sum(s.rows_validated for s in self.suites),
            "seconds": round(self.seconds, 2),
            "gx_import_seconds": round(self.gx_import_seconds, 2),
            "docs_seconds": round(self.docs_seconds, 2),
            "data_docs": str(self.docs_index) if self.docs_index else None,
        }


# ---- history ------------------------------------------------------------------------------------

_HISTORY_DDL = """
create table if not exists validations (
    validated_at timestamptz, run_name varchar, warehouse varchar, layer varchar, suite varchar,
    table_name varchar, scope varchar, success boolean, row_count bigint, rows_validated bigint,
    high_water_mark timestamptz, failed_expectations varchar[], seconds double)
"""


@dataclass(frozen=True)
class Baseline:
    """The last passing validation of a suite on a warehouse."""

    row_count: int | None
    high_water_mark: datetime | None


class History:
    """`var/quality/history.duckdb`: one row per suite per validation. A file of its own, so the
    warehouse is never opened for writing by a validation."""

    def __init__(self, path: Path):
        self.path = path

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for i in range(30):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or i == 29:
                    raise
                time.sleep(min(1.0, 0.05 * 2**i))
        if not read_only:
            con.execute(_HISTORY_DDL)
        return con

    def baselines(self, warehouse: str) -> dict[str, Baseline]:
        if not self.path.exists():
            return {}
        con = self._connect(read_only=True)
        try:
            if not con.execute("select 1 from duckdb_tables() where table_name = 'validations'").fetchone():
                return {}
            rows = con.execute(
                """
                select suite, row_count, high_water_mark from validations
                where warehouse = ? and success
                qualify row_number() over (partition by suite order by validated_at desc) = 1
                """,
                [warehouse],
            ).fetchall()
        finally:
            con.close()
        return {suite: Baseline(count, mark) for suite, count, mark in rows}

    def append(self, rows: list[list[Any]]) -> None:
        """Insert rows in the column order of the `validations` table."""
        con = self._connect(read_only=False)
        try:
            con.executemany("insert into validations values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        finally:
            con.close()

    def record(self, result: LayerResult, validated_at: datetime) -> None:
        self.append(
            [
                [
                    validated_at,
                    result.run_name,
                    result.warehouse,
                    result.layer,
                    s.suite,
                    s.table,
                    s.scope,
                    s.success,
                    s.row_count,
                    s.rows_validated,
                    s.high_water_mark,
                    [f.line() for f in s.failures],
                    round(s.seconds, 3),
                ]
                for s in result.suites
            ]
        )


# ---- Great Expectations -------------------------------------------------------------------------


def _gx_context(docs: Path, results: Path):
    """An ephemeral GX context (suites come from the YAML files on every run) whose validation
    results are kept on disk and rendered into the Data Docs site at `docs`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no phoning home from a pipeline
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(results)},
    }
    return gx.get_context(mode="ephemeral", project_config=config)


def _plain(values: list) -> list:
    """Sample values for a message: missing values (NaN, NA, NaT) shown as None."""
    import pandas as pd

    return [None if not isinstance(v, list | dict | tuple) and pd.isna(v) else v for v in values]


def _details(result: Any) -> str:
    """What GX observed for a failed expectation, in one line."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "").strip().splitlines()
        return "error: " + (message[0] if message else "exception while evaluating")
    r = result.result or {}
    if r.get("unexpected_count") is not None:
        sample = _plain(list(r.get("partial_unexpected_list") or [])[:5])
        return f"{r['unexpected_count']:,} of {r.get('element_count', 0):,} rows unexpected, e.g. {sample}"
    observed = r.get("observed_value")
    mismatched = (r.get("details") or {}).get("mismatched")
    return f"observed {observed}" + (f", mismatched {mismatched}" if mismatched else "")


class _Outcome:
    """One expectation's result merged over the chunks of a suite's rows."""

    def __init__(self, suite: str, result: Any):
        config = result.expectation_config
        self.suite = suite
        self.config = config
        self.success = bool(result.success)
        self.result = result
        self.unexpected = (result.result or {}).get("unexpected_count")
        self.elements = (result.result or {}).get("element_count")
        self.sample = list((result.result or {}).get("partial_unexpected_list") or [])

    def merge(self, result: Any) -> None:
        r = result.result or {}
        if self.unexpected is not None and r.get("unexpected_count") is not None:
            self.unexpected += r["unexpected_count"]
            self.elements = (self.elements or 0) + (r.get("element_count") or 0)
            self.sample = (self.sample + list(r.get("partial_unexpected_list") or []))[:5]
        if self.success and not result.success:
            self.result = result
        self.success = self.success and bool(result.success)

    def failure(self) -> Failure:
        kwargs = self.config.kwargs
        about = [f"{k}={kwargs[k]}" for k in ("column", "column_A", "column_B", "column_list") if k in kwargs]
        if self.unexpected is not None and not (self.result.exception_info or {}).get("raised_exception"):
            details = f"{self.unexpected:,} of {self.elements or 0:,} rows unexpected, e.g. {_plain(self.sample[:5])}"
        else:
            details = _details(self.result)
        meta = self.config.meta or {}
        return Failure(
            suite=self.suite,
            expectation=f"{self.config.type}({', '.join(about)})",
            severity=meta.get("severity", "error"),
            details=details,
            source=meta.get("source", ""),
            notes=str(meta.get("notes", "")),
        )


def _outcome_key(result: Any) -> str:
    config = result.expectation_config
    if getattr(config, "id", None):
        return str(config.id)
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return f"{config.type}:{sorted(kwargs.items())!r}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


# ---- one suite ----------------------------------------------------------------------------------


class _SuiteRun:
    """Reads the frames of one suite file and runs its GX validation definitions."""

    def __init__(self, ctx, datasource, spec: SuiteSpec, gx_suites: dict, baseline: Baseline | None):
        import great_expectations as gx

        self.spec = spec
        self.baseline = baseline
        self.definitions = {}
        for kind, suite in gx_suites.items():
            asset = datasource.add_dataframe_asset(name=suite.name)
            batch = asset.add_batch_definition_whole_dataframe("dataframe")
            self.definitions[kind] = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=suite.name, data=batch, suite=suite)
            )

    def run(self, con: duckdb.DuckDBPyConnection, now: datetime, run_name: str, run_time: datetime, chunk_rows: int):
        import pandas as pd
        from great_expectations.core.run_identifier import RunIdentifier

        spec, t0 = self.spec, time.perf_counter()
        table = f"{_quote(spec.schema)}.{_quote(spec.table_name)}"
        columns = [
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [spec.schema, spec.table_name],
            ).fetchall()
        ]
        result = SuiteResult(spec.name, spec.table, spec.scope, spec.relpath, False, None, 0, 0, 0.0)
        if not columns:
            result.error = f"table {spec.table} does not exist in the warehouse"
            result.seconds = time.perf_counter() - t0
            return result, []
        if spec.scope == "latest_batch" and BATCH_COLUMN not in columns:
            result.error = f"{spec.table} has no {BATCH_COLUMN} column: scope latest_batch cannot find its batch"
            result.seconds = time.perf_counter() - t0
            return result, []

        # The table measures: one row, computed in DuckDB over the whole table.
        selects = ["count(*) as row_count"]
        if spec.freshness_column:
            selects.append(f"max(t.{_quote(spec.freshness_column)}) as __latest")
        if spec.scope == "latest_batch":
            selects.append(f"max(t.{_quote(BATCH_COLUMN)}) as __high_water_mark")
        selects += [f"({expr}) as {_quote(name)}" for name, expr in spec.metrics.items()]
        try:
            cur = con.execute(f"select {', '.join(selects)} from {table} as t")  # noqa: S608 - SQL of the suite files in the repo
            row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        except duckdb.Error as exc:
            result.error = f"measures query failed: {' '.join(str(exc).split())}"
            result.seconds = time.perf_counter() - t0
            return result, []
        result.row_count = int(row["row_count"])
        previous = self.baseline.row_count if self.baseline else None
        measures: dict[str, Any] = {
            "row_count": result.row_count,
            "previous_row_count": previous,
            "row_count_change_ratio": (result.row_count / previous - 1) if previous else None,
        }
        if spec.freshness_column:
            latest = _aware(row["__latest"])
            measures["hours_since_latest"] = (now - latest).total_seconds() / 3600 if latest else None
        for name in spec.metrics:
            value = row[name]
            measures[name] = float(value) if isinstance(value, Decimal) else value
        table_frame = pd.DataFrame([measures]).astype({k: "float64" for k, v in measures.items() if v is None})

        # The rows in scope, or the aggregate profile.
        params: list[Any] = []
        if spec.scope == "aggregate":
            keys = [_quote(c) for c in spec.group_by]
            exprs = [*keys, *(f"({e}) as {_quote(n)}" for n, e in spec.measures.items())]
            sql = f"select {', '.join(exprs)} from {table} as t" + (f" group by {', '.join(keys)}" if keys else "")  # noqa: S608
        else:
            sql = f"select * from {table}"  # noqa: S608 - table names of the suite files
            if spec.scope == "latest_batch":
                result.high_water_mark = row["__high_water_mark"]
                since = self.baseline.high_water_mark if self.baseline else None
                sql += f" where {_quote(BATCH_COLUMN)} <= ?"
                params.append(result.high_water_mark)
                if since is not None:
                    sql += f" and {_quote(BATCH_COLUMN)} > ?"
                    params.append(since)

        stored: list[str] = []
        outcomes: dict[str, _Outcome] = {}

        def absorb(kind: str, validation: Any) -> None:
            suite_name = self.definitions[kind].suite.name
            for r in validation.results:
                key = f"{kind}:{_outcome_key(r)}"
                if key in outcomes:
                    outcomes[key].merge(r)
                else:
                    outcomes[key] = _Outcome(suite_name, r)

        if "rows" in self.definitions and (spec.scope != "latest_batch" or result.high_water_mark is not None):
            cursor = con.execute(sql, params)
            part = 0
            while True:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*inplace keyword.*")  # inside duckdb's conversion
                    frame = cursor.fetch_df_chunk(max(1, chunk_rows // 2048))
                if frame.empty:
                    break
                part += 1
                result.frame_rows += len(frame)
                name = run_name if part == 1 else f"{run_name}.part{part}"
                validation = self.definitions["rows"].run(
                    batch_parameters={"dataframe": frame},
                    result_format={"result_format": "SUMMARY"},
                    run_id=RunIdentifier(run_name=name, run_time=run_time),
                )
                stored.append(name)
                absorb("rows", validation)
                del frame
        if "table" in self.definitions:
            validation = self.definitions["table"].run(
                batch_parameters={"dataframe": table_frame},
                result_format={"result_format": "SUMMARY"},
                run_id=RunIdentifier(run_name=run_name, run_time=run_time),
            )
            stored.append(run_name)
            absorb("table", validation)

        result.rows_validated = result.row_count if spec.scope == "aggregate" else result.frame_rows
        result.evaluated = len(outcomes)
        for outcome in outcomes.values():
            if not outcome.success:
                failure = outcome.failure()
                (result.failures if failure.severity == "error" else result.warnings).append(failure)
        result.success = not result.failures and result.error is None
        result.seconds = time.perf_counter() - t0
        return result, stored


def _prune_and_build_docs(ctx, run_names: set[str], suite_names: set[str]) -> Path:
    """Drop validation results beyond the newest KEEP_RUNS per suite, then render this run's
    suites and results into Data Docs (one index rebuild for the whole layer). Every suite of both
    layers is in the context, so the index keeps the other layer's pages."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    store = ctx.validation_results_store
    keys = store.list_keys()
    by_suite: dict[str, list] = {}
    for key in keys:
        by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
    for suite_keys in by_suite.values():
        times = sorted({k.run_id.run_time for k in suite_keys}, reverse=True)
        if len(times) > KEEP_RUNS:
            cutoff = times[KEEP_RUNS - 1]
            for k in suite_keys:
                if k.run_id.run_time < cutoff:
                    store.remove_key(k)
    current = [k for k in store.list_keys() if k.run_id.run_name in run_names]
    suites = [ExpectationSuiteIdentifier(name=name) for name in sorted(suite_names)]
    urls = ctx.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[*current, *suites])
    index = urls.get(DOCS_SITE, "")
    return Path(index.removeprefix("file://")) if index else docs_dir() / "index.html"


# ---- a layer ------------------------------------------------------------------------------------


def validate(
    layer: str,
    *,
    tables: list[str] | None = None,
    warehouse: Path | str | None = None,
    now: datetime | None = None,
    run_name: str | None = None,
    record: bool = True,
    chunk_rows: int | None = None,
) -> LayerResult:
    """Validate every suite of `layer` ("raw" or "marts"; only `tables` if given) against the
    warehouse (default: the embedded one), publish Data Docs and, with `record`, append the
    outcome to the history (the next run's baselines). Returns the result; raises nothing for
    failed expectations (the gate decides), only for errors that a retry may fix (a locked file)."""
    t_import = time.perf_counter()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no phoning home from a pipeline
    import great_expectations  # noqa: F401 - about 8 s on first use: timed apart from the validation

    t_start = time.perf_counter()
    run_time = datetime.now(UTC)
    chunk_rows = chunk_rows or int(os.environ.get("YORISOI_QUALITY_CHUNK_ROWS", CHUNK_ROWS))
    warehouse_path = Path(warehouse or paths.warehouse_path()).resolve()
    adapted = follow_registry(load_suites(layer, tables))  # what the brand's registry and mappings have
    specs = adapted.specs
    for line in adapted.dropped:
        log.info("expectation left out: %s", line)
    run_name = _safe(run_name or f"{layer}-{run_time:%Y%m%dT%H%M%S}")
    history = History(history_path())
    baselines = history.baselines(str(warehouse_path))
    reference = reference_time(now)

    docs, results = docs_dir(), results_dir()
    docs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    ctx = _gx_context(docs, results)
    datasource = ctx.data_sources.add_pandas("warehouse")
    runs = []
    wanted = {s.name: s for s in specs}
    for spec in load_suites():  # every suite is registered, so Data Docs keep both layers' pages
        spec = wanted.get(spec.name, spec)
        gx_suites = {kind: ctx.suites.add(s) for kind, s in spec.to_gx_suites().items()}
        if spec.name in wanted:
            runs.append(_SuiteRun(ctx, datasource, spec, gx_suites, baselines.get(spec.name)))

    suite_results: list[SuiteResult] = []
    stored: set[str] = set()
    con = connect_read_only(warehouse_path)
    try:
        for run in runs:
            res, names = run.run(con, reference, run_name, run_time, chunk_rows)
            stored.update(names)
            suite_results.append(res)
            log.info(
                "%s: %s (%s rows validated, %d expectations, %.2f s)%s",
                res.suite,
                "passed" if res.success else "FAILED",
                f"{res.rows_validated:,}",
                res.evaluated,
                res.seconds,
                "".join(f"\n  {f.severity}: {f.line()}" for f in res.failures + res.warnings),
            )
    finally:
        con.close()
    t_docs = time.perf_counter()
    index = _prune_and_build_docs(ctx, stored, {d.suite.name for run in runs for d in run.definitions.values()})
    docs_seconds = time.perf_counter() - t_docs
    result = LayerResult(
        layer=layer,
        run_name=run_name,
        warehouse=str(warehouse_path),
        success=all(s.success for s in suite_results),
        suites=suite_results,
        seconds=time.perf_counter() - t_start,
        docs_index=index,
        gx_import_seconds=t_start - t_import,
        docs_seconds=docs_seconds,
        skipped=adapted.skipped,
    )
    if record:
        history.record(result, run_time)
    return result


def as_dict(result: LayerResult) -> dict:
    """The full result as plain data (for JSON reports)."""
    return {**asdict(result), "docs_index": str(result.docs_index) if result.docs_index else None}


def accept_row_counts(
    layer: str, tables: list[str], *, reason: str, warehouse: Path | str | None = None
) -> dict[str, tuple[int | None, int]]:
    """After a person checked a legitimate jump in size (a campaign's opt-ins, a backfill), make
    the tables' current row counts the baseline `row_count_change_ratio` compares with. Raw
    tables keep their high-water mark: their unvalidated rows are still validated. Returns
    {suite: (previous baseline, accepted count)}."""
    if not reason.strip():
        raise ValueError("say why the new size is right (it is kept in the history)")
    warehouse_path = Path(warehouse or paths.warehouse_path()).resolve()
    specs = load_suites(layer, tables)
    history = History(history_path())
    baselines = history.baselines(str(warehouse_path))
    con = connect_read_only(warehouse_path)
    try:
        counts = {
            s.name: con.execute(f"select count(*) from {_quote(s.schema)}.{_quote(s.table_name)}").fetchone()[0]  # noqa: S608
            for s in specs
        }
    finally:
        con.close()
    now = datetime.now(UTC)
    run_name = _safe(f"accepted-{now:%Y%m%dT%H%M%S}")
    history.append(
        [
            [
                now,
                run_name,
                str(warehouse_path),
                layer,
                s.name,
                s.table,
                s.scope,
                True,
                counts[s.name],
                0,
                baselines[s.name].high_water_mark if s.name in baselines else None,
                [f"row count accepted: {reason.strip()}"],
                0.0,
            ]
            for s in specs
        ]
    )
    return {s.name: (baselines[s.name].row_count if s.name in baselines else None, counts[s.name]) for s in specs}
