"""The daily run of a built brand, outside Airflow: a day of change in its sources, the day's
ingest through the same extractors, and the incremental build; and the check that the result
equals a full rebuild from the same raw tables, table by table (tests/transform/test_daily_run.py,
bench/daily_run_bench.py; docs/scale.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from .scale_run import IngestTiming, ScaleRun, build, ingest_back_office, ingest_drop_folder, ingest_shop

# Stamped with the time of the build (or, for the snapshot, of the build that saw the change): they
# differ between any two builds. The same set as the Spark build test's, with the snapshot's own.
# built_at (the incremental facts: which build wrote the row, for the data tests on its rows) differs
# by construction: a full rebuild stamps every row, an incremental build only the rows it wrote.
RUN_TIME_COLUMNS = frozenset(
    {
        "built_at",
        "person_created_at",
        "recorded_at",
        "changed_at",
        "invocation_id",
        "marked_at",
        "dbt_valid_from",
        "dbt_valid_to",
        "dbt_updated_at",
        "dbt_scd_id",
    }
)
FLOAT_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL"})
FLOAT_TOLERANCE = 1e-9
# Schemas holding what dbt builds (raw and its bookkeeping are the same on both sides by construction).
BUILT_SCHEMAS = ("intermediate", "marts", "snapshots", "reference")


def copy_run(run: ScaleRun, dest: Path, *, sources: bool = True) -> ScaleRun:
    """A copy of a built run (warehouse, analysts' database, match key; the sources too, or a link
    to them) in `dest`, for changing it without touching the original. The lake (the landed
    files' archive) starts empty: nothing in the build reads it."""
    dest.mkdir(parents=True)
    for name in ("warehouse.duckdb", "analytics.duckdb", "host_key", "host_key.pub", "prepared.json"):
        if (run.work / name).exists():
            shutil.copy(run.work / name, dest / name)
    if (run.work / "keys").exists():
        shutil.copytree(run.work / "keys", dest / "keys")
    if sources:
        shutil.copytree(run.work / "sources", dest / "sources")
    else:
        # An absolute target: a link to a relative path would resolve from `dest` and dangle, and
        # the copy would then build for today instead of the brand's as-of day.
        (dest / "sources").symlink_to((run.work / "sources").resolve())
    return ScaleRun(run.scale, dest, run.scope)


def build_day(run: ScaleRun, *, full_refresh: bool = False, tests: bool = True) -> dict:
    """The customer layer's and the segment marts' build (everything `scale_run.build` builds) for
    the brand's as-of day (its manifest's, which a day of change moves on), incremental unless
    `full_refresh`; without `tests`, models, snapshot and seeds only (the equality test compares
    tables, the data tests are another check). Returns `scale_run.build`'s wall seconds and
    per-node times."""
    exclude = None if tests else "resource_type:test resource_type:unit_test"
    return build(run, exclude=exclude, full_refresh=full_refresh, quiet=True)


def ingest_day(run: ScaleRun, run_id: str) -> list[IngestTiming]:
    """The day's ingest of every source into the run's warehouse: the shop API and the OMS from
    their watermarks, the SFTP drops not landed yet."""
    from yorisoi.sources.landing import Lake, Warehouse

    wh = Warehouse(run.warehouse, Lake(run.work / "lake"))
    brand = run.work / "sources"
    return [
        ingest_shop(brand, wh, run_id),
        ingest_back_office(brand, wh, run_id),
        ingest_drop_folder(brand, wh, run.work, run_id),
    ]


def _tables(con: duckdb.DuckDBPyConnection, catalog: str, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (s, t)
        for s, t in con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = ? and table_type = 'BASE TABLE' order by 1, 2",
            [catalog],
        ).fetchall()
        if s in schemas
    ]


def _differing_rows(
    con: duckdb.DuckDBPyConnection, left: str, right: str, exact: list[str], floats: list[str]
) -> tuple[int, int]:
    """Rows of `left` without an equal row in `right` and the reverse, as multisets. Floating-point
    columns are equal within FLOAT_TOLERANCE (relative): a model fitted by an optimiser (the CLV
    model) converges to the last bits differently when its input comes in another order. Rows are
    paired on their other columns."""
    cols = ", ".join(f'"{c}"' for c in exact + floats)
    if not floats:
        counts = []
        for a, b in ((left, right), (right, left)):
            query = f"select count(*) from (select {cols} from {a} except all select {cols} from {b})"  # noqa: S608
            counts.append(con.execute(query).fetchone()[0])
        return counts[0], counts[1]
    on = " and ".join(f'l."{c}" is not distinct from r."{c}"' for c in exact) or "true"
    close = " and ".join(
        f'(l."{c}" is not distinct from r."{c}" or abs(l."{c}" - r."{c}") '
        f'<= {FLOAT_TOLERANCE} * greatest(abs(l."{c}"), abs(r."{c}")))'
        for c in floats
    )
    counts = []
    for a, b in ((left, right), (right, left)):
        unmatched = con.execute(
            f"select count(*) from {a} as l where not exists (select 1 from {b} as r where {on} and {close})"  # noqa: S608
        ).fetchone()[0]
        counts.append(unmatched)
    return counts[0], counts[1]


def compare_builds(left: ScaleRun, right: ScaleRun) -> dict[str, tuple[int, int]]:
    """Every table dbt built in both runs' warehouses and analysts' databases, compared as
    multisets of rows without the build-time columns: {table: (rows only in left, rows only in
    right)}. A table missing on one side counts all its rows as differing."""
    con = duckdb.connect()
    diffs: dict[str, tuple[int, int]] = {}
    try:
        for db in ("warehouse", "analytics"):
            schemas = BUILT_SCHEMAS if db == "warehouse" else ("main",)
            for side, run in (("l", left), ("r", right)):
                con.execute(f"attach '{run.work / f'{db}.duckdb'}' as {side}_{db} (read_only)")
            left_tables = set(_tables(con, f"l_{db}", schemas))
            right_tables = set(_tables(con, f"r_{db}", schemas))
            for schema, table in sorted(left_tables | right_tables):
                name = f"{db}.{schema}.{table}"
                if (schema, table) not in left_tables or (schema, table) not in right_tables:
                    present = "l" if (schema, table) in left_tables else "r"
                    n = con.execute(f'select count(*) from {present}_{db}."{schema}"."{table}"').fetchone()[0]  # noqa: S608
                    diffs[name] = (n, 0) if present == "l" else (0, n)
                    continue
                columns = con.execute(
                    "select column_name, data_type from information_schema.columns where table_catalog = ? "
                    "and table_schema = ? and table_name = ? order by ordinal_position",
                    [f"l_{db}", schema, table],
                ).fetchall()
                only = _differing_rows(
                    con,
                    f'l_{db}."{schema}"."{table}"',
                    f'r_{db}."{schema}"."{table}"',
                    [c for c, t in columns if c not in RUN_TIME_COLUMNS and t not in FLOAT_TYPES],
                    [c for c, t in columns if c not in RUN_TIME_COLUMNS and t in FLOAT_TYPES],
                )
                diffs[name] = (only[0], only[1])
    finally:
        con.close()
    return diffs
