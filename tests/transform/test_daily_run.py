"""The daily run is incremental and gives what a full rebuild gives.

The built XS brand gets a day of change (new orders and receipts, late cancellations, shipments
and returns of older ones, changed customers, opt-outs, web events, email sends; plus one OMS
customer record corrected to another person, so the orders of a record whose person changed
are in the day), the day is ingested through the real extractors, and the project is built twice
from the same raw tables: incrementally, and with --full-refresh. Every table dbt built must hold
the same rows on both sides (build-time stamps left out: on the incremental facts, built_at
alone). docs/scale.md.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest

from yorisoi.privacy.erasure import Stores, erase
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.transform import DbtFailed, run_dbt
from yorisoi_kit.daily_run import RUN_TIME_COLUMNS, build_day, compare_builds, copy_run, ingest_day
from yorisoi_kit.scale_run import ScaleRun, build, using_var
from yorisoi_kit.synth.daily import apply_daily_change

# Two builds of every model after the XS fixture's: 4.5 minutes on the shared 2-core machine
# (load 15), about 2 on an idle one, over make test's budget for one test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
TEST_PASSES = "dbt_test_slices.test_passes"


def _split_one_oms_record(run: ScaleRun, base: ScaleRun) -> str:
    """Give an OMS customer record with orders, whose person also has other records, the
    identifiers of nobody else (a data-entry fix): identity moves it, or the rest of its person,
    to another person ID. Returns the record key."""
    con = duckdb.connect(str(base.warehouse), read_only=True)
    try:
        code = con.execute(
            "select substr(b.record_key, 5) from marts.bridge_customer_identities b "
            "join marts.fct_orders o on o.customer_record = b.record_key "
            "where b.record_key like 'oms:%' and b.person_id in "
            "  (select person_id from marts.bridge_customer_identities group by 1 having count(*) = 2) "
            "order by b.record_key limit 1"
        ).fetchone()[0]
    finally:
        con.close()
    with sqlite3.connect(run.work / "sources" / "oms" / "oms.sqlite") as oms:
        oms.execute(
            "update customers set name_kanji = '試験　分割', name_kana = 'シケン　ブンカツ', phone = '090-0000-0001', "
            "email = 'split.record@example.com', postal_code = '100-0001', prefecture = '東京都', "
            "address = '千代田区千代田1-1', birth_date = '1970-01-01', updated_at = '2026-11-01 12:00:00' "
            "where customer_code = ?",
            (code,),
        )
    return f"oms:{code}"


def _orders(path: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("select order_key, person_id, status from marts.fct_orders").fetchall()
        return {k: (p, s) for k, p, s in rows}
    finally:
        con.close()


@pytest.fixture(scope="module")
def day_builds(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("daily_run")
    incremental = copy_run(xs, work / "incremental")
    change = apply_daily_change(incremental.work / "sources", seed=1)
    split = _split_one_oms_record(incremental, xs)
    with using_var(incremental.work):
        ingest_day(incremental, "day-1")
    full = copy_run(incremental, work / "full", sources=False)
    build_day(incremental, tests=False)
    build_day(full, full_refresh=True, tests=False)
    return {"incremental": incremental, "full": full, "change": change, "split": split}


def test_the_day_changes_old_orders_and_moves_a_person(xs: ScaleRun, day_builds: dict) -> None:
    """The day is a real test of the incremental models: new orders, older orders whose status
    changed, and older orders whose person changed are all in it."""
    before, after = _orders(xs.warehouse), _orders(day_builds["incremental"].warehouse)
    new = after.keys() - before.keys()
    restated = {k for k in before.keys() & after.keys() if before[k][1] != after[k][1]}
    moved = {k for k in before.keys() & after.keys() if before[k][0] != after[k][0]}
    assert len(new) >= 30, day_builds["change"]
    assert {k.split(":")[0] for k in restated} == {"ecommerce", "oms", "pos"}, restated
    assert moved, f"no order changed person after splitting {day_builds['split']}"


def test_incremental_build_equals_a_full_rebuild(day_builds: dict) -> None:
    diffs = compare_builds(day_builds["incremental"], day_builds["full"])
    assert len(diffs) >= 80, sorted(diffs)  # every table dbt builds (86 at XS)
    assert {t: d for t, d in diffs.items() if d != (0, 0)} == {}


def _untested(path: Path, table: str, key: str) -> tuple[set[str], int, set[str]]:
    """The keys of the rows the table's `unique` test (marked `__untested_rows__`) reads: stamped
    after the last run it passed in (macros/test_slices.sql); the table's row count, its columns."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        keys = con.execute(
            f"select {key} from marts.{table} where built_at > coalesce("
            f"(select max(passed_at) from {TEST_PASSES} where test_id like 'test.yorisoi.unique_{table}_{key}.%'), "
            "timestamp '1900-01-01')"
        ).fetchall()
        rows = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
        columns = {c for (c,) in con.execute(f"select column_name from (describe marts.{table})").fetchall()}
        return {k for (k,) in keys}, rows, columns
    finally:
        con.close()


def test_built_at_marks_the_rows_each_build_wrote(xs: ScaleRun, day_builds: dict) -> None:
    """The data tests of the incremental facts read the rows no passing run has tested: after the
    XS build (whose tests passed) none; after the full rebuild every row; after the incremental
    build the rows it wrote (every new, restated or moved order, every new line) and not the
    others. A stamp that differs between the two builds by construction: the comparison leaves
    it out, and of these tables' columns only it."""
    before, after = _orders(xs.warehouse), _orders(day_builds["incremental"].warehouse)
    changed = (after.keys() - before.keys()) | {k for k in before.keys() & after.keys() if before[k] != after[k]}
    for table, key in (("fct_orders", "order_key"), ("fct_order_lines", "order_line_key")):
        tested, _, _ = _untested(xs.warehouse, table, key)
        latest, rows, columns = _untested(day_builds["incremental"].warehouse, table, key)
        full, full_rows, _ = _untested(day_builds["full"].warehouse, table, key)
        assert tested == set(), table
        assert len(full) == full_rows == rows, table
        assert 0 < len(latest) < rows, table
        assert columns & RUN_TIME_COLUMNS == {"built_at"}, table
        if table == "fct_orders":
            assert changed <= latest


def test_a_failing_sliced_test_keeps_failing_until_the_rows_are_fixed(day_builds: dict, tmp_path: Path) -> None:
    """A row no passing run of the test has read stays in its slice: the test that failed on it
    fails again on the next run (a retry, the next landing's build, a run of the model's other
    tests in between) instead of moving on to newer rows, and passes, recording the run, once the
    row is fixed."""
    run = copy_run(day_builds["incremental"], tmp_path / "retry", sources=False)

    def marks() -> int:
        con = duckdb.connect(str(run.warehouse), read_only=True)
        try:
            return con.execute(
                f"select count(*) from {TEST_PASSES} where test_id like 'test.yorisoi.unique_fct_orders_order_key.%'"
            ).fetchone()[0]
        finally:
            con.close()

    def test_orders(*exclude: str) -> None:
        args = ["--quiet", "test", "--select", "fct_orders", "--indirect-selection", "cautious"]
        with using_var(run.work):
            run_dbt([*args, *(["--exclude", *exclude] if exclude else [])], demo_key=True)

    def execute(sql: str) -> None:
        con = duckdb.connect(str(run.warehouse))
        try:
            con.execute(sql)
        finally:
            con.close()

    # An order written twice by the latest build, whose tests have not run.
    execute(
        "insert into marts.fct_orders select * from marts.fct_orders "
        "where built_at = (select max(built_at) from marts.fct_orders) order by order_key limit 1"
    )
    recorded = marks()
    with pytest.raises(DbtFailed):
        test_orders()
    assert marks() == recorded
    # The model's other sliced tests pass on their own (an operator's partial run): their passes
    # say nothing of the duplicate, which the unique test must still read.
    test_orders("unique_fct_orders_order_key")
    assert marks() == recorded
    # A later build (the task's retry, the next landing's) rewrites another order: its stamp is
    # the newest now, and the duplicate must still be read.
    execute(
        "update marts.fct_orders set built_at = built_at + interval 1 second where order_key = "
        "(select max(order_key) from marts.fct_orders where order_key not in "
        "(select order_key from marts.fct_orders group by 1 having count(*) > 1))"
    )
    with pytest.raises(DbtFailed):
        test_orders()
    assert marks() == recorded
    execute(
        "create temp table one as select distinct * from marts.fct_orders where order_key in "
        "(select order_key from marts.fct_orders group by 1 having count(*) > 1); "
        "delete from marts.fct_orders where order_key in (select order_key from one); "
        "insert into marts.fct_orders select * from one"
    )
    test_orders()
    assert marks() == recorded + 1
    assert _untested(run.warehouse, "fct_orders", "order_key")[0] == set()


def test_the_day_predicts_clv_from_the_stored_fit(xs: ScaleRun, day_builds: dict) -> None:
    """Neither build of the day refits the CLV model: both predict with the fit the XS build
    stored the day before (customer_clv_fit is never rebuilt, a --full-refresh included)."""

    def clv(path: Path) -> tuple[list, list]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            fits = con.execute("select fitted_as_of from marts.customer_clv_fit order by 1").fetchall()
            used = con.execute("select distinct fitted_as_of, as_of_date from marts.customer_clv").fetchall()
            return fits, used
        finally:
            con.close()

    fits, _ = clv(xs.warehouse)
    assert len(fits) == 1
    for side in ("incremental", "full"):
        day_fits, used = clv(day_builds[side].warehouse)
        assert day_fits == fits, side
        assert len(used) == 1 and used[0][0] == fits[0][0] < used[0][1], (side, used)


def test_the_comparison_catches_a_missed_late_update(xs: ScaleRun, day_builds: dict, tmp_path: Path) -> None:
    """Had the incremental run missed one late status change and one moved person, the
    comparison would name fct_orders (each wrong row on both sides)."""
    broken = copy_run(day_builds["incremental"], tmp_path / "broken", sources=False)
    before, after = _orders(xs.warehouse), _orders(broken.warehouse)
    restated = next(k for k in sorted(before.keys() & after.keys()) if before[k][1] != after[k][1])
    moved = next(k for k in sorted(before.keys() & after.keys()) if before[k][0] != after[k][0])
    con = duckdb.connect(str(broken.warehouse))
    try:
        con.execute("update marts.fct_orders set status = ? where order_key = ?", [before[restated][1], restated])
        con.execute("update marts.fct_orders set person_id = ? where order_key = ?", [before[moved][0], moved])
    finally:
        con.close()
    diffs = {t: d for t, d in compare_builds(broken, day_builds["full"]).items() if d != (0, 0)}
    assert diffs == {"warehouse.marts.fct_orders": (2, 2)}


def test_a_table_built_before_loaded_at_existed_is_read_in_full_once(xs: ScaleRun, tmp_path: Path) -> None:
    """fct_orders on a warehouse built before its `loaded_at` and `is_subscription` columns: the
    next incremental run adds them and reads every order once (an incremental read would ask
    max(loaded_at) of a table without it, or leave old rows with the columns null and a stale
    status), giving the table a first build gives."""
    old = copy_run(xs, tmp_path / "old", sources=False)
    con = duckdb.connect(str(old.warehouse))
    try:
        con.execute("alter table marts.fct_orders drop column loaded_at")
        con.execute("alter table marts.fct_orders drop column is_subscription")
        stale = con.execute("update marts.fct_orders set status = 'stale' where order_key like 'oms:%'").fetchone()[0]
    finally:
        con.close()
    assert stale > 0
    build(old, select="fct_orders", exclude="resource_type:test resource_type:unit_test", quiet=True)
    columns = "order_key, person_id, status, total, loaded_at, is_subscription"
    con = duckdb.connect()
    try:
        con.execute(f"attach '{old.warehouse}' as old (read_only)")
        con.execute(f"attach '{xs.warehouse}' as built (read_only)")
        nulls = con.execute(
            "select count(*) from old.marts.fct_orders where loaded_at is null or is_subscription is null"
        ).fetchone()[0]
        differing = [
            con.execute(
                f"select count(*) from (select {columns} from {a}.marts.fct_orders "
                f"except all select {columns} from {b}.marts.fct_orders)"
            ).fetchone()[0]
            for a, b in (("old", "built"), ("built", "old"))
        ]
    finally:
        con.close()
    assert nulls == 0
    assert differing == [0, 0]


def test_after_an_erasure_the_incremental_facts_equal_a_rebuild(
    xs: ScaleRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge unlinks the erased person's orders in raw (amounts kept) and in fct_orders. Had it
    deleted their fct_orders rows, as it deletes their other rows, the incremental build would
    never write them back (their raw rows landed long ago): fct_orders would lose them and their
    sales while fct_order_lines kept their lines, until a full rebuild."""
    run = copy_run(xs, tmp_path / "erased")
    monkeypatch.setenv("YORISOI_MATCH_KEY_FILE", str(run.work / "keys" / "match_key"))
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(tmp_path / "audit"))
    wh = Warehouse(run.warehouse, Lake(run.work / "lake"))
    result = erase(Stores(wh, databases=[run.work / "analytics.duckdb"], use_activation_store=False))
    unlinked = {t: n for t, n in result.purge.raw.items() if t.endswith(("__orders", "__pos_sales"))}
    assert unlinked and result.purge.warehouse.get("marts.fct_orders"), result.to_dict()
    landed = [_newest_landing(path) for path in (xs.warehouse, run.warehouse)]
    full = copy_run(run, tmp_path / "full", sources=False)
    facts, no_tests = "fct_orders fct_order_lines", "resource_type:test resource_type:unit_test"
    build(run, select=facts, exclude=no_tests, quiet=True)
    build(full, select=facts, exclude=no_tests, full_refresh=True, quiet=True)
    assert {t: d for t, d in compare_builds(run, full).items() if d != (0, 0)} == {}
    con = duckdb.connect(str(run.warehouse), read_only=True)
    try:
        orphans = con.execute(
            "select count(*) from marts.fct_order_lines where order_key not in (select order_key from marts.fct_orders)"
        ).fetchone()[0]
    finally:
        con.close()
    assert orphans == 0
    # The raw rows keep their landing time: the raw gate reads the rows landed since its last
    # pass, and an unlinked order (no customer) is no new landing for it to judge.
    assert landed[0] == landed[1]


def _newest_landing(path: Path) -> tuple:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select (select max(_loaded_at) from raw.oms__orders), (select max(_loaded_at) from raw.ecommerce__orders)"
        ).fetchone()
    finally:
        con.close()
