"""Chart specifications (Vega-Lite, made with Altair): one function per chart, each taking the
rows of its query and the language's Text, returning a JSON-able dict. Sort orders, axis titles
and units are set here for the reader (人, 円 / 万円, %)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from .strings import Text

FONT = '"Hiragino Sans", "Hiragino Kaku Gothic ProN", "Noto Sans CJK JP", "Yu Gothic", Meiryo, sans-serif'
PALETTE = ["#1f6f8b", "#99a8b2", "#e6a157", "#5b8c5a", "#c0504d", "#8064a2", "#4bacc6", "#f79646"]
WIDTH = "container"
MIN_MATURED = 30  # a cohort's 365-day rate is drawn from this many matured customers on


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts (numpy scalars and NaN made plain)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else (str(v) if hasattr(v, "isoformat") else v)) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


def _data(frame: pd.DataFrame) -> alt.Data:
    return alt.Data(values=_records(frame))


def _finish(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec = (
        chart.configure(font=FONT, background="white")
        .configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=12, grid=True, gridColor="#eceff1")
        .configure_legend(labelFontSize=11, titleFontSize=12, orient="bottom")
    )
    return spec.to_dict()


def _ink(field: str, values: pd.Series, middle: float | None = None) -> dict:
    """Text colour of a heatmap's cells: white on the darker half of the colour scale."""
    v = pd.to_numeric(values, errors="coerce")
    if middle is None:
        middle = float((v.min() + v.max()) / 2) if v.notna().any() else 0.0
    return alt.condition(f"datum['{field}'] > {middle}", alt.value("white"), alt.value("#263238"))


def _pct(title: str) -> alt.Axis:
    return alt.Axis(format=".0%", title=title)


# ---- F-ladder ---------------------------------------------------------------------------------


def f_flow(ladder: pd.DataFrame, t: Text) -> dict[str, Any]:
    """Survival flow: customers who reached F (bars) with the step's rate to F+1 above each bar."""
    rows = ladder[(ladder["dimension"] == "overall")].copy()
    rows["f"] = "F" + rows["from_f"].astype(str)
    rows["rate_text"] = rows["conversion_rate"].map(lambda r: "" if pd.isna(r) else f"→ {r:.0%}")
    order = rows.sort_values("from_f")["f"].tolist()
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("f:N", sort=order, title=t("labels.f"), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("customers_at_f:Q", title=t("labels.customers_at_f"), axis=alt.Axis(format=",.0f")),
        tooltip=[
            alt.Tooltip("from_f_label:N", title=t("labels.step")),
            alt.Tooltip("customers_at_f:Q", title=t("labels.customers_at_f"), format=",.0f"),
            alt.Tooltip("conversion_rate:Q", title=t("labels.conversion_rate"), format=".1%"),
            alt.Tooltip("conversion_rate_365d:Q", title=t("labels.conversion_rate_365d"), format=".1%"),
        ],
    )
    bars = base.mark_bar(color=PALETTE[0])
    text = base.mark_text(dy=-8, fontSize=11, color="#37474f").encode(text="rate_text:N")
    return _finish((bars + text).properties(width=WIDTH, height=260))


def f_slices(ladder: pd.DataFrame, dimension: str, t: Text, max_f: int = 5) -> dict[str, Any]:
    """Heatmap of the 365-day F-rates: one row per slice, one column per step."""
    rows = ladder[(ladder["dimension"] == dimension) & (ladder["from_f"] <= max_f)].copy()
    if dimension == "first_channel":
        rows["dimension_value"] = rows["dimension_value"].map(lambda c: t.label("channels", c))
    sizes = rows[rows["from_f"] == 1].sort_values("customers_at_f", ascending=False)
    order = sizes["dimension_value"].tolist()
    rows["rate_text"] = rows["conversion_rate_365d"].map(lambda r: "" if pd.isna(r) else f"{r:.0%}")
    steps = rows.sort_values("from_f")["from_f_label"].drop_duplicates().tolist()
    base = alt.Chart(_data(rows)).encode(
        x=alt.X(
            "from_f_label:N", sort=steps, title=t("labels.step"), axis=alt.Axis(labelAngle=0, orient="top", grid=False)
        ),
        y=alt.Y("dimension_value:N", sort=order, title=None, axis=alt.Axis(grid=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "conversion_rate_365d:Q",
            title=t("labels.conversion_rate_365d"),
            scale=alt.Scale(scheme="blues", domain=[0, 1]),
            legend=alt.Legend(format=".0%"),
        ),
        tooltip=[
            alt.Tooltip("dimension_value:N", title=t("labels.dimension_value")),
            alt.Tooltip("from_f_label:N", title=t("labels.step")),
            alt.Tooltip("matured_customers_at_f:Q", title=t("labels.customers_at_f"), format=",.0f"),
            alt.Tooltip("conversion_rate_365d:Q", title=t("labels.conversion_rate_365d"), format=".1%"),
        ],
    )
    text = base.mark_text(fontSize=11).encode(
        text="rate_text:N", color=_ink("conversion_rate_365d", rows["conversion_rate_365d"], middle=0.6)
    )
    return _finish((cells + text).properties(width=WIDTH, height=max(120, 24 * len(order))))


def f_by_cohort(ladder: pd.DataFrame, t: Text) -> dict[str, Any]:
    """F1→F2 ... F3→F4 365-day rates by month of first purchase (matured cohorts only)."""
    rows = ladder[
        (ladder["dimension"] == "cohort_month")
        & (ladder["from_f"] <= 3)
        & (ladder["matured_customers_at_f"] >= MIN_MATURED)
    ].copy()
    chart = (
        alt.Chart(_data(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "dimension_value:O", sort="ascending", title=t("labels.cohort_month"), axis=alt.Axis(labelAngle=-45)
            ),
            y=alt.Y("conversion_rate_365d:Q", axis=_pct(t("labels.conversion_rate_365d"))),
            color=alt.Color("from_f_label:N", title=t("labels.step"), scale=alt.Scale(range=PALETTE)),
            tooltip=[
                alt.Tooltip("dimension_value:N", title=t("labels.cohort_month")),
                alt.Tooltip("from_f_label:N", title=t("labels.step")),
                alt.Tooltip("matured_customers_at_f:Q", title=t("labels.customers_at_f"), format=",.0f"),
                alt.Tooltip("conversion_rate_365d:Q", title=t("labels.conversion_rate_365d"), format=".1%"),
            ],
        )
        .properties(width=WIDTH, height=240)
    )
    return _finish(chart)


def lead_times(bands: pd.DataFrame, t: Text) -> dict[str, Any]:
    """Share of next purchases per days band, one stacked bar per step."""
    rows = bands.copy()
    steps = rows.sort_values("from_f")["from_f_label"].drop_duplicates().tolist()
    band_order = rows.sort_values("bucket_order")["lead_time_bucket"].drop_duplicates().tolist()
    chart = (
        alt.Chart(_data(rows))
        .mark_bar()
        .encode(
            y=alt.Y("from_f_label:N", sort=steps, title=t("labels.step")),
            x=alt.X("share:Q", stack="normalize", axis=_pct(t("units.share"))),
            color=alt.Color(
                "lead_time_bucket:N",
                sort=band_order,
                title=f"{t('labels.band')}（{t('units.days')}）" if t.lang == "ja" else f"{t('labels.band')}",
                scale=alt.Scale(scheme="viridis", domain=band_order),
            ),
            order=alt.Order("bucket_order:Q"),
            tooltip=[
                alt.Tooltip("from_f_label:N", title=t("labels.step")),
                alt.Tooltip("lead_time_bucket:N", title=t("labels.band")),
                alt.Tooltip("purchases:Q", title=t("labels.purchases"), format=",.0f"),
                alt.Tooltip("share:Q", title=t("units.share"), format=".1%"),
                alt.Tooltip("cumulative_share:Q", title=t("labels.cumulative_share"), format=".1%"),
            ],
        )
        .properties(width=WIDTH, height=200)
    )
    return _finish(chart)


# ---- cohorts ----------------------------------------------------------------------------------


def _heatmap(
    rows: pd.DataFrame, x: str, y: str, value: str, x_title: str, y_title: str, value_title: str, *, fmt: str = ".0%"
) -> alt.LayerChart:
    rows = rows.copy()
    rows["label"] = rows[value].map(lambda v: "" if v is None or pd.isna(v) else format(v, fmt))
    x_order = sorted(rows[x].dropna().unique().tolist())
    y_order = sorted(rows[y].dropna().unique().tolist())
    base = alt.Chart(_data(rows)).encode(
        x=alt.X(f"{x}:O", sort=x_order, title=x_title, axis=alt.Axis(labelAngle=0, orient="top", grid=False)),
        y=alt.Y(f"{y}:O", sort=y_order, title=y_title, axis=alt.Axis(grid=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            f"{value}:Q",
            title=value_title,
            scale=alt.Scale(scheme="tealblues"),
            legend=alt.Legend(format=fmt if fmt.endswith("%") else ",.0f"),
        ),
        tooltip=[
            alt.Tooltip(f"{y}:O", title=y_title),
            alt.Tooltip(f"{x}:O", title=x_title),
            alt.Tooltip(f"{value}:Q", title=value_title, format=fmt if fmt.endswith("%") else ",.0f"),
        ],
    )
    text = base.mark_text(fontSize=9).encode(text="label:N", color=_ink(value, rows[value]))
    return (cells + text).properties(width=WIDTH, height=max(160, 18 * len(y_order)))


def cohort_repeat(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    rows = rows[rows["repeat_rate"].notna()]
    chart = _heatmap(
        rows,
        "days_since_first",
        "cohort_month",
        "repeat_rate",
        f"{t('labels.days_since_first')}（{t('units.days')}）" if t.lang == "ja" else t("labels.days_since_first"),
        t("labels.cohort_month"),
        t("labels.repeat_rate"),
    )
    return _finish(chart)


def cohort_retention(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    chart = _heatmap(
        rows,
        "months_since_first",
        "cohort_month",
        "retention_rate",
        t("labels.months_since_first"),
        t("labels.cohort_month"),
        t("labels.retention_rate"),
    )
    return _finish(chart)


# ---- RFM --------------------------------------------------------------------------------------


def rfm_grid(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    rows = rows.copy()
    rows["segment"] = rows["rfm_segment_ja"] if t.lang == "ja" else rows["rfm_segment"].str.replace("_", " ")
    rows["label"] = rows["customers"].map(lambda n: f"{n:,}")
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("r_score:O", sort=[1, 2, 3, 4, 5], title=t("labels.r_score"), axis=alt.Axis(labelAngle=0, grid=False)),
        y=alt.Y("fm_score:O", sort=[5, 4, 3, 2, 1], title=t("labels.fm_score"), axis=alt.Axis(grid=False)),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color(
            "customers:Q",
            title=f"{t('labels.customers')}（{t('units.people')}）" if t.lang == "ja" else t("labels.customers"),
            scale=alt.Scale(scheme="blues"),
        ),
        tooltip=[
            alt.Tooltip("segment:N", title=t("labels.segment")),
            alt.Tooltip("r_score:O", title="R"),
            alt.Tooltip("fm_score:O", title="FM"),
            alt.Tooltip("customers:Q", title=t("labels.customers"), format=",.0f"),
            alt.Tooltip("monetary:Q", title=f"{t('labels.revenue')} ({t('units.yen')})", format=",.0f"),
        ],
    )
    ink = _ink("customers", rows["customers"])
    count = base.mark_text(fontSize=13, dy=-7).encode(text="label:N", color=ink)
    name = base.mark_text(fontSize=9, dy=8).encode(text="segment:N", color=ink)
    return _finish((cells + count + name).properties(width=WIDTH, height=320))


def migration(rows: pd.DataFrame, before: str, after: str, order: list[str], t: Text, title: str) -> dict[str, Any]:
    rows = rows.copy()
    present = [o for o in order if o in set(rows["before_label"]) | set(rows["after_label"])]
    rows["label"] = rows["customers"].map(lambda n: f"{n:,}")
    x_title = f"{t('labels.after')}：{after}" if t.lang == "ja" else f"{t('labels.after')}: {after}"
    y_title = f"{t('labels.before')}：{before}" if t.lang == "ja" else f"{t('labels.before')}: {before}"
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("after_label:N", sort=present, title=x_title, axis=alt.Axis(labelAngle=-30, orient="top", grid=False)),
        y=alt.Y("before_label:N", sort=present, title=y_title, axis=alt.Axis(grid=False)),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("customers:Q", title=title, scale=alt.Scale(scheme="oranges", type="sqrt")),
        tooltip=[
            alt.Tooltip("before_label:N", title=y_title),
            alt.Tooltip("after_label:N", title=x_title),
            alt.Tooltip("customers:Q", title=t("labels.customers"), format=",.0f"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(text="label:N", color=_ink("customers", rows["customers"]))
    return _finish((cells + text).properties(width=WIDTH, height=max(180, 30 * len(present))))


# ---- value ------------------------------------------------------------------------------------


def deciles(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("decile:O", sort=list(range(1, 11)), title=t("labels.decile"), axis=alt.Axis(labelAngle=0))
    )
    bars = base.mark_bar(color=PALETTE[0]).encode(
        y=alt.Y("decile_spend_share:Q", axis=_pct(f"{t('labels.spend_share')} / {t('labels.cumulative_share')}")),
        tooltip=[
            alt.Tooltip("decile:O", title=t("labels.decile")),
            alt.Tooltip("decile_customers:Q", title=t("labels.customers"), format=",.0f"),
            alt.Tooltip("decile_spend:Q", title=f"{t('labels.revenue')} ({t('units.yen')})", format=",.0f"),
            alt.Tooltip("decile_spend_share:Q", title=t("labels.spend_share"), format=".1%"),
            alt.Tooltip("cumulative_spend_share:Q", title=t("labels.cumulative_share"), format=".1%"),
        ],
    )
    line = base.mark_line(color=PALETTE[2], point=True).encode(y="cumulative_spend_share:Q")
    return _finish((bars + line).properties(width=WIDTH, height=260))


def abc(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    rows = rows.copy()
    rows["sales_scaled"] = rows["sales"] / t.money_scale
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("sales_rank:Q", title=t("labels.product_rank"), scale=alt.Scale(domainMin=0.5)),
        tooltip=[
            alt.Tooltip("sku:N", title="SKU"),
            alt.Tooltip("product_name:N"),
            alt.Tooltip("sales:Q", title=f"{t('labels.revenue')} ({t('units.yen')})", format=",.0f"),
            alt.Tooltip("cumulative_share:Q", title=t("labels.cumulative_share"), format=".1%"),
            alt.Tooltip("abc_class:N", title=t("labels.abc_class")),
        ],
    )
    bars = base.mark_bar().encode(
        y=alt.Y(
            "sales_scaled:Q",
            title=f"{t('labels.revenue')}（{t('units.money_axis')}）"
            if t.lang == "ja"
            else f"{t('labels.revenue')} ({t('units.money_axis')})",
        ),
        color=alt.Color(
            "abc_class:N", title=t("labels.abc_class"), scale=alt.Scale(domain=["A", "B", "C"], range=PALETTE[:3])
        ),
    )
    line = base.mark_line(color="#37474f").encode(
        y=alt.Y("cumulative_share:Q", axis=_pct(t("labels.cumulative_share")))
    )
    return _finish(alt.layer(bars, line).resolve_scale(y="independent").properties(width=WIDTH, height=260))


def horizontal_bars(
    rows: pd.DataFrame,
    label: str,
    value: str,
    t: Text,
    value_title: str,
    *,
    fmt: str = ",.0f",
    text: str | None = None,
    color: str = PALETTE[0],
    height_per_bar: int = 28,
) -> dict[str, Any]:
    """Bars sorted largest first, with the value (or `text`) written at each bar's end."""
    rows = rows.copy()
    order = rows.sort_values(value, ascending=False)[label].tolist()
    if text is None:
        rows["_text"] = rows[value].map(lambda v: format(v, fmt))
        text = "_text"
    axis = alt.Axis(format=fmt)
    base = alt.Chart(_data(rows)).encode(
        y=alt.Y(f"{label}:N", sort=order, title=None),
        x=alt.X(f"{value}:Q", title=value_title, axis=axis),
        tooltip=[alt.Tooltip(f"{label}:N", title=" "), alt.Tooltip(f"{value}:Q", title=value_title, format=fmt)],
    )
    bars = base.mark_bar(color=color)
    labels = base.mark_text(align="left", dx=4, fontSize=11, color="#37474f").encode(text=f"{text}:N")
    return _finish((bars + labels).properties(width=WIDTH, height=max(80, height_per_bar * len(order))))


def triggers(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    """Trigger audience size (light) with its reachable part (dark) over it."""
    rows = rows.copy()
    rows["trigger"] = rows["trigger"].map(lambda c: t.label("triggers", c))
    order = rows.sort_values("customers", ascending=False)["trigger"].tolist()
    rows["reach_any"] = rows["reach_any"].fillna(0)
    rows["label"] = rows.apply(
        lambda r: (
            f"{r['customers']:,.0f}（{r['reach_any']:,.0f}）"
            if t.lang == "ja"
            else f"{r['customers']:,.0f} ({r['reach_any']:,.0f})"
        ),
        axis=1,
    )
    base = alt.Chart(_data(rows)).encode(
        y=alt.Y("trigger:N", sort=order, title=t("labels.trigger")),
        tooltip=[
            alt.Tooltip("trigger:N", title=t("labels.trigger")),
            alt.Tooltip("customers:Q", title=t("labels.customers"), format=",.0f"),
            alt.Tooltip("reach_any:Q", title=t("labels.reach_any"), format=",.0f"),
        ],
    )
    title = f"{t('labels.customers')}（{t('units.people')}）" if t.lang == "ja" else t("labels.customers")
    everyone = base.mark_bar(color=PALETTE[1]).encode(x=alt.X("customers:Q", title=title))
    reach = base.mark_bar(color=PALETTE[0], height=10).encode(x="reach_any:Q")
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(x="customers:Q", text="label:N")
    return _finish((everyone + reach + labels).properties(width=WIDTH, height=max(80, 30 * len(order))))


def funnel(rows: pd.DataFrame, t: Text) -> dict[str, Any]:
    """One audience's funnel: the customers at each stage, those removed in a lighter colour."""
    order = rows["stage_label"].tolist()
    base = alt.Chart(_data(rows)).encode(
        y=alt.Y("stage_label:N", sort=order, title=None),
        x=alt.X(
            "customers:Q",
            title=f"{t('labels.customers')}（{t('units.people')}）" if t.lang == "ja" else t("labels.customers"),
            axis=alt.Axis(format=",d", tickMinStep=1),
        ),
        tooltip=[alt.Tooltip("stage_label:N", title=t("labels.stage")), alt.Tooltip("customers:Q", format=",.0f")],
    )
    bars = base.mark_bar().encode(
        color=alt.Color(
            "kind:N", scale=alt.Scale(domain=["kept", "removed"], range=[PALETTE[0], PALETTE[1]]), legend=None
        )
    )
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(text=alt.Text("customers:Q", format=",.0f"))
    return _finish((bars + labels).properties(width=WIDTH, height=22 * len(order)))


def balance(
    rows: pd.DataFrame, value: str, low: str, high: str, t: Text, title: str, *, scale: float = 1.0
) -> dict[str, Any]:
    """Year 0 (actual) and years 1-5 (forecast) as bars with 90 % interval whiskers."""
    rows = rows.copy()
    for c in (value, low, high):
        rows[c] = rows[c] / scale
    rows["year_label"] = rows["year"].map(
        lambda y: f"{y}{t('labels.year')}" if t.lang == "ja" else f"{t('labels.year')} {y}"
    )
    rows["kind_label"] = rows["kind"].map(lambda k: t(f"labels.{k}"))
    order = rows.sort_values("year")["year_label"].tolist()
    fmt = ",.0f"
    base = alt.Chart(_data(rows)).encode(x=alt.X("year_label:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)))
    bars = base.mark_bar().encode(
        y=alt.Y(f"{value}:Q", title=title, axis=alt.Axis(format=fmt)),
        color=alt.Color(
            "kind_label:N",
            title=None,
            scale=alt.Scale(domain=[t("labels.actual"), t("labels.forecast")], range=[PALETTE[1], PALETTE[0]]),
        ),
        tooltip=[
            alt.Tooltip("year_label:N", title=t("labels.year")),
            alt.Tooltip(f"{value}:Q", title=title, format=fmt),
            alt.Tooltip(f"{low}:Q", title=t("labels.low"), format=fmt),
            alt.Tooltip(f"{high}:Q", title=t("labels.high"), format=fmt),
        ],
    )
    whiskers = base.mark_errorbar(ticks=True, color="#263238").encode(y=alt.Y(f"{low}:Q", title=title), y2=f"{high}:Q")
    labels = base.mark_text(dy=-8, fontSize=11).encode(y=f"{high}:Q", text=alt.Text(f"{value}:Q", format=fmt))
    return _finish((bars + whiskers + labels).properties(width=WIDTH, height=260))


def lift(rows: pd.DataFrame, label: str, value: str, low: str | None, high: str | None, t: Text) -> dict[str, Any]:
    """Each campaign arm's lift (in points) as a point with its interval, sorted by lift."""
    order = rows.sort_values(value, ascending=False)[label].astype(str).tolist()
    base = alt.Chart(_data(rows)).encode(y=alt.Y(f"{label}:N", sort=order, title=t("labels.campaign")))
    layers = [
        base.mark_point(filled=True, size=60, color=PALETTE[0]).encode(
            x=alt.X(f"{value}:Q", title=t("labels.lift_points"))
        )
    ]
    if low and high:
        layers.insert(0, base.mark_rule(color=PALETTE[1], strokeWidth=3).encode(x=f"{low}:Q", x2=f"{high}:Q"))
    rule = (
        alt.Chart(_data(pd.DataFrame({"zero": [0]}))).mark_rule(strokeDash=[4, 4], color="#90a4ae").encode(x="zero:Q")
    )
    return _finish(alt.layer(rule, *layers).properties(width=WIDTH, height=max(80, 30 * len(order))))
