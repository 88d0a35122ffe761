"""customer_segment_history, the day-by-day record the report's migration view reads: a rebuild
for the same day replaces it, old days thin out to one a month, erased people leave every day."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from yorisoi.transform import brand_as_of, run_dbt
from yorisoi_kit.scale_run import ScaleRun, using_var


def test_history_reruns_retention_and_erasure(xs: ScaleRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_AS_OF", brand_as_of(xs.work / "sources"))  # the day the marts describe
    for name in ("warehouse.duckdb", "analytics.duckdb"):
        shutil.copyfile(xs.work / name, tmp_path / name)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    latest, people = con.execute(
        "select max(as_of_date), count(*) from marts.customer_segment_history group by all"
    ).fetchone()
    # Old days: two days in a row 100 days back (only the first of its month stays), one 70 days
    # back, and one within the 62 days kept daily.
    old = [latest - timedelta(days=d) for d in (101, 100, 70, 30)]
    for day in old:
        con.execute(
            "insert into marts.customer_segment_history select ?, person_id, status, rfm_segment, rfm_cell, "
            "r_score, f_score, m_score, fm_score from marts.customer_segment_history where as_of_date = ?",
            [day, latest],
        )
    erased = con.execute("select min(person_id) from marts.customer_status where status <> 'prospect'").fetchone()[0]
    con.execute("update marts.dim_customers set is_erased = true where person_id = ?", [erased])
    con.close()

    with using_var(tmp_path):
        for _ in range(2):  # the same day twice: replaced, not doubled
            run_dbt(["--quiet", "run", "--select", "customer_segment_history"], demo_key=True)

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    days = dict(con.execute("select as_of_date, count(*) from marts.customer_segment_history group by 1").fetchall())
    every = [*old, latest]
    firsts = {min(d for d in every if (d.year, d.month) == (x.year, x.month)) for x in every}
    kept = {d for d in every if d >= latest - timedelta(days=62) or d in firsts}
    assert len(kept) < len(every)  # something was old enough to go
    assert set(days) == kept
    assert days[latest] == people - 1
    left = con.execute("select count(*) from marts.customer_segment_history where person_id = ?", [erased])
    assert left.fetchone()[0] == 0
