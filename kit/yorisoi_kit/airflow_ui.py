"""`make airflow`: the Airflow UI over the demo's metadata database, on this machine only.

Starts the api-server (UI and execution API), the scheduler and the dag-processor on 127.0.0.1
with a parallelism that suits a laptop (DuckDB has one writer anyway), waits until the UI answers,
prints its URL and login, and stops all three on Ctrl-C. The demo's DAG runs and their task logs
(var/airflow/logs) are there; so is the Trigger button for a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from yorisoi import paths

HOST = "127.0.0.1"
PORT = int(os.environ.get("YORISOI_AIRFLOW_PORT", "8080"))
USER = "admin"
SETTINGS = {
    "AIRFLOW__CORE__PARALLELISM": "4",  # two shared cores; DuckDB writers queue in the pool anyway
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "1",
    "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__API__HOST": HOST,
    "AIRFLOW__API__PORT": str(PORT),
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{PORT}/execution/",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
}


def environment() -> dict[str, str]:
    """The processes' environment: the demo's Airflow home, DAGs and metadata DB (what the
    Makefile exports), the settings above, and the password file of the simple auth manager."""
    from .demo import airflow_environment

    airflow_environment()
    home = Path(os.environ["AIRFLOW_HOME"])
    env = {**os.environ, **SETTINGS}
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(password_file(home))
    return env


def password_file(home: Path) -> Path:
    return home / "simple_auth_manager_passwords.json.generated"


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback, our own URL
            return answer.status < 500
    except OSError:
        return False


def main() -> None:
    env = environment()
    home = Path(env["AIRFLOW_HOME"])
    log_dir = paths.var_dir() / "airflow-ui"
    log_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    procs = []
    for name in ("api-server", "scheduler", "dag-processor"):
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - open for the process's lifetime
        args = [sys.executable, "-m", "airflow", name]
        procs.append(subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))  # noqa: S603
    url = f"http://{HOST}:{PORT}"
    try:
        deadline = time.monotonic() + 180
        while not _up(f"{url}/api/v2/monitor/health"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"the Airflow UI did not start; see {log_dir}/*.log")
            time.sleep(2)
        password = json.loads(password_file(home).read_text("utf-8")).get(USER, "?")
        print(f"Airflow UI: {url}  login: {USER} / {password}  (logs of these processes: {log_dir})")
        print("The demo's runs and their task logs are under DAGs → a DAG → a run. Ctrl-C stops all three.")
        sys.stdout.flush()
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        raise SystemExit(f"an Airflow process stopped; see {log_dir}/*.log")
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
