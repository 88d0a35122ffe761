"""The data-definition document (データ項目定義書) generated from the XS build: complete against the
dbt manifest and catalog, in both languages, with the five items auditors ask for, personal data
flagged with its masking, an ER diagram that is valid SVG, a workbook Excel opens, and lineage
from the raw tables to the marts (and on to audiences and destinations when they are defined).

A waiver needs a written reason; a waiver that is no longer needed fails, so the list shrinks as
the YAML is filled in."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from openpyxl import load_workbook

from yorisoi.docs.build import dbt_target_dir, generate
from yorisoi.docs.collect import SCHEDULE_FREQUENCY
from yorisoi.docs.labels import LABELS
from yorisoi.docs.render_xlsx import SHEETS
from yorisoi.sources.registry import load_registry
from yorisoi_kit.scale_run import ScaleRun, using_var

FIXTURES = Path(__file__).parent / "fixtures"
RESOURCES = ("model", "seed", "snapshot")

# model -> why the catalog has no column types for it.


@pytest.fixture(scope="module")
def doc(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("data-definition")
    with using_var(xs.work):
        written = generate(out, run_dbt_docs=True, demo_key=True, audiences_dir=out / "no-audiences")
        target = dbt_target_dir()
        manifest = json.loads((target / "manifest.json").read_text("utf-8"))
        catalog = json.loads((target / "catalog.json").read_text("utf-8"))
    model = json.loads(written["json"].read_text("utf-8"))
    return SimpleNamespace(
        written=written,
        model=model,
        tables={t["id"]: t for t in model["tables"]},
        manifest=manifest,
        catalog=catalog,
        work=xs.work,
        out=out,
    )


def documented_nodes(manifest: dict) -> dict[str, dict]:
    nodes = {i: n for i, n in manifest["nodes"].items() if n["resource_type"] in RESOURCES}
    return {**manifest["sources"], **nodes}


def column_meta(column: dict) -> dict:
    return {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}


def test_every_column_of_every_model_and_source_is_described_typed_and_flagged(doc) -> None:
    problems = []
    for node_id, node in documented_nodes(doc.manifest).items():
        table = doc.tables.get(node_id)
        if table is None:
            problems.append(f"{node_id}: not in the document")
            continue
        is_source = node["resource_type"] == "source"
        cat = doc.catalog["sources" if is_source else "nodes"].get(node_id) or {}
        listed = {c["name"].lower(): c for c in table["columns"]}
        for name in {*cat.get("columns", {}), *node.get("columns", {})}:
            if name.lower() not in listed:
                problems.append(f"{node_id}.{name}: column not listed")
        if not table["description"].strip():
            problems.append(f"{node_id}: no table description")
        for c in table["columns"]:
            where = f"{table['relation']}.{c['name']}"
            if not c["description"].strip():
                problems.append(f"{where}: no description")
            if not c["type"]:
                problems.append(f"{where}: no type")
            if c["type"] and c["name"] in cat.get("columns", {}):
                assert c["type"] == cat["columns"][c["name"]]["type"], where
            if c["pii"] and not c["masking"].strip():
                problems.append(f"{where}: personal data without a masking method")
    assert not problems, f"{len(problems)} gaps in the data-definition document:\n" + "\n".join(problems)


def test_every_model_is_built_by_a_dag(doc) -> None:
    unbuilt = [t["name"] for t in doc.model["tables"] if t["resource"] == "model" and not t["built"]]
    assert unbuilt == []


def test_the_loaders_own_tables_and_columns_are_described(doc) -> None:
    loader = [t for t in doc.model["tables"] if t["resource"] == "loader"]
    assert {t["name"] for t in loader} == {"_files", "_rejects", "_watermarks"}
    for t in loader:
        for c in t["columns"]:
            assert c["description"] and c["description_ja"] and c["type"], f"{t['name']}.{c['name']}"
    raw_line = next(c for t in loader for c in t["columns"] if c["name"] == "raw_line")
    assert raw_line["pii"] and raw_line["masking"], "rejected lines hold personal data"


def test_every_personal_data_column_is_flagged_with_its_masking(doc) -> None:
    declared = 0
    for node_id, node in documented_nodes(doc.manifest).items():
        for name, column in (node.get("columns") or {}).items():
            meta = column_meta(column)
            if not meta.get("pii"):
                continue
            declared += 1
            listed = next(c for c in doc.tables[node_id]["columns"] if c["name"] == name)
            assert listed["pii"] is True, f"{node_id}.{name}"
            assert listed["masking"] == meta["masking"], f"{node_id}.{name}"
    assert declared > 30
    # the snapshot keeps the golden record's personal fields: flagged too, inherited
    snapshot = next(t for t in doc.model["tables"] if t["name"] == "customers_snapshot")
    email = next(c for c in snapshot["columns"] if c["name"] == "email")
    assert email["pii"] and email["masking"] and email["pii_basis"] == "inherited"
    # the workbook says so as well, in each language
    for lang, yes in (("ja", LABELS["pii_yes"]["ja"]), ("en", LABELS["pii_yes"]["en"])):
        ws = load_workbook(doc.written[f"xlsx_{lang}"], read_only=True)[SHEETS["columns"][lang]]
        rows = list(ws.iter_rows(values_only=True))
        header = rows[0]
        i_table, i_col = header.index(LABELS["table"][lang]), header.index(LABELS["column"][lang])
        i_pii, i_mask = header.index(LABELS["pii"][lang]), header.index(LABELS["masking"][lang])
        by_key = {(r[i_table], r[i_col]): r for r in rows[1:]}
        row = by_key[("warehouse.marts.dim_customers", "email")]
        # the ja masking note is Japanese and names the method as HMAC-SHA256
        assert row[i_pii] == yes and "hmac_sha256" in row[i_mask].lower().replace("-", "_")


def test_both_languages_are_complete(doc) -> None:
    for key, texts in LABELS.items():
        assert texts.get("ja") and texts.get("en"), f"label {key} is missing a language"
    ja = doc.written["html_ja"].read_text("utf-8")
    en = doc.written["html_en"].read_text("utf-8")
    assert '<html lang="ja">' in ja and '<html lang="en">' in en
    for word in (
        "データ項目定義書",
        "項目名",
        "型",
        "説明",
        "個人情報",
        "マスキング",
        "更新方法",
        "自動",
        "手動",
        "更新頻度",
    ):
        assert word in ja, word
    for word in ("Data definition document", "Column", "Type", "Description", "Personal data", "Masking"):
        assert word in en, word
    for word in ("Update method", "automatic", "manual", "Update frequency"):
        assert word in en, word
    assert "更新方法" not in en and "Update method" not in ja
    for lang in ("ja", "en"):
        wb = load_workbook(doc.written[f"xlsx_{lang}"], read_only=True)
        assert wb.sheetnames == [s[lang] for s in SHEETS.values()]
        header = next(wb[SHEETS["columns"][lang]].iter_rows(values_only=True))
        assert LABELS["update_method"][lang] in header and LABELS["update_frequency"][lang] in header


def test_the_five_items_match_the_registry_and_the_warehouse(doc) -> None:
    registry = load_registry()
    counts = doc.model["counts"]
    # 1. how many databases and sources
    assert counts["source_systems"] == len(registry.sources) == len(doc.model["source_systems"])
    assert counts["source_tables"] == sum(len(s.tables) for s in registry.sources.values())
    files = {d["file"] for d in doc.model["databases"]}
    assert files == {"warehouse.duckdb", "analytics.duckdb"} and counts["databases"] == 2
    assert all((doc.work / f).exists() for f in files)
    schemas = {d["file"]: {s["name"] for s in d["schemas"]} for d in doc.model["databases"]}
    assert {"raw", "staging", "intermediate", "marts", "reference", "snapshots"} == schemas["warehouse.duckdb"]
    for file, named in schemas.items():
        con = duckdb.connect(str(doc.work / file), read_only=True)
        try:
            actual = {
                r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()
            }
        finally:
            con.close()
        assert named <= actual, f"{file}: the document names schemas the database does not have"
    # 2. how they link: the bridge's record_key and every dbt relationships test
    links = doc.model["links"]
    bridge = [k for k in links if k["kind"] == "identity_bridge"]
    assert bridge and bridge[0]["to_columns"] == ["record_key"]
    recorded = {doc.tables[k["from_table"]]["name"] for k in links if k["kind"] == "identity_record"}
    assert {"stg_ecommerce__customers", "stg_oms__customers", "stg_pos__members"} <= recorded
    tests = [n for n in doc.manifest["nodes"].values() if (n.get("test_metadata") or {}).get("name") == "relationships"]
    assert len([k for k in links if k["kind"] == "relationship"]) == len(tests)
    # 3. every table with columns (checked in full above)
    assert counts["tables"] == len(doc.model["tables"]) >= len(documented_nodes(doc.manifest))
    # 4 and 5. each raw table's update method and frequency are the registry's
    by_raw_name = {t.raw_name: (s, t) for s in registry.sources.values() for t in s.tables.values()}
    raw = [t for t in doc.model["tables"] if t["resource"] == "source"]
    assert {t["name"] for t in raw} == set(by_raw_name)
    for t in raw:
        source, _ = by_raw_name[t["name"]]
        assert t["update_method"] == source.method, t["name"]
        assert t["schedule"] == source.schedule, t["name"]
        assert t["update_frequency"] == SCHEDULE_FREQUENCY[source.schedule], t["name"]
        assert t["updated_by"] == f"ingest_{source.name}"
    for t in doc.model["tables"]:
        assert t["update_method"] in ("automatic", "manual") and t["update_frequency"], t["relation"]
        if t["resource"] == "seed":
            assert (t["update_method"], t["update_frequency"]) == ("manual", "on_change"), t["name"]
        if {"segments", "retention", "triggers", "targeting"} & set(t["tags"]):
            assert (t["updated_by"], t["update_frequency"]) == ("build_segments", "daily_0530"), t["name"]
    dim = next(t for t in doc.model["tables"] if t["name"] == "dim_customers")
    assert (dim["update_method"], dim["updated_by"], dim["update_frequency"]) == (
        "automatic",
        "build_customer_model",
        "on_arrival",
    )


def test_the_er_diagram_is_valid_svg_naming_the_key_tables(doc) -> None:
    for lang in ("ja", "en"):
        svg = doc.written[f"erd_{lang}"].read_text("utf-8")
        root = ET.fromstring(svg)  # noqa: S314 - our own generated file
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        text = " ".join(root.itertext())
        for name in (
            "marts.dim_customers",
            "marts.bridge_customer_identities",
            "intermediate.int_identity_records",
            "raw.sftp__pos_members",
            "staging.stg_pos__members",
            "person_id",
            "record_key",
        ):
            assert name in text, name
    mermaid = doc.written["mermaid"].read_text("utf-8")
    assert mermaid.startswith("erDiagram") and "marts__dim_customers" in mermaid
    for lang in ("ja", "en"):  # the page works offline: the diagram inline, nothing fetched
        page = doc.written[f"html_{lang}"].read_text("utf-8")
        assert "<svg" in page and "<script" not in page
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', page)


def test_the_workbook_opens_with_every_sheet_frozen_and_filtered(doc) -> None:
    wb = load_workbook(doc.written["xlsx_en"])
    for key in ("overview", "sources", "tables", "columns", "lineage", "checks"):
        assert SHEETS[key]["en"] in wb.sheetnames
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref, ws.title
    columns = wb[SHEETS["columns"]["en"]]
    assert columns.max_row - 1 == doc.model["counts"]["columns"]
    sources = wb[SHEETS["sources"]["en"]]
    assert sources.max_row - 1 == doc.model["counts"]["source_tables"]
    checks = [r for r in wb[SHEETS["checks"]["en"]].iter_rows(values_only=True)]
    assert any(r[2] == "dbt" and r[3] == "relationships" for r in checks)
    with_suites = {c["table"] for c in doc.model["checks"] if c["origin"] == "gx"}
    without = sum(1 for t in doc.model["tables"] if t["id"] not in with_suites)
    assert sum(1 for r in checks if r[2] == "Great Expectations" and r[4] == LABELS["no_checks_yet"]["en"]) == without


def test_a_check_on_the_untested_rows_says_so(doc) -> None:
    """The incremental facts' tests read the rows no passing run has tested (dbt_project/macros/
    test_slices.sql); their checks in the document say it, and the others carry no `where`."""
    checks = {(c["table"], c["column"], c["name"]): c["detail"] for c in doc.model["checks"] if c["origin"] == "dbt"}
    sliced = "where built_at after the last run in which this check passed: the rows it has not passed yet"
    assert checks[("model.yorisoi.fct_order_lines", "order_line_key", "unique")] == sliced
    assert checks[("model.yorisoi.fct_order_lines", "order_key", "relationships")].endswith(", " + sliced)
    assert "where" not in checks[("model.yorisoi.fct_orders", "person_id", "relationships")]


def test_lineage_of_customer_traits_reaches_the_raw_tables_and_their_systems(doc) -> None:
    traits = next(t for t in doc.model["tables"] if t["name"] == "customer_traits")
    raw_names = {doc.tables[r]["name"] for r in traits["raw_sources"]}
    assert {"ecommerce__orders", "oms__orders", "sftp__pos_sales", "ecommerce__customers"} <= raw_names
    parents: dict[str, set[str]] = {}
    for e in doc.model["edges"]:
        parents.setdefault(e["target"], set()).add(e["source"])
    seen, todo = set(), deque([traits["id"]])
    while todo:
        for p in parents.get(todo.popleft(), ()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    layers = {doc.tables[i]["layer"] for i in seen if i in doc.tables}
    assert {"raw", "staging", "intermediate", "marts"} <= layers
    assert {"system.ecommerce", "system.oms", "system.sftp"} <= seen
    assert doc.model["audiences"] == []
    assert LABELS["none_defined"]["en"] in doc.written["html_en"].read_text("utf-8")


def test_audiences_destinations_and_suites_appear_when_they_exist(doc, xs: ScaleRun) -> None:
    out = doc.out / "with-audiences"
    with using_var(xs.work):
        written = generate(
            out,
            run_dbt_docs=False,
            expectations_dir=FIXTURES / "expectations",
            audiences_dir=FIXTURES / "audiences",
        )
    model = json.loads(written["json"].read_text("utf-8"))
    [audience] = model["audiences"]
    assert audience["name"] == "vip_winback" and audience["destinations"] == ["email_esp", "line"]
    edges = {(e["source"], e["target"]) for e in model["edges"]}
    assert ("model.yorisoi.customer_traits", "audience.vip_winback") in edges
    assert ("audience.vip_winback", "destination.email_esp") in edges
    gx = [c for c in model["checks"] if c["origin"] == "gx"]
    assert {(c["column"], c["name"]) for c in gx} == {
        ("person_id", "expect_column_values_to_not_be_null"),
        ("email", "expect_column_values_to_match_regex"),
    }
    assert all(c["table"] == "model.yorisoi.dim_customers" for c in gx)
    assert model["suites"] == ["marts.dim_customers", "marts.no_such_table"]
    assert model["unmatched_suites"] == ["marts.no_such_table → marts.no_such_table"]
    page = written["html_en"].read_text("utf-8")
    assert "vip_winback" in page and "email_esp" in page and LABELS["none_defined"]["en"] not in page


def test_dbt_static_docs_are_copied_in(doc) -> None:
    static = doc.written["dbt_docs"]
    assert static.exists() and static.stat().st_size > 100_000
    index = doc.written["index"].read_text("utf-8")
    for key in ("html_ja", "html_en", "xlsx_ja", "xlsx_en", "json"):
        assert doc.written[key].name in index


def test_the_schedules_the_document_states_are_the_dags_own() -> None:
    """The document says which DAG rebuilds a model and when (collect.DBT_DAGS); the DAG files
    must say the same, and the document's own DAG must listen to assets those DAGs emit."""
    from yorisoi.docs.collect import DBT_DAGS
    from yorisoi.transform import local_time_zone

    dags = Path(__file__).resolve().parents[2] / "dags"
    for dag_id, _select, _exclude, frequency in DBT_DAGS:
        source = (dags / f"{dag_id}.py").read_text("utf-8")
        assert f'dag_id="{dag_id}"' in source
        if frequency == "daily_0530":
            # 05:30 on the brand's clock (var local_time_zone), which the document calls 日本時間.
            assert '"30 5 * * *"' in source and "timezone=LOCAL_TIME_ZONE" in source
            assert local_time_zone() == "Asia/Tokyo"
    assert '"dim_customers"' in (dags / "build_customer_model.py").read_text("utf-8")
    assert '"customer_traits"' in (dags / "build_segments.py").read_text("utf-8")
    own = (dags / "build_data_definition.py").read_text("utf-8")
    assert 'AFTER = ("dim_customers", "customer_traits")' in own


def test_the_japanese_document_describes_every_table_and_column_in_japanese(doc) -> None:
    """The ja document reads the YAML's meta.description_ja and meta.masking_ja: no English
    description or masking note is left where a Japanese one should be."""
    japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    untranslated = []
    for table in doc.model["tables"]:
        if table["description"] and not japanese.search(table["description_ja"]):
            untranslated.append(table["id"])
        for c in table["columns"]:
            if c["description"] and not japanese.search(c["description_ja"]):
                untranslated.append(f"{table['id']}.{c['name']}")
            if c["masking"] and not japanese.search(c["masking_ja"]):
                untranslated.append(f"{table['id']}.{c['name']} (masking)")
    assert not untranslated, untranslated[:20]
    ja = doc.written["html_ja"].read_text("utf-8")
    assert "The person, stable across runs." not in ja and "人物（実行をまたいで安定）。" in ja
    assert "removed from the analytics database" not in ja and "分析用データベースからは削除" in ja
    assert '<table class="lineage">' in ja  # fixed column widths, one name per line
    assert "品質ゲートの最新結果" in ja  # the gates' results, folded in (readable offline)


def test_a_source_table_states_its_description_once(doc) -> None:
    """The dbt source's description, not that and the registry's saying the same again."""
    pos_sales = next(t for t in doc.model["tables"] if t["relation"].endswith(".sftp__pos_sales"))
    assert pos_sales["description"].startswith("Receipt lines")
    assert "Store receipts line by line" not in pos_sales["description"]
