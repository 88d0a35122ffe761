"""`yorisoi customer show`: an admin sees the golden record and the read is in the operation log
with the person_id, before anything is printed; a role without access to personal data is
refused, sees nothing, and the refusal is logged too."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from yorisoi.audit import log
from yorisoi.audit.cli import customer_app
from yorisoi_kit.scale_run import ScaleRun

cli = typer.Typer()
cli.add_typer(customer_app, name="customer")


@pytest.fixture
def person(xs: ScaleRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A person of the built XS brand with an email and a phone; the commands read that brand
    and log into a folder of the test's own."""
    monkeypatch.setenv("YORISOI_VAR", str(xs.work))
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(tmp_path / "audit"))
    for name in ("YORISOI_ACTOR", "YORISOI_ROLE", "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    try:
        pid, email, phone = con.execute(
            "select person_id, email, phone from marts.dim_customers "
            "where email is not null and phone is not null order by person_id limit 1"
        ).fetchall()[0]
    finally:
        con.close()
    return {"person_id": pid, "email": email, "phone": phone}


def show(*args: str):
    return CliRunner().invoke(cli, ["customer", "show", *args])


def test_an_admin_sees_the_record_and_the_read_is_logged(person: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_ACTOR", "hanako")
    r = show(person["person_id"], "--role", "admin", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert (shown["customer"]["email"], shown["customer"]["phone"]) == (person["email"], person["phone"])
    assert shown["source_records"] and all(s["source_id"] for s in shown["source_records"])
    (entry,) = log.list_entries(person=person["person_id"])
    assert (entry["action"], entry["actor"], entry["role"], entry["rows"]) == (
        "pii_read",
        getpass.getuser(),
        "admin",
        1,
    )
    assert entry["declared_actor"] == "hanako"  # a claim, kept apart from the OS user
    assert entry["person_ids"] == [person["person_id"]] and entry["destination"] == "cli:json"
    assert person["person_id"] in entry["object"] and entry["details"]["source_records"] == len(shown["source_records"])
    r = show(person["person_id"], "--role", "admin")  # the table, for people
    assert r.exit_code == 0 and person["email"] in r.stdout
    assert [e["destination"] for e in log.list_entries(person=person["person_id"])] == ["cli:json", "cli:terminal"]
    assert log.verify().ok


@pytest.mark.parametrize("role", ["scenario_author", "content_author", "analyst"])
def test_a_role_without_personal_data_is_refused(person: dict, role: str) -> None:
    r = show(person["person_id"], "--role", role, "--json")
    assert r.exit_code == 1
    assert "may not read_customer_pii" in r.stderr
    assert person["email"] not in r.output and person["phone"] not in r.output
    (entry,) = log.list_entries(person=person["person_id"])
    assert (entry["action"], entry["role"], entry["rows"]) == ("pii_read_denied", role, 0)


def test_no_role_no_read(person: dict) -> None:
    r = show(person["person_id"])
    assert r.exit_code == 2 and "no role" in r.stderr and person["email"] not in r.output
    assert log.list_entries() == []


def test_an_unknown_person_is_a_logged_lookup(person: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_ROLE", "admin")
    r = show("Pnobody")
    assert r.exit_code == 1 and "no person Pnobody" in r.stderr
    (entry,) = log.list_entries(person="Pnobody")
    assert (entry["action"], entry["rows"]) == ("pii_read", 0)
