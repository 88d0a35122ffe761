"""The pipeline under a real Airflow scheduler, as production runs it (README, "Scaling out").

What `make demo` runs with `dag.test()` (one process, one task at a time) must also work when
scheduled: Airflow's metadata on PostgreSQL (a database of its own, created for the run and
dropped after), the api-server, scheduler and dag-processor as separate processes, the
LocalExecutor with a bounded parallelism, the real DAG files and the duckdb_writer pool of one slot.
The XS brand's sources are served on loopback; the activation store is on PostgreSQL too; one
audience (approved, as a first real send must be) goes to the stand-in mailing house over SFTP.

The ingest, customer-build, segment-build and activation DAGs are switched on; their schedules
start the ingest runs, the raw tables' assets trigger the customer builds, the customer marts'
assets the segment builds, the segment marts' assets the activation. Then the metadata database
is read: every task instance's state, the order of the asset-triggered runs (start and end
times, and which producer run each consumed event came from), the writers' intervals (never two
at once), and the export's file and send ledger.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
INGEST = ("ingest_ecommerce", "ingest_oms", "ingest_sftp")
BUILDS = ("build_customer_model", "build_segments", "activate_audiences")
DAGS = INGEST + BUILDS
POOL = "duckdb_writer"
AUDIENCE = "vip_letter"
DESTINATION = "sftp_dm_list"
# About 30 VIPs reachable by post at XS; no holdout, so every eligible member is sent.
AUDIENCE_YML = """
name: vip_letter
owner: crm@yorisoi-tea.example.jp
description: A printed letter to every VIP through the mailing house.
selection:
  mart: customer_status
  filters:
    - {column: status, op: "=", value: vip}
channels: [dm]
destinations:
  - name: sftp_dm_list
    columns: [full_name, name_kana, postal_code, prefecture, address]
priority: 1
holdout_percent: 0
columns: [full_name, name_kana, postal_code, prefecture, address]
"""
PARALLELISM = 4  # two shared cores; the writers queue in the pool anyway
DEADLINE_S = 40 * 60
MANIFEST = ".manifest.json"  # beside each published file (yorisoi.activation.delivery.destinations.files)
BASE_URL = os.environ.get("YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg(database: str | None = None):
    """A psycopg connection (autocommit) to the test server, to `database` or the base URL's."""
    import psycopg
    import sqlalchemy as sa

    url = sa.engine.make_url(BASE_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=database or url.database,
        autocommit=True,
    )


def _url(database: str, driver: str = "psycopg") -> str:
    import sqlalchemy as sa

    url = sa.engine.make_url(BASE_URL).set(drivername=f"postgresql+{driver}", database=database)
    return url.render_as_string(hide_password=False)


class Throwaway:
    """Databases created for this run and dropped (connections closed by force) at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, suffix: str) -> str:
        name = f"yorisoi_sched_{secrets.token_hex(4)}_{suffix}"
        with _pg() as con:
            con.execute(f"create database {name}")
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        with _pg() as con:
            for name in self.names:
                con.execute(f"drop database if exists {name} with (force)")


def _approve(audiences_dir: Path) -> None:
    """Four eyes before a first real send: the owner requests the audience, an admin approves it
    (into the operation log under $YORISOI_VAR, where the export task checks it)."""
    from yorisoi.activation import approvals
    from yorisoi.activation.selection.definitions import load_audiences, load_destinations

    for audience in load_audiences(audiences_dir, load_destinations()):
        approvals.request(audience, role="scenario_author", actor=audience.owner)
        approvals.approve(audience, role="admin", actor="admin@yorisoi-tea.example.jp")


class Airflow:
    """api-server, scheduler and dag-processor as separate processes on one metadata database."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []
        self.api = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"

    def cli(self, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"airflow {' '.join(args)}: {proc.stderr[-3000:]}"

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in ("api-server", "scheduler", "dag-processor"):
            out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - open for the process's lifetime
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", name],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def alive(self) -> None:
        for p in self.procs:
            assert p.poll() is None, f"{p.args[3]} stopped: {self.tail(p.args[3])}"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text("utf-8", errors="replace")[-chars:] if path.exists() else ""

    def request(self, method: str, path: str, **kwargs):
        import httpx

        return httpx.request(method, f"{self.api}/api/v2{path}", timeout=30, **kwargs)

    def wait_until(self, what: str, check, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            try:
                if check():
                    return
            except httpx.TransportError:
                pass  # the api-server is not listening yet
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(3)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def _unfinished(con) -> int:
    return con.execute(
        "select count(*) from dag_run where dag_id = any(%s) and state in ('queued', 'running')", (list(DAGS),)
    ).fetchone()[0]


def _pipeline_done(con) -> bool:
    """An asset-triggered activation run has finished, nothing is queued or running and no asset
    event waits for a consumer: the chain has run to its end."""
    activated = con.execute(
        "select count(*) from dag_run where dag_id = 'activate_audiences' "
        "and run_type = 'asset_triggered' and state in ('success', 'failed')"
    ).fetchone()[0]
    waiting = con.execute("select count(*) from asset_dag_run_queue").fetchone()[0]
    return bool(activated) and not waiting and _unfinished(con) == 0


def _failed_runs(con) -> list[tuple]:
    return con.execute(
        "select dag_id, run_id from dag_run where dag_id = any(%s) and state = 'failed'", (list(DAGS),)
    ).fetchall()


def _read_metadata(con) -> dict:
    runs = [
        dict(zip(("dag_id", "run_id", "run_type", "state", "start", "end"), r, strict=True))
        for r in con.execute(
            "select dag_id, run_id, run_type, state, start_date, end_date from dag_run "
            "where dag_id = any(%s) order by start_date",
            (list(DAGS),),
        ).fetchall()
    ]
    tis = [
        dict(zip(("dag_id", "run_id", "task_id", "map_index", "state", "pool", "start", "end"), r, strict=True))
        for r in con.execute(
            "select dag_id, run_id, task_id, map_index, state, pool, start_date, end_date from task_instance "
            "where dag_id = any(%s) order by start_date",
            (list(DAGS),),
        ).fetchall()
    ]
    # Which producer run emitted each asset event a run consumed.
    consumed = [
        dict(zip(("dag_id", "run_id", "asset", "source_dag_id", "source_run_id", "at"), r, strict=True))
        for r in con.execute(
            "select r.dag_id, r.run_id, a.name, e.source_dag_id, e.source_run_id, e.timestamp "
            "from dagrun_asset_event as c join dag_run as r on r.id = c.dag_run_id "
            "join asset_event as e on e.id = c.event_id join asset as a on a.id = e.asset_id"
        ).fetchall()
    ]
    pool_slots = con.execute("select slots from slot_pool where pool = %s", (POOL,)).fetchone()
    return {"runs": runs, "tis": tis, "consumed": consumed, "pool_slots": pool_slots[0] if pool_slots else None}


def _read_ledger(database: str) -> dict:
    with _pg(database) as con:
        syncs = [
            dict(zip(("audience", "destination", "mode", "delivered", "rejected", "adds"), r, strict=True))
            for r in con.execute(
                "select audience, destination, mode, delivered, rejected, adds from sync_runs"
            ).fetchall()
        ]
        sends = dict(
            con.execute(
                "select destination, count(*) from send_ledger where audience = %s and status = 'sent' group by 1",
                (AUDIENCE,),
            )
        )
    return {"syncs": syncs, "sends": sends}


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the pipeline once under the scheduler; what the metadata DB, the activation store and
    the SFTP drop hold afterwards, and the seconds it took."""
    from yorisoi.transform import MATCH_KEY_CONN_ID, brand_as_of
    from yorisoi_kit.demo import (
        DEMO_API_KEY,
        DEMO_SFTP_PASSWORD,
        DEMO_SFTP_USER,
        demo_connections,
        start_destinations,
    )
    from yorisoi_kit.servers import ecommerce, sftp
    from yorisoi_kit.synth import generate

    work = tmp_path_factory.mktemp("scheduled")
    var = work / "var"
    brand = var / "sources"
    t0 = time.perf_counter()
    generate(brand, scale="XS", seed=1)
    generated_s = time.perf_counter() - t0
    audiences = work / "audiences"
    audiences.mkdir()
    (audiences / f"{AUDIENCE}.yml").write_text(AUDIENCE_YML, "utf-8")

    dbs = Throwaway()
    with ExitStack() as stack:
        stack.callback(dbs.drop_all)
        metadata_db, activation_db = dbs.create("airflow"), dbs.create("activation")
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("YORISOI_VAR", str(var))
        mp.setenv("YORISOI_AUDIENCES_DIR", str(audiences))
        _approve(audiences)

        shop = stack.enter_context(
            ecommerce.serve_in_thread(brand / "ecommerce", api_key=DEMO_API_KEY, bucket_size=40, leak_per_second=200)
        )
        drop = stack.enter_context(
            sftp.serve_in_thread(
                brand / "sftp", username=DEMO_SFTP_USER, password=DEMO_SFTP_PASSWORD, host_key_path=work / "host_key"
            )
        )
        mp.setenv("AWS_ACCESS_KEY_ID", "demo")  # moto's, for the stand-in S3
        mp.setenv("AWS_SECRET_ACCESS_KEY", "demo")
        destinations = start_destinations(stack, drop)
        destinations.pop("_S3_ENDPOINT")

        port = _free_port()
        home = work / "airflow"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env |= {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _url(metadata_db),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": _url(metadata_db, "psycopg_async"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # loopback only, for the test's REST calls
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "YORISOI_AS_OF": brand_as_of(brand),
            "YORISOI_ACTIVATION_URL": _url(activation_db),
            f"AIRFLOW_CONN_{MATCH_KEY_CONN_ID.upper()}": json.dumps(
                {"conn_type": "generic", "password": secrets.token_hex(16)}
            ),
            **demo_connections(shop, drop, brand / "oms" / "oms.sqlite"),
            **destinations,
        }
        airflow = Airflow(env, work / "logs")
        t0 = time.perf_counter()
        airflow.cli("db", "migrate")
        migrate_s = time.perf_counter() - t0
        airflow.start()
        stack.callback(airflow.stop)
        airflow.wait_until("the api-server", lambda: airflow.request("GET", "/monitor/health").status_code == 200, 300)
        answer = airflow.request(
            "POST", "/pools", json={"name": POOL, "slots": 1, "description": "DuckDB has a single writer"}
        )
        assert answer.status_code in (200, 201), answer.text

        def parsed() -> bool:
            found = {d["dag_id"] for d in airflow.request("GET", "/dags", params={"limit": 100}).json()["dags"]}
            return set(DAGS) <= found

        airflow.wait_until("the DAGs to be parsed", parsed, 600)
        # Consumers first, so no asset event of the first ingest run finds its consumer paused.
        t0 = time.perf_counter()
        for dag_id in (*BUILDS, *INGEST):
            answer = airflow.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            assert answer.status_code == 200, answer.text

        with _pg(metadata_db) as con:

            def done() -> bool:
                failed = _failed_runs(con)
                assert not failed, f"failed runs: {failed}; task logs under {home / 'logs'}"
                return _pipeline_done(con)

            airflow.wait_until("the pipeline to run to the activation", done, DEADLINE_S)
            pipeline_s = time.perf_counter() - t0
            metadata = _read_metadata(con)
        ledger = _read_ledger(activation_db)
        # The mailing house's folder: each published file and its manifest (written last).
        outbound = drop.root / "outbound" / "dm"
        exported = [
            {
                **json.loads(m.read_text("utf-8")),
                "sha256_of_file": hashlib.sha256(m.with_name(m.name.removesuffix(MANIFEST)).read_bytes()).hexdigest(),
            }
            for m in sorted(outbound.rglob(f"*{MANIFEST}"))
        ]
        alerts_file = var / "activation" / "alerts.jsonl"
        alerts = (
            [json.loads(line) for line in alerts_file.read_text("utf-8").splitlines()] if alerts_file.exists() else []
        )
    timings = {"generate_s": round(generated_s), "migrate_s": round(migrate_s), "pipeline_s": round(pipeline_s)}
    print(f"\nscheduled pipeline at XS: {json.dumps(timings)}")
    return {**metadata, "ledger": ledger, "exported": exported, "alerts": alerts, "timings": timings}


def _runs(scheduled: dict, dag_id: str, run_type: str | None = None) -> list[dict]:
    return [r for r in scheduled["runs"] if r["dag_id"] == dag_id and run_type in (None, r["run_type"])]


def _tis_of(scheduled: dict, run: dict) -> list[dict]:
    return [t for t in scheduled["tis"] if (t["dag_id"], t["run_id"]) == (run["dag_id"], run["run_id"])]


def test_every_run_and_task_succeeded(scheduled: dict) -> None:
    runs = scheduled["runs"]
    assert {r["state"] for r in runs} == {"success"}, [(r["dag_id"], r["run_id"], r["state"]) for r in runs]
    # Each ingest DAG's schedule started it when switched on (and again if the test ran past its
    # next hour); every table's task landed.
    for dag_id in INGEST:
        for run in _runs(scheduled, dag_id):
            assert run["run_type"] == "scheduled"
            tis = _tis_of(scheduled, run)
            assert tis and {t["state"] for t in tis} == {"success"}, tis
    for dag_id in BUILDS:
        triggered = _runs(scheduled, dag_id, "asset_triggered")
        assert triggered, f"{dag_id} never ran on its assets"
        for run in triggered:
            tis = [t for t in _tis_of(scheduled, run) if t["task_id"] != "export"]  # exports: below
            assert tis and {t["state"] for t in tis} == {"success"}, tis
    # Other runs are the daily / 15-minute schedules' first ticks: before any customer build a
    # segment build skips (nothing to segment yet), a tick with no scheduled audience sends nothing.
    for run in scheduled["runs"]:
        if run["dag_id"] in BUILDS and run["run_type"] == "scheduled":
            assert {t["state"] for t in _tis_of(scheduled, run)} <= {"success", "skipped"}


def test_ingest_runs_side_by_side_and_writers_one_at_a_time(scheduled: dict) -> None:
    ingest = [_runs(scheduled, dag_id)[0] for dag_id in INGEST]  # the first of each (runs are by start)
    # The three ingest runs were running at the same time (LocalExecutor, parallelism > 1) ...
    assert max(r["start"] for r in ingest) < min(r["end"] for r in ingest)
    # ... and their landing tasks, like every warehouse writer, queued for the pool's one slot.
    assert scheduled["pool_slots"] == 1
    writers = sorted((t for t in scheduled["tis"] if t["pool"] == POOL and t["start"]), key=lambda t: t["start"])
    landed = [t for t in writers if t["dag_id"] in INGEST]
    assert len(landed) >= 10  # every enabled table of the three sources but the children (order lines)
    assert {t["dag_id"] for t in writers} >= {*INGEST, "build_customer_model", "build_segments", "activate_audiences"}
    overlaps = [
        (a["dag_id"], a["task_id"], b["dag_id"], b["task_id"])
        for a, b in itertools.pairwise(writers)
        if b["start"] < a["end"]
    ]
    assert overlaps == [], overlaps
    # Nothing took the slot between a build's two steps (the raw gate and dbt; dbt and the marts
    # gate): dbt never builds rows the gate has not seen, activation never reads unvalidated marts.
    for dag_id, first, second in (
        ("build_customer_model", "validate_raw", "dbt_build_customer_layer"),
        ("build_segments", "dbt_build_segments", "validate_marts"),
    ):
        for run in _runs(scheduled, dag_id):
            steps = {t["task_id"]: t for t in _tis_of(scheduled, run) if t["state"] == "success"}
            if first not in steps or second not in steps:
                continue  # skipped: a new deployment's first tick
            gap = (steps[first]["end"], steps[second]["start"])
            between = [(t["dag_id"], t["task_id"]) for t in writers if gap[0] <= t["start"] < gap[1]]
            assert between == [], (run["run_id"], between)
    # Tasks outside the pool (planning and the exports) ran beside the writers.
    others = [t for t in scheduled["tis"] if t["pool"] != POOL and t["start"] and t["state"] == "success"]
    assert others


def _triggered_by_finished_builds(scheduled: dict, consumer: dict, producer_dag: str, producer_task: str) -> None:
    """Every event `consumer` consumed came from `producer_task` of a `producer_dag` run, which had
    finished (succeeded) before the event, and the event before the consumer started. (The
    producer run itself may be marked finished a moment after its last task: the scheduler does
    that in the same loop that starts the consumer.)"""
    events = [
        e for e in scheduled["consumed"] if (e["dag_id"], e["run_id"]) == (consumer["dag_id"], consumer["run_id"])
    ]
    assert events, f"{consumer['run_id']} consumed no event"
    for e in events:
        assert e["source_dag_id"] == producer_dag, e
        (task,) = [
            t
            for t in scheduled["tis"]
            if (t["dag_id"], t["run_id"], t["task_id"]) == (producer_dag, e["source_run_id"], producer_task)
        ]
        assert task["state"] == "success" and task["start"] <= e["at"] <= consumer["start"], (e, task, consumer)


def test_asset_triggered_builds_run_in_order(scheduled: dict) -> None:
    customer = _runs(scheduled, "build_customer_model")
    assert customer and all(r["run_type"] == "asset_triggered" for r in customer)
    # One customer build at a time (max_active_runs=1: identity reads its previous result).
    customer.sort(key=lambda r: r["start"])
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(customer))
    first_landing = min(t["end"] for t in scheduled["tis"] if t["dag_id"] in INGEST)
    assert customer[0]["start"] >= first_landing
    for run in customer:
        events = [e for e in scheduled["consumed"] if e["run_id"] == run["run_id"] and e["dag_id"] == run["dag_id"]]
        assert events and {e["source_dag_id"] for e in events} <= set(INGEST)
        assert all(e["asset"].startswith("raw.") for e in events)
    # Every raw table landed was consumed by some customer build.
    consumed_raw = {e["asset"] for e in scheduled["consumed"] if e["dag_id"] == "build_customer_model"}
    assert len(consumed_raw) >= 10
    for run in _runs(scheduled, "build_segments", "asset_triggered"):
        _triggered_by_finished_builds(scheduled, run, "build_customer_model", "dbt_build_customer_layer")
    for run in _runs(scheduled, "activate_audiences", "asset_triggered"):
        _triggered_by_finished_builds(scheduled, run, "build_segments", "validate_marts")
    last_activation = max(r["end"] for r in _runs(scheduled, "activate_audiences", "asset_triggered"))
    assert last_activation >= max(r["end"] for r in customer)


def test_the_audience_was_exported_once_with_its_ledger(scheduled: dict) -> None:
    runs = sorted(_runs(scheduled, "activate_audiences", "asset_triggered"), key=lambda r: r["start"])
    # The last activation, after the last segment build, exported.
    exports = [t for t in _tis_of(scheduled, runs[-1]) if t["task_id"] == "export"]
    assert exports and {t["state"] for t in exports} == {"success"}, exports
    # An earlier one may only have been stopped by the circuit breaker, with its alert.
    for run in runs[:-1]:
        for t in _tis_of(scheduled, run):
            if t["task_id"] == "export" and t["state"] != "success":
                assert t["state"] == "skipped"
                tripped = [a for a in scheduled["alerts"] if a["run_id"] == run["run_id"] and not a["passed"]]
                assert tripped, f"{run['run_id']}: export skipped without a breaker alert"
    syncs = [s for s in scheduled["ledger"]["syncs"] if s["audience"] == AUDIENCE]
    delivered = sum(s["delivered"] for s in syncs if s["destination"] == DESTINATION)
    assert delivered > 0
    # The file at the mailing house is complete (its checksum is the manifest's) and holds the
    # delivered members.
    files = [m for m in scheduled["exported"] if m["audience"] == AUDIENCE]
    assert files and all(m["sha256"] == m["sha256_of_file"] for m in files)
    assert sum(m["rows"] for m in files) == delivered
    # The send ledger has one row per member sent, so a rerun or a second trigger sends nothing twice.
    assert scheduled["ledger"]["sends"].get(DESTINATION) == delivered
