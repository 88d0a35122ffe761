"""The views of what happens around the marts: today's triggers and audience funnels, campaign
results, the 顧客BS forecast and data health."""

from __future__ import annotations

import pandas as pd

from . import charts, health
from .blocks import Block, Facts, View, chart, table, text, view, when
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


# What the campaign table shows of marts.campaign_results when it has these columns.
CAMPAIGN_COLUMNS = (
    "campaign", "arm", "people", "sends", "delivery_rate", "open_rate", "ctr", "conversion_rate",
    "revenue_per_recipient", "lift", "lift_low", "lift_high",
)  # fmt: skip


def campaigns(facts: Facts, t: Text) -> View:
    # No campaign measured yet (the marts exist but the store has not landed): say so.
    if not facts.has_campaigns or facts.frames["campaigns"].empty:
        return view("campaigns", t, [Block("note", text=t("notes.no_campaigns"))])
    frame = facts.frames["campaigns"]
    if set(CAMPAIGN_COLUMNS) <= set(frame.columns):
        frame = frame[list(CAMPAIGN_COLUMNS)]
    cols = list(frame.columns)
    label = next((c for c in cols if c in ("campaign", "campaign_name", "campaign_id", "audience")), cols[0])
    value = next((c for c in cols if c in ("lift", "relative_lift", "absolute_lift", "uplift")), None)
    low = next((c for c in cols if c.endswith(("_low", "_lower", "ci_low", "ci_lower"))), None)
    high = next((c for c in cols if c.endswith(("_high", "_upper", "ci_high", "ci_upper"))), None)
    blocks: list[Block] = []
    if value is not None and not frame.empty:
        shown = frame[[c for c in (label, value, low, high) if c]].dropna(subset=[value]).copy()
        shown[label] = shown[label].astype(str)
        blocks.append(chart("campaigns", "lift", charts.lift(shown, label, value, low, high, t), t("labels.lift")))
    blocks.append(table(cols, frame.head(50).astype(object).where(frame.head(50).notna(), None).values.tolist()))
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
