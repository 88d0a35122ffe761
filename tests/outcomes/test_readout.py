"""The campaign readout over the campaign marts (yorisoi.outcomes.readout), on a small warehouse
whose person rows carry planted effects: verdicts, the sample-ratio block, CUPED, A/B on CTR."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from yorisoi.outcomes import readout

DESIGNS = {
    "winback": {"control": 0.5, "A": 0.5},
    "newsletter": {"control": 0.1, "A": 0.45, "B": 0.45},
    "broken": {"control": 0.2, "A": 0.8},
    "flat": {"control": 0.5, "A": 0.5},
}


def _people(rng: np.random.Generator, audience: str, n: int, design: dict, *, lift: float = 0.0,
            ctr: dict | None = None, drop_control: float = 0.0, f2_lift: float = 0.0,
            kept_lift: float = 0.0) -> pd.DataFrame:  # fmt: skip
    arms = np.array(list(design))
    arm = arms[rng.choice(len(arms), size=n, p=np.array(list(design.values())))]
    keep = (arm != "control") | (rng.random(n) >= drop_control)
    arm = arm[keep]
    m = len(arm)
    pre = rng.gamma(1.5, 4000, size=m)
    converted = rng.random(m) < 0.05 + pre / 400_000 + lift * (arm != "control")
    revenue = converted * rng.gamma(4, 2000, size=m) + 0.5 * pre
    clicks = rng.random(m) < np.array([(ctr or {}).get(a, 0.0) for a in arm])
    f1 = rng.random(m) < 0.4
    f2_90 = f1 & (rng.random(m) < 0.15 + f2_lift * (arm != "control"))
    f2_180 = f2_90 | (f1 & (rng.random(m) < 0.1))
    subscriber = rng.random(m) < 0.3
    kept_90 = subscriber & (rng.random(m) < 0.7 + kept_lift * (arm != "control"))
    kept_180 = kept_90 & (rng.random(m) < 0.8)
    return pd.DataFrame(
        {
            "campaign_key": f"{audience}|r1|dest", "campaign": f"{audience} / dest / 2026-06-01", "audience": audience,
            "channel": "email", "arm": arm, "assigned_group": np.where(arm == "control", "control", "treatment"),
            "variant": np.where(arm == "control", None, arm), "converted": converted, "revenue_in_window": revenue,
            "pre_period_revenue": pre, "pre_period_orders": rng.poisson(pre / 5000),
            "days_since_last_order": rng.integers(1, 365, size=m), "delivered": arm != "control", "clicked": clicks,
            "assigned_at": pd.Timestamp("2025-06-01", tz="UTC"), "is_f1_at_assignment": f1,
            "f2_within_90d": np.where(f1, f2_90, None), "f2_within_180d": np.where(f1, f2_180, None),
            "is_subscriber_at_assignment": subscriber, "subscription_kept_90d": np.where(subscriber, kept_90, None),
            "subscription_kept_180d": np.where(subscriber, kept_180, None),
            "revenue_within_365d": revenue * 3, "is_365d_complete": True,
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(4)
    people = pd.concat(
        [
            _people(rng, "winback", 12_000, DESIGNS["winback"], lift=0.04, f2_lift=0.05, kept_lift=0.08),
            _people(rng, "newsletter", 30_000, DESIGNS["newsletter"], ctr={"A": 0.03, "B": 0.036}),
            _people(rng, "broken", 3_000, DESIGNS["broken"], lift=0.04, drop_control=0.5),
            _people(rng, "flat", 40_000, DESIGNS["flat"]),
        ]
    )
    path = tmp_path_factory.mktemp("readout") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.register("people", people)
    con.execute("create table marts.fct_campaign_causal_outcomes as select * from people")
    con.execute("create table marts.fct_orders as select timestamptz '2026-10-31 00:00:00+00' as ordered_at")
    con.execute(
        """create table marts.campaign_results as
        select campaign_key, any_value(campaign) as campaign, any_value(audience) as audience,
            any_value(channel) as channel, arm, timestamptz '2026-06-01 00:00:00+00' as assigned_at,
            count(*) as people, sum(converted::int) as converters, sum(revenue_in_window) as revenue,
            sum(revenue_in_window * revenue_in_window) as revenue_sum_squares,
            sum(delivered::int) as delivered, sum(clicked::int) as clicks
        from people group by campaign_key, arm"""
    )
    con.close()
    return path


@pytest.fixture(scope="module")
def readouts(warehouse: Path) -> dict[str, readout.CampaignReadout]:
    return {r.campaign_key.split("|")[0]: r for r in readout.read(warehouse, DESIGNS)}


def _cmp(r: readout.CampaignReadout, metric: str, treatment: str) -> readout.Comparison:
    return next(c for c in r.comparisons if c.metric == metric and c.treatment == treatment)


def test_a_planted_conversion_lift_is_recovered_and_wins(readouts) -> None:
    conv = _cmp(readouts["winback"], "conversion", "A")
    assert conv.estimate.ci_low <= 0.04 <= conv.estimate.ci_high
    assert conv.verdict.code == "treatment_wins"
    assert (conv.verdict.ja, conv.verdict.en) == ("配信 の勝ち", "treatment wins")
    revenue = _cmp(readouts["winback"], "revenue_per_recipient", "A")
    assert revenue.estimate.method == "CUPED Welch t" and revenue.estimate.variance_reduction > 0.05


def test_long_horizon_lift_f1_to_f2_and_12_month_revenue(readouts) -> None:
    r = readouts["winback"]
    f2 = _cmp(r, "f1_to_f2_90d", "A")
    assert f2.estimate.ci_low <= 0.05 <= f2.estimate.ci_high
    assert f2.estimate.n_treatment + f2.estimate.n_control < 12_000 * 0.5  # among F1 people only
    assert {c.metric for c in r.comparisons} >= {"f1_to_f2_180d", "revenue_365d"}


def test_subscription_retention_lift_among_subscribers_at_assignment(readouts) -> None:
    kept = _cmp(readouts["winback"], "subscription_retention_90d", "A")
    assert kept.estimate.ci_low <= 0.08 <= kept.estimate.ci_high
    assert kept.estimate.ci_low > 0  # 0.7 -> 0.78 among ~3,600 subscribers: detected
    assert kept.estimate.n_treatment + kept.estimate.n_control < 12_000 * 0.4  # subscribers only
    flat = _cmp(readouts["flat"], "subscription_retention_180d", "A")
    assert flat.estimate.ci_low <= 0 <= flat.estimate.ci_high
    lines = readout.summary_lines([readouts["winback"]], "ja", metrics=("subscription_retention_90d",))
    assert any("subscription_retention_90d" in line and "pt" in line for line in lines)


def test_an_ab_test_compares_b_with_a_on_ctr(readouts) -> None:
    ctr = _cmp(readouts["newsletter"], "ctr", "B")
    assert ctr.control == "A"
    assert ctr.estimate.ci_low <= 0.006 <= ctr.estimate.ci_high
    assert all(0 <= c.q_value <= 1 for c in readouts["newsletter"].comparisons)


def test_a_broken_split_blocks_the_readout_and_names_the_cause(readouts) -> None:
    r = readouts["broken"]
    assert r.srm.flagged and "control smaller than assigned" in r.srm.cause_en
    assert {c.verdict.code for c in r.comparisons} == {"blocked"}


def test_no_effect_is_no_difference_or_not_enough_data_never_a_winner(readouts) -> None:
    r = readouts["flat"]
    assert not r.srm.flagged
    conv = _cmp(r, "conversion", "A")
    assert conv.estimate.ci_low <= 0 <= conv.estimate.ci_high
    assert conv.verdict.code in ("no_difference", "not_enough_data")
    lines = readout.summary_lines([r], "en")
    assert lines[0].startswith("flat / dest") and any(conv.verdict.en in line for line in lines)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from yorisoi.cli import main

    try:
        main(["yorisoi", *argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_readout_command_prints_lift_interval_and_verdict_in_japanese_by_default(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    designs = tmp_path / "designs.json"
    designs.write_text(json.dumps(DESIGNS), "utf-8")
    code, out, _ = _cli(["campaign", "readout", "--warehouse", str(warehouse), "--designs", str(designs)], capsys)
    assert code == 0
    winback = next(line for line in out.splitlines() if line.strip().startswith("conversion") and "配信 の勝ち" in line)
    assert "95%" in winback
    assert "判定保留: サンプル比のずれ" in out  # the broken split, blocked

    code, out, _ = _cli(
        ["campaign", "readout", "winback", "--warehouse", str(warehouse), "--designs", str(designs), "--json"], capsys
    )
    [campaign] = json.loads(out)
    conversion = next(c for c in campaign["comparisons"] if c["metric"] == "conversion")
    assert conversion["verdict"] == "treatment_wins" and conversion["ci95"][0] <= 0.04 <= conversion["ci95"][1]
    assert conversion["always_valid_ci95"][0] <= conversion["ci95"][0]  # wider: valid at every look

    code, out, _ = _cli(
        ["campaign", "readout", "--warehouse", str(warehouse), "--lang", "en", "--metric", "ctr"], capsys
    )
    metric_lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert metric_lines and all(line.strip().startswith("ctr") for line in metric_lines)
    assert "B wins" in out


def test_the_readout_command_says_what_to_build_when_there_is_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(["campaign", "readout", "--warehouse", str(tmp_path / "none.duckdb")], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "build it first" in err
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    argv = ["campaign", "readout", "--warehouse", str(empty), "--designs", str(_no_designs(tmp_path))]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and "tag:campaigns" in err


def _no_designs(folder: Path) -> Path:
    path = folder / "designs.json"
    path.write_text("{}", "utf-8")
    return path


def test_the_default_designs_are_the_audiences_splits() -> None:
    designs = readout.designs_from_audiences()
    assert designs and all(abs(sum(shares.values()) - 1) < 1e-9 for shares in designs.values())
    assert all(0 <= shares["control"] <= 0.5 for shares in designs.values())
