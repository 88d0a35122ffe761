"""The role matrix (include/roles.yml) holds: `check` allows exactly what the YAML lists and denies
the rest, the matrix refuses to contradict itself, and docs/roles.md shows the YAML's matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yorisoi import roles

RAW = yaml.safe_load(roles.ROLES_FILE.read_text(encoding="utf-8"))


def test_the_four_roles_are_there() -> None:
    assert set(RAW["roles"]) == {"admin", "scenario_author", "content_author", "analyst"}
    assert {r["ja"] for r in RAW["roles"].values()} == {"管理者", "シナリオ設定者", "コンテンツ設定者", "アナリスト"}


@pytest.mark.parametrize("role", sorted(RAW["roles"]))
def test_check_allows_what_the_yaml_lists_and_denies_the_rest(role: str) -> None:
    can = set(RAW["roles"][role]["can"])
    assert can, role
    for action in RAW["actions"]:
        if action in can:
            roles.check(role, action)
            assert roles.allowed(role, action)
        else:
            with pytest.raises(PermissionError, match=rf"role {role} .* may not {action}"):
                roles.check(role, action)
            assert not roles.allowed(role, action)


def test_the_defaults_the_brief_asks_for() -> None:
    everything = set(RAW["actions"])
    assert set(RAW["roles"]["admin"]["can"]) == everything
    for role in ("scenario_author", "content_author", "analyst"):
        for action in ("read_customer_pii", "approve_export", "execute_export", "read_audit_log", "run_dags"):
            assert not roles.allowed(role, action), (role, action)
    assert roles.allowed("scenario_author", "edit_audiences")
    assert not roles.allowed("scenario_author", "edit_content")
    assert roles.allowed("content_author", "send_test_to_seed_list")
    assert not roles.allowed("content_author", "read_masked_customers")
    assert set(RAW["roles"]["analyst"]["can"]) == {"read_analytics"}
    assert {r: d["data"]["file"] for r, d in RAW["roles"].items()} == {
        "admin": "warehouse",
        "scenario_author": "role",
        "content_author": "role",
        "analyst": "analytics",
    }


def test_role_names_in_japanese_and_typos() -> None:
    roles.check("シナリオ設定者", "edit_audiences")
    roles.check("scenario-author", "edit_audiences")
    with pytest.raises(roles.RolesError, match="unknown action"):
        roles.check("admin", "read_customer_pi")
    with pytest.raises(roles.RolesError, match="unknown role"):
        roles.check("superuser", "run_dags")


def test_the_acting_role_comes_from_the_option_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(roles.ROLE_ENV, raising=False)
    with pytest.raises(roles.RolesError, match="no role"):
        roles.current_role()
    monkeypatch.setenv(roles.ROLE_ENV, "アナリスト")
    assert roles.current_role() == "analyst"
    assert roles.current_role("admin") == "admin"


def _with(tmp_path: Path, role: str, **changes) -> Path:
    doc = yaml.safe_load(roles.ROLES_FILE.read_text(encoding="utf-8"))
    for key, value in changes.items():
        target = doc["roles"][role]
        *parents, last = key.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    path = tmp_path / "roles.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("role", "changes", "message"),
    [
        ("content_author", {"can": ["edit_content", "read_customer_pii"]}, "read_customer_pii needs"),
        ("analyst", {"data__pii": "raw"}, "raw personal data is in the warehouse file only"),
        ("scenario_author", {"data__file": "warehouse"}, "raw personal data is in the warehouse file only"),
        ("content_author", {"can": ["read_masked_customers"]}, "needs data.customer_level: true"),
        ("analyst", {"can": ["read_everything"]}, "unknown actions"),
        ("analyst", {"can": []}, "needs read_analytics"),
    ],
)
def test_the_matrix_refuses_to_contradict_itself(tmp_path: Path, role: str, changes: dict, message: str) -> None:
    with pytest.raises(roles.RolesError, match=message):
        roles.load_matrix(_with(tmp_path, role, **changes))


def test_the_document_shows_the_yamls_matrix() -> None:
    text = roles.DOC_FILE.read_text(encoding="utf-8")
    assert roles.render_doc(text) == text, "docs/roles.md is out of date: run `yorisoi roles doc`"
    block = text.split(roles.DOC_BEGIN)[1].split(roles.DOC_END)[0]
    for role, spec in RAW["roles"].items():
        assert f"`{role}`" in block and spec["ja"] in block
    action_rows = [line for line in block.splitlines() if line.startswith("| `") and "`: " in line]
    assert [line.split("`")[1] for line in action_rows] == list(RAW["actions"])
    for line in action_rows:
        action = line.split("`")[1]
        marks = [c.strip() for c in line.rstrip(" |").split("|")[-len(RAW["roles"]) :]]
        assert marks == ["✓" if action in spec["can"] else "—" for spec in RAW["roles"].values()], action


def test_the_matrix_drives_the_analyst_grants() -> None:
    assert roles.dbt_vars() == {"analyst_roles": RAW["roles"]["analyst"]["warehouse_roles"]}
