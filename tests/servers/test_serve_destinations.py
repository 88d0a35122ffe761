"""`yorisoi serve destinations`: after the demo, the stand-in destinations come back and
`yorisoi activation test-send` reaches them through the connections it writes."""

from __future__ import annotations

import json
import os
import shlex
import stat
from contextlib import ExitStack
from pathlib import Path

import pytest

from yorisoi_kit.demo import destinations_env_file, serve_destinations


def test_test_send_reaches_the_served_destinations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from yorisoi.cli import main

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("YORISOI_ROLE", "content_author")  # may send_test_to_seed_list (include/roles.yml)
    (tmp_path / "var" / "sources" / "sftp").mkdir(parents=True)
    with ExitStack() as stack:
        conns = serve_destinations(stack)
        env = destinations_env_file()
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        written = dict(line.split("=", 1) for line in env.read_text("utf-8").splitlines())
        assert {k: shlex.split(v)[0] for k, v in written.items()} == conns
        assert "AIRFLOW_CONN_YORISOI_SMTP" in conns and "AIRFLOW_CONN_YORISOI_LINE" in conns
        for key, value in conns.items():  # what `set -a; . var/destinations.env` does
            monkeypatch.setenv(key, value)
        with pytest.raises(SystemExit) as done:
            main(["yorisoi", "activation", "test-send", "cart_abandonment", "--json"])
        out = capsys.readouterr().out
    assert done.value.code in (0, None), out
    summaries = json.loads(out)
    assert {s["destination"] for s in summaries} == {"line_multicast", "smtp_email"}
    # every seed got an answer from the served system: delivered, or refused by it (the LINE fake
    # refuses a user who is not a friend of its channel); nothing failed to connect
    for s in summaries:
        sync = s["sync"]
        assert s["status"] == "tested" and sync["adds"] > 0 and sync["failed"] == 0, s
        assert sync["delivered"] + sync["rejected"] == sync["adds"], s
    assert next(s for s in summaries if s["destination"] == "smtp_email")["sync"]["delivered"] > 0
    assert os.environ.get("AIRFLOW_CONN_YORISOI_SMTP") == conns["AIRFLOW_CONN_YORISOI_SMTP"]
