"""Every raw table of the source registry and every consumed mart has a suite file, and every
suite file loads into Great Expectations; a broken file is reported with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from yorisoi.quality.suites import LAYERS, SuiteError, expected_tables, load_suites, parse_suite


@pytest.mark.parametrize("layer", LAYERS)
def test_every_table_that_matters_has_a_suite(layer: str) -> None:
    have = {s.table for s in load_suites(layer)}
    missing = sorted(set(expected_tables(layer)) - have)
    assert not missing, f"tables without a suite in expectations/{layer}/: {missing}"


def test_every_suite_file_loads_into_gx_suites() -> None:
    import great_expectations as gx

    for spec in load_suites():
        suites = spec.to_gx_suites()
        expected = {"rows": (spec.name, spec.expectations), "table": (f"{spec.name}.table", spec.table_expectations)}
        for kind, (name, entries) in expected.items():
            if not entries:
                assert kind not in suites, spec.relpath
                continue
            assert isinstance(suites[kind], gx.ExpectationSuite), spec.relpath
            assert suites[kind].name == name
            assert len(suites[kind].expectations) == len(entries), spec.relpath


def test_scope_matches_the_layer() -> None:
    """Raw tables are validated by batch (or whole when tiny); the marts too big for memory at
    scale L are profiled."""
    by_table = {s.table: s.scope for s in load_suites()}
    assert by_table["raw.ecommerce__orders"] == "latest_batch"
    assert by_table["marts.fct_orders"] == "aggregate"
    assert by_table["marts.fct_order_lines"] == "aggregate"
    assert by_table["marts.deliverable_customers"] == "whole_table"


def _write(tmp_path: Path, text: str, name: str = "raw.ecommerce__customers.yml") -> Path:
    folder = tmp_path / "raw"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, "utf-8")
    return path


GOOD_HEAD = """suite: raw.ecommerce__customers
table: raw.ecommerce__customers
description: test
scope: latest_batch
expectations:
"""


def test_a_bad_suite_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_HEAD + "  - type: expect_column_values_to_not_be_null\n    kwargs: {colum: id}\n")
    spec = parse_suite(path)  # the shape is fine; GX rejects the argument
    with pytest.raises(SuiteError, match=r"raw\.ecommerce__customers\.yml:6: expect_column_values_to_not_be_null"):
        spec.to_gx_suites()

    path = _write(tmp_path, GOOD_HEAD + "  - type: expect_the_unexpected\n    kwargs: {column: id}\n")
    with pytest.raises(SuiteError, match=r":6: expect_the_unexpected: .*not found"):
        parse_suite(path).to_gx_suites()

    path = _write(tmp_path, GOOD_HEAD.replace("latest_batch", "sometimes") + "  - type: expect_x\n")
    with pytest.raises(SuiteError, match=r":1: scope 'sometimes' is not one of"):
        parse_suite(path)

    path = _write(tmp_path, GOOD_HEAD + "  - type: expect_column_to_exist\n    kwargs: {column: id\n")
    with pytest.raises(SuiteError, match=r"raw\.ecommerce__customers\.yml:\d+: not valid YAML"):
        parse_suite(path)

    text = GOOD_HEAD + (
        "  - type: expect_column_to_exist\n    kwargs: {column: id}\ntable_expectations:\n"
        "  - type: expect_column_values_to_be_between\n    kwargs: {column: hours_since_latest, max_value: 1}\n"
    )
    with pytest.raises(SuiteError, match=r":9: table measure 'hours_since_latest' does not exist"):
        parse_suite(_write(tmp_path, text))


def test_raw_suites_cannot_read_what_dbt_builds(tmp_path: Path) -> None:
    """The raw gate runs before dbt: on a new warehouse the seeds' schema does not exist yet."""
    text = GOOD_HEAD.replace(
        "expectations:\n",
        "metrics:\n  unknown: count(*) filter (where x not in (select y from reference.stores))\nexpectations:\n",
    )
    with pytest.raises(SuiteError, match=r"reads a schema dbt builds, but the raw gate runs before dbt"):
        parse_suite(_write(tmp_path, text + "  - type: expect_column_to_exist\n    kwargs: {column: id}\n"))


def test_personal_data_is_never_shown_in_data_docs(tmp_path: Path) -> None:
    text = GOOD_HEAD + "  - type: expect_column_values_to_match_regex\n    kwargs: {column: email, regex: '@'}\n"
    with pytest.raises(SuiteError, match=r":6: expect_column_values_to_match_regex on \['email'\]: .*personal data"):
        parse_suite(_write(tmp_path, text))
