"""End to end on the XS brand with planted campaigns (yorisoi_kit.planted): the activation store
landed as a source, the campaign facts built by dbt, and the readout recovers the true effects
within its intervals and catches the broken randomisation. Slow (a brand of its own, built twice)."""

from __future__ import annotations

import duckdb
import pytest

from yorisoi.outcomes import readout
from yorisoi_kit.planted import BASE_CTR, planted_truth, prepare_planted

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # a brand of its own, built twice


@pytest.fixture(scope="module")
def planted():
    run = prepare_planted("XS")
    truth = {t["audience"]: t for t in planted_truth(run)}
    designs = {name: t["expected_shares"] for name, t in truth.items()}
    return run, truth, {r.campaign_key.split("|")[0]: r for r in readout.read(run.warehouse, designs)}


def _cmp(r, metric, treatment):
    return next(c for c in r.comparisons if c.metric == metric and c.treatment == treatment)


def test_every_planted_campaign_is_measured_with_its_groups(planted) -> None:
    run, truth, readouts = planted
    assert set(readouts) == set(truth)
    con = duckdb.connect(str(run.warehouse), read_only=True)
    try:
        people = dict(con.execute("select audience, sum(people) from marts.campaign_results group by 1").fetchall())
        clv = con.execute("select count(*) from marts.customer_clv").fetchone()[0]
    finally:
        con.close()
    assert people == {name: t["members"] for name, t in truth.items()}
    assert clv > 0  # the planted layer leaves the CLV model's input fit to fit


def test_b_lifts_ctr_by_the_planted_share(planted) -> None:
    _, truth, readouts = planted
    ctr = _cmp(readouts["planted_email_ab"], "ctr", "B")
    true_diff = BASE_CTR * truth["planted_email_ab"]["ctr_lift_b"]
    assert ctr.estimate.ci_low <= true_diff <= ctr.estimate.ci_high


def test_the_dm_lifts_90_day_conversion_by_the_planted_points(planted) -> None:
    _, truth, readouts = planted
    conv = _cmp(readouts["planted_dm"], "conversion", "A")
    assert conv.estimate.ci_low <= truth["planted_dm"]["conversion_points"] <= conv.estimate.ci_high


def test_the_null_campaign_shows_no_effect(planted) -> None:
    _, _, readouts = planted
    r = readouts["planted_sms_null"]
    for metric in ("conversion", "revenue_per_recipient"):
        est = _cmp(r, metric, "A").estimate
        assert est.ci_low <= 0 <= est.ci_high, metric
        assert est.seq_low <= 0 <= est.seq_high, metric


def test_the_broken_randomisation_is_caught_and_only_it(planted) -> None:
    _, _, readouts = planted
    assert readouts["planted_line_broken"].srm.flagged
    assert "control smaller than assigned" in readouts["planted_line_broken"].srm.cause_en
    assert not any(r.srm.flagged for name, r in readouts.items() if name != "planted_line_broken")


def test_orders_quoting_the_dms_coupon_code_are_credited_to_it_by_code(planted) -> None:
    """The planted DM's caused orders mostly quote its code (seed campaign_coupon_codes); every
    one of them was placed by a mailed person within the code's validity, so the last-touch view
    credits each to the DM by code, whatever touched the person later."""
    run, truth, _ = planted
    code = truth["planted_dm"]["coupon_code"]
    con = duckdb.connect(str(run.warehouse), read_only=True)
    try:
        quoted = con.execute(
            "select count(*) from marts.fct_orders where coupon_code = ? and is_counted", [code]
        ).fetchone()[0]
        credited = dict(
            con.execute(
                "select c.credit_rule, count(*) from marts.fct_campaign_conversions as c "
                "inner join marts.fct_orders as o using (order_key) where o.coupon_code = ? "
                "and c.campaign_key like 'planted_dm|%' group by 1",
                [code],
            ).fetchall()
        )
    finally:
        con.close()
    assert quoted > 0
    assert credited == {"coupon_code": quoted}
