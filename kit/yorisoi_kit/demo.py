"""`make demo`: the synthetic brand's source systems on loopback, ingested by Airflow.

Generates the brand into var/sources (skipped when the same scale and seed are already there,
with the deliberately bad drops of synth/defects.py), starts the e-commerce API and the SFTP
server, reaches each source through the client a pipeline would use, then runs the three ingest
DAGs through Airflow (`dag.test()`, against a migrated SQLite metadata DB in var/airflow), the
customer model, the segments, the governance outputs, the activation of the sample audiences and
the CRM report. It tells this as a short story, one line per stage with what was found and where
each artifact is (the deliberate bad files announced first); Airflow's, dbt's and Great
Expectations' logs go to var/demo.log and each task's log to var/airflow/logs (demo_log.py)."""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import paramiko
from rich import box
from rich.console import Console
from rich.table import Table

from yorisoi import paths
from yorisoi.orchestration.dag_defaults import POOL
from yorisoi.sources.registry import PROJECT_ROOT

from .synth.brand import GENERATOR_VERSION

DEMO_API_KEY = "demo-key"
DEMO_SFTP_USER = "yorisoi"
DEMO_SFTP_PASSWORD = "demo"  # noqa: S105 - a loopback demo server's password, not a credential


def _up_to_date(out: Path, scale: str, seed: int) -> bool:
    try:
        m = json.loads((out / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (m.get("scale"), m.get("seed"), m.get("generator_version"), m.get("defects")) == (
        scale,
        seed,
        GENERATOR_VERSION,
        True,
    )


def airflow_environment() -> None:
    """Airflow's configuration for the embedded default (what the Makefile exports, for when
    `yorisoi demo` runs on its own). Must run before Airflow is imported."""
    home = paths.airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")


def _airflow(*args: str) -> None:
    """Run an Airflow CLI command (metadata DB and pool set-up), failing loudly."""
    proc = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def demo_connections(shop, drop, oms_path: Path) -> dict[str, str]:
    """Airflow connections (as AIRFLOW_CONN_* variables) for the loopback sources."""
    return {
        "AIRFLOW_CONN_YORISOI_ECOMMERCE": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": shop.port, "schema": "http", "password": DEMO_API_KEY}
        ),
        "AIRFLOW_CONN_YORISOI_OMS": json.dumps({"conn_type": "sqlite", "host": str(oms_path)}),
        "AIRFLOW_CONN_YORISOI_SFTP": json.dumps(
            {
                "conn_type": "sftp",
                "host": drop.host,
                "port": drop.port,
                "login": DEMO_SFTP_USER,
                "password": DEMO_SFTP_PASSWORD,
                "extra": {"host_key": drop.host_key_public, "no_host_key_check": False},
            }
        ),
    }


def stage(console: Console, name: str, text: str) -> None:
    """One line of the story: the stage, what it found, where its artifacts are."""
    console.print(f"[bold cyan]{name:<11}[/] {text}", soft_wrap=True)


def _test_dag(dag_id: str) -> tuple[str, float]:
    """Load dags/<dag_id>.py into a DagBag and run the DAG once with dag.test(), each task's log
    written where the Airflow UI reads it; the run's final state and seconds."""
    from airflow.dag_processing.dagbag import DagBag

    from .demo_log import task_logs_for_the_ui

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise RuntimeError(f"{dag_id} does not load: {bag.import_errors}")
    t0 = time.perf_counter()
    with task_logs_for_the_ui():
        run = bag.get_dag(dag_id).test()
    return str(getattr(run, "state", "unknown")), time.perf_counter() - t0


def _run_dag(dag_id: str) -> str:
    """A DAG that must succeed: `<dag_id> success in N s`, or a one-line error naming the log."""
    state, seconds = _test_dag(dag_id)
    if state != "success":
        raise DemoFailed(f"{dag_id} {state}: its task log is in {paths.airflow_home() / 'logs'} and var/demo.log")
    return f"{dag_id} {state} in {seconds:.0f} s"


class DemoFailed(RuntimeError):
    """A stage that must succeed did not; the message says where its log is."""


def run_ingest_dags(console: Console) -> dict[str, str]:
    """Run ingest_ecommerce, ingest_oms and ingest_sftp once each through Airflow; returns the
    final state of each run (a failed sftp run is expected when the drops hold bad files)."""
    _airflow("db", "migrate")
    _airflow("pools", "set", POOL, "1", "DuckDB has a single writer")
    states, parts = {}, []
    for name in ("ecommerce", "oms", "sftp"):
        states[name], seconds = _test_dag(f"ingest_{name}")
        expected = " [yellow](expected: the bad files above)[/]" if name == "sftp" and states[name] == "failed" else ""
        parts.append(f"ingest_{name} {states[name]} in {seconds:.0f} s{expected}")
    stage(console, "ingest", " · ".join(parts))
    return states


def run_customer_model(console: Console) -> None:
    """Build the customer layer through the `build_customer_model` DAG (dbt inside Airflow),
    with the demo's match key passed as the Airflow connection production uses."""
    from yorisoi.privacy.keys import ensure_demo_key
    from yorisoi.transform import MATCH_KEY_CONN_ID

    secret = ensure_demo_key(paths.match_key_file()).read_text().strip()
    os.environ[f"AIRFLOW_CONN_{MATCH_KEY_CONN_ID.upper()}"] = json.dumps({"conn_type": "generic", "password": secret})
    stage(console, "customers", _run_dag("build_customer_model") + " (raw quality gate, identity, consent, dbt tests)")


def print_customer_layer(console: Console) -> None:
    """People, source records per person and who may be contacted on which channel."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        people, records = con.execute(
            "select count(distinct person_id), count(*) from marts.bridge_customer_identities"
        ).fetchall()[0]
        rows = con.execute(
            """
            select channel,
                   count(*) filter (where consent_status = 'opted_in') as opted_in,
                   count(*) filter (where consent_status = 'opted_out') as opted_out,
                   (select count(*) from marts.deliverable_customers d where d.channel = l.channel) as deliverable
            from marts.consent_ledger l group by channel order by channel
            """
        ).fetchall()
        reasons = con.execute(
            "select reason_code, count(*) from marts.deliverable_exclusions group by 1 order by 2 desc"
        ).fetchall()
    finally:
        con.close()
    stage(
        console,
        "identity",
        f"{people:,} people resolved from {records:,} source records (marts.bridge_customer_identities)",
    )
    stage(
        console,
        "consent",
        "deliverable / opted in / opted out per channel: "
        + " · ".join(f"{ch} {d:,} / {i:,} / {o:,}" for ch, i, o, d in rows),
    )
    stage(console, "", "not contactable (person × channel): " + ", ".join(f"{r} {n:,}" for r, n in reasons))
    stage(console, "", f"analysts' database, no raw personal data: {paths.analytics_path()}")


HISTORY_DAYS_BEFORE = 91  # the earlier day the report's migration view compares with


def seed_segment_history() -> str:
    """Add an earlier as-of day to marts.customer_segment_history, so the report's migration view
    (ランク推移) has two days to compare on a new warehouse: the segment marts built for the day
    HISTORY_DAYS_BEFORE days before the brand's as-of day (recomputed from today's data), before
    the daily build rebuilds them for the as-of day. A production warehouse gathers its days by
    running every day instead."""
    from datetime import date, timedelta

    from yorisoi.transform import run_dbt

    as_of = os.environ["YORISOI_AS_OF"]
    earlier = (date.fromisoformat(as_of) - timedelta(days=HISTORY_DAYS_BEFORE)).isoformat()
    t0 = time.perf_counter()
    os.environ["YORISOI_AS_OF"] = earlier
    try:
        run_dbt(["--quiet", "build", "--select", "+customer_segment_history,tag:segments"], demo_key=True)
    finally:
        os.environ["YORISOI_AS_OF"] = as_of
    return f"history day {earlier} added in {time.perf_counter() - t0:.0f} s (for the report's migration view)"


def run_segments(console: Console, history: str) -> None:
    """Build the segment marts through the `build_segments` DAG, for the brand's as-of day."""
    stage(console, "segments", _run_dag("build_segments") + f" (marts quality gate included); {history}")


def print_segments(console: Console) -> None:
    """What marketing looks at first: the F-ladder (F別継続率) and the customer statuses."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        ladder = con.execute(
            """
            select from_f, customers_at_f, conversion_rate, conversion_rate_365d
            from marts.f_retention where dimension = 'overall' and from_f <= 5 order by from_f
            """
        ).fetchall()
        statuses = con.execute(
            """
            select s.status, any_value(s.status_ja), count(*), sum(s.monetary)
            from marts.customer_status s join reference.customer_statuses d using (status)
            group by s.status, d.sort_order order by d.sort_order
            """
        ).fetchall()
        as_of = con.execute("select max(as_of_date) from marts.customer_status").fetchone()[0]
        triggers = con.execute("select trigger, count(*) from marts.trigger_audiences group by 1 order by 1").fetchall()
    finally:
        con.close()
    stage(
        console,
        "F-ladder",
        f"F別継続率 as of {as_of}, all time (within 365 days): "
        + " · ".join(f"F{f}→F{f + 1} {_pct(rate)} ({_pct(rate_365)}) of {n:,}" for f, n, rate, rate_365 in ladder),
    )
    stage(
        console,
        "status",
        "顧客ステータス: " + " · ".join(f"{ja} ({s}) {n:,}, ¥{int(spend or 0):,}" for s, ja, n, spend in statuses),
    )
    stage(console, "triggers", "today: " + (", ".join(f"{t} {n:,}" for t, n in triggers) or "none"))


def run_governance(console: Console) -> None:
    """The role databases (marts without personal-data columns, for scenario and content
    authors) and the data-definition document, through its DAG."""
    from yorisoi.roles import build_role_databases

    built = build_role_databases()
    stage(
        console,
        "roles",
        "databases without personal-data columns: "
        + ", ".join(f"{db.role} {len(db.tables)} tables at {db.path}" for db in built.values()),
    )
    document = paths.out_dir() / "docs" / "data-definition" / "index.html"
    stage(console, "docs", _run_dag("build_data_definition") + f": データ項目定義書 {document}")


def run_report(console: Console) -> None:
    """The CRM report through its DAG (after the activation run, so its funnels show it)."""
    done = _run_dag("build_report")
    folder = paths.out_dir() / "report"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    stage(
        console,
        "report",
        f"{done}: CRMレポート {folder / 'index.html'} (English: en.html), {size / 1e6:.2f} MB, opens offline",
    )


def print_campaign_results(scale: str, console: Console) -> None:
    """The planted demo campaigns (yorisoi_kit.planted: known effects, on a brand of their own
    under var/planted) read out as a planner would: lift against control or B against A, the
    95 % interval and the verdict (docs/campaign-measurement.md)."""
    from yorisoi.outcomes import readout

    from .planted import planted_truth, prepare_planted

    t0 = time.perf_counter()
    run = prepare_planted("XS" if scale == "XS" else "S")
    designs = {t["audience"]: t["expected_shares"] for t in planted_truth(run)}
    lines = readout.summary_lines(readout.read(run.warehouse, designs), "ja", metrics=("conversion", "ctr"))
    stage(
        console,
        "campaigns",
        f"効果測定: {len(designs)} planted campaigns with known effects ({run.work}, scale {run.scale}, "
        f"{time.perf_counter() - t0:.0f} s): lift or B vs A, 95 % interval, verdict",
    )
    for line in lines:
        console.print(f"{'':11} {line}", soft_wrap=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_raw_layer(console: Console) -> None:
    """Rows landed in the raw layer, the rejected rows and the files not loaded (with why), read
    from the warehouse: the deliberate bad files are reported here, not as tracebacks."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_name not like '\\_%' escape '\\' order by 1"
        ).fetchall()
        counts = {
            name: con.execute(f'select count(*) from raw."{name}"').fetchone()[0]  # noqa: S608 - names from the catalog
            for (name,) in tables
        }
        rejects = con.execute("select table_name, source_file, line, reason from raw._rejects order by all").fetchall()
        files = con.execute(
            "select status, feed, file_name, coalesce(reason, '') from raw._files where status <> 'loaded' order by all"
        ).fetchall()
    finally:
        con.close()
    largest = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    stage(
        console,
        "raw",
        f"{sum(counts.values()):,} rows in {len(counts)} tables of {paths.warehouse_path()} (largest: "
        + ", ".join(f"{t} {n:,}" for t, n in largest)
        + ")",
    )
    stage(console, "rejects", f"{len(rejects)} rows rejected with line and reason (raw._rejects):")
    for table, file, line, reason in rejects[:8]:
        console.print(f"{'':12}{file} line {line} → {table}: {str(reason)[:90]}", soft_wrap=True)
    if len(rejects) > 8:
        console.print(f"{'':12}… {len(rejects) - 8} more in raw._rejects")
    stage(
        console,
        "files",
        f"{len(files)} files not loaded (raw._files; quarantined files moved to "
        f"{paths.sources_dir() / 'sftp' / 'quarantine'}):",
    )
    for status, feed, name, reason in files:
        console.print(f"{'':12}{status}: {feed}/{name}: {reason[:100]}", soft_wrap=True)


# ---- activation: the sample audiences to every destination, on loopback ------------------------------

DEMO_LINE_TOKEN = "demo-line-channel-token"  # noqa: S105 - loopback fakes' credentials, not secrets
DEMO_ESP_KEY = "demo-esp-key"
DEMO_SMS_SID = "ACdemo00000000000000000000000000"
DEMO_SMS_TOKEN = "demo-sms-token"  # noqa: S105
DEMO_S3_REGION = "ap-northeast-1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_destinations(stack: ExitStack, drop) -> dict[str, str]:
    """The destination systems on loopback (LINE, ESP and SMS fakes, an aiosmtpd relay, a moto S3
    with the export bucket; DM and 同梱物 files go to the demo's SFTP server), stopped with
    `stack`. Returns the Airflow connections (AIRFLOW_CONN_*) include/destinations.yml names."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink
    from moto.server import ThreadedMotoServer

    from yorisoi.activation.selection.definitions import load_destinations

    from .servers import esp, line, sms

    destinations = load_destinations()
    lists = sorted({str(d.options().get("list_id")) for d in destinations if d.kind == "esp_list"} | {"main"})
    buckets = sorted({str(d.options()["bucket"]) for d in destinations if d.kind == "s3_file"})
    line_api = stack.enter_context(line.serve_in_thread(DEMO_LINE_TOKEN))
    esp_api = stack.enter_context(esp.serve_in_thread(DEMO_ESP_KEY, list_ids=lists))
    sms_api = stack.enter_context(sms.serve_in_thread(DEMO_SMS_SID, DEMO_SMS_TOKEN))
    smtp = Controller(Sink(), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    stack.callback(smtp.stop)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    stack.callback(moto.stop)
    s3_host, s3_port = moto.get_host_and_port()
    s3_endpoint = f"http://{s3_host}:{s3_port}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=DEMO_S3_REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - moto's
    )
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": DEMO_S3_REGION})

    sftp_conn = {
        "conn_type": "sftp",
        "host": drop.host,
        "port": drop.port,
        "login": DEMO_SFTP_USER,
        "password": DEMO_SFTP_PASSWORD,
        "extra": {"host_key": drop.host_key_public, "no_host_key_check": False},
    }
    by_kind = {
        "line_multicast": {"conn_type": "http", "host": line_api.base_url, "password": DEMO_LINE_TOKEN},
        "line_audience": {"conn_type": "http", "host": line_api.base_url, "password": DEMO_LINE_TOKEN},
        "esp_list": {"conn_type": "http", "host": esp_api.base_url, "password": DEMO_ESP_KEY},
        "sms": {
            "conn_type": "http",
            "host": sms_api.base_url,
            "login": DEMO_SMS_SID,
            "password": DEMO_SMS_TOKEN,
            "extra": {"from_number": "+815012345678"},
        },
        "smtp_email": {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp.port,
            "extra": {
                "from_email": "news@yorisoi-tea.example.jp",
                "disable_tls": True,
                "disable_ssl": True,
                "timeout": 10,
            },
        },
        "sftp_dm_list": sftp_conn,
        "sftp_insert_list": sftp_conn,
        "s3_file": {
            "conn_type": "aws",
            "login": "demo",
            "password": "demo",
            "extra": {"endpoint_url": s3_endpoint, "region_name": DEMO_S3_REGION},
        },
    }
    conns = {f"AIRFLOW_CONN_{d.conn_id.upper()}": json.dumps(by_kind[d.kind]) for d in destinations}
    conns["_S3_ENDPOINT"] = s3_endpoint
    return conns


def destinations_env_file() -> Path:
    """Where `yorisoi serve destinations` writes the Airflow connections of the running servers."""
    return paths.var_dir() / "destinations.env"


def serve_destinations(stack: ExitStack) -> dict[str, str]:
    """The demo's stand-in destinations again, after the demo: LINE, ESP and SMS fakes, an SMTP
    sink, a moto S3 with the export buckets and the SFTP server (DM and 同梱物 files), on loopback
    for as long as `stack` is open. Their Airflow connections (AIRFLOW_CONN_*) are written to
    var/destinations.env (mode 600), for `set -a; . var/destinations.env; set +a` in the shell
    that runs `yorisoi activation test-send`; returned as well."""
    import shlex

    from .servers import sftp

    drop = stack.enter_context(
        sftp.serve_in_thread(
            paths.sources_dir() / "sftp",
            username=DEMO_SFTP_USER,
            password=DEMO_SFTP_PASSWORD,
            host_key_path=paths.var_dir() / "keys" / "sftp_host_ed25519",
        )
    )
    conns = start_destinations(stack, drop)
    conns.pop("_S3_ENDPOINT")
    conns |= {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}  # moto's
    env = destinations_env_file()
    env.parent.mkdir(parents=True, exist_ok=True)
    env.touch(mode=0o600)
    env.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in conns.items()), "utf-8")
    return conns


def _exported_files(kind: str, options: dict, audience: str, *, drop_root: Path, s3_endpoint: str) -> str:
    """Where a file destination's export of `audience` landed (the newest file)."""
    if kind in ("sftp_dm_list", "sftp_insert_list"):
        folder = drop_root / str(options.get("remote_dir", "")).lstrip("/") / audience
        found = sorted(
            (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and "manifest" not in p.name),
            key=lambda p: p.stat().st_mtime,
        )
        return f"sftp:/{found[-1].relative_to(drop_root)}" if found else ""
    if kind == "s3_file":
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name=DEMO_S3_REGION,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",  # noqa: S106 - moto's
        )
        prefix = str(options.get("prefix", ""))
        items = s3.list_objects_v2(Bucket=options["bucket"], Prefix=prefix).get("Contents", [])
        items = [i for i in items if audience in i["Key"] and "manifest" not in i["Key"]]
        items.sort(key=lambda i: i["LastModified"])
        return f"s3://{options['bucket']}/{items[-1]['Key']}" if items else ""
    return ""


DEMO_ADMIN = "admin@yorisoi-tea.example.jp"  # the brand's admin, who approves the sample audiences


def run_activation(stack: ExitStack, drop, console: Console) -> None:
    """Send the sample audiences (audiences/*.yml) to every destination of include/destinations.yml,
    on loopback, as the activate_audiences DAG's tasks do (plan → allocate once, with the circuit
    breaker and arbitration across audiences → one export per pair), and print the sync summary
    read from the activation store's sync_runs."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from yorisoi.activation import approvals, run
    from yorisoi.activation.delivery.store import sync_runs

    t0 = time.perf_counter()
    conns = start_destinations(stack, drop)
    s3_endpoint = conns.pop("_S3_ENDPOINT")
    os.environ.update(conns)
    ctx = run.Context.load()
    # Four eyes before a first real send (docs/roles.md): the CRM team that owns each sample
    # audience requests its definition, the brand's admin approves it; both land in the operation log.
    for audience in ctx.audiences:
        if approvals.approval_of(audience) is None:
            approvals.request(audience, role="scenario_author", actor=audience.owner)
            approvals.approve(audience, role="admin", actor=DEMO_ADMIN)
    now = datetime.now(UTC)
    marts = ["marts.trigger_audiences", "marts.customer_status", "marts.segment_4r"]
    # after a segment build, and every scheduled audience's last fire time within the week
    due = run.due(now, since=now - timedelta(days=7), triggered_by=marts, context=ctx)
    seen: set[tuple[str, str]] = set()
    due = [d for d in due if (d.audience, d.destination) not in seen and not seen.add((d.audience, d.destination))]
    allocation = run.allocate(due, as_of=now, context=ctx)
    tripped: dict[str, list[str]] = {}
    for name, decision in allocation.decisions.items():
        if not decision["passed"]:
            tripped.setdefault(decision["reason"], []).append(name)
    for reason, names in tripped.items():
        stage(console, "breaker", f"[bold red]nothing sent for {', '.join(names)}[/]: {reason}")
    results = []
    for d in due:
        try:
            results.append(
                run.activate(
                    d.audience,
                    d.destination,
                    run_id=allocation.run_id,
                    interval=d.interval,
                    as_of=now,
                    context=ctx,
                    role="admin",
                )
            )
        except Exception as e:  # one destination's failure is shown, the rest still run
            results.append({"audience": d.audience, "destination": d.destination, "status": "failed", "reason": str(e)})
    sync_ids = [r["sync"]["run_id"] for r in results if r.get("sync", {}).get("run_id")]
    with ctx.store.engine.connect() as con:
        rows = {
            (r.audience, r.destination): r
            for r in con.execute(sa.select(sync_runs).where(sync_runs.c.run_id.in_(sync_ids))).fetchall()
        }
    table = Table(
        "audience",
        "destination",
        "mode",
        "treated / control",
        "+ adds ~ updates − removes",
        "delivered",
        "rejected",
        "skipped",
        "file written",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        title=f"audience syncs of activation run {allocation.run_id} (store {ctx.store.url})",
    )
    problems: list[str] = []
    for r in results:
        a, dest = r["audience"], r["destination"]
        stats = allocation.stats.get(a, {})
        members = stats.get("members")
        control = stats.get("control", 0)
        who = f"{members - control:,} / {control:,}" if members is not None else "-"
        row = rows.get((a, dest))
        if row is None:
            status = r.get("status", "")
            table.add_row(a, dest, f"[red]{status}[/]", who, *["-"] * 5)
            why = "circuit breaker (reason above)" if status == "skipped" else str(r.get("reason", ""))
            problems.append(f"{'':12}{a} → {dest}: [red]{status}[/]: {why}")
            continue
        cfg = ctx.destinations[dest]
        path = _exported_files(cfg.kind, cfg.options(), a, drop_root=drop.root, s3_endpoint=s3_endpoint)
        table.add_row(
            a,
            dest,
            row.mode,
            who,
            f"+{row.adds:,} ~{row.updates:,} −{row.removes:,}",
            *(f"{getattr(row, c):,}" for c in ("delivered", "rejected", "skipped")),
            path,
        )
    stage(
        console,
        "activation",
        f"{len(due)} (audience, destination) pairs to the stand-in LINE, ESP, SMS, SMTP, S3 and SFTP "
        f"in {time.perf_counter() - t0:.0f} s:",
    )
    console.print(table)
    for line in problems:
        console.print(line, soft_wrap=True)


def pinned_sftp(host: str, port: int, host_key_line: str, username: str, password: str) -> paramiko.SFTPClient:
    """An SFTP client that accepts only the pinned server key (RejectPolicy for anything else)."""
    client = paramiko.SSHClient()
    key_type, key_b64 = host_key_line.split()[:2]
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{host}]:{port}", key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=port, username=username, password=password, look_for_keys=False, allow_agent=False)
    return client.open_sftp()


def announce_defects(console: Console, out: Path) -> None:
    """Say up front which bad files the demo drops on purpose, and what must happen to each."""
    try:
        defects = json.loads((out / "truth" / "defects.json").read_text("utf-8"))
    except (OSError, ValueError):
        return
    stage(
        console,
        "on purpose",
        f"{len(defects)} bad files among the SFTP drops ({out / 'truth' / 'defects.json'}); "
        "ingest_sftp loads the good files, reports these below and fails, so its alert fires:",
    )
    for d in defects:
        console.print(f"{'':12}{d['file']}: {d['defect']} → {d['expect']}", soft_wrap=True)


def run_demo(
    scale: str,
    seed: int,
    *,
    keep_serving: bool,
    generate: Callable[[str, int, Path], None],
    ingest: bool = True,
    console: Console,
) -> None:
    """The demo as a short story on `console`: one line per stage; Airflow's, dbt's and Great
    Expectations' logs (and any traceback) go to var/demo.log."""
    from .demo_log import quiet_third_party_warnings, story_and_log

    log_path = paths.var_dir() / "demo.log"
    quiet_third_party_warnings()
    t0 = time.perf_counter()
    with story_and_log(log_path) as story:
        story.print(
            f"[bold]Yorisoi demo[/]: the synthetic tea brand よりそい茶舗 at scale {scale} (seed {seed}), "
            f"from its source systems to audiences on every channel. Logs: {log_path}",
            soft_wrap=True,
        )
        try:
            _run_demo(scale, seed, keep_serving=keep_serving, generate=generate, ingest=ingest, console=story)
        except Exception as e:  # the story says where it stopped; the traceback goes to the log
            logging.getLogger(__name__).exception("the demo stopped")
            why = str(e) if isinstance(e, DemoFailed) else f"{type(e).__name__}: {e}"
            story.print(f"[bold red]stopped[/]: {why} (the traceback is in {log_path})", soft_wrap=True)
            raise SystemExit(1) from None
        story.print(
            f"[bold green]done[/] in {(time.perf_counter() - t0) / 60:.1f} min. Next: open the report; "
            "`make airflow` shows these runs and their task logs; `yorisoi serve destinations` brings the "
            "stand-in destinations back for `yorisoi activation test-send cart_abandonment --role content_author`; "
            "docs/runbook.md says what to do about each failure above.",
            soft_wrap=True,
        )


def _run_demo(
    scale: str,
    seed: int,
    *,
    keep_serving: bool,
    generate: Callable[[str, int, Path], None],
    ingest: bool,
    console: Console,
) -> None:
    from yorisoi.transform import brand_as_of

    from .servers import ecommerce, sftp
    from .synth.stats import summarize

    out = paths.sources_dir()
    airflow_environment()
    for noisy in ("asyncssh", "paramiko", "httpx", "uvicorn.access", "werkzeug", "mail.log", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if _up_to_date(out, scale, seed):
        stage(console, "sources", f"already generated at {out} (scale {scale}, seed {seed})")
    else:
        t0 = time.perf_counter()
        generate(scale, seed, out)
        stage(console, "sources", f"generated in {time.perf_counter() - t0:.0f} s at {out}")
    summary = summarize(out)
    # The synthetic data ends on the brand's as-of day; segments and triggers are built for it.
    os.environ.setdefault("YORISOI_AS_OF", brand_as_of(out))
    ladder = " → ".join(f"F{x['f']} {x['to_next']:.0%}" for x in summary["f_ladder"][:4])
    stage(
        console,
        "brand",
        f"{summary['people']:,} people as of {os.environ['YORISOI_AS_OF']} · LINE linked "
        f"{summary['line_link_share']:.0%} · {summary['orders_per_person']} orders per person · true retention "
        f"{ladder} · ground truth {out / 'truth'}",
    )
    announce_defects(console, out)

    with ExitStack() as stack:
        # Shopify's REST limit (a bucket of 40, 2 requests/s) would make the demo wait minutes;
        # the demo shop leaks faster, and still answers 429 when the bucket is full.
        shop = stack.enter_context(
            ecommerce.serve_in_thread(out / "ecommerce", api_key=DEMO_API_KEY, bucket_size=40, leak_per_second=50)
        )
        drop = stack.enter_context(
            sftp.serve_in_thread(
                out / "sftp",
                username=DEMO_SFTP_USER,
                password=DEMO_SFTP_PASSWORD,
                host_key_path=paths.var_dir() / "keys" / "sftp_host_ed25519",
            )
        )
        headers = {"X-Shopify-Access-Token": DEMO_API_KEY}
        with httpx.Client(base_url=shop.base_url, headers=headers, timeout=30) as http:
            counts = {
                r: http.get(f"/admin/api/2025-01/{r}/count.json").json()["count"]
                for r in ("customers", "orders", "products")
            }
        stage(
            console,
            "e-commerce",
            f"{shop.base_url}/admin/api/2025-01 (httpx): {counts['customers']:,} customers, "
            f"{counts['orders']:,} orders, {counts['products']:,} products",
        )
        client = pinned_sftp(drop.host, drop.port, drop.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD)
        feeds = {
            feed: len([f for f in client.listdir(f"/inbox/{feed}") if f.endswith(".csv")])
            for feed in sorted(client.listdir("/inbox"))
        }
        client.close()
        stage(
            console,
            "SFTP",
            f"sftp://{drop.host}:{drop.port}/inbox (paramiko, host key pinned): "
            + ", ".join(f"{k} {v} files" for k, v in feeds.items()),
        )
        with sqlite3.connect(f"file:{out / 'oms' / 'oms.sqlite'}?mode=ro", uri=True) as con:
            oms = {
                t: con.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("customers", "orders", "order_lines", "subscriptions")
            }
        stage(
            console,
            "OMS",
            f"{out / 'oms' / 'oms.sqlite'} (yorisoi oms load copies it to PostgreSQL / MariaDB): "
            + ", ".join(f"{k} {v:,}" for k, v in oms.items()),
        )

        if ingest:
            os.environ.update(demo_connections(shop, drop, out / "oms" / "oms.sqlite"))
            run_ingest_dags(console)
            print_raw_layer(console)
            run_customer_model(console)
            print_customer_layer(console)
            run_segments(console, seed_segment_history())
            print_segments(console)
            run_governance(console)
            run_activation(stack, drop, console)
            run_report(console)
            print_campaign_results(scale, console)
        if keep_serving:
            console.print(
                f"Serving. API key header X-Shopify-Access-Token: {DEMO_API_KEY}; SFTP user "
                f"{DEMO_SFTP_USER}. Ctrl-C stops."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
