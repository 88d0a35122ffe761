"""What the DAG's tasks run, end to end on loopback: plan (due pairs), allocate (breaker,
members, arbitration across audiences), export (records re-checked at export time, engine.sync)
to a real SMTP server (aiosmtpd) and a real S3 (moto); dry runs and test sends; and docs/reliability.md
#14 on the S3 file that leaves: its columns within the allow-list, no raw email or phone in it."""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from audiences_harness import (
    AS_OF,
    MAIL_AUDIENCE,
    TinyWarehouse,
    cart_rows,
    fast_destinations_doc,
    make_context,
    person,
    smtp_server,
    write_dbt_results,
    write_quality_results,
)

from yorisoi.activation import run
from yorisoi.activation.delivery.store import ActivationStore
from yorisoi.activation.selection.definitions import AudienceError
from yorisoi.activation.selection.membership import EMAIL_RE, PHONE_RE, MembershipError
from yorisoi.audit.log import evidence_of, list_entries, person_ids_of

PEOPLE = [f"P{i:05d}" for i in range(120)]
REGION = "ap-northeast-1"


# ---- plan ---------------------------------------------------------------------------------------


def _at(local: str) -> datetime:
    """A Japan-time wall clock as UTC."""
    return datetime.fromisoformat(local).replace(tzinfo=UTC) - timedelta(hours=9)


def test_plan_lists_scheduled_audiences_when_their_time_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YORISOI_AS_OF", raising=False)
    ctx = run.Context.load()
    ten = _at("2026-11-02T10:00:00")  # a Monday
    assert run.plan(ten, since=ten - timedelta(minutes=15), triggered_by=[], context=ctx) == [
        ("cart_abandonment", "line_multicast"),
        ("cart_abandonment", "smtp_email"),
    ]
    assert run.plan(ten + timedelta(minutes=20), since=ten + timedelta(minutes=5), triggered_by=[], context=ctx) == []
    # a missed tick: the next run looks back to the last success and still finds 10:00 and 11:30
    noon = _at("2026-11-02T12:00:00")
    assert [a for a, _ in run.plan(noon, since=ten - timedelta(minutes=1), triggered_by=[], context=ctx)] == [
        "cart_abandonment",
        "cart_abandonment",
        "second_purchase_nudge",
    ]
    # weekdays only at 14:00: Monday yes, Sunday no
    assert ("next_parcel_insert", "sftp_insert_list") in run.plan(
        _at("2026-11-02T14:00:00"), since=_at("2026-11-02T13:50:00"), triggered_by=[], context=ctx
    )
    assert run.plan(_at("2026-11-01T14:00:00"), since=_at("2026-11-01T13:50:00"), triggered_by=[], context=ctx) == []
    due = run.due(ten, since=ten - timedelta(minutes=15), triggered_by=[], context=ctx)
    assert {d.interval for d in due} == {"2026-11-02T10:00+0900"}


def test_plan_lists_unscheduled_audiences_after_a_segment_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YORISOI_AS_OF", raising=False)
    ctx = run.Context.load()
    at = _at("2026-11-02T05:45:00")
    after_build = run.due(at, since=at - timedelta(minutes=15), triggered_by=["marts.trigger_audiences"], context=ctx)
    assert [(d.audience, d.destination) for d in after_build] == [
        ("vip_thank_you", "esp_list"),
        ("vip_thank_you", "line_audience"),
        ("vip_thank_you", "sftp_dm_list"),
        ("dormant_winback", "sftp_dm_list"),
        ("dormant_winback", "s3_dm_vendor"),
    ]
    assert {d.interval for d in after_build} == {"2026-11-02"}  # the as-of day
    assert run.due(at, since=at - timedelta(minutes=15), triggered_by=[], context=ctx) == []
    monkeypatch.setenv("YORISOI_AS_OF", "2026-10-31")  # the demo pins the brand's day
    assert {d.interval for d in run.due(at, triggered_by=["marts.segment_4r"], context=ctx)} == {"2026-10-31"}


def test_the_dag_listens_to_the_assets_build_segments_emits() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).resolve().parents[2] / "dags"
    activation = DagBag(dag_folder=str(dags / "activate_audiences.py")).dags["activate_audiences"]
    segments = DagBag(dag_folder=str(dags / "build_segments.py")).dags["build_segments"]
    listened = {(key.name, key.uri) for key, _ in activation.timetable.asset_condition.iter_assets()}
    emitted = {(o.name, o.uri) for t in segments.tasks for o in t.outlets}
    assert {"marts.trigger_audiences", "marts.customer_status", "marts.segment_4r"} <= {n for n, _ in listened}
    assert listened <= emitted, f"activation listens to assets nobody emits: {listened - emitted}"
    tasks = {t.task_id: t for t in activation.tasks}
    assert set(tasks) == {"plan", "allocate", "export"}
    assert type(tasks["export"]).__name__ == "DecoratedMappedOperator"  # one task per (audience, destination)
    assert tasks["allocate"].pool == "duckdb_writer"
    assert all(t.retries >= 1 for t in tasks.values())


# ---- the DAG's tasks on loopback --------------------------------------------------------------------


@pytest.fixture
def mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("YORISOI_ROLE", "admin")
    monkeypatch.delenv("YORISOI_AS_OF", raising=False)
    controller, mailbox = smtp_server("yorisoi_smtp", monkeypatch)
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(120)]
    wh.deliverable = {(p, "email") for p in PEOPLE}
    wh.selections = {
        "trigger_cart_abandonment": cart_rows(PEOPLE[:80]),
        "trigger_second_purchase_nudge": [{"person_id": p, "points_balance": 300} for p in PEOPLE[40:]],
    }
    wh.write()
    store = ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}")
    nudge = {
        **MAIL_AUDIENCE,
        "name": "nudge_mail",
        "selection": {"mart": "trigger_second_purchase_nudge"},
        "priority": 2,
        "holdout_percent": 0,
        "columns": ["full_name", "variant"],
        "destinations": [
            {
                "name": "smtp_email",
                "columns": ["full_name", "variant"],
                "templates": {"default": {"subject": "{full_name}様", "body": "2回目"}},
            }
        ],
    }
    doc = fast_destinations_doc()
    doc["defaults"]["frequency_caps"]["email"] = {"max_messages": 1, "period_days": 1}
    ctx = make_context(tmp_path, wh, [MAIL_AUDIENCE, nudge], store, destinations_doc=doc)
    write_dbt_results(ctx.dbt_results)
    write_quality_results(ctx.quality_results)
    try:
        yield ctx, mailbox, wh, store
    finally:
        controller.stop()
        store.close()


def _dag_run(ctx, run_id: str = "asset_triggered__2026-11-02T01:00:00"):
    """plan → allocate → export for every pair, as the DAG runs them."""
    pairs = run.plan_task(
        AS_OF, since=AS_OF - timedelta(minutes=15), triggered_by=["marts.trigger_audiences"], context=ctx
    )
    pairs = run.allocate_task(pairs, as_of=AS_OF, run_id=run_id, context=ctx)
    return [run.export_task(p, run_id=run_id, as_of=AS_OF, context=ctx) for p in pairs]


def test_one_dag_run_arbitrates_across_audiences_and_reruns_send_nothing_twice(mail) -> None:
    ctx, mailbox, _, store = mail
    summaries = _dag_run(ctx)
    assert [s["audience"] for s in summaries] == ["cart_mail", "nudge_mail"]
    to = [r.split("@")[0].upper() for r in mailbox.recipients()]
    assert len(to) == len(set(to)), "someone got two emails in one day (cap 1 per day)"
    members = {m["person_id"]: m for m in store.last_members("cart_mail")}
    assert len(members) == 80
    cart_treatment = {p for p, m in members.items() if m["grp"] == "treatment"}
    cart_control = set(members) - cart_treatment
    nudged = set(to) - cart_treatment
    # the cart reminder (priority 1) won everyone it treats; the nudge got the rest of its members,
    # among them cart's control group (control takes no slot)
    assert cart_treatment <= set(to)
    assert nudged == set(PEOPLE[40:]) - cart_treatment
    assert cart_control & set(PEOPLE[40:]) <= nudged
    assert {m["variant"] for m in members.values() if m["grp"] == "treatment"} == {"A", "B"}
    assert {m["variant"] for m in members.values() if m["grp"] == "control"} == {None}
    # Airflow retries the whole DAG run: the ledger sends nobody twice
    before = len(mailbox.received)
    again = _dag_run(ctx)
    assert len(mailbox.received) == before
    assert sum(s["sync"]["delivered"] for s in again) == 0


def test_an_opt_out_after_allocation_is_honoured_at_export(mail) -> None:
    ctx, mailbox, wh, _ = mail
    run_id = "asset_triggered__late_opt_out"
    pairs = run.plan_task(
        AS_OF, since=AS_OF - timedelta(minutes=15), triggered_by=["marts.trigger_audiences"], context=ctx
    )
    pairs = run.allocate_task(pairs, as_of=AS_OF, run_id=run_id, context=ctx)
    allocation = run.RunAllocation.load(run_id)
    late = allocation.person_ids("cart_mail", "email")[:5]
    wh.deliverable -= {(p, "email") for p in late}  # opted out; the customer model was rebuilt
    wh.write()
    for p in pairs:
        run.export_task(p, run_id=run_id, as_of=AS_OF, context=ctx)
    got = {r.split("@")[0].upper() for r in mailbox.recipients()}
    assert got and not got & set(late)


def test_dry_run_sends_nothing_and_writes_no_members(mail) -> None:
    ctx, mailbox, _, store = mail
    summary = run.activate("cart_mail", "smtp_email", dry_run=True, as_of=AS_OF, context=ctx)
    assert summary["status"] == "planned"
    assert summary["sync"]["adds"] == summary["records"] > 0
    assert mailbox.received == []
    assert store.last_members("cart_mail") == []
    assert {r["status"] for r in store.changelog(summary["sync"]["run_id"])} == {"planned"}


def test_the_dry_run_table_shows_the_funnel(mail, capsys: pytest.CaptureFixture[str]) -> None:
    from yorisoi.activation.cli import FUNNEL, _print, funnel

    ctx, *_ = mail
    summary = run.activate("cart_mail", "smtp_email", dry_run=True, as_of=AS_OF, context=ctx)
    steps = funnel(summary)
    assert steps["selected"] == 80
    assert steps["control"] == summary["stats"]["control"] > 0  # holdout_percent of the eligible
    assert steps["sent"] == summary["records"] > 0
    narrowed = steps["selected"] - sum(steps[k] for k in ("not contactable", "exited", "capped", "control"))
    assert steps["sent"] == narrowed
    _print([summary], as_json=False)
    table = capsys.readouterr().out
    assert "selected → not contactable → exited → capped → control → sent" in table
    row = next(line for line in table.splitlines() if "cart_mail" in line)
    assert [c.strip() for c in row.split("│")[4:10]] == [f"{steps[k]:,}" for k in FUNNEL]


def test_test_send_reaches_only_the_seed_list(mail) -> None:
    ctx, mailbox, _, store = mail
    summary = run.activate("cart_mail", "smtp_email", test=True, as_of=AS_OF, context=ctx)
    assert summary["status"] == "tested"
    assert sorted(mailbox.recipients()) == ["crm-test2@yorisoi-tea.example.jp", "crm-test@yorisoi-tea.example.jp"]
    assert store.last_members("cart_mail") == []


def test_the_export_is_in_the_operation_log(mail) -> None:
    from yorisoi.audit.log import iter_entries, person_ids_of

    ctx, mailbox, _, _ = mail
    summary = run.activate("cart_mail", "smtp_email", as_of=AS_OF, context=ctx)
    entry = [e for e in iter_entries() if e["action"] == "export"][-1]
    assert entry["object"] == "audience cart_mail" and entry["destination"] == "smtp_email"
    assert entry["rows"] == summary["sync"]["delivered"] == len(mailbox.received)
    assert sorted(person_ids_of(entry)) == sorted(r.split("@")[0].upper() for r in mailbox.recipients())


# ---- docs/reliability.md #14 on an S3 file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str):
    import json

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("YORISOI_ROLE", "admin")
    monkeypatch.setenv(
        "AIRFLOW_CONN_YORISOI_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "test",
                "password": "test",
                "extra": {"endpoint_url": moto_endpoint, "region_name": REGION},
            }
        ),
    )
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    bucket = f"yorisoi-exports-{tmp_path.name[-12:].lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(120)]
    wh.deliverable = {(p, "dm") for p in PEOPLE}
    wh.selections = {
        "trigger_dormant_winback": [
            {"person_id": p, "lifetime_spend": 8000, "was_vip": i % 7 == 0, "favourite_category": "日本茶"}
            for i, p in enumerate(PEOPLE)
        ]
    }
    wh.write()
    doc = fast_destinations_doc()
    s3 = next(d for d in doc["destinations"] if d["name"] == "s3_dm_vendor")
    s3["bucket"] = bucket
    store = ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}")

    def objects() -> dict[str, bytes]:
        listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}

    try:
        yield tmp_path, wh, store, doc, objects
    finally:
        store.close()


WINBACK = {
    "name": "winback_files",
    "owner": "tests",
    "description": "dormant win-back to the print vendor",
    "selection": {
        "sql": "select person_id, was_vip, favourite_category from marts.trigger_dormant_winback "
        "where lifetime_spend >= 5000"
    },
    "channels": ["dm"],
    "destinations": [
        {"name": "s3_dm_vendor", "columns": ["full_name", "postal_code", "prefecture", "address", "variant"]}
    ],
    "priority": 1,
    "holdout_percent": 10,
    "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
    "columns": ["full_name", "postal_code", "prefecture", "address", "variant"],
}


def test_an_s3_export_holds_only_allowed_columns_and_no_raw_contact_data(s3_env) -> None:
    folder, wh, store, doc, objects = s3_env
    ctx = make_context(folder, wh, [WINBACK], store, destinations_doc=doc)
    write_dbt_results(ctx.dbt_results)
    write_quality_results(ctx.quality_results)
    summary = run.activate("winback_files", "s3_dm_vendor", as_of=AS_OF, context=ctx)
    assert summary["status"] == "synced" and summary["sync"]["delivered"] > 90
    files = {k: v for k, v in objects().items() if k.endswith(".csv")}
    assert len(files) == 1
    # the operation log names the file, its SHA-256 and, per person, the consent that allowed it
    (key, body), export = next(iter(files.items())), list_entries(action="export")[-1]
    digest = hashlib.sha256(body).hexdigest()
    assert export["file_sha256"] == digest
    assert export["details"]["files"][0]["path"] == f"s3://{ctx.destinations['s3_dm_vendor'].bucket}/{key}"
    assert export["details"]["files"][0]["sha256"] == digest
    sent = person_ids_of(export)
    evidence = {e["person_id"]: e for e in evidence_of(export)}
    assert len(sent) == summary["sync"]["delivered"] and set(evidence) == set(sent)
    assert {(e["channel"], e["consent_id"], e["source"]) for e in evidence.values()} == {
        ("dm", f"{p}:dm", "test") for p in sent
    }
    assert export["os_user"] == getpass.getuser() and export["role"] == "admin"
    text = next(iter(files.values())).decode("utf-8")
    header = next(csv.reader(io.StringIO(text)))
    allowed = set(ctx.destinations["s3_dm_vendor"].allowed_columns) | {"person_id"}
    assert set(header) <= allowed, f"columns outside the allow-list: {set(header) - allowed}"
    assert {"full_name", "address", "variant"} <= set(header)
    everything = "\n".join(v.decode("utf-8", "replace") for v in objects().values())
    assert not EMAIL_RE.search(everything), "an email address in the S3 export"
    assert not PHONE_RE.search(everything), "a phone number in the S3 export"
    # the people's addresses are in the warehouse: the scan would have found them
    assert re.search(EMAIL_RE, "p00001@example.jp") and re.search(PHONE_RE, person(1)["phone"])


def test_contact_data_smuggled_under_another_name_is_refused_before_anything_leaves(s3_env) -> None:
    """An audience's SQL that renames dim_customers.email to an allowed column name is refused
    by the lineage check when the audience loads; an email that comes from no tagged column (a
    literal here) is still caught by the scan of the records. Nothing reaches S3
    (docs/reliability.md #14, #20)."""
    folder, wh, store, doc, objects = s3_env
    s3 = next(d for d in doc["destinations"] if d["name"] == "s3_dm_vendor")
    s3["allowed_columns"] = [*s3["allowed_columns"], "note"]
    smuggler = {
        **WINBACK,
        "name": "smuggler",
        "selection": {
            "sql": "select w.person_id, c.email as note from marts.trigger_dormant_winback as w "
            "join marts.dim_customers as c using (person_id)"
        },
        "columns": ["full_name", "postal_code", "prefecture", "address", "variant", "note"],
        "destinations": [{"name": "s3_dm_vendor"}],
    }
    with pytest.raises(AudienceError, match=r"'note' derives from marts.dim_customers.email, tagged pii"):
        make_context(folder, wh, [smuggler], store, destinations_doc=doc)
    smuggler["selection"] = {
        "sql": "select w.person_id, 'hanako@example.jp' as note from marts.trigger_dormant_winback as w"
    }
    ctx = make_context(folder, wh, [smuggler], store, destinations_doc=doc)
    write_dbt_results(ctx.dbt_results)
    write_quality_results(ctx.quality_results)
    with pytest.raises(MembershipError, match=r"column 'note' of person P\d+ holds an email address"):
        run.activate("smuggler", "s3_dm_vendor", as_of=AS_OF, context=ctx)
    assert objects() == {}
    assert store.runs(audience="smuggler") == []
