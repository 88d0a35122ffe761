"""The views read from the customer and segment marts: key figures, F-ladder, lead times,
cohorts, RFM and its migration, deciles and ABC, channel mix, ID links and reach."""

from __future__ import annotations

import pandas as pd

from . import charts
from .blocks import Block, Facts, View, chart, pct, table, view
from .strings import Text

SEGMENT_ORDER = [
    "champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
    "about_to_sleep", "at_risk", "cannot_lose", "hibernating", "lost",
]  # fmt: skip


def key_figures(facts: Facts, t: Text) -> View:
    k = facts.frames["kpi"].iloc[0]
    tiles = [
        ("customers", t.people(k["customers"]), f"{t('labels.prospects')} {t.people(k['prospects'])}"),
        ("buyers_12m", t.people(k["buyers_12m"]), ""),
        ("new", t.people(k["new_customers"]), ""),
        ("active", t.people(k["active_customers"]), ""),
        ("dormant", t.people(k["dormant_customers"]), ""),
        ("churned", t.people(k["churned_customers"]), ""),
        ("revenue_12m", t.money(k["revenue_12m"]), ""),
    ]
    if "clv_kpi" in facts.frames:
        c = facts.frames["clv_kpi"].iloc[0]
        tiles.append(("clv_mean", t.money(c["clv_mean"]), f"{t('labels.clv_total')} {t.money(c['clv_total'])}"))
    return view(
        "kpi", t, [Block("tiles", tiles=[{"label": t(f"labels.{n}"), "value": v, "sub": s} for n, v, s in tiles])]
    )


def f_ladder(facts: Facts, t: Text) -> View:
    ladder = facts.frames["f_ladder"]
    overall = ladder[ladder["dimension"] == "overall"].sort_values("from_f")
    blocks = [
        chart("f_ladder", "flow", charts.f_flow(ladder, t)),
        table(
            [
                t("labels.step"),
                t("labels.customers_at_f"),
                t("labels.conversion_rate"),
                t("labels.conversion_rate_365d"),
            ],
            [
                [r.from_f_label, f"{r.customers_at_f:,}", pct(r.conversion_rate), pct(r.conversion_rate_365d)]
                for r in overall.head(5).itertuples()
            ],
        ),
        chart("f_ladder", "category", charts.f_slices(ladder, "first_category", t), t("labels.first_category")),
        chart("f_ladder", "channel", charts.f_slices(ladder, "first_channel", t), t("labels.first_channel")),
        chart("f_ladder", "cohort", charts.f_by_cohort(ladder, t), t("labels.cohort_caption", n=charts.MIN_MATURED)),
    ]
    return view("f_ladder", t, blocks)


def lead_times(facts: Facts, t: Text) -> View:
    bands = facts.frames["lead_times"]
    summary = bands.drop_duplicates("from_f").sort_values("from_f")
    return view(
        "lead_times",
        t,
        [
            chart("lead_times", "bands", charts.lead_times(bands, t)),
            table(
                [t("labels.step"), t("labels.median_days"), t("labels.p75_days"), t("labels.p90_days")],
                [
                    [r.from_f_label, f"{r.median_days:,.0f}", f"{r.p75_days:,.0f}", f"{r.p90_days:,.0f}"]
                    for r in summary.itertuples()
                ],
            ),
        ],
    )


def cohorts(facts: Facts, t: Text) -> View:
    return view(
        "cohort",
        t,
        [
            chart("cohort", "repeat", charts.cohort_repeat(facts.frames["cohort_repeat"], t), t("labels.repeat_rate")),
            chart(
                "cohort",
                "retention",
                charts.cohort_retention(facts.frames["cohort_retention"], t),
                t("labels.retention_rate"),
            ),
        ],
    )


def rfm(facts: Facts, t: Text) -> View:
    return view("rfm", t, [chart("rfm", "grid", charts.rfm_grid(facts.frames["rfm_grid"], t))])


def migration(facts: Facts, t: Text) -> View:
    rows = facts.frames.get("migration")
    days = 0 if rows is None or rows.empty else int(rows["history_days"].iloc[0])
    if days < 2:
        return view("migration", t, [Block("note", text=t("notes.no_history", dates=days))])
    before, after = str(rows["before_date"].iloc[0])[:10], str(rows["after_date"].iloc[0])[:10]
    status = rows.groupby(["status_before", "status_after"], as_index=False)["customers"].sum()
    statuses = facts.frames["status_names"]
    status_ja = dict(zip(statuses["status"], statuses["status_ja"], strict=True))
    status_order = [_label(status_ja, s, t) for s in [*statuses["status"], "(none)"]]
    segment_ja = dict(facts.frames["segment_names"].itertuples(index=False, name=None))
    segment_order = [_label(segment_ja, s, t) for s in [*SEGMENT_ORDER, *segment_ja, "(none)"]]
    status["before_label"] = status["status_before"].map(lambda s: _label(status_ja, s, t))
    status["after_label"] = status["status_after"].map(lambda s: _label(status_ja, s, t))
    segment = rows.groupby(["segment_before", "segment_after"], as_index=False)["customers"].sum()
    segment["before_label"] = segment["segment_before"].map(lambda s: _label(segment_ja, s, t))
    segment["after_label"] = segment["segment_after"].map(lambda s: _label(segment_ja, s, t))
    return view(
        "migration",
        t,
        [
            Block("note", text=t("notes.migration_dates", before=before, after=after)),
            chart(
                "migration",
                "status",
                charts.migration(status, before, after, status_order, t, t("labels.customers")),
                t("labels.status"),
            ),
            chart(
                "migration",
                "segment",
                charts.migration(segment, before, after, list(dict.fromkeys(segment_order)), t, t("labels.customers")),
                t("labels.rfm_segment"),
            ),
        ],
    )


def _label(names: dict[str, str], code: str, t: Text) -> str:
    """A status or RFM segment in the page's language (Japanese from the seeds)."""
    if code == "(none)":
        return "（なし）" if t.lang == "ja" else "(none)"
    return names.get(code, code) if t.lang == "ja" else code.replace("_", " ")


def value(facts: Facts, t: Text) -> View:
    return view(
        "value",
        t,
        [
            chart("value", "deciles", charts.deciles(facts.frames["deciles"], t), t("labels.decile")),
            chart("value", "abc", charts.abc(facts.frames["abc"], t), t("labels.abc_class")),
        ],
    )


def channels(facts: Facts, t: Text) -> View:
    mix = facts.frames["channel_mix"].copy()
    mix["label"] = mix["channel_mix"].map(lambda c: t.label("channel_mix", c))
    people = f"{t('labels.customers')}（{t('units.people')}）" if t.lang == "ja" else t("labels.customers")
    revenue = facts.frames["channel_revenue"].copy()
    revenue["label"] = revenue["channel"].map(lambda c: t.label("channels", c))
    revenue["scaled"] = revenue["revenue"] / t.money_scale
    money = (
        f"{t('labels.revenue')}（{t('units.money_axis')}）"
        if t.lang == "ja"
        else f"{t('labels.revenue')} ({t('units.money_axis')})"
    )
    return view(
        "channels",
        t,
        [
            chart(
                "channels", "mix", charts.horizontal_bars(mix, "label", "customers", t, people), t("labels.channel_mix")
            ),
            chart(
                "channels",
                "revenue",
                charts.horizontal_bars(revenue, "label", "scaled", t, money, fmt=",.1f" if t.lang == "en" else ",.0f"),
                t("labels.channel"),
            ),
        ],
    )


def reach(facts: Facts, t: Text) -> View:
    links = facts.frames["id_links"].iloc[0]
    n = max(int(links["customers"]), 1)
    link_rows = pd.DataFrame(
        [
            {"label": t.label("links", k), "rate": float(links[k]) / n, "count": int(links[k])}
            for k in ("line", "ecommerce", "member_card", "oms")
        ]
    )
    link_rows["text"] = link_rows.apply(
        lambda r: f"{r['rate']:.1%}（{r['count']:,}人）" if t.lang == "ja" else f"{r['rate']:.1%} ({r['count']:,})",
        axis=1,
    )
    reach = facts.frames["reach"].copy()
    reach["label"] = reach["channel"].map(lambda c: t.label("channels", c))
    reach["text"] = reach.apply(
        lambda r: f"{r['deliverable']:,}（{r['deliverable'] / max(r['people'], 1):.0%}）", axis=1
    )
    people = f"{t('labels.deliverable')}" if t.lang == "ja" else t("labels.deliverable")
    return view(
        "reach",
        t,
        [
            chart(
                "reach",
                "links",
                charts.horizontal_bars(link_rows, "label", "rate", t, t("labels.link_rate"), fmt=".0%", text="text"),
                t("labels.link_rate"),
            ),
            chart(
                "reach",
                "deliverable",
                charts.horizontal_bars(reach, "label", "deliverable", t, people, text="text"),
                t("labels.deliverable"),
            ),
        ],
    )
