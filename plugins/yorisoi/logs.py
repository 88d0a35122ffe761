"""Where the command line's logs go: stderr, so stdout carries only the answer (`--json` pipes).

Airflow configures logging when it is first imported, with its handler on stdout. The command line
imports Airflow only when a command needs it (a connection, a DAG), so the handlers are rerouted
right after that import, by a one-shot import hook, rather than by importing Airflow up front
(about 3 s on every command)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from typing import Any


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the moment of writing. Handlers keep the stream they were
    given, so pointing them at the sys.stderr of the moment would leave them writing to a stream that
    may be closed later (a test runner's or a click runner's capture)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


STDERR = _CurrentStderr()


def reroute_stdout_handlers() -> None:
    """Point every logging handler that writes to stdout (and structlog's default output, which
    Airflow's loggers use) at stderr."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(STDERR)
    try:
        import structlog
    except ModuleNotFoundError:
        return
    factory = structlog.get_config().get("logger_factory")
    if getattr(factory, "io", "") is None:  # Airflow's LoggerFactory: None means stdout
        factory.io = STDERR


class _AfterAirflowImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `airflow`, wraps the real loader so the handlers Airflow has just
    configured are rerouted to stderr once the package is executed; then removes itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "airflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_reroute(module: Any) -> None:
            try:
                exec_module(module)
            finally:
                reroute_stdout_handlers()

        spec.loader.exec_module = exec_then_reroute  # type: ignore[method-assign]
        return spec


def logs_to_stderr() -> None:
    """Send log output to stderr now, and again after Airflow configures logging on import."""
    logging.basicConfig(stream=STDERR, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if "airflow" in sys.modules:
        reroute_stdout_handlers()
    elif not any(isinstance(f, _AfterAirflowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterAirflowImport())


WIDTH_WHEN_PIPED = 200  # a table written to a file or a pipe keeps its columns instead of wrapping at 80


def make_console(*, stderr: bool = False) -> Any:
    """A rich Console that does not cut tables when its output is not a terminal (a file, a pipe,
    `make demo > out.txt`): rich assumes 80 columns there."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = max(console.width, WIDTH_WHEN_PIPED)
    return console
