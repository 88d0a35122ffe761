"""Fixtures of the quality-gate tests: a private copy of the XS warehouse per test (the shared
one is never modified), bad batches seeded into it, and alert receivers on loopback (a real
aiosmtpd SMTP server and an HTTP server standing in for a Slack webhook)."""

from __future__ import annotations

import email
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@pytest.fixture
def var(tmp_path: Path, xs, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A var folder of this test's own holding a copy of the XS warehouse (YORISOI_VAR points
    at it, so gates, Data Docs and the validation history stay inside the test), with "now" at
    the synthetic brand's as-of day."""
    from yorisoi.transform import brand_as_of

    folder = tmp_path / "var"
    folder.mkdir()
    for suffix in ("", ".wal"):
        source = Path(f"{xs.warehouse}{suffix}")
        if source.exists():
            shutil.copyfile(source, folder / f"warehouse.duckdb{suffix}")
    monkeypatch.setenv("YORISOI_VAR", str(folder))
    monkeypatch.setenv("YORISOI_AS_OF", brand_as_of(xs.work / "sources"))
    monkeypatch.delenv("YORISOI_QUALITY_NOW", raising=False)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""
    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", _free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Webhook:
    url: str
    posts: list[dict] = field(default_factory=list)


@pytest.fixture
def slack_webhook() -> Iterator[Webhook]:
    """An HTTP server on loopback standing in for a Slack incoming webhook."""
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
