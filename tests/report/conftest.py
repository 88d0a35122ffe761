"""The report built once from the XS brand the other tests build (never from var/)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from yorisoi_kit.scale_run import ScaleRun


@pytest.fixture(scope="session")
def xs_report(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory):
    from yorisoi.report.build import build_report

    return build_report(tmp_path_factory.mktemp("report") / "report", warehouse=xs.warehouse, simulations=50)


@pytest.fixture
def warehouse_copy(xs: ScaleRun, tmp_path: Path) -> Path:
    """A copy of the XS warehouse a test may change."""
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(xs.warehouse, copy)
    return copy


# Campaigns with known effects for the campaign view: audience -> (people, assigned split,
# conversion lift of the treatment, click rate per variant, share of control dropped after assignment).
CAMPAIGNS = {
    "winback": (12_000, {"control": 0.5, "A": 0.5}, 0.04, {}, 0.0),
    "newsletter": (30_000, {"control": 0.1, "A": 0.45, "B": 0.45}, 0.0, {"A": 0.03, "B": 0.036}, 0.0),
    "broken": (3_000, {"control": 0.2, "A": 0.8}, 0.04, {}, 0.5),
    "small": (400, {"control": 0.5, "A": 0.5}, 0.0, {}, 0.0),
}
CAMPAIGN_DESIGNS = {name: split for name, (_, split, *_) in CAMPAIGNS.items()}


def _campaign_people(rng, audience: str) -> pd.DataFrame:
    import numpy as np

    n, split, lift, ctr, drop_control = CAMPAIGNS[audience]
    arm = np.array(list(split))[rng.choice(len(split), size=n, p=list(split.values()))]
    arm = arm[(arm != "control") | (rng.random(n) >= drop_control)]
    m = len(arm)
    pre = rng.gamma(1.5, 4000, size=m)
    converted = rng.random(m) < 0.05 + lift * (arm != "control")
    return pd.DataFrame(
        {
            "campaign_key": f"{audience}|r1|esp_list", "campaign": f"{audience} / esp_list / 2026-06-01",
            "audience": audience, "channel": "email", "arm": arm,
            "assigned_group": np.where(arm == "control", "control", "treatment"),
            "variant": np.where(arm == "control", None, arm), "converted": converted,
            "revenue_in_window": converted * rng.gamma(4, 2000, size=m) + 0.5 * pre, "pre_period_revenue": pre,
            "pre_period_orders": rng.poisson(pre / 5000), "days_since_last_order": rng.integers(1, 365, size=m),
            "delivered": arm != "control", "clicked": rng.random(m) < np.array([ctr.get(a, 0.0) for a in arm]),
            "assigned_at": pd.Timestamp("2026-06-01", tz="UTC"), "is_f1_at_assignment": False,
            "f2_within_90d": None, "f2_within_180d": None, "is_subscriber_at_assignment": False,
            "subscription_kept_90d": None, "subscription_kept_180d": None, "revenue_within_365d": 0.0,
            "is_365d_complete": False,
        }
    )  # fmt: skip


def add_campaigns(warehouse: Path) -> None:
    """Replace the (empty on the XS brand) campaign marts with the CAMPAIGNS' person rows and
    their per-arm results, in the columns the readout reads."""
    import duckdb
    import numpy as np

    rng = np.random.default_rng(4)
    people = pd.concat([_campaign_people(rng, name) for name in CAMPAIGNS])  # noqa: F841 - read by DuckDB
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create or replace table marts.fct_campaign_causal_outcomes as select * from people")
        con.execute(
            """create or replace table marts.campaign_results as
            select campaign_key, any_value(campaign) as campaign, any_value(audience) as audience,
                any_value(channel) as channel, arm, min(assigned_at) as assigned_at, count(*) as people,
                sum(delivered::int) as sends, sum(converted::int) as converters,
                avg(converted::int) as conversion_rate, sum(revenue_in_window) as revenue,
                sum(revenue_in_window * revenue_in_window) as revenue_sum_squares,
                sum(delivered::int) as delivered, sum(clicked::int) as clicks
            from people group by campaign_key, arm"""
        )
    finally:
        con.close()


@pytest.fixture(scope="session")
def campaign_warehouse(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the XS warehouse with CAMPAIGNS measured (read-only for the tests)."""
    import shutil

    copy = tmp_path_factory.mktemp("campaigns") / "warehouse.duckdb"
    shutil.copyfile(xs.warehouse, copy)
    add_campaigns(copy)
    return copy


@pytest.fixture(scope="session")
def campaign_report(campaign_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    from yorisoi.report.build import build_report

    folder = tmp_path_factory.mktemp("campaign_report") / "report"
    return build_report(folder, warehouse=campaign_warehouse, simulations=20, designs=CAMPAIGN_DESIGNS)


@pytest.fixture(scope="session")
def campaign_designs() -> dict[str, dict[str, float]]:
    return CAMPAIGN_DESIGNS
