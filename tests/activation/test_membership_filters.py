"""An audience whose selection filters on a value (a bound query parameter) and whose columns all
come from the golden record: the records are built. The selection's parameters were passed to the
records query even when it did not read the selection, and DuckDB refused the call ("Parameter
argument/count mismatch"); found by the first scheduled run of such an audience
(tests/orchestration/test_scheduled_pipeline.py)."""

from __future__ import annotations

from pathlib import Path

from audiences_harness import TEST_SECRET, TinyWarehouse, person, write_audience

from yorisoi.activation.selection.definitions import load_destinations
from yorisoi.activation.selection.membership import build_records


def test_a_filtered_selection_with_golden_record_columns_only(tmp_path: Path) -> None:
    wh = TinyWarehouse.in_memory()
    wh.people = [person(i) for i in range(6)]
    ids = [p["person_id"] for p in wh.people]
    wh.deliverable = {(p, "dm") for p in ids}
    wh.selections = {
        "customer_status": [{"person_id": p, "status": "vip" if i % 2 else "active"} for i, p in enumerate(ids)]
    }
    wh.write()
    destinations = load_destinations()
    columns = ["full_name", "postal_code", "prefecture", "address"]
    audience = write_audience(
        tmp_path,
        {
            "name": "vip_letter",
            "owner": "tests",
            "description": "a letter to every VIP",
            "selection": {"mart": "customer_status", "filters": [{"column": "status", "op": "=", "value": "vip"}]},
            "channels": ["dm"],
            "destinations": [{"name": "sftp_dm_list", "columns": columns}],
            "priority": 1,
            "holdout_percent": 0,
            "columns": columns,
        },
        destinations,
    )
    vips = ids[1::2]
    con = wh.connect()
    try:
        result = build_records(audience, destinations["sftp_dm_list"], vips, con, secret=TEST_SECRET)
    finally:
        con.close()
    assert [r.person_id for r in result.records] == vips
    assert all(set(columns) <= set(r.fields) for r in result.records)
