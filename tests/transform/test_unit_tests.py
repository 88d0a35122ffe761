"""dbt's unit tests run here, in CI, and not in the scheduled builds: they test the SQL on fixed
rows, not the day's data (docs/scale.md). They need their models' parents in the warehouse (dbt
reads their columns), so they run on the built XS brand."""

from __future__ import annotations

import json


def test_every_dbt_unit_test_passes(xs):
    from yorisoi_kit.scale_run import unit_tests

    results = unit_tests(xs)
    manifest = json.loads((xs.work / "dbt" / "target" / "manifest.json").read_text())
    defined = set(manifest["unit_tests"])
    assert defined, "the project defines no unit test"
    assert {r["node"] for r in results} == defined
    failed = [(r["node"], r["status"], r["message"]) for r in results if r["status"] != "pass"]
    assert not failed, failed
