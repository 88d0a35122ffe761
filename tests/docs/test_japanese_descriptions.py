"""The データ項目定義書 is Japanese in ja: every table and column the dbt YAML describes carries a
Japanese description (`meta.description_ja`), and every masking note a Japanese one
(`meta.masking_ja`). A description added in English only fails here, before any build."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # kana or kanji


def _meta(node: dict) -> dict:
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def described_nodes() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(PROJECT.rglob("*.yml")):
        if path.name == "dbt_project.yml" or "unit_tests" in path.name:
            continue
        doc = yaml.safe_load(path.read_text("utf-8")) or {}
        if not isinstance(doc, dict):
            continue
        for key in ("models", "seeds", "snapshots"):
            out += [(f"{path.name}: {n['name']}", n) for n in doc.get(key) or [] if isinstance(n, dict)]
        for source in doc.get("sources") or []:
            out += [(f"{path.name}: {source['name']}.{t['name']}", t) for t in source.get("tables") or []]
    return out


def untranslated(node: dict, where: str) -> list[str]:
    problems = []
    meta = _meta(node)
    if (node.get("description") or "").strip() and not JAPANESE.search(str(meta.get("description_ja") or "")):
        problems.append(f"{where}: no Japanese description (meta.description_ja)")
    if meta.get("masking") and not JAPANESE.search(str(meta.get("masking_ja") or "")):
        problems.append(f"{where}: no Japanese masking note (meta.masking_ja)")
    return problems


def test_every_described_table_and_column_has_a_japanese_description() -> None:
    nodes = described_nodes()
    assert len(nodes) > 100
    problems = []
    columns = 0
    for where, node in nodes:
        problems += untranslated(node, where)
        for column in node.get("columns") or []:
            columns += 1
            problems += untranslated(column, f"{where}.{column['name']}")
    assert columns > 1000
    assert not problems, f"{len(problems)} untranslated:\n" + "\n".join(problems[:40])


def test_an_english_only_description_is_caught() -> None:
    column = {"name": "x", "description": "The person.", "config": {"meta": {"description_ja": "The person."}}}
    assert untranslated(column, "m.x") == ["m.x: no Japanese description (meta.description_ja)"]
    column["config"]["meta"]["description_ja"] = "人物。"
    assert untranslated(column, "m.x") == []


def test_the_quality_gates_latest_results_are_read_for_the_document(tmp_path: Path) -> None:
    """Folded into section 7, so the gates' results read offline (GX Data Docs need CDNs)."""
    import json

    from yorisoi.docs.collect import read_gate_results

    (tmp_path / "raw.json").write_text(
        json.dumps(
            {
                "layer": "raw",
                "success": False,
                "suites": 9,
                "rows_validated": 1200,
                "failed_expectations": ["raw.ecommerce__customers: expect_column_values_to_not_be_null(column=id)"],
                "warnings": [],
                "data_docs": "/var/out/docs/quality/index.html",
                "validated_at": "2026-11-02T01:00:00+00:00",
            }
        ),
        "utf-8",
    )
    (gate,) = read_gate_results(tmp_path)  # marts has not run: left out
    assert (gate.layer, gate.success, gate.suites, gate.validated_at) == ("raw", False, 9, "2026-11-02 01:00:00")
    assert gate.failed_expectations == ["raw.ecommerce__customers: expect_column_values_to_not_be_null(column=id)"]
