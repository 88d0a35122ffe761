"""Where the demo's output goes: the story on the terminal, everything else in var/demo.log.

Airflow, dbt, Great Expectations and the loopback servers write to stdout and stderr (some from
handlers that captured the streams when they were configured, some from threads): the demo sends
file descriptors 1 and 2 to var/demo.log for its whole run and tells its story through a console
on a copy of the original stdout. Each task of a DAG run by `dag.test()` also gets its own log
file under AIRFLOW_HOME/logs, in the layout and JSON-lines format the Airflow UI reads, so the
demo's runs show their task logs in `make airflow`."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rich.console import Console

from yorisoi.logs import WIDTH_WHEN_PIPED

# Deprecations the demo's libraries raise about each other (their authors' to fix; nothing the
# demo calls): filtered where they arise, by module, so a deprecation in Yorisoi's own code still shows.
THIRD_PARTY_WARNINGS = (
    "airflow",
    "dbt",
    "great_expectations",
    "moto",
    "botocore",
    "paramiko",
    "pydantic",
    "sqlalchemy",
    "altair",
    "fastapi",
    "starlette",
    "google",
    "jsonschema",
)


def quiet_third_party_warnings() -> None:
    for module in THIRD_PARTY_WARNINGS:
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{module}(\.|$)")
    # Starlette's deprecation (a UserWarning) about the test client Airflow's in-process API uses
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")


@contextlib.contextmanager
def story_and_log(log_path: Path) -> Iterator[Console]:
    """Send stdout and stderr (file descriptors 1 and 2, so subprocesses and threads too) to
    `log_path` and yield a console on the original stdout for the story. Restored on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    story_stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    terminal = story_stream.isatty()
    console = Console(file=story_stream, force_terminal=terminal)
    if not terminal:
        console.width = max(console.width, WIDTH_WHEN_PIPED)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            story_stream.close()


def task_log_path(ti: Any) -> Path:
    """Where the Airflow UI looks for a task's log: AIRFLOW_HOME/logs and the default
    `[logging] log_filename_template`."""
    from airflow.configuration import conf

    base = Path(conf.get("logging", "base_log_folder"))
    parts = [f"dag_id={ti.dag_id}", f"run_id={ti.run_id}", f"task_id={ti.task_id}"]
    if ti.map_index is not None and ti.map_index >= 0:
        parts.append(f"map_index={ti.map_index}")
    return base.joinpath(*parts, f"attempt={ti.try_number}.log")


class _TaskLogTee:
    """A binary stream writing to the demo log (a copy of fd 1) and, while a task runs, to that
    task's log file. One for the whole process and never closed: loggers Airflow creates during a
    task are cached with their output, and write to it after the task has ended."""

    def __init__(self) -> None:
        self.demo_log: BinaryIO = os.fdopen(os.dup(1), "wb")
        self.task_log: BinaryIO | None = None

    def write(self, data: bytes) -> int:
        self.demo_log.write(data)
        if self.task_log is not None:
            self.task_log.write(data)
        return len(data)

    def flush(self) -> None:
        self.demo_log.flush()
        if self.task_log is not None:
            self.task_log.flush()


_TEE: _TaskLogTee | None = None


@contextlib.contextmanager
def task_logs_for_the_ui() -> Iterator[None]:
    """While `dag.test()` runs tasks in this process, write each task's log (Airflow's JSON lines:
    the task runner's lines and the task's own loggers) to its file under AIRFLOW_HOME/logs, as a
    worker would, and to the demo log. Airflow's logging configuration is restored afterwards."""
    from airflow._shared.logging import configure_logging as configure_structlog
    from airflow.logging_config import configure_logging as configure_airflow_logging
    from airflow.sdk.definitions import dag as dag_module

    global _TEE
    tee = _TEE = _TEE or _TaskLogTee()
    run_task = dag_module._run_task

    def run_task_with_its_log(*, ti: Any, task: Any, **kwargs: Any) -> Any:
        path = task_log_path(ti)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as task_log:
            tee.task_log = task_log
            try:
                return run_task(ti=ti, task=task, **kwargs)
            finally:
                tee.flush()
                tee.task_log = None

    excepthook = sys.excepthook  # JSON logging installs its own
    configure_structlog(json_output=True, log_level="INFO", output=tee)
    dag_module._run_task = run_task_with_its_log
    try:
        yield
    finally:
        dag_module._run_task = run_task
        configure_airflow_logging()
        sys.excepthook = excepthook
