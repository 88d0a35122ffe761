"""The command line's first contact: an expected error is one line on stderr (exit 2), never a
traceback; logs go to stderr, so stdout carries only the answer and `--json` pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yorisoi.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["yorisoi", *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_a_missing_role_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("YORISOI_ROLE", raising=False)
    code, out, err = _run(["activation", "dry-run", "cart_abandonment"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and "no role" in err


def test_an_unknown_audience_is_one_line_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["activation", "dry-run", "points_reminder"], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "no audience 'points_reminder'" in err and "cart_abandonment" in err


def test_a_missing_warehouse_is_one_line_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "empty"))
    monkeypatch.setenv("YORISOI_ROLE", "admin")  # past the role check, to the missing warehouse
    code, out, err = _run(["activation", "dry-run", "cart_abandonment"], capsys)
    assert code == 2
    assert "Traceback" not in err + out
    assert err.count("\n") == 1
    assert err.startswith("yorisoi activation dry-run: no warehouse at ") and "yorisoi dbt build" in err


def test_an_invalid_audience_file_is_one_line_per_run_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yml").write_text("name: broken\nselection: {mart: no_such_mart}\n", "utf-8")
    code, _, err = _run(["activation", "validate", "--audiences", str(tmp_path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "broken.yml" in err


def test_an_unexpected_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from yorisoi.activation import cli

    def broken(audiences: Path | None) -> None:
        raise ZeroDivisionError("a bug, not a user's mistake")

    monkeypatch.setattr(cli, "_context", broken)
    with pytest.raises(ZeroDivisionError):
        main(["yorisoi", "activation", "validate"])


def test_logs_go_to_stderr_after_airflow_configures_logging() -> None:
    """Airflow installs a stdout handler when imported; the command line reroutes it."""
    code = (
        "from yorisoi.logs import logs_to_stderr\n"
        "logs_to_stderr()\n"
        "import airflow, logging\n"
        "logging.getLogger('yorisoi.activation.run').warning('a log line')\n"
        "print('the answer')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout == "the answer\n"
    assert "a log line" in proc.stderr


def test_the_readme_examples_name_audiences_that_exist() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text("utf-8")
    named = set(re.findall(r"yorisoi activation (?:dry-run|test-send|run) ([a-z_0-9]+)", readme))
    named |= set(re.findall(r"audiences/([a-z_0-9]+)\.yml", readme))
    assert named, "the README shows no audience"
    missing = {n for n in named if not (root / "audiences" / f"{n}.yml").exists()}
    assert not missing, f"README examples name audiences that do not exist: {missing}"
