"""Inputs read as plain YAML: the Great Expectations suites (`expectations/<layer>/<schema>.<table>.yml`),
audience definitions (`audiences/*.yml`, when they exist) and the identity rules in dbt_project.yml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .model import AudienceDoc, CheckDoc, IdentityRuleDoc, TableDoc


def ref_name(text: str) -> str:
    """`ref('x')` / `source('s', 't')` / `x` -> the referenced name (`t` for a source)."""
    names = re.findall(r"['\"]([^'\"]+)['\"]", text or "")
    return names[-1] if names else (text or "").strip()


def describe_kwargs(kwargs: dict) -> str:
    parts = []
    for key, value in kwargs.items():
        if key == "to":
            value = ref_name(str(value))
        if isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def read_suites(folder: Path, tables: list[TableDoc]) -> tuple[list[CheckDoc], list[str], list[str]]:
    """Great Expectations suites as YAML (`{suite, table: "schema.table", expectations: [...]}`):
    the checks they hold, the suites read and those naming a table the document does not have."""
    index: dict[str, str] = {}
    for t in tables:
        for alias in (t.relation, f"{t.schema}.{t.name}", f"{t.database}.{t.name}"):
            index.setdefault(alias.lower(), t.id)
    checks, suites, unmatched = [], [], []
    files = sorted([*folder.glob("**/*.yml"), *folder.glob("**/*.yaml")]) if folder.is_dir() else []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, yaml.YAMLError):
            unmatched.append(f"{path.name} (unreadable)")
            continue
        if not isinstance(doc, dict) or "expectations" not in doc:
            continue
        suite = str(doc.get("suite") or path.stem)
        suites.append(suite)
        table_id = index.get(str(doc.get("table", "")).lower())
        if table_id is None:
            unmatched.append(f"{suite} → {doc.get('table')}")
            continue
        for exp in doc.get("expectations") or []:
            if not isinstance(exp, dict):
                continue
            kwargs = dict(exp.get("kwargs") or {})
            column = kwargs.pop("column", None) or ", ".join(kwargs.pop("column_list", []) or [])
            meta = exp.get("meta") or {}
            detail = describe_kwargs(kwargs)
            if isinstance(meta, dict) and meta.get("notes"):
                detail = f"{detail} — {meta['notes']}" if detail else str(meta["notes"])
            severity = str(meta.get("severity", "")) if isinstance(meta, dict) else ""
            checks.append(
                CheckDoc(table_id, str(column or ""), "gx", str(exp.get("type", "")), detail, severity, suite)
            )
    return checks, suites, unmatched


def read_audiences(folder: Path, tables: list[TableDoc]) -> list[AudienceDoc]:
    """Audience definitions (`audiences/*.yml`): one audience per file or a list under
    `audiences:`; the tables it reads (`model`, `models`, `from`, `source` or `table`: a name,
    `ref('x')` or `schema.x`) and where it goes (`destinations` / `destination` / `channels`)."""
    by_name: dict[str, str] = {}
    for t in tables:
        for alias in (t.name, f"{t.schema}.{t.name}", t.relation):
            by_name.setdefault(alias, t.id)
    out = []
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        entries = doc.get("audiences") if isinstance(doc, dict) and isinstance(doc.get("audiences"), list) else [doc]
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            refs = []
            for key in ("model", "models", "from", "source", "table", "tables"):
                value = entry.get(key)
                refs += value if isinstance(value, list) else [value] if value else []
            ids = []
            for ref in refs:
                text = str(ref.get("name", "")) if isinstance(ref, dict) else str(ref)
                found = by_name.get(text) or by_name.get(ref_name(text))
                if found and found not in ids:
                    ids.append(found)
            dests = []
            for key in ("destinations", "destination", "channels", "channel"):
                value = entry.get(key)
                for d in value if isinstance(value, list) else [value] if value else []:
                    dests.append(
                        str(d.get("name") or d.get("type") or d.get("kind")) if isinstance(d, dict) else str(d)
                    )
            name = str(entry.get("name") or entry.get("id") or (path.stem if len(entries) == 1 else f"{path.stem}_{i}"))
            out.append(AudienceDoc(name, str(entry.get("description") or ""), path.name, ids, dests))
    return out


def identity_rules(project_file: Path) -> list[IdentityRuleDoc]:
    try:
        doc = yaml.safe_load(project_file.read_text("utf-8")) or {}
    except OSError:
        return []
    rules = ((doc.get("vars") or {}).get("identity") or {}).get("rules") or []
    return [
        IdentityRuleDoc(
            str(r["name"]), int(r.get("priority", 0)), list(r.get("keys") or []), str(r.get("description", ""))
        )
        for r in rules
        if isinstance(r, dict) and "name" in r
    ]
