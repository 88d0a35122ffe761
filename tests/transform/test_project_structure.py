"""dbt project rules, checked over the manifest of `dbt parse` (the dbt-project-evaluator rules
that matter here): layer naming, only staging reads sources, every model and column described,
every model with a tested primary key, and every personal-data column saying how it is masked.
A waiver needs a written reason."""

from __future__ import annotations

import json
import os
import re

import pytest

from yorisoi.transform import dbt_env, run_dbt

# model name -> why it has no single-column primary key test
PK_WAIVERS = {
    "int_consent_events": "an event log: the same event may legitimately repeat across files",
    "int_identity_shared_keys": "a report of (rule, key) pairs, tested with unique_combination",
    "int_callcenter_requests_resolved": "one row per request and matched person, tested with unique_combination",
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    run_dbt(["parse"], demo_key=True)
    with open(os.path.join(dbt_env()["DBT_TARGET_PATH"], "manifest.json")) as f:
        return json.load(f)


def models(manifest: dict) -> list[dict]:
    return [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]


def attached_tests(manifest: dict, model_id: str) -> list[dict]:
    return [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test" and model_id in n["depends_on"]["nodes"] and n.get("attached_node") == model_id
    ]


def test_layers_are_named_and_only_staging_reads_sources(manifest: dict) -> None:
    for m in models(manifest):
        layer = m["fqn"][1]
        reads_sources = [d for d in m["depends_on"]["nodes"] if d.startswith("source.")]
        if layer == "staging":
            source = m["fqn"][2]
            assert re.fullmatch(rf"stg_{source}__[a-z_]+s", m["name"]), m["name"]
            assert reads_sources, f"{m['name']} reads no source"
        else:
            assert not reads_sources, f"{m['name']} reads a source directly: {reads_sources}"
        if layer == "intermediate":
            assert m["name"].startswith("int_"), m["name"]


def test_every_model_and_column_is_described(manifest: dict) -> None:
    undocumented = []
    for m in models(manifest):
        if not m["description"].strip():
            undocumented.append(m["name"])
        if not m["columns"]:
            undocumented.append(f"{m['name']} (no columns documented)")
        undocumented += [f"{m['name']}.{c}" for c, col in m["columns"].items() if not col["description"].strip()]
    assert undocumented == []


def test_every_model_has_a_tested_primary_key(manifest: dict) -> None:
    missing = []
    for m in models(manifest):
        if m["name"] in PK_WAIVERS:
            continue
        tests = attached_tests(manifest, m["unique_id"])
        unique = {t["column_name"] for t in tests if t["test_metadata"]["name"] == "unique"} if tests else set()
        not_null = {t["column_name"] for t in tests if t["test_metadata"]["name"] == "not_null"}
        # a composite key (an aggregate's grain) is tested by the generic test unique_combination
        composite = any(t["test_metadata"]["name"] == "unique_combination" for t in tests)
        if not (unique & not_null or composite):
            missing.append(m["name"])
    assert missing == []


def test_personal_data_columns_say_how_they_are_masked(manifest: dict) -> None:
    tagged = 0
    for m in models(manifest):
        for name, col in m["columns"].items():
            meta = {**col.get("meta", {}), **col.get("config", {}).get("meta", {})}
            tags = set(col.get("tags", [])) | set(col.get("config", {}).get("tags", []))
            if "pii" in tags or meta.get("pii"):
                tagged += 1
                assert "pii" in tags and meta.get("pii") is True and meta.get("masking"), f"{m['name']}.{name}"
    assert tagged > 20


def test_analyst_models_carry_no_personal_data_columns(manifest: dict) -> None:
    for m in models(manifest):
        if m["fqn"][1:3] == ["marts", "analytics"]:
            assert not any("pii" in set(c.get("config", {}).get("tags", [])) for c in m["columns"].values())
