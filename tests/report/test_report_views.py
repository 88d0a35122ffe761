"""What the views show, on the XS brand: the same numbers as the marts, in both languages; the
campaign view (the readout's lift, intervals and verdicts) once campaigns are measured; the
migration between two as-of days."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from yorisoi.report.build import build_report, local_time_zone
from yorisoi.report.data import Warehouse
from yorisoi.report.strings import Text
from yorisoi.report.views import assemble, collect
from yorisoi_kit.scale_run import ScaleRun


def _views(warehouse: Path, lang: str = "ja", designs: dict | None = None) -> dict:
    with Warehouse(warehouse) as wh:
        facts = collect(wh, time_zone=local_time_zone(), simulations=20, designs=designs)
    return {v.id: v for v in assemble(facts, Text(lang))}


def test_key_figures_are_the_marts_counts(xs: ScaleRun) -> None:
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    buyers, new, dormant = con.execute(
        "select count(*) filter (where status <> 'prospect'), count(*) filter (where status = 'new'), "
        "count(*) filter (where status = 'dormant') from marts.customer_status"
    ).fetchone()
    buyers_12m = con.execute("select count(*) from marts.customer_deciles").fetchone()[0]
    ja = {t["label"]: t["value"] for t in _views(xs.warehouse)["kpi"].blocks[0].tiles}
    en = {t["label"]: t["value"] for t in _views(xs.warehouse, "en")["kpi"].blocks[0].tiles}
    assert ja["顧客数"] == f"{buyers:,}人" and en["Customers"] == f"{buyers:,}"
    assert ja["新規"] == f"{new:,}人" and ja["休眠"] == f"{dormant:,}人"
    assert en["Buyers, last 12 months"] == f"{buyers_12m:,}"


def test_both_languages_draw_the_same_charts(xs: ScaleRun) -> None:
    ja, en = _views(xs.warehouse, "ja"), _views(xs.warehouse, "en")
    assert list(ja) == list(en)

    def charts(view) -> list[str]:
        return [b.id for b in view.blocks if b.kind == "chart"]

    for vid in ja:
        assert charts(ja[vid]) == charts(en[vid])
        assert ja[vid].title != en[vid].title and ja[vid].what != en[vid].what


def test_no_campaign_measured_is_a_note(warehouse_copy: Path) -> None:
    [block] = _views(warehouse_copy)["campaigns"].blocks
    assert block.kind == "note" and "campaign_results" in block.text


def test_campaign_view_shows_the_readouts_lift_interval_and_verdict(campaign_warehouse: Path, campaign_designs) -> None:
    """Per campaign and arm: people, sends, conversion, the lift with both intervals and the
    verdict, all as yorisoi.outcomes.readout computes them; B against A on CTR; the SRM block."""
    from yorisoi.outcomes import readout

    readouts = {r.campaign_key.split("|")[0]: r for r in readout.read(campaign_warehouse, campaign_designs)}
    ja = _views(campaign_warehouse, designs=campaign_designs)["campaigns"].blocks
    en = _views(campaign_warehouse, "en", designs=campaign_designs)["campaigns"].blocks
    assert [b.kind for b in ja] == [b.kind for b in en] == ["note", "chart", "table", "table"]

    def by_arm(block) -> dict:
        """(audience, arm label) -> {column: cell}."""
        rows = [dict(zip(block.columns, r, strict=True)) for r in block.rows]
        campaign, arm = block.columns[:2]
        return {(r[campaign].split(" / ")[0], r[arm]): r for r in rows}

    conversion = next(b for b in ja if b.kind == "table")
    assert conversion.columns[:2] == ["キャンペーン", "群"] and conversion.columns[-1] == "判定"
    rows = by_arm(conversion)
    assert len(rows) == 9  # winback, broken, small: control + 配信; newsletter: control, A, B
    win = next(c for c in readouts["winback"].comparisons if c.metric == "conversion")
    row = rows[("winback", "配信")]
    assert row["キャンペーン"] == "winback / esp_list / 2026-06-01（メール）"
    assert row["人数"] == f"{win.estimate.n_treatment:,}" and row["購入率"] == f"{win.estimate.mean_treatment:.1%}"
    assert row["リフト（pt、対コントロール）"] == f"{win.estimate.diff * 100:+.2f}pt"
    assert row["95%区間"] == f"{win.estimate.ci_low * 100:+.2f} … {win.estimate.ci_high * 100:+.2f}pt"
    assert (
        row["判定に使う区間（常時有効）"] == f"{win.estimate.seq_low * 100:+.2f} … {win.estimate.seq_high * 100:+.2f}pt"
    )
    assert row["判定"] == win.verdict.ja == "配信 の勝ち"
    control = rows[("winback", "コントロール")]
    assert (control["送信数"], control["リフト（pt、対コントロール）"], control["判定"]) == ("0", "–", "")
    assert rows[("small", "配信")]["判定"].startswith("データ不足: あと ")
    assert rows[("broken", "配信")]["判定"].startswith("判定保留")
    en_rows = by_arm(next(b for b in en if b.kind == "table"))
    assert en_rows[("winback", "Treatment")]["Verdict"] == "treatment wins"
    assert en_rows[("small", "Treatment")]["Verdict"].startswith("not enough data yet: ")

    [srm] = [b.text for b in ja if b.kind == "note"]
    assert srm.startswith("broken / esp_list") and "コントロール群が割付より少ない" in srm
    assert readouts["broken"].srm.flagged and not readouts["winback"].srm.flagged

    [ab] = [b for b in ja if b.kind == "table"][1:]
    ctr = next(c for c in readouts["newsletter"].comparisons if c.metric == "ctr")
    [ab_row] = ab.rows
    assert ab_row[1] == "B vs A" and ab_row[-1] == ctr.verdict.ja

    lift = next(b for b in ja if b.kind == "chart")
    assert len(lift.spec["layer"][-1]["data"]["values"]) == 4  # each treatment arm's lift but the blocked one


def test_a_readout_that_cannot_run_is_a_note(warehouse_copy: Path) -> None:
    con = duckdb.connect(str(warehouse_copy))
    con.execute(
        "create or replace table marts.campaign_results as select * from (values "
        "('spring_dm', 0.031, 0.012, 0.050)) t(campaign, lift, lift_low, lift_high)"
    )
    con.close()
    [block] = _views(warehouse_copy, "en")["campaigns"].blocks
    assert block.kind == "note" and block.text.startswith("The campaign readout failed: ")


def test_migration_compares_two_as_of_days(warehouse_copy: Path) -> None:
    """One day of history: a note. With an earlier day, the status matrix counts every customer
    once, by where they were and where they are."""
    assert _views(warehouse_copy)["migration"].blocks[0].kind == "note"
    con = duckdb.connect(str(warehouse_copy))
    latest = con.execute("select max(as_of_date) from marts.customer_segment_history").fetchone()[0]
    earlier = latest - timedelta(days=35)
    # the earlier day: everyone one status "younger" (new were prospects, dormant were active)
    con.execute(
        """
        insert into marts.customer_segment_history
        select ? as as_of_date, person_id,
            case status when 'new' then 'prospect' when 'dormant' then 'active' else status end,
            rfm_segment, rfm_cell, r_score, f_score, m_score, fm_score
        from marts.customer_segment_history where as_of_date = ?
        """,
        [earlier, latest],
    )
    moved = con.execute(
        "select count(*) filter (where status = 'dormant'), count(*) from marts.customer_segment_history "
        "where as_of_date = ?",
        [latest],
    ).fetchone()
    con.close()
    views = _views(warehouse_copy, "en")
    blocks = views["migration"].blocks
    assert blocks[0].text == f"{earlier} → {latest}"
    status = next(b for b in blocks if b.id == "migration-status").spec
    cells = {(r["before_label"], r["after_label"]): r["customers"] for r in status["data"]["values"]}
    assert cells[("active", "dormant")] == moved[0]
    assert sum(cells.values()) == moved[1]


@pytest.mark.parametrize("missing", ["customer_clv"])
def test_a_missing_mart_leaves_its_view_with_a_note(warehouse_copy: Path, missing: str, tmp_path: Path) -> None:
    con = duckdb.connect(str(warehouse_copy))
    con.execute(f"drop table marts.{missing}")
    con.close()
    report = build_report(tmp_path / "report", warehouse=warehouse_copy, simulations=10)
    html = (report.folder / "en.html").read_text(encoding="utf-8")
    assert "No CLV model (marts.customer_clv), so no forecast." in html


def test_audience_funnel_from_the_latest_allocation(xs: ScaleRun, tmp_path: Path) -> None:
    """selected → not contactable → exited → capped → control → sent, from the newest allocation
    the activation layer saved (stats per audience, and the people it gave a message or list place)."""
    import json

    import pandas as pd

    folder = tmp_path / "activation" / "allocations"
    folder.mkdir(parents=True)
    stats = {
        "welcome": {
            "selected": 100, "not_contactable": 20, "members": 80, "control": 8,
            "exit_goal_reached": 5, "frequency_cap_email": 7, "allocated": {"email": 60},
        }
    }  # fmt: skip
    (folder / "manual__1.json").write_text(json.dumps({"run_id": "manual__1", "stats": stats}))
    sends = pd.DataFrame({"audience": ["welcome"] * 61, "person_id": [f"p{i}" for i in range(60)] + ["p0"]})
    sends.to_parquet(folder / "manual__1.parquet")
    with Warehouse(xs.warehouse) as wh:
        facts = collect(wh, time_zone=local_time_zone(), var=tmp_path, simulations=10)
    views = {v.id: v for v in assemble(facts, Text("en"))}
    funnel = next(b for b in views["triggers"].blocks if b.id == "triggers-funnel-0")
    values = {r["stage_label"]: r["customers"] for r in funnel.spec["data"]["values"]}
    assert values == {
        "Selected": 100, "Not contactable": 20, "Exited": 5, "Capped": 7, "Control": 8, "Sent": 60,
    }  # fmt: skip


def test_report_build_takes_designs_for_campaigns_defined_elsewhere(
    campaign_warehouse: Path, campaign_designs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`yorisoi report build --designs FILE`: the campaigns' sample-ratio check uses the splits in
    the file (here the planted campaigns', which audiences/ does not define), as `yorisoi campaign
    readout --designs` does; without it the report checks only the audiences' own campaigns; a file
    that is not a JSON object or list is a usage error before anything is built."""
    import json

    from yorisoi.cli import main

    def build(*extra: str) -> tuple[int, str]:
        out = tmp_path / f"report{len(extra)}"
        argv = ["yorisoi", "report", "build", "--warehouse", str(campaign_warehouse), "--out", str(out)]
        try:
            main([*argv, "--simulations", "20", *extra])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        page = out / "index.html"
        return code, page.read_text("utf-8") if page.exists() else ""

    designs = tmp_path / "designs.json"
    designs.write_text(json.dumps(campaign_designs), "utf-8")
    code, with_designs = build("--designs", str(designs))
    assert code == 0 and "コントロール群が割付より少ない" in with_designs
    code, without = build()
    assert code == 0 and "broken / esp_list" in without and "コントロール群が割付より少ない" not in without
    designs.write_text('"50/50"', "utf-8")
    code, page = build("--designs", str(designs), "--json")
    assert code == 2 and page == "" and "--designs" in capsys.readouterr().err
