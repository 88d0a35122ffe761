"""The report's views: `collect` runs every query once, `assemble` turns the results into the
views of one language (customer_views, ops_views), so the Japanese page and its English twin
show the same numbers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb

from ..outcomes import readout
from . import health
from .blocks import Facts, View
from .customer_views import channels, cohorts, f_ladder, key_figures, lead_times, migration, reach, rfm, value
from .data import Warehouse
from .forecast import forecast
from .ops_views import balance, campaigns, data_health, triggers
from .strings import Text

MIGRATION_MIN_DAYS = 28  # compare with the newest day at least four weeks before the latest
CAMPAIGN_TABLE = ("marts", "campaign_results")


def collect(
    wh: Warehouse,
    *,
    time_zone: str,
    var: Path | None = None,
    simulations: int = 200,
    designs: Mapping[str, Mapping[str, float]] | None = None,
) -> Facts:
    """`designs`: each audience's assigned split for the campaigns' sample-ratio check (default:
    audiences/*.yml, as `yorisoi campaign readout`)."""
    q = wh.query
    frames = {
        "kpi": q("kpi"),
        "f_ladder": q("f_ladder"),
        "lead_times": q("lead_times"),
        "cohort_repeat": q("cohort_repeat"),
        "cohort_retention": q("cohort_retention"),
        "rfm_grid": q("rfm_grid"),
        "deciles": q("deciles"),
        "abc": q("abc"),
        "channel_mix": q("channel_mix"),
        "channel_revenue": q("channel_revenue", time_zone=time_zone),
        "id_links": q("id_links"),
        "reach": q("reach"),
        "triggers": q("triggers"),
        "freshness": health.freshness(wh),
        "quarantine": health.quarantined(wh),
        "sync_runs": health.sync_runs(var),
    }
    if wh.has("marts", "customer_segment_history"):
        frames["migration"] = q("migration", min_days=MIGRATION_MIN_DAYS)
        frames["status_names"] = wh.frame(
            "select status, status_ja from reference.customer_statuses order by sort_order"
        )
        frames["segment_names"] = wh.frame("select distinct rfm_segment, rfm_segment_ja from reference.rfm_segments")
    has_campaigns = wh.has(*CAMPAIGN_TABLE)
    readouts, campaign_error = [], None
    if has_campaigns:
        frames["campaigns"] = wh.frame("select * from marts.campaign_results")
        readouts, campaign_error = _campaign_readouts(wh, designs)
    balance, balance_error = None, None
    if wh.has("marts", "customer_clv"):
        frames["clv_kpi"] = q("clv_kpi")
        try:
            balance = forecast(q("balance"), simulations=simulations)
        except ValueError as e:
            balance_error = str(e)
    return Facts(
        frames=frames,
        balance=balance,
        balance_error=balance_error,
        time_zone=time_zone,
        allocation=health.latest_allocation(var),
        gates=health.gates(var),
        has_campaigns=has_campaigns,
        campaign_readouts=readouts,
        campaign_error=campaign_error,
    )


def _campaign_readouts(
    wh: Warehouse, designs: Mapping[str, Mapping[str, float]] | None
) -> tuple[list[readout.CampaignReadout], str | None]:
    """The readout `yorisoi campaign readout` prints; its error instead when the campaign marts
    are incomplete or an audience's design no longer names its arms (the rest of the report
    still builds)."""
    try:
        return readout.read_connection(wh.con, designs), None
    except (duckdb.Error, ValueError) as e:
        return [], str(e).splitlines()[0]


def assemble(facts: Facts, t: Text) -> list[View]:
    builders = [
        key_figures, f_ladder, lead_times, cohorts, rfm, migration, value, channels, reach, triggers,
        campaigns, balance, data_health,
    ]  # fmt: skip
    return [b(facts, t) for b in builders]
