"""The campaign readout: each campaign's arms from ``marts.campaign_results`` (and, for CUPED,
the person rows of ``marts.fct_campaign_causal_outcomes``) through :mod:`yorisoi.outcomes.stats`.

Per campaign: the sample-ratio check against the design (the audience's holdout and variant
weights), then treatment against control on conversion and revenue per recipient (CUPED with
the pre-period covariates), B against A on CTR when there is an A/B test, Benjamini-Hochberg
across the campaign's comparisons, and a verdict on each, decided on the always-valid interval.
Long-horizon lift, where the horizon has passed: F1 -> F2 within 90 / 180 days, 定期 (subscription)
retention at 90 / 180 days among subscribers at assignment, and revenue within 365 days, against
control.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from . import stats

# The smallest differences worth acting on (a brand sets its own): conversion in points,
# CTR relative to A's, revenue per recipient relative to control's.
MDE = {"conversion": 0.01, "ctr_relative": 0.10, "revenue_relative": 0.10}
RATE_METRICS = ("f1_to_f2", "subscription_retention")  # shares: differences in points


@dataclass
class Comparison:
    metric: str
    treatment: str
    control: str
    estimate: stats.Estimate
    verdict: stats.Verdict
    q_value: float = math.nan


@dataclass
class CampaignReadout:
    campaign_key: str
    campaign: str
    channel: str
    srm: stats.SampleRatio | None
    comparisons: list[Comparison] = field(default_factory=list)


def load_designs(path: Path) -> dict[str, dict[str, float]]:
    """Assigned splits from a JSON file: {audience: {arm: share}}, or a list of {audience,
    expected_shares} (a planted brand's truth/planted_campaigns.json), for campaigns whose
    audience is not defined in audiences/ (sent by another tool, or defined elsewhere)."""
    doc = json.loads(Path(path).read_text("utf-8"))
    if isinstance(doc, list):
        return {str(d["audience"]): {str(k): float(v) for k, v in d["expected_shares"].items()} for d in doc}
    if isinstance(doc, dict):
        return {str(k): {str(a): float(x) for a, x in v.items()} for k, v in doc.items()}
    raise ValueError(f"{path}: the designs must be a JSON object or a list, not {type(doc).__name__}")


def designs_from_audiences(folder: Path | None = None) -> dict[str, dict[str, float]]:
    """Each audience's assigned split (arm -> share) from its definition (audiences/*.yml)."""
    from ..activation.selection.definitions import load_audiences

    designs = {}
    for audience in load_audiences(folder):
        holdout = audience.holdout_percent / 100
        total = sum(v.weight for v in audience.variants)
        shares = {"control": holdout}
        shares.update({v.name: (1 - holdout) * v.weight / total for v in audience.variants})
        designs[audience.name] = shares
    return designs


def _welch_from_sums(t: pd.Series, c: pd.Series, planned_n: int) -> stats.Estimate:
    """Welch's difference in revenue per recipient from each arm's count, sum and sum of squares."""

    def moments(row: pd.Series) -> tuple[float, float, int]:
        n = int(row["people"])
        mean = float(row["revenue"]) / n
        var = max(float(row["revenue_sum_squares"]) - n * mean * mean, 0.0) / max(n - 1, 1)
        return mean, var, n

    (m_t, v_t, n_t), (m_c, v_c, n_c) = moments(t), moments(c)
    return stats.welch_from_moments(m_t, v_t, n_t, m_c, v_c, n_c, planned_n=planned_n, metric="revenue_per_recipient")


def _cuped_revenue(
    con: duckdb.DuckDBPyConnection, campaign_key: str, arm: str, planned_n: int
) -> stats.Estimate | None:
    rows = con.execute(
        "select assigned_group = 'treatment' as treated, revenue_in_window, pre_period_revenue, pre_period_orders, "
        "coalesce(days_since_last_order, 9999) as recency from marts.fct_campaign_causal_outcomes "
        "where campaign_key = ? and (assigned_group = 'control' or coalesce(variant, 'treatment') = ?)",
        [campaign_key, arm],
    ).df()
    treated = rows["treated"].to_numpy(dtype=bool)
    if treated.sum() < 2 or (~treated).sum() < 2:
        return None
    covariates = rows[["pre_period_revenue", "pre_period_orders", "recency"]].to_numpy(dtype=float)
    return stats.cuped(
        rows["revenue_in_window"].to_numpy(dtype=float), covariates, treated, planned_n=planned_n,
        metric="revenue_per_recipient",
    )  # fmt: skip


def _long_horizon(con: duckdb.DuckDBPyConnection, campaign_key: str, arm: str, planned: int) -> list[stats.Estimate]:
    """Lift no campaign tool reports: F1 -> F2 within 90 and 180 days (among people with one
    order at assignment), 定期 retention at 90 and 180 days (among subscribers at assignment;
    none when the brand's orders mark no subscription) and revenue within 365 days, counting only
    people whose horizon has ended by the newest order in the warehouse (the 365 days: by the
    as-of day)."""
    rows = (
        con.execute(
            """with people as (
            select assigned_group = 'treatment' as treated, is_f1_at_assignment, f2_within_90d, f2_within_180d,
                is_subscriber_at_assignment, subscription_kept_90d, subscription_kept_180d,
                revenue_within_365d, is_365d_complete, assigned_at
            from marts.fct_campaign_causal_outcomes
            where campaign_key = ? and (assigned_group = 'control' or coalesce(variant, 'treatment') = ?)
        ), horizon as (select max(ordered_at) as newest from marts.fct_orders)
        select treated,
            count(*) filter (where is_f1_at_assignment and assigned_at + interval 90 day <= newest) as f1_90,
            count(*) filter (where f2_within_90d and assigned_at + interval 90 day <= newest) as f2_90,
            count(*) filter (where is_f1_at_assignment and assigned_at + interval 180 day <= newest) as f1_180,
            count(*) filter (where f2_within_180d and assigned_at + interval 180 day <= newest) as f2_180,
            count(*) filter (where is_subscriber_at_assignment and assigned_at + interval 90 day <= newest)
                as sub_90,
            count(*) filter (where subscription_kept_90d and assigned_at + interval 90 day <= newest) as kept_90,
            count(*) filter (where is_subscriber_at_assignment and assigned_at + interval 180 day <= newest)
                as sub_180,
            count(*) filter (where subscription_kept_180d and assigned_at + interval 180 day <= newest) as kept_180
        from people, horizon group by treated""",
            [campaign_key, arm],
        )
        .df()
        .set_index("treated")
    )
    out = []
    if {True, False} <= set(rows.index):
        t, c = rows.loc[True], rows.loc[False]
        for base, hit, metric in (("f1", "f2", "f1_to_f2"), ("sub", "kept", "subscription_retention")):
            for days in (90, 180):
                if min(t[f"{base}_{days}"], c[f"{base}_{days}"]) > 0:
                    out.append(
                        stats.two_proportions(
                            int(t[f"{hit}_{days}"]),
                            int(t[f"{base}_{days}"]),
                            int(c[f"{hit}_{days}"]),
                            int(c[f"{base}_{days}"]),
                            planned_n=planned,
                            metric=f"{metric}_{days}d",
                        )
                    )
    revenue = con.execute(
        "select assigned_group = 'treatment' as treated, revenue_within_365d from marts.fct_campaign_causal_outcomes "
        "where campaign_key = ? and (assigned_group = 'control' or coalesce(variant, 'treatment') = ?) "
        "and is_365d_complete",
        [campaign_key, arm],
    ).df()
    treated = revenue["treated"].to_numpy(dtype=bool)
    if treated.sum() >= 2 and (~treated).sum() >= 2:
        values = revenue["revenue_within_365d"].to_numpy(dtype=float)
        out.append(stats.welch(values[treated], values[~treated], planned_n=planned, metric="revenue_365d"))
    return out


def read(
    warehouse: Path | str,
    designs: Mapping[str, Mapping[str, float]] | None = None,
    *,
    mde: Mapping[str, float] = MDE,
) -> list[CampaignReadout]:
    """Every campaign's readout. `designs`: audience -> arm -> assigned share (default: the
    audience definitions); a campaign without one skips the sample-ratio check."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return read_connection(con, designs, mde=mde)
    finally:
        con.close()


def read_connection(
    con: duckdb.DuckDBPyConnection,
    designs: Mapping[str, Mapping[str, float]] | None = None,
    *,
    mde: Mapping[str, float] = MDE,
) -> list[CampaignReadout]:
    """:func:`read` on a connection already open (the CRM report reads its warehouse once)."""
    designs = designs if designs is not None else designs_from_audiences()
    results = con.execute("select * from marts.campaign_results order by assigned_at, campaign_key, arm").df()
    out = []
    for key, arms in results.groupby("campaign_key", sort=False):
        out.append(_campaign(con, key, arms.set_index("arm"), designs.get(arms["audience"].iloc[0]), mde))
    return out


def _campaign(
    con: duckdb.DuckDBPyConnection,
    key: str,
    arms: pd.DataFrame,
    design: Mapping[str, float] | None,
    mde: Mapping[str, float],
) -> CampaignReadout:
    first = arms.iloc[0]
    srm = None
    if design:
        srm = stats.sample_ratio_check({a: int(n) for a, n in arms["people"].items()}, dict(design))
    planned = int(arms["people"].sum())
    readout = CampaignReadout(key, str(first["campaign"]), str(first["channel"]), srm)
    treatments = [a for a in arms.index if a != "control"]
    if "control" in arms.index:
        c = arms.loc["control"]
        for arm in treatments:
            t = arms.loc[arm]
            conv = stats.two_proportions(
                int(t["converters"]), int(t["people"]), int(c["converters"]), int(c["people"]),
                planned_n=planned, metric="conversion",
            )  # fmt: skip
            label = arm if len(treatments) > 1 else "配信"  # a send without an A/B test: 配信 vs コントロール
            readout.comparisons.append(_compare(conv, arm, "control", mde["conversion"], srm, label))
            revenue = _cuped_revenue(con, key, arm, planned) or _welch_from_sums(t, c, planned)
            relative = mde["revenue_relative"] * max(revenue.mean_control, 1.0)
            readout.comparisons.append(_compare(revenue, arm, "control", relative, srm, label))
            for est in _long_horizon(con, key, arm, planned):
                scale = (
                    mde["conversion"]
                    if est.metric.startswith(RATE_METRICS)
                    else mde["revenue_relative"] * max(est.mean_control, 1.0)
                )
                readout.comparisons.append(_compare(est, arm, "control", scale, srm, label))
    if len(treatments) >= 2 and (arms.loc[treatments, "delivered"] > 0).all():
        base, *others = sorted(treatments)
        a = arms.loc[base]
        for arm in others:
            b = arms.loc[arm]
            ctr = stats.two_proportions(
                int(b["clicks"]), int(b["delivered"]), int(a["clicks"]), int(a["delivered"]),
                planned_n=int(a["delivered"] + b["delivered"]), metric="ctr",
            )  # fmt: skip
            relative = mde["ctr_relative"] * max(ctr.mean_control, 1e-9)
            readout.comparisons.append(_compare(ctr, arm, base, relative, srm, arm))
    if readout.comparisons:
        _, q = stats.benjamini_hochberg([cmp.estimate.p_value for cmp in readout.comparisons])
        for cmp, value in zip(readout.comparisons, q, strict=True):
            cmp.q_value = float(value)
    return readout


def _compare(
    est: stats.Estimate, treatment: str, control: str, mde: float, srm: stats.SampleRatio | None, label: str
) -> Comparison:
    label_c = "コントロール" if control == "control" else control
    verdict = stats.verdict(
        est, mde=mde, srm=srm, treatment=label, control=label_c,
        treatment_en="treatment" if label == "配信" else label, control_en=control,
    )  # fmt: skip
    return Comparison(est.metric, treatment, control, est, verdict)


def summary_lines(
    readouts: list[CampaignReadout],
    lang: str = "ja",
    metrics: tuple[str, ...] | None = ("conversion", "ctr", "revenue_per_recipient"),
) -> list[str]:
    """A few lines per campaign for a terminal: sizes, each comparison's difference with its
    interval, and the verdict (only `metrics`; every comparison when None)."""
    lines = []
    for r in readouts:
        lines.append(f"{r.campaign} ({r.channel})")
        if r.srm is not None and r.srm.flagged:
            lines.append(f"  {getattr(r.comparisons[0].verdict, lang) if r.comparisons else r.srm.cause_en}")
            continue
        for cmp in (c for c in r.comparisons if metrics is None or c.metric in metrics):
            e = cmp.estimate
            scale = 100.0 if cmp.metric in ("conversion", "ctr") or cmp.metric.startswith(RATE_METRICS) else 1.0
            unit = "pt" if scale == 100.0 else "円"
            lines.append(
                f"  {cmp.metric:26s} {cmp.treatment} vs {cmp.control}: {e.diff * scale:+.2f}{unit} "
                f"(95% {e.ci_low * scale:+.2f}..{e.ci_high * scale:+.2f}; n={e.n_treatment:,}/{e.n_control:,}"
                + (f"; CUPED -{e.variance_reduction:.0%} var" if e.variance_reduction is not None else "")
                + f")  {getattr(cmp.verdict, lang)}"
            )
    return lines


__all__ = [
    "MDE", "CampaignReadout", "Comparison", "designs_from_audiences", "load_designs", "read", "read_connection",
    "summary_lines",
]  # fmt: skip
