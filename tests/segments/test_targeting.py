"""The 4R check (segment_4r) on the XS brand: Reach counts who may really be contacted, and the
Response sample size is the one that gives the stated power, checked by simulation."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
import yaml
from scipy.stats import norm

from yorisoi.sources.registry import PROJECT_ROOT
from yorisoi_kit.scale_run import ScaleRun

TARGETING = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]["targeting"]


@pytest.fixture(scope="module")
def rows(xs: ScaleRun) -> list[dict]:
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    cur = con.execute("select * from marts.segment_4r")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_every_status_rfm_segment_and_trigger_is_checked(rows: list[dict], xs: ScaleRun) -> None:
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    statuses = {r[0] for r in con.execute("select distinct status from marts.customer_status").fetchall()}
    triggers = {r[0] for r in con.execute("select distinct trigger from marts.trigger_audiences").fetchall()}
    assert {r["segment"] for r in rows if r["segment_type"] == "status"} == statuses
    assert {r["segment"] for r in rows if r["segment_type"] == "trigger"} == triggers
    ranked = [r for r in rows if r["segment_type"] in ("status", "trigger")]
    assert all(r["priority"] is not None for r in ranked)  # the seed ranks every status and trigger


def test_reach_is_who_may_be_contacted(rows: list[dict], xs: ScaleRun) -> None:
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    expected = dict(
        con.execute(
            """
            select s.status, count(distinct d.person_id)
            from marts.customer_status s join marts.deliverable_customers d using (person_id)
            where d.channel = 'email' group by s.status
            """
        ).fetchall()
    )
    for r in rows:
        assert r["reach_any"] <= r["customers"]
        assert max(r[f"reach_{c}"] for c in ("email", "line", "sms", "dm", "call")) <= r["reach_any"]
        if r["segment_type"] == "status":
            assert r["reach_email"] == expected.get(r["segment"], 0), r["segment"]


def test_the_minimum_control_group_has_the_stated_power(rows: list[dict]) -> None:
    p1 = TARGETING["baseline_conversion"]
    p2 = p1 * (1 + TARGETING["minimum_lift"])
    h = TARGETING["holdout_share"]
    n_control = rows[0]["min_control_size"]
    assert all(r["min_control_size"] == n_control for r in rows)
    n_treated = round(n_control * (1 - h) / h)

    # Monte Carlo: a two-sided two-proportion z-test at alpha, on groups of that size.
    rng = np.random.default_rng(7)
    trials = 4000
    c = rng.binomial(n_control, p1, trials) / n_control
    t = rng.binomial(n_treated, p2, trials) / n_treated
    pooled = (c * n_control + t * n_treated) / (n_control + n_treated)
    z = (t - c) / np.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treated))
    power = float(np.mean(np.abs(z) > norm.ppf(1 - TARGETING["alpha"] / 2)))
    assert power == pytest.approx(TARGETING["power"], abs=0.03)

    # and a control group 30 % smaller falls clearly short
    small = int(n_control * 0.7)
    c = rng.binomial(small, p1, trials) / small
    t = rng.binomial(round(small * (1 - h) / h), p2, trials) / round(small * (1 - h) / h)
    pooled = (c + t * (1 - h) / h) / (1 + (1 - h) / h)
    z = (t - c) / np.sqrt(pooled * (1 - pooled) * (1 / small + h / ((1 - h) * small)))
    assert float(np.mean(np.abs(z) > norm.ppf(1 - TARGETING["alpha"] / 2))) < TARGETING["power"] - 0.05


def test_can_measure_lift_follows_the_control_size(rows: list[dict]) -> None:
    h = TARGETING["holdout_share"]
    for r in rows:
        assert r["control_size"] == int(r["reach_any"] * h)
        assert r["can_measure_lift"] == (r["control_size"] >= r["min_control_size"])
        if r["detectable_lift"] is not None and r["control_size"] < 0.8 * r["min_control_size"]:
            # well short of the size needed, only a larger lift than the target is detectable
            assert r["detectable_lift"] > TARGETING["minimum_lift"]
    lifts = sorted((r["reach_any"], r["detectable_lift"]) for r in rows if r["detectable_lift"] is not None)
    assert [lift for _, lift in lifts] == sorted((lift for _, lift in lifts), reverse=True)  # more reach, finer
