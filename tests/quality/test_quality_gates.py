"""The gates on a copy of the XS warehouse: clean data passes and Data Docs are published; a seeded
bad raw batch, an opted-out person among the deliverable customers, or a jump in the audience's
size fails the gate with a message naming the suite and the expectation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from quality_seeds import seed_bad_raw_batch, seed_opted_out_deliverable

from yorisoi.quality.gate import QualityGateFailed, validate_layer
from yorisoi.quality.validate import accept_row_counts, docs_dir, history_path, validate


def test_clean_layers_pass_validate_only_new_raw_rows_and_publish_data_docs(var: Path) -> None:
    raw = validate("raw")
    assert raw.success, raw.message()
    assert len(raw.suites) == 17
    assert all(s.rows_validated > 0 for s in raw.suites), "the first validation reads every landed row"

    marts = validate("marts")
    assert marts.success, marts.message()
    assert {s.scope for s in marts.suites} == {"whole_table", "aggregate"}

    index = docs_dir() / "index.html"
    assert index.exists() and marts.docs_index == index
    assert str(index).startswith(str(var / "out" / "docs"))
    page = index.read_text("utf-8")
    assert "raw.ecommerce__customers" in page and "marts.deliverable_customers" in page

    # The raw gate reads only what landed since its last passing validation: nothing new now.
    again = validate("raw")
    assert again.success
    batches = [s for s in again.suites if s.scope == "latest_batch"]
    assert batches and all(s.rows_validated == 0 for s in batches)
    con = duckdb.connect(str(history_path()), read_only=True)
    assert con.execute("select count(*) from validations where success").fetchone()[0] == 17 + 12 + 17
    con.close()


def test_a_bad_raw_batch_stops_the_raw_gate(var: Path) -> None:
    seed_bad_raw_batch(var / "warehouse.duckdb")
    with pytest.raises(QualityGateFailed) as failed:
        validate_layer("raw", tables=["ecommerce__customers", "ecommerce__orders"])
    message = str(failed.value)
    assert "quality gate raw failed: 1 of 2 suites failed" in message
    assert "raw.ecommerce__customers: expect_column_values_to_not_be_null(column=id): 1 of" in message
    assert "expect_column_values_to_be_in_set(column=email_marketing_state): 1 of" in message
    assert "['bogus']" in message
    assert "raw.ecommerce__customers.table: expect_column_values_to_be_between(column=duplicate_keys)" in message
    assert "Data Docs:" in message


def test_an_opted_out_person_among_the_deliverable_stops_the_marts_gate(var: Path) -> None:
    seed_opted_out_deliverable(var / "warehouse.duckdb")
    with pytest.raises(QualityGateFailed) as failed:
        validate_layer("marts", tables=["deliverable_customers", "dim_customers"])
    message = str(failed.value)
    assert "1 of 2 suites failed" in message
    assert "marts.deliverable_customers.table: expect_column_values_to_be_between(column=not_opted_in)" in message
    assert "(column=also_excluded)" in message


def test_an_audience_size_jump_stops_the_marts_gate(var: Path) -> None:
    """docs/reliability.md #13: the contactable audience changing by more than 20 % since the last passing
    validation is a circuit breaker, until a person accepts the new size."""
    assert validate("marts", tables=["deliverable_customers"]).success  # the baseline
    con = duckdb.connect(str(var / "warehouse.duckdb"))
    con.execute("delete from marts.deliverable_customers where hash(person_id) % 3 = 0")
    con.close()
    with pytest.raises(QualityGateFailed, match=r"deliverable_customers\.table: .*\(column=row_count_change_ratio\)"):
        validate_layer("marts", tables=["deliverable_customers"])
    accepted = accept_row_counts("marts", ["deliverable_customers"], reason="checked: test data")
    (before, now) = accepted["marts.deliverable_customers"]
    assert now < before * 0.8
    assert validate("marts", tables=["deliverable_customers"]).success


def test_the_command_line_gate_is_what_the_circuit_breaker_reads(var: Path) -> None:
    """`yorisoi quality validate` publishes its result like the Airflow gate, so an export after a
    gate run from the command line is not refused for want of one; a look at another warehouse
    publishes nothing."""
    from typer.testing import CliRunner

    from yorisoi.activation.selection.breaker import check_quality
    from yorisoi.quality.cli import quality_app

    assert not check_quality().passed
    elsewhere = CliRunner().invoke(
        quality_app,
        ["validate", "--layer", "marts", "--table", "dim_customers", "--warehouse", str(var / "warehouse.duckdb")],
    )
    assert elsewhere.exit_code == 0, elsewhere.output
    assert not check_quality().passed
    result = CliRunner().invoke(quality_app, ["validate", "--layer", "marts"])
    assert result.exit_code == 0, result.output
    assert check_quality().passed, check_quality().reason
