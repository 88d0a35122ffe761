"""The report's views: `collect` runs every query once, `assemble` turns the results into the
views of one language (charts, tiles, tables, notes), so the Japanese page and its English twin
show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import charts, health
from .data import Warehouse
from .forecast import BalanceForecast, forecast
from .strings import Text

SEGMENT_ORDER = [
    "champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
    "about_to_sleep", "at_risk", "cannot_lose", "hibernating", "lost",
]  # fmt: skip
MIGRATION_MIN_DAYS = 28  # compare with the newest day at least four weeks before the latest
CAMPAIGN_TABLE = ("marts", "campaign_results")


@dataclass
class Block:
    kind: str  # chart | tiles | table | note
    id: str = ""
    half: bool = False  # a small chart drawn two to a row
    spec: dict[str, Any] | None = None
    caption: str = ""
    tiles: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: str = ""


@dataclass
class View:
    id: str
    title: str
    what: str
    blocks: list[Block]


@dataclass
class Facts:
    """Every query's result, read once per build."""

    frames: dict[str, pd.DataFrame]
    balance: BalanceForecast | None
    balance_error: str | None
    time_zone: str
    allocation: dict | None
    gates: list[dict]
    has_campaigns: bool


def collect(wh: Warehouse, *, time_zone: str, var: Path | None = None, simulations: int = 200) -> Facts:
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
    if has_campaigns:
        frames["campaigns"] = wh.frame("select * from marts.campaign_results")
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
    )


def _chart(view: str, name: str, spec: dict[str, Any], caption: str = "", *, half: bool = False) -> Block:
    return Block("chart", id=f"{view}-{name}", spec=spec, caption=caption, half=half)


def _text(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _table(columns: list[str], rows: list[list[Any]], caption: str = "") -> Block:
    return Block("table", columns=columns, rows=[[_text(v) for v in r] for r in rows], caption=caption)


def _pct(v: Any) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.1%}"


def _when(v: Any, time_zone: str) -> str:
    """A moment in the brand's local time (stored times without a zone are UTC)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "–"
    ts = pd.Timestamp(v)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return ts.tz_convert(time_zone).strftime("%Y-%m-%d %H:%M")


def assemble(facts: Facts, t: Text) -> list[View]:
    builders = [
        _kpi, _f_ladder, _lead_times, _cohort, _rfm, _migration, _value, _channels, _reach, _triggers,
        _campaigns, _balance, _health,
    ]  # fmt: skip
    return [b(facts, t) for b in builders]


def _view(vid: str, t: Text, blocks: list[Block]) -> View:
    return View(vid, t(f"views.{vid}.title"), t(f"views.{vid}.what"), blocks)


def _kpi(facts: Facts, t: Text) -> View:
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
    return _view(
        "kpi", t, [Block("tiles", tiles=[{"label": t(f"labels.{n}"), "value": v, "sub": s} for n, v, s in tiles])]
    )


def _f_ladder(facts: Facts, t: Text) -> View:
    ladder = facts.frames["f_ladder"]
    overall = ladder[ladder["dimension"] == "overall"].sort_values("from_f")
    blocks = [
        _chart("f_ladder", "flow", charts.f_flow(ladder, t)),
        _table(
            [
                t("labels.step"),
                t("labels.customers_at_f"),
                t("labels.conversion_rate"),
                t("labels.conversion_rate_365d"),
            ],
            [
                [r.from_f_label, f"{r.customers_at_f:,}", _pct(r.conversion_rate), _pct(r.conversion_rate_365d)]
                for r in overall.head(5).itertuples()
            ],
        ),
        _chart("f_ladder", "category", charts.f_slices(ladder, "first_category", t), t("labels.first_category")),
        _chart("f_ladder", "channel", charts.f_slices(ladder, "first_channel", t), t("labels.first_channel")),
        _chart("f_ladder", "cohort", charts.f_by_cohort(ladder, t), t("labels.cohort_caption", n=charts.MIN_MATURED)),
    ]
    return _view("f_ladder", t, blocks)


def _lead_times(facts: Facts, t: Text) -> View:
    bands = facts.frames["lead_times"]
    summary = bands.drop_duplicates("from_f").sort_values("from_f")
    return _view(
        "lead_times",
        t,
        [
            _chart("lead_times", "bands", charts.lead_times(bands, t)),
            _table(
                [t("labels.step"), t("labels.median_days"), t("labels.p75_days"), t("labels.p90_days")],
                [
                    [r.from_f_label, f"{r.median_days:,.0f}", f"{r.p75_days:,.0f}", f"{r.p90_days:,.0f}"]
                    for r in summary.itertuples()
                ],
            ),
        ],
    )


def _cohort(facts: Facts, t: Text) -> View:
    return _view(
        "cohort",
        t,
        [
            _chart("cohort", "repeat", charts.cohort_repeat(facts.frames["cohort_repeat"], t), t("labels.repeat_rate")),
            _chart(
                "cohort",
                "retention",
                charts.cohort_retention(facts.frames["cohort_retention"], t),
                t("labels.retention_rate"),
            ),
        ],
    )


def _rfm(facts: Facts, t: Text) -> View:
    return _view("rfm", t, [_chart("rfm", "grid", charts.rfm_grid(facts.frames["rfm_grid"], t))])


def _migration(facts: Facts, t: Text) -> View:
    rows = facts.frames.get("migration")
    days = 0 if rows is None or rows.empty else int(rows["history_days"].iloc[0])
    if days < 2:
        return _view("migration", t, [Block("note", text=t("notes.no_history", dates=days))])
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
    return _view(
        "migration",
        t,
        [
            Block("note", text=t("notes.migration_dates", before=before, after=after)),
            _chart(
                "migration",
                "status",
                charts.migration(status, before, after, status_order, t, t("labels.customers")),
                t("labels.status"),
            ),
            _chart(
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


def _value(facts: Facts, t: Text) -> View:
    return _view(
        "value",
        t,
        [
            _chart("value", "deciles", charts.deciles(facts.frames["deciles"], t), t("labels.decile")),
            _chart("value", "abc", charts.abc(facts.frames["abc"], t), t("labels.abc_class")),
        ],
    )


def _channels(facts: Facts, t: Text) -> View:
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
    return _view(
        "channels",
        t,
        [
            _chart(
                "channels", "mix", charts.horizontal_bars(mix, "label", "customers", t, people), t("labels.channel_mix")
            ),
            _chart(
                "channels",
                "revenue",
                charts.horizontal_bars(revenue, "label", "scaled", t, money, fmt=",.1f" if t.lang == "en" else ",.0f"),
                t("labels.channel"),
            ),
        ],
    )


def _reach(facts: Facts, t: Text) -> View:
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
    return _view(
        "reach",
        t,
        [
            _chart(
                "reach",
                "links",
                charts.horizontal_bars(link_rows, "label", "rate", t, t("labels.link_rate"), fmt=".0%", text="text"),
                t("labels.link_rate"),
            ),
            _chart(
                "reach",
                "deliverable",
                charts.horizontal_bars(reach, "label", "deliverable", t, people, text="text"),
                t("labels.deliverable"),
            ),
        ],
    )


def _triggers(facts: Facts, t: Text) -> View:
    blocks: list[Block] = []
    trig = facts.frames["triggers"]
    if trig.empty:
        blocks.append(Block("note", text=t("notes.no_triggers")))
    else:
        blocks.append(_chart("triggers", "today", charts.triggers(trig, t), t("labels.trigger_caption")))
    alloc = facts.allocation
    if not alloc or not alloc.get("stats"):
        blocks.append(Block("note", text=t("notes.no_activation")))
    else:
        sent = alloc.get("sent", {})
        for i, (audience, stats) in enumerate(sorted(alloc["stats"].items())):
            stages = health.funnel(stats, sent.get(audience, 0) if "sent" in alloc else None)
            rows = pd.DataFrame([{"stage_label": t(f"stages.{s}"), "customers": n, "kind": k} for s, n, k in stages])
            blocks.append(
                _chart(
                    "triggers", f"funnel-{i}", charts.funnel(rows, t), f"{t('labels.audience')}: {audience}", half=True
                )
            )
    return _view("triggers", t, blocks)


def _campaigns(facts: Facts, t: Text) -> View:
    if not facts.has_campaigns:
        return _view("campaigns", t, [Block("note", text=t("notes.no_campaigns"))])
    frame = facts.frames["campaigns"]
    cols = list(frame.columns)
    label = next((c for c in cols if c in ("campaign", "campaign_name", "campaign_id", "audience")), cols[0])
    value = next((c for c in cols if c in ("lift", "relative_lift", "absolute_lift", "uplift")), None)
    low = next((c for c in cols if c.endswith(("_low", "_lower", "ci_low", "ci_lower"))), None)
    high = next((c for c in cols if c.endswith(("_high", "_upper", "ci_high", "ci_upper"))), None)
    blocks: list[Block] = []
    if value is not None and not frame.empty:
        shown = frame[[c for c in (label, value, low, high) if c]].dropna(subset=[value]).copy()
        shown[label] = shown[label].astype(str)
        blocks.append(_chart("campaigns", "lift", charts.lift(shown, label, value, low, high, t), t("labels.lift")))
    blocks.append(_table(cols, frame.head(50).astype(object).where(frame.head(50).notna(), None).values.tolist()))
    return _view("campaigns", t, blocks)


def _balance(facts: Facts, t: Text) -> View:
    if facts.balance is None:
        return _view("balance", t, [Block("note", text=facts.balance_error or t("notes.no_clv"))])
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
    table = [
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
    return _view(
        "balance",
        t,
        [
            _chart(
                "balance",
                "revenue",
                charts.balance(rows, "revenue", "revenue_low", "revenue_high", t, money, scale=t.money_scale),
            ),
            _chart(
                "balance", "buyers", charts.balance(rows, "buyers", "buyers_low", "buyers_high", t, t("labels.buyers"))
            ),
            _table(
                [t("labels.year"), t("labels.revenue"), interval, "% / 0", t("labels.buyers"), interval],
                table,
                caption=(
                    f"BG/NBD + Gamma-Gamma, {facts.balance.customers:,} {t('units.people')}, "
                    f"{facts.balance.simulations} simulations"
                ),
            ),
        ],
    )


def _health(facts: Facts, t: Text) -> View:
    fresh = facts.frames["freshness"]
    blocks = [
        _table(
            [t("labels.source"), t("labels.table"), t("labels.rows"), t("labels.last_loaded"), t("labels.watermark")],
            [
                [r.source, r.table_name, f"{r.rows:,}", _when(r.last_loaded, facts.time_zone), r.watermark]
                for r in fresh.itertuples()
            ],
            caption=t("labels.last_loaded"),
        )
    ]
    if facts.gates:
        blocks.append(
            _table(
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
                        _when(g.get("validated_at"), facts.time_zone),
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
            _table(
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
                        _when(r.started_at, facts.time_zone),
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
            _table(
                [t("labels.source"), t("labels.feed"), t("labels.file"), "status", t("labels.reason")],
                [[r.source, r.feed, r.file_name, r.status, _text(r.reason)[:200]] for r in quarantine.itertuples()],
                caption=t("labels.quarantined"),
            )
        )
    return _view("health", t, blocks)
