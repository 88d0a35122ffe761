"""`make demo`: the synthetic brand's source systems on loopback, ingested by Airflow.

Generates the brand into var/sources (skipped when the same scale and seed are already there,
with the deliberately bad drops of synth/defects.py), starts the e-commerce API and the SFTP
server, reaches each source through the client a pipeline would use, then runs the three ingest
DAGs through Airflow (`dag.test()`, against a migrated SQLite metadata DB in var/airflow) and
prints the rows landed per raw table, the rejected rows and the quarantined files."""

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


def _test_dag(dag_id: str, console: Console) -> str:
    """Load dags/<dag_id>.py into a DagBag, run the DAG once with dag.test(); its final state."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise RuntimeError(f"{dag_id} does not load: {bag.import_errors}")
    t0 = time.perf_counter()
    run = bag.get_dag(dag_id).test()
    state = str(getattr(run, "state", "unknown"))
    console.print(f"{dag_id}: {state} in {time.perf_counter() - t0:.1f} s")
    return state


def run_ingest_dags(console: Console) -> dict[str, str]:
    """Run ingest_ecommerce, ingest_oms and ingest_sftp once each through Airflow; returns the
    final state of each run (a failed sftp run is expected when the drops hold bad files)."""
    _airflow("db", "migrate")
    _airflow("pools", "set", POOL, "1", "DuckDB has a single writer")
    states = {name: _test_dag(f"ingest_{name}", console) for name in ("ecommerce", "oms", "sftp")}
    if states.get("sftp") == "failed":
        console.print(
            "[yellow]ingest_sftp failed on purpose:[/] the demo drops hold bad files (truth/defects.json); "
            "the good files loaded, the bad ones are listed below and nothing downstream runs on them."
        )
    return states


def run_customer_model(console: Console) -> str:
    """Build the customer layer through the `build_customer_model` DAG (dbt inside Airflow),
    with the demo's match key passed as the Airflow connection production uses."""
    from yorisoi.privacy.keys import ensure_demo_key
    from yorisoi.transform import MATCH_KEY_CONN_ID

    secret = ensure_demo_key(paths.match_key_file()).read_text().strip()
    os.environ[f"AIRFLOW_CONN_{MATCH_KEY_CONN_ID.upper()}"] = json.dumps({"conn_type": "generic", "password": secret})
    state = _test_dag("build_customer_model", console)
    if state != "success":
        raise RuntimeError("build_customer_model failed: see the log above")
    return state


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
    console.print(f"[bold]{people:,} people[/] resolved from {records:,} source records")
    table = Table("channel", "opted in", "opted out", "deliverable", title="Consent and deliverable customers")
    for ch, opted_in, opted_out, deliverable in rows:
        table.add_row(ch, f"{opted_in:,}", f"{opted_out:,}", f"{deliverable:,}")
    console.print(table)
    console.print("Exclusions (person × channel): " + ", ".join(f"{r} {n:,}" for r, n in reasons))
    console.print(f"Analysts' database (no raw personal data): {paths.analytics_path()}")


HISTORY_DAYS_BEFORE = 91  # the earlier day the report's migration view compares with


def seed_segment_history(console: Console) -> None:
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
    console.print(f"Segment history: {earlier} added for the migration view in {time.perf_counter() - t0:.1f} s")


def run_segments(console: Console) -> str:
    """Build the segment marts through the `build_segments` DAG, for the brand's as-of day."""
    state = _test_dag("build_segments", console)
    if state != "success":
        raise RuntimeError("build_segments failed: see the log above")
    return state


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
    table = Table(
        "step",
        "customers at F",
        "converted (all time)",
        "within 365 days",
        title=f"F-ladder (F別継続率), as of {as_of}",
    )
    for f, at_f, rate, rate_365 in ladder:
        table.add_row(f"F{f}→F{f + 1}", f"{at_f:,}", _pct(rate), _pct(rate_365))
    console.print(table)
    table = Table("status", "", "customers", "lifetime spend (yen)", title="Customer status (顧客ステータス)")
    for status, status_ja, n, spend in statuses:
        table.add_row(status, status_ja, f"{n:,}", f"{int(spend):,}")
    console.print(table)
    console.print("Trigger audiences today: " + (", ".join(f"{t} {n:,}" for t, n in triggers) or "none"))


def run_governance(console: Console) -> None:
    """The role databases (marts without personal-data columns, for scenario and content
    authors) and the data-definition document, through its DAG."""
    from yorisoi.roles import build_role_databases

    built = build_role_databases()
    console.print(
        "Role databases (no personal-data columns): "
        + ", ".join(f"{db.role} {len(db.tables)} tables at {db.path}" for db in built.values())
    )
    if _test_dag("build_data_definition", console) != "success":
        raise RuntimeError("build_data_definition failed: see the log above")
    document = paths.out_dir() / "docs" / "data-definition" / "index.html"
    console.print(f"Data-definition document (データ項目定義書): {document}")


def run_report(console: Console) -> None:
    """The CRM report through its DAG (after the activation run, so its funnels show it)."""
    if _test_dag("build_report", console) != "success":
        raise RuntimeError("build_report failed: see the log above")
    folder = paths.out_dir() / "report"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    console.print(
        f"CRM report (CRMレポート): {folder / 'index.html'} (English: en.html), {size / 1e6:.2f} MB, "
        "opens offline in any browser"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_raw_layer(console: Console) -> None:
    """Rows per raw table, rejected rows and the file ledger, read from the warehouse."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_name not like '\\_%' escape '\\' order by 1"
        ).fetchall()
        table = Table("raw table", "rows", "watermark", title="Raw layer (var/warehouse.duckdb)")
        marks = dict(
            ((s + "__" + t), w)
            for s, t, w in con.execute("select source, table_name, watermark from raw._watermarks").fetchall()
        )
        for (name,) in tables:
            n = con.execute(f'select count(*) from raw."{name}"').fetchone()[0]  # noqa: S608 - names from the catalog
            table.add_row(name, f"{n:,}", marks.get(name, ""))
        console.print(table)
        rejects = con.execute("select table_name, source_file, line, reason from raw._rejects order by all").fetchall()
        files = con.execute(
            "select status, feed, file_name, coalesce(reason, '') from raw._files where status <> 'loaded' order by all"
        ).fetchall()
    finally:
        con.close()
    rt = Table("table", "file", "line", "reason", title=f"Rejected rows ({len(rejects)})")
    for r in rejects:
        rt.add_row(r[0], r[1], str(r[2]), str(r[3])[:80])
    console.print(rt)
    ft = Table("status", "feed", "file", "reason", title=f"Files not loaded ({len(files)})")
    for f in files:
        ft.add_row(f[0], f[1], f[2], f[3][:80])
    console.print(ft)


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


def run_activation(stack: ExitStack, drop, console: Console) -> None:
    """Send the sample audiences (audiences/*.yml) to every destination of include/destinations.yml,
    on loopback, as the activate_audiences DAG's tasks do (plan → allocate once, with the circuit
    breaker and arbitration across audiences → one export per pair), and print the sync summary
    read from the activation store's sync_runs."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from yorisoi.activation import run
    from yorisoi.activation.delivery.store import sync_runs

    t0 = time.perf_counter()
    conns = start_destinations(stack, drop)
    s3_endpoint = conns.pop("_S3_ENDPOINT")
    os.environ.update(conns)
    ctx = run.Context.load()
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
        console.print(f"[bold red]Circuit breaker: nothing sent for {', '.join(names)}.[/] Reason: {reason}")
    results = []
    for d in due:
        try:
            results.append(
                run.activate(
                    d.audience, d.destination, run_id=allocation.run_id, interval=d.interval, as_of=now, context=ctx
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
        "members\ntreat / ctrl",
        "adds",
        "updates",
        "removes",
        "delivered",
        "rejected",
        "skipped",
        title=f"Audience sync (activation run {allocation.run_id})",
    )
    notes: list[str] = []
    for r in results:
        a, dest = r["audience"], r["destination"]
        stats = allocation.stats.get(a, {})
        members = stats.get("members")
        control = stats.get("control", 0)
        who = f"{members - control:,} / {control:,}" if members is not None else "-"
        row = rows.get((a, dest))
        if row is None:
            status = r.get("status", "")
            table.add_row(a, dest, f"[red]{status}[/]", who, *["-"] * 6)
            why = "circuit breaker (reason above)" if status == "skipped" else str(r.get("reason", ""))
            notes.append(f"  {a} → {dest}: [red]{status}[/]: {why}")
            continue
        table.add_row(
            a,
            dest,
            row.mode,
            who,
            *(f"{getattr(row, c):,}" for c in ("adds", "updates", "removes", "delivered", "rejected", "skipped")),
        )
        cfg = ctx.destinations[dest]
        if path := _exported_files(cfg.kind, cfg.options(), a, drop_root=drop.root, s3_endpoint=s3_endpoint):
            notes.append(f"  {a} → {dest}: {path}")
    # wide enough for the table when the output goes to a file (make demo > log)
    # (rich caps a print at the console's width, so a wider console on the same file)
    wide = console if console.is_terminal else Console(file=console.file, width=max(console.width, 130))
    wide.print(table)
    if notes:
        console.print("Files written and problems:\n" + "\n".join(notes), soft_wrap=True)
    console.print(
        f"activation: {len(due)} (audience, destination) pairs in {time.perf_counter() - t0:.1f} s; "
        f"store {ctx.store.url}"
    )


def pinned_sftp(host: str, port: int, host_key_line: str, username: str, password: str) -> paramiko.SFTPClient:
    """An SFTP client that accepts only the pinned server key (RejectPolicy for anything else)."""
    client = paramiko.SSHClient()
    key_type, key_b64 = host_key_line.split()[:2]
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{host}]:{port}", key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=port, username=username, password=password, look_for_keys=False, allow_agent=False)
    return client.open_sftp()


def run_demo(
    scale: str,
    seed: int,
    *,
    keep_serving: bool,
    generate: Callable[[str, int, Path], None],
    ingest: bool = True,
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
        console.print(f"[green]sources already generated[/] at {out} (scale {scale}, seed {seed})")
    else:
        generate(scale, seed, out)
    summary = summarize(out)
    # The synthetic data ends on the brand's as-of day; segments and triggers are built for it.
    os.environ.setdefault("YORISOI_AS_OF", brand_as_of(out))

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

        table = Table("source", "served at", "checked with", "what it answered", title="Source systems on loopback")
        headers = {"X-Shopify-Access-Token": DEMO_API_KEY}
        with httpx.Client(base_url=shop.base_url, headers=headers, timeout=30) as http:
            t0 = time.perf_counter()
            counts = {
                r: http.get(f"/admin/api/2025-01/{r}/count.json").json()["count"]
                for r in ("customers", "orders", "products")
            }
            page = http.get("/admin/api/2025-01/orders.json", params={"limit": 250})
            page.raise_for_status()
            ms = (time.perf_counter() - t0) * 1000
        has_next = 'rel="next"' in page.headers.get("link", "")
        table.add_row(
            "e-commerce API",
            shop.base_url + "/admin/api/2025-01",
            "httpx",
            f"{counts['customers']:,} customers, {counts['orders']:,} orders, {counts['products']:,} "
            f"products; first page {len(page.json()['orders'])} orders, Link next={has_next} ({ms:.0f} ms)",
        )

        client = pinned_sftp(drop.host, drop.port, drop.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD)
        feeds = {
            feed: len([f for f in client.listdir(f"/inbox/{feed}") if f.endswith(".csv")])
            for feed in sorted(client.listdir("/inbox"))
        }
        client.close()
        table.add_row(
            "SFTP drops",
            f"sftp://{drop.host}:{drop.port}/inbox",
            "paramiko, host key pinned",
            ", ".join(f"{k}: {v} files" for k, v in feeds.items()),
        )

        with sqlite3.connect(f"file:{out / 'oms' / 'oms.sqlite'}?mode=ro", uri=True) as con:
            oms = {
                t: con.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("customers", "orders", "order_lines", "subscriptions")
            }
        table.add_row(
            "OMS database",
            str(out / "oms" / "oms.sqlite"),
            "sqlite3 (yorisoi oms load → PG/MariaDB)",
            ", ".join(f"{k} {v:,}" for k, v in oms.items()),
        )
        console.print(table)

        ladder = " → ".join(f"F{x['f']} {x['to_next']:.0%}" for x in summary["f_ladder"][:4])
        console.print(
            f"[bold]{summary['people']:,} people[/] · records per source {summary['records_per_source']} · "
            f"LINE linked {summary['line_link_share']:.0%} · {summary['orders_per_person']} orders per person · "
            f"retention {ladder}"
        )
        console.print("Ground truth: " + str(out / "truth"))

        if ingest:
            os.environ.update(demo_connections(shop, drop, out / "oms" / "oms.sqlite"))
            run_ingest_dags(console)
            print_raw_layer(console)
            run_customer_model(console)
            print_customer_layer(console)
            seed_segment_history(console)
            run_segments(console)
            print_segments(console)
            run_governance(console)
            run_activation(stack, drop, console)
            run_report(console)
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
