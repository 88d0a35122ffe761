"""Open the report in headless Chromium (Debian's `chromium`) over the DevTools protocol: fail on
any JavaScript error, console error, failed load or request leaving the machine, check that every
chart drew marks and no view is empty, and optionally take a screenshot.

Driven over the protocol directly (a websocket and a dozen commands) rather than Selenium or
Playwright: no driver binary to match to the browser, nothing downloaded, and the protocol's
Runtime / Log / Network events are exactly the errors to catch."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:", "devtools:")

# What the page shows, read in the page: per view, its charts (drawn or not, and how many marks
# each drew), tables with rows, tiles and notes.
MARKS = "svg .mark-rect path, svg .mark-symbol path, svg .mark-line path, svg .mark-rule line, svg .mark-text text"
INSPECT = """
(() => Array.from(document.querySelectorAll('section.view')).map(v => ({
  id: v.id,
  charts: Array.from(v.querySelectorAll('figure.chart')).map(f => ({
    id: f.getAttribute('data-chart'),
    state: f.getAttribute('data-state'),
    marks: f.querySelectorAll(MARKS).length,
  })),
  table_rows: v.querySelectorAll('table tbody tr').length,
  tiles: v.querySelectorAll('.tile').length,
  notes: Array.from(v.querySelectorAll('.note')).map(n => n.textContent.trim()),
})))()
""".replace("MARKS", json.dumps(MARKS))


class BrowserError(RuntimeError):
    """Chromium is missing or did not start; the message says how to install it."""


@dataclass
class PageCheck:
    url: str
    errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        """Everything wrong with the page, one line each: errors, network use, charts that did
        not draw, and empty views."""
        out = [f"JavaScript/console error: {e}" for e in self.errors]
        out += [f"request leaving the machine: {u}" for u in self.external_requests]
        for v in self.views:
            for c in v["charts"]:
                if c["state"] != "rendered" or c["marks"] == 0:
                    out.append(f"view {v['id']}: chart {c['id']} not drawn (state {c['state']}, {c['marks']} marks)")
            if not (v["charts"] or v["table_rows"] or v["tiles"] or v["notes"]):
                out.append(f"view {v['id']} is empty")
        if not self.views:
            out.append("the page has no views")
        return out


def find_chromium() -> str:
    for name in (os.environ.get("YORISOI_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if name and (found := shutil.which(name)):
            return found
    raise BrowserError(
        "no Chromium found: `apt-get install -y chromium` (make test does it as root), or set YORISOI_CHROMIUM"
    )


class _Session:
    """A DevTools-protocol session on one page target: commands, and the events they cause."""

    def __init__(self, ws_url: str, check: PageCheck):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30)
        self.ids = itertools.count(1)
        self.check = check

    def close(self) -> None:
        self.ws.close()

    def _event(self, message: dict[str, Any]) -> None:
        method, p = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.check.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.check.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.check.errors.append(f"{e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(LOCAL_SCHEMES):
                self.check.external_requests.append(url)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        return result.get("result", {}).get("value")


def _start(chromium: str, profile: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(  # noqa: S603 - the browser found on PATH, fixed flags
        [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists() and len(lines := port_file.read_text().split()) >= 2:
            break
        if proc.poll() is not None:
            raise BrowserError(f"{chromium} exited with {proc.returncode} before opening DevTools")
        time.sleep(0.1)
    else:
        proc.kill()
        raise BrowserError(f"{chromium} did not open DevTools within 30 s")
    import httpx

    port = int(lines[0])
    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
    page = next(t for t in targets if t.get("type") == "page")
    return proc, page["webSocketDebuggerUrl"]


def check_page(
    page: Path,
    *,
    screenshot: Path | None = None,
    width: int = 1280,
    height: int = 900,
    screenshot_height: int | None = None,
    timeout: float = 90,
) -> PageCheck:
    """Load `page` (a local HTML file) and report what is wrong with it (PageCheck.problems);
    with `screenshot`, save a PNG of the top `screenshot_height` pixels (default the viewport)."""
    url = Path(page).resolve().as_uri()
    check = PageCheck(url)
    t0 = time.perf_counter()
    # Chromium's helper processes can still be writing its profile when the browser has exited:
    # a profile folder that cannot be removed yet must not fail the check.
    with tempfile.TemporaryDirectory(prefix="yorisoi-chromium-", ignore_cleanup_errors=True) as tmp:
        proc, ws_url = _start(find_chromium(), Path(tmp))
        try:
            s = _Session(ws_url, check)
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    s.send(f"{domain}.enable")
                s.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                )
                s.send("Page.navigate", {"url": url})
                deadline = time.monotonic() + timeout
                while s.evaluate("document.documentElement.getAttribute('data-report')") != "ready":
                    if check.errors and s.evaluate("document.readyState") == "complete":
                        break  # a script failed: the page will never be ready
                    if time.monotonic() > deadline:
                        check.errors.append(f"the page was not ready within {timeout:.0f} s")
                        break
                    time.sleep(0.2)
                check.views = s.evaluate(INSPECT) or []
                if screenshot is not None:
                    clip_height = screenshot_height or height
                    shot = s.send(
                        "Page.captureScreenshot",
                        {
                            "format": "png",
                            "captureBeyondViewport": True,
                            "clip": {"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1},
                        },
                    )
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
                s.send("Runtime.evaluate", {"expression": "1"})  # drain events raised by the last steps
            finally:
                s.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    check.seconds = time.perf_counter() - t0
    return check
