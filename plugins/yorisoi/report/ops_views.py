"""The views of what happens around the marts: today's triggers and audience funnels, campaign
results, the 顧客BS forecast and data health."""

from __future__ import annotations

import pandas as pd

from ..outcomes.readout import Comparison
from . import charts, health
from .blocks import Block, Facts, View, chart, pct, table, text, view, when
from .strings import Text


def triggers(facts: Facts, t: Text) -> View:
    blocks: list[Block] = []
    trig = facts.frames["triggers"]
    if trig.empty:
        blocks.append(Block("note", text=t("notes.no_triggers")))
    else:
        blocks.append(chart("triggers", "today", charts.triggers(trig, t), t("labels.trigger_caption")))
    alloc = facts.allocation
    if not alloc or not alloc.get("stats"):
        blocks.append(Block("note", text=t("notes.no_activation")))
    else:
        sent = alloc.get("sent", {})
        for i, (audience, stats) in enumerate(sorted(alloc["stats"].items())):
            stages = health.funnel(stats, sent.get(audience, 0) if "sent" in alloc else None)
            rows = pd.DataFrame([{"stage_label": t(f"stages.{s}"), "customers": n, "kind": k} for s, n, k in stages])
            blocks.append(
                chart(
                    "triggers", f"funnel-{i}", charts.funnel(rows, t), f"{t('labels.audience')}: {audience}", half=True
                )
            )
    return view("triggers", t, blocks)


def _arm_label(arm: str, treatments: int, t: Text) -> str:
    """The arms as the readout names them: コントロール, 配信 (one treatment), else the variant."""
    if arm == "control":
        return t("labels.control_arm")
    return t("labels.treatment_arm") if treatments == 1 else str(arm)


def _points(v: float) -> str:
    return f"{v * 100:+.2f}pt"


def _interval(low: float, high: float) -> str:
    return f"{low * 100:+.2f} … {high * 100:+.2f}pt"


def _verdict(cmp: Comparison, t: Text) -> str:
    """The readout's verdict; a blocked one in short (the sample-ratio note above says why)."""
    return t("labels.blocked") if cmp.verdict.code == "blocked" else getattr(cmp.verdict, t.lang)


def campaigns(facts: Facts, t: Text) -> View:
    """Per campaign and arm: people, sends, conversion rate, the conversion lift against control
    with its intervals and the verdict; B against A on CTR; the sample-ratio block when it fires.
    Every figure is yorisoi.outcomes.readout's (what `yorisoi campaign readout` prints)."""
    # No campaign measured yet (the marts exist but the store has not landed): say so.
    if not facts.has_campaigns or facts.frames["campaigns"].empty:
        return view("campaigns", t, [Block("note", text=t("notes.no_campaigns"))])
    if facts.campaign_error is not None:
        failed = t("notes.campaign_readout_failed", error=facts.campaign_error)
        return view("campaigns", t, [Block("note", text=failed)])
    results = facts.frames["campaigns"].set_index(["campaign_key", "arm"])
    blocks: list[Block] = []
    rows, lifts, ab = [], [], []
    for r in facts.campaign_readouts:
        arms = results.loc[r.campaign_key]
        treatments = [a for a in arms.index if a != "control"]
        conversion = {c.treatment: c for c in r.comparisons if c.metric == "conversion"}
        channel = t.label("channels", r.channel)
        name = f"{r.campaign}（{channel}）" if t.lang == "ja" else f"{r.campaign} ({channel})"
        if r.srm is not None and r.srm.flagged:
            groups = ", ".join(
                f"{_arm_label(g, len(treatments), t)} {r.srm.observed[g]:,} / {r.srm.expected[g]:,.0f}"
                for g in r.srm.expected
            )
            verdict = getattr(r.comparisons[0].verdict, t.lang) if r.comparisons else getattr(r.srm, f"cause_{t.lang}")
            blocks.append(Block("note", text=t("notes.srm", campaign=name, verdict=verdict, groups=groups)))
        for arm in ["control", *sorted(treatments)] if "control" in arms.index else sorted(treatments):
            row, cmp = arms.loc[arm], conversion.get(arm)
            label = _arm_label(arm, len(treatments), t)
            rows.append(
                [
                    name, label, f"{int(row['people']):,}",
                    f"{int(row['sends']):,}", pct(row["conversion_rate"]),
                    _points(cmp.estimate.diff) if cmp else "–",
                    _interval(cmp.estimate.ci_low, cmp.estimate.ci_high) if cmp else "–",
                    _interval(cmp.estimate.seq_low, cmp.estimate.seq_high) if cmp else "–",
                    _verdict(cmp, t) if cmp else "",
                ]
            )  # fmt: skip
            if cmp is not None and cmp.verdict.code != "blocked":  # a blocked readout is not drawn
                e = cmp.estimate
                lifts.append(
                    {"arm": f"{r.campaign} · {label}", "lift": e.diff * 100, "low": e.ci_low * 100,
                     "high": e.ci_high * 100}
                )  # fmt: skip
        for cmp in (c for c in r.comparisons if c.metric == "ctr"):
            e = cmp.estimate
            ab.append(
                [
                    name, f"{cmp.treatment} vs {cmp.control}", pct(e.mean_control), pct(e.mean_treatment),
                    _points(e.diff), _interval(e.ci_low, e.ci_high), _interval(e.seq_low, e.seq_high),
                    _verdict(cmp, t),
                ]
            )  # fmt: skip
    if lifts:
        frame = pd.DataFrame(lifts)
        blocks.append(
            chart("campaigns", "lift", charts.lift(frame, "arm", "lift", "low", "high", t), t("labels.lift_caption"))
        )
    columns = [
        t("labels.campaign"), t("labels.arm"), t("labels.people"), t("labels.sends"),
        t("labels.conversion"), t("labels.lift_points"), t("labels.ci95"), t("labels.ci_always_valid"),
        t("labels.verdict"),
    ]  # fmt: skip
    blocks.append(table(columns, rows, t("labels.conversion_caption")))
    if ab:
        columns = [
            t("labels.campaign"), t("labels.comparison"), t("labels.ctr_control"), t("labels.ctr_treatment"),
            t("labels.difference"), t("labels.ci95"), t("labels.ci_always_valid"), t("labels.verdict"),
        ]  # fmt: skip
        blocks.append(table(columns, ab, t("labels.ab_caption")))
    return view("campaigns", t, blocks)


def balance(facts: Facts, t: Text) -> View:
    if facts.balance is None:
        return view("balance", t, [Block("note", text=facts.balance_error or t("notes.no_clv"))])
    k = facts.frames["kpi"].iloc[0]
    years = facts.balance.years
    rows = pd.concat(
        [
            pd.DataFrame(
                [
                    {
                        "year": 0,
                        "kind": "actual",
                        "revenue": float(k["revenue_12m"]),
                        "revenue_low": float(k["revenue_12m"]),
                        "revenue_high": float(k["revenue_12m"]),
                        "buyers": float(k["buyers_12m"]),
                        "buyers_low": float(k["buyers_12m"]),
                        "buyers_high": float(k["buyers_12m"]),
                    }
                ]
            ),
            pd.DataFrame(
                {
                    "year": years["year"],
                    "kind": "forecast",
                    "revenue": years["expected_revenue"],
                    "revenue_low": years["revenue_low"],
                    "revenue_high": years["revenue_high"],
                    "buyers": years["expected_buyers"],
                    "buyers_low": years["buyers_low"],
                    "buyers_high": years["buyers_high"],
                }
            ),
        ],
        ignore_index=True,
    )
    money = (
        f"{t('labels.revenue')}（{t('units.money_axis')}）"
        if t.lang == "ja"
        else f"{t('labels.revenue')} ({t('units.money_axis')})"
    )
    base = max(float(k["revenue_12m"]), 1.0)
    cells = [
        [
            str(int(r.year)),
            t.money(r.revenue),
            f"{t.money(r.revenue_low)} – {t.money(r.revenue_high)}" if r.kind == "forecast" else "",
            f"{r.revenue / base:.0%}",
            t.people(r.buyers),
            f"{t.people(r.buyers_low)} – {t.people(r.buyers_high)}" if r.kind == "forecast" else "",
        ]
        for r in rows.itertuples()
    ]
    interval = f"90%{'区間' if t.lang == 'ja' else ' interval'}"
    return view(
        "balance",
        t,
        [
            chart(
                "balance",
                "revenue",
                charts.balance(rows, "revenue", "revenue_low", "revenue_high", t, money, scale=t.money_scale),
            ),
            chart(
                "balance", "buyers", charts.balance(rows, "buyers", "buyers_low", "buyers_high", t, t("labels.buyers"))
            ),
            table(
                [t("labels.year"), t("labels.revenue"), interval, t("labels.vs_year0"), t("labels.buyers"), interval],
                cells,
                caption=(
                    f"BG/NBD + Gamma-Gamma, {facts.balance.customers:,} {t('units.people')}, "
                    f"{facts.balance.simulations} simulations"
                ),
            ),
        ],
    )


def data_health(facts: Facts, t: Text) -> View:
    fresh = facts.frames["freshness"]
    blocks = [
        table(
            [t("labels.source"), t("labels.table"), t("labels.rows"), t("labels.last_loaded"), t("labels.watermark")],
            [
                [r.source, r.table_name, f"{r.rows:,}", when(r.last_loaded, facts.time_zone), r.watermark]
                for r in fresh.itertuples()
            ],
            caption=t("labels.last_loaded"),
        )
    ]
    if facts.gates:
        blocks.append(
            table(
                [
                    t("labels.layer"),
                    t("labels.result"),
                    t("labels.suites"),
                    t("labels.failed_suites"),
                    t("labels.validated_at"),
                ],
                [
                    [
                        g.get("layer"),
                        t("labels.passed") if g.get("success") else t("labels.failed"),
                        g.get("suites", ""),
                        ", ".join(g.get("failed_suites") or []),
                        when(g.get("validated_at"), facts.time_zone),
                    ]
                    for g in facts.gates
                ],
                caption="Great Expectations",
            )
        )
    else:
        blocks.append(Block("note", text=t("notes.no_gate")))
    runs = facts.frames["sync_runs"]
    if runs.empty:
        blocks.append(Block("note", text=t("notes.no_sync")))
    else:
        blocks.append(
            table(
                [
                    t("labels.audience"),
                    t("labels.destination"),
                    "mode",
                    "status",
                    t("labels.started_at"),
                    t("labels.delivered"),
                    t("labels.rejected"),
                ],
                [
                    [
                        r.audience,
                        r.destination,
                        r.mode,
                        r.status,
                        when(r.started_at, facts.time_zone),
                        f"{r.delivered:,}",
                        f"{r.rejected:,}",
                    ]
                    for r in runs.itertuples()
                ],
            )
        )
    quarantine = facts.frames["quarantine"]
    if quarantine.empty:
        blocks.append(Block("note", text=t("notes.no_quarantine")))
    else:
        blocks.append(
            table(
                [t("labels.source"), t("labels.feed"), t("labels.file"), "status", t("labels.reason")],
                [[r.source, r.feed, r.file_name, r.status, text(r.reason)[:200]] for r in quarantine.itertuples()],
                caption=t("labels.quarantined"),
            )
        )
    return view("health", t, blocks)
