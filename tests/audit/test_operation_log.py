"""The operation log: entries are appended and listed by person, date, destination and action;
the hash chain finds an edited line, a deleted line, a cut-off tail and a changed sidecar;
concurrent writers lose nothing; and an export records the SHA-256 of what was sent."""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from yorisoi.audit import log
from yorisoi.audit.cli import audit_app


@pytest.fixture
def audit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "audit"
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(folder))
    for name in ("YORISOI_ACTOR", "YORISOI_ROLE", "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    return folder


def lines(folder: Path) -> list[str]:
    return (folder / log.LOG_NAME).read_text(encoding="utf-8").splitlines(keepends=True)


def write_lines(folder: Path, rows: list[str]) -> None:
    (folder / log.LOG_NAME).write_text("".join(rows), encoding="utf-8")


def test_an_entry_says_who_when_what_how_many_where_and_which_file(audit_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "dm_vip_20261101.csv"
    export.write_bytes("person_id,郵便番号\nP1,1000001\nP2,0600001\n".encode())
    before = datetime.now(UTC)
    e = log.record_export(
        "hanako", "audience trigger_vip_reached", 2, "sftp://dm-vendor/outbound", export, person_ids=["P1", "P2"]
    )
    assert e["file_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert e["details"]["file"] == str(export)
    assert (e["seq"], e["prev"], e["actor"], e["actor_via"]) == (1, log.GENESIS, "hanako", "argument")
    assert (e["action"], e["object"], e["rows"], e["destination"]) == (
        "export",
        "audience trigger_vip_reached",
        2,
        "sftp://dm-vendor/outbound",
    )
    assert e["person_ids"] == ["P1", "P2"] and e["person_count"] == 2
    assert before <= datetime.fromisoformat(e["at"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert json.loads(lines(audit_dir)[0]) == e
    assert e["hash"] == log.entry_hash(e)
    sent = b"email_sha256\n3f2a...\n"
    assert log.record_export(None, "audience x", 1, "https://ads.example", sent)["file_sha256"] == (
        hashlib.sha256(sent).hexdigest()
    )


def test_the_actor_is_the_os_user_never_a_declared_name_or_a_stale_airflow_env(
    audit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a task the actor is the kernel's user: $YORISOI_ACTOR is kept as a claim only, and
    AIRFLOW_CTX_* variables a finished task left in the environment name no task (docs/reliability.md #20)."""
    import getpass

    e = log.record("export", "x")
    assert (e["actor"], e["actor_via"], e["os_user"]) == (getpass.getuser(), "os", getpass.getuser())
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "build_data_definition")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "dbt_parse")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-11-01")
    monkeypatch.setenv("YORISOI_ACTOR", "taro@brand.example")
    monkeypatch.setenv("YORISOI_ROLE", "admin")
    e = log.record("export", "x")
    assert (e["actor"], e["actor_via"], e["context"]) == (getpass.getuser(), "os", {})
    assert (e["declared_actor"], e["role"], e["os_user"]) == ("taro@brand.example", "admin", getpass.getuser())


def test_inside_a_running_task_the_actor_is_read_from_its_live_context(
    audit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task runner's own context stack (what get_current_context reads), not the environment."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time.context import set_current_context

    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "build_data_definition")  # stale: ignored
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "dbt_parse")
    ti = SimpleNamespace(dag_id="activate_audiences", task_id="export", run_id="scheduled__2026-11-01", try_number=2)
    ti.map_index = 3
    with set_current_context({"ti": ti, "dag_run": SimpleNamespace(triggering_user_name="hanako")}):
        e = log.record("export", "x")
    assert (e["actor"], e["actor_via"]) == ("airflow:activate_audiences.export", "airflow")
    assert e["context"] == {
        "dag_id": "activate_audiences",
        "task_id": "export",
        "run_id": "scheduled__2026-11-01",
        "try_number": "2",
        "map_index": "3",
        "triggered_by": "hanako",
    }
    assert log.record("export", "x")["actor_via"] == "os"  # the task ended


PROBE_DAG = """
from datetime import UTC, datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False)
def audit_probe():
    @task
    def export_probe():
        from yorisoi.audit import log

        log.record("export", "probe")

    export_probe()


audit_probe()
"""

PROBE_RUN = """
import os
from airflow.dag_processing.dagbag import DagBag
from yorisoi.audit import log

bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert bag.get_dag("audit_probe").test().state == "success"
assert os.environ.get("AIRFLOW_CTX_DAG_ID") == "audit_probe"  # what the task left behind
log.record("export", "after the task")
"""


@pytest.mark.slow
def test_a_real_dag_task_is_the_actor_and_its_environment_does_not_outlive_it(tmp_path: Path) -> None:
    """dag.test() of a one-task DAG against a migrated metadata DB: the entry written in the task
    names it; the one written afterwards in the same process names the OS user."""
    import getpass
    import subprocess
    import sys

    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "audit_probe.py").write_text(PROBE_DAG, encoding="utf-8")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "YORISOI_AUDIT_DIR": str(tmp_path / "audit"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", PROBE_RUN], env=env, check=True, capture_output=True)
    inside, after = log.iter_entries(tmp_path / "audit")
    assert (inside["actor"], inside["context"]["dag_id"], inside["context"]["task_id"]) == (
        "airflow:audit_probe.export_probe",
        "audit_probe",
        "export_probe",
    )
    assert inside["context"]["run_id"].startswith("manual__") and inside["os_user"] == getpass.getuser()
    assert (after["actor"], after["actor_via"], after["context"]) == (getpass.getuser(), "os", {})


def test_an_exports_consent_evidence_answers_why_a_person_was_sent(audit_dir: Path) -> None:
    many = [f"P{i:03d}" for i in range(30)]
    evidence = [
        {"person_id": p, "channel": "email", "consent_id": f"{p}:email", "since": "2026-10-01T09:00:00+00:00"}
        for p in many
    ]
    log.record_export(None, "audience vip", 30, "esp_list", None, person_ids=many, evidence=evidence)
    log.record_export(None, "audience small", 1, "sms", None, person_ids=["P001"], evidence=evidence[1:2])
    why = log.evidence_for("P001")
    assert [w["entry"]["object"] for w in why] == ["audience vip", "audience small"]
    assert [w["consent"] for w in why] == [[evidence[1]], [evidence[1]]]
    shown = CliRunner().invoke(audit_app, ["--person", "P001", "--role", "admin"])
    assert shown.exit_code == 0, shown.output
    assert "seq 1 audience vip → esp_list: email consent P001:email since 2026-10-01T09:00:00+00:00" in shown.output
    entry = why[0]["entry"]
    assert "evidence" not in entry and entry["evidence_file"].startswith("evidence/")  # 30 rows: a sidecar
    assert log.verify().ok
    side = audit_dir / entry["evidence_file"]
    side.write_bytes(gzip.compress(gzip.decompress(side.read_bytes()).replace(b"2026-10-01", b"2026-09-01")))
    result = log.verify()
    assert not result.ok and "evidence file" in result.reason


def test_listing_filters_by_person_date_destination_and_action(audit_dir: Path) -> None:
    many = [f"P{i:05d}" for i in range(500)]
    log.record_export("a", "audience vip", 2, "sftp://dm-vendor/out", b"1", person_ids=["P00001", "P99999"])
    log.record_export("a", "audience all", 500, "s3://bucket/insert", b"2", person_ids=many)
    log.record(
        "pii_read", "marts.dim_customers person P99999", rows=1, destination="cli:terminal", person_ids=["P99999"]
    )
    big = log.list_entries(destination="s3://")[0]
    assert big["person_ids"] is None and big["person_count"] == 500
    assert (audit_dir / big["person_ids_file"]).read_text().splitlines() == many

    def seqs(**kw) -> list[int]:
        return [e["seq"] for e in log.list_entries(**kw)]

    assert seqs() == [1, 2, 3]
    assert seqs(person="P99999") == [1, 3]
    assert seqs(person="P00001") == [1, 2]  # found in the sidecar too
    assert seqs(person="P00499") == [2]
    assert seqs(person="nobody") == []
    assert seqs(destination="sftp://dm-vendor") == [1]
    assert seqs(action="pii_read") == [3]
    assert seqs(person="P99999", action="export") == [1]
    today, now = datetime.now(UTC).date(), datetime.now(UTC)
    assert seqs(since=today, until=today) == [1, 2, 3]
    assert seqs(until=today - timedelta(days=1)) == []
    assert seqs(since=today + timedelta(days=1)) == []
    assert seqs(since=now + timedelta(minutes=1)) == []
    assert seqs(until=now - timedelta(minutes=1)) == []
    assert seqs(since=str(today), until=(now + timedelta(seconds=5)).isoformat()) == [1, 2, 3]


def test_dates_are_utc_days(audit_dir: Path) -> None:
    e = log.record("export", "x")
    day = datetime.fromisoformat(e["at"].replace("Z", "+00:00")).date()
    assert log.list_entries(since=day, until=day)
    assert not log.list_entries(since=date(day.year + 1, 1, 1))


def _three_entries() -> None:
    for i in range(3):
        log.record("export", f"audience {i}", rows=i, destination="sftp://x", person_ids=[f"P{i}"])


def test_an_intact_log_verifies(audit_dir: Path) -> None:
    assert log.verify().ok  # empty
    _three_entries()
    result = log.verify()
    assert result.ok and result.entries == 3 and result.head_seq == 3
    assert result.head_hash == json.loads(lines(audit_dir)[-1])["hash"]


def test_an_edited_line_is_found(audit_dir: Path) -> None:
    _three_entries()
    rows = lines(audit_dir)
    rows[1] = rows[1].replace('"rows":1', '"rows":0')
    write_lines(audit_dir, rows)
    result = log.verify()
    assert not result.ok and result.broken_line == 2 and result.broken_seq == 2
    assert "edited" in result.reason


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(audit_dir: Path) -> None:
    _three_entries()
    rows = lines(audit_dir)
    e = json.loads(rows[1])
    e["person_ids"] = ["someone_else"]
    e["hash"] = log.entry_hash(e)
    rows[1] = log.canonical(e).decode() + "\n"
    write_lines(audit_dir, rows)
    result = log.verify()
    assert not result.ok and result.broken_line == 3 and "prev" in result.reason


def test_a_deleted_line_is_found(audit_dir: Path) -> None:
    _three_entries()
    rows = lines(audit_dir)
    write_lines(audit_dir, [rows[0], rows[2]])
    result = log.verify()
    assert not result.ok and result.broken_line == 2 and result.broken_seq == 3
    assert "missing" in result.reason


def test_a_deleted_first_line_is_found(audit_dir: Path) -> None:
    _three_entries()
    write_lines(audit_dir, lines(audit_dir)[1:])
    result = log.verify()
    assert not result.ok and result.broken_line == 1


def test_a_cut_off_tail_is_found_by_the_head(audit_dir: Path) -> None:
    _three_entries()
    write_lines(audit_dir, lines(audit_dir)[:2])
    result = log.verify()
    assert not result.ok and "removed from the end" in result.reason


def test_a_changed_person_id_file_is_found(audit_dir: Path) -> None:
    e = log.record_export("a", "audience all", 30, "s3://b", b"x", person_ids=[f"P{i}" for i in range(30)])
    side = audit_dir / e["person_ids_file"]
    side.write_text("P0\n")
    result = log.verify()
    assert not result.ok and "changed" in result.reason


def test_a_torn_write_is_reported_and_the_log_keeps_growing(audit_dir: Path) -> None:
    _three_entries()
    with open(audit_dir / log.LOG_NAME, "ab") as f:
        f.write(b'{"seq":4,"act')  # a crash in the middle of a write
    e = log.record("export", "after the crash")
    assert e["seq"] == 4
    assert lines(audit_dir)[-1].startswith('{"action":"export"')
    result = log.verify()
    assert not result.ok and result.broken_line == 4


def _append_many(folder: str, worker: int, n: int) -> None:
    os.environ["YORISOI_AUDIT_DIR"] = folder
    for i in range(n):
        log.record("export", f"worker {worker} entry {i}", rows=i, destination=f"test://{worker}")


def test_concurrent_writers_lose_nothing(audit_dir: Path) -> None:
    procs, each = 4, 50
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(str(audit_dir), w, each)) for w in range(procs)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    entries = log.list_entries()
    assert [e["seq"] for e in entries] == list(range(1, procs * each + 1))
    assert sorted(e["object"] for e in entries) == sorted(
        f"worker {w} entry {i}" for w in range(procs) for i in range(each)
    )
    assert len({e["pid"] for e in entries}) == procs
    assert log.verify().ok


# --- the `yorisoi audit` command ----------------------------------------------------------------

cli = typer.Typer()
cli.add_typer(audit_app, name="audit")


def run(*args: str):
    return CliRunner().invoke(cli, ["audit", *args])


def test_the_command_lists_filters_and_verifies(audit_dir: Path) -> None:
    log.record_export("a", "audience vip", 2, "sftp://dm-vendor/out", b"1", person_ids=["P1", "P2"])
    log.record_export("a", "audience welcome", 1, "https://line.example", b"2", person_ids=["P3"])
    r = run("--role", "admin", "--json", "--person", "P3")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["object"] for x in r.stdout.splitlines()] == ["audience welcome"]
    r = run("--role", "admin", "--json", "--destination", "sftp://", "--since", "2000-01-01", "--until", "2999-12-31")
    assert [json.loads(x)["seq"] for x in r.stdout.splitlines()] == [1]
    r = run("--role", "admin")
    assert r.exit_code == 0 and hashlib.sha256(b"1").hexdigest()[:8] in r.stdout and "2 entries" in r.stdout
    r = run("--role", "admin", "--verify")
    assert r.exit_code == 0 and "ok: 2 entries" in r.stdout
    write_lines(audit_dir, lines(audit_dir)[1:])
    r = run("--role", "admin", "--verify")
    assert r.exit_code == 1 and "BROKEN at line 1" in r.stderr
    assert run("--role", "admin", "--since", "yesterday").exit_code == 2


def test_the_command_needs_a_role_that_may_read_the_log(audit_dir: Path) -> None:
    log.record("export", "x", person_ids=["P1"])
    r = run("--role", "scenario_author", "--json")
    assert r.exit_code == 1 and "may not read_audit_log" in r.stderr and r.stdout == ""
    assert run("--json").exit_code == 2  # no role at all
