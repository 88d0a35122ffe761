"""Achieved request rate of the API destinations against their loopback fakes held to a
published-like limit, and how many 429s the limit had to answer (docs/reliability.md #7).

    .venv/bin/python bench/activation_api_bench.py [--requests 400] [--limit 100] [--client 95]
                                                  [--burst 10] [--mode auto|engine|loop]
                                                  [--only sms esp_list ...] [--in-process]
                                                  [--sms-batch 50] [--sms-concurrency 4]

Each fake (LINE, ESP, Twilio-like SMS) enforces ``--limit`` requests/s (a leaky bucket holding
``--burst`` requests, i.e. 100 ms of burst at 100/s: stricter than a per-second window); each
destination is configured at ``--client`` requests/s. LINE publishes far higher limits than
Python on two cores can drive, so the point is the ratio, not the absolute rate. SMTP has no
published limit: the aiosmtpd server only records arrival times, so its line shows the rate the
destination paced itself to.

Each fake runs in its own process, as a remote API would (``--in-process`` runs it on a thread of
the bench instead: then the server competes with the client for the GIL, which costs the client
a few milliseconds per request).

``--mode engine`` pushes the recipients through ``yorisoi.activation.delivery.engine.sync`` (claims in the
ledger, rate limit per batch, settle and changelog per batch: the real path); ``--mode loop``
calls ``deliver`` batch after batch (the destination paces its own requests). ``auto`` uses the
engine when it can be imported. Each batch is sized to be exactly one request (one variant per
LINE batch, one email per batch), so requests/s is what the limit counts; SMS sends one request
per recipient whatever the batch, so its batches are sized as in production (``--sms-batch``,
the destination's default 50) and sent ``--sms-concurrency`` requests at a time (the
destination's default 4; ``--sms-batch 1 --sms-concurrency 1`` is one request per engine batch,
one after another).

Printed: requests, recipients, seconds, achieved requests/s (server arrival times, first to
last), that rate as % of the server's limit and of the client's setting, and the 429 count.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from yorisoi.activation.delivery.destinations.base import Destination, Operation, Record, TransientError

TOKEN = "bench-token-0123456789"  # noqa: S105 - a loopback credential
SID = "AC" + "0" * 32
SMTP_CONN = "yorisoi_bench_smtp"


# --------------------------------------------------------------------------------------------
# The servers (run in a child process, or on a thread with --in-process)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _smtp_server() -> Iterator[tuple[int, Callable[[], list[tuple[float, int]]]]]:
    import socket

    from aiosmtpd.controller import Controller

    arrivals: list[tuple[float, int]] = []

    class Box:
        async def handle_DATA(self, server, session, envelope):
            arrivals.append((time.monotonic(), 250))
            return "250 queued"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Box(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, lambda: list(arrivals)
    finally:
        controller.stop()


@contextlib.contextmanager
def serve(kind: str, limit: float, burst: int) -> Iterator[tuple[int, Callable[[], list[tuple[float, int]]]]]:
    """Start the fake for ``kind``; yields its port and a function returning the arrivals
    ``[(monotonic time, status)]``."""
    if kind == "smtp":
        with _smtp_server() as served:
            yield served
        return
    from yorisoi_kit.servers import esp, line, sms

    starters = {
        "line": lambda: line.serve_in_thread(TOKEN, rate_per_second=limit, burst=burst),
        "esp": lambda: esp.serve_in_thread(TOKEN, rate_per_second=limit, burst=burst),
        "sms": lambda: sms.serve_in_thread(SID, TOKEN, rate_per_second=limit, burst=burst),
    }
    with starters[kind]() as running:
        yield running.port, lambda: [(call.at, call.status) for call in running.state.calls.all()]


def _child(kind: str, limit: float, burst: int, out: Path) -> int:
    """The child process: serve until SIGTERM, then write the arrivals to ``out``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(kind, limit, burst) as (port, arrivals):
        out.with_suffix(".port").write_text(str(port))
        stop.wait()
        out.write_text(json.dumps(arrivals()))
    return 0


@contextlib.contextmanager
def server_process(
    kind: str, limit: float, burst: int, workdir: Path, in_process: bool
) -> Iterator[tuple[int, list[tuple[float, int]]]]:
    """Yields the port and a list that holds the arrivals once the block has ended."""
    arrivals: list[tuple[float, int]] = []
    if in_process:
        with serve(kind, limit, burst) as (port, read):
            yield port, arrivals
            arrivals.extend(read())
        return
    out = workdir / f"{kind}-{time.monotonic_ns()}.json"
    command = [
        sys.executable,
        __file__,
        "--serve",
        kind,
        "--limit",
        str(limit),
        "--burst",
        str(burst),
        "--out",
        str(out),
    ]
    child = subprocess.Popen(command)  # noqa: S603 - this script, with our own arguments
    try:
        deadline = time.monotonic() + 60
        while not out.with_suffix(".port").exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start")
            time.sleep(0.05)
        time.sleep(0.05)  # the port file is written before the server accepts: let it settle
        yield int(out.with_suffix(".port").read_text()), arrivals
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    arrivals.extend((at, status) for at, status in json.loads(out.read_text()))


# --------------------------------------------------------------------------------------------
# The destinations
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    server: str
    per_request: int  # recipients per request (= the batch size, except SMS: --sms-batch)
    build: Callable[..., Destination]  # (base URL, client rate, **options) → destination
    record: Callable[[int], Record]


def _line_user(i: int) -> Record:
    return Record(f"U{i:032x}", f"P{i:07d}", {}, "A")


def _email(i: int) -> Record:
    return Record(f"customer{i:07d}@example.jp", f"P{i:07d}", {"full_name": f"顧客{i}"}, "A")


def _phone(i: int) -> Record:
    return Record(f"+8190{10_000_000 + i:08d}", f"P{i:07d}", {"full_name": f"顧客{i}"}, "A")


def _line_multicast(url: str, rate: float | None) -> Destination:
    from yorisoi.activation.delivery.destinations.line import LineMulticastDestination

    return LineMulticastDestination(
        templates={"A": "お知らせ"}, channel_access_token=TOKEN, base_url=url, rate_per_second=rate, max_batch=5
    )


def _line_audience(url: str, rate: float | None) -> Destination:
    from yorisoi.activation.delivery.destinations.line import LineAudienceDestination

    return LineAudienceDestination(
        audience_name="bench", channel_access_token=TOKEN, base_url=url, rate_per_second=rate, max_batch=20
    )


def _esp(url: str, rate: float | None) -> Destination:
    from yorisoi.activation.delivery.destinations.email import EspListDestination

    return EspListDestination(
        list_id="main", base_url=url, api_key=TOKEN, allowed_columns=("full_name",), rate_per_second=rate, max_batch=10
    )


def _sms(url: str, rate: float | None, *, max_batch: int = 50, concurrency: int = 4) -> Destination:
    from yorisoi.activation.delivery.destinations.sms import SmsDestination

    return SmsDestination(
        templates={"default": "{full_name}様 お知らせです"},
        account_sid=SID,
        auth_token=TOKEN,
        from_number="+815012345678",
        base_url=url,
        allowed_columns=("full_name",),
        rate_per_second=rate,
        max_batch=max_batch,
        concurrency=concurrency,
    )


def _smtp(_url: str, rate: float | None) -> Destination:
    from yorisoi.activation.delivery.destinations.email import SmtpEmailDestination

    return SmtpEmailDestination(
        conn_id=SMTP_CONN,
        templates={"default": {"subject": "お知らせ", "body": "<p>{full_name}様</p>"}},
        allowed_columns=("full_name",),
        rate_per_second=rate,
        max_batch=1,
    )


CASES = [
    Case("line_multicast", "line", 5, _line_multicast, _line_user),
    Case("line_audience", "line", 20, _line_audience, _line_user),
    Case("esp_list", "esp", 10, _esp, _email),
    Case("sms", "sms", 1, _sms, _phone),
    Case("smtp_email", "smtp", 1, _smtp, _email),
]


def _engine() -> tuple[object, object] | None:
    try:
        engine = importlib.import_module("yorisoi.activation.delivery.engine")
        store = importlib.import_module("yorisoi.activation.delivery.store")
    except ImportError:
        return None
    return (engine, store) if hasattr(engine, "sync") and hasattr(store, "ActivationStore") else None


def _push(mode: str, destination: Destination, case: Case, records: Sequence[Record], workdir: Path) -> None:
    if mode == "engine":
        engine, store_module = _engine()  # type: ignore[misc]
        store = store_module.ActivationStore(f"sqlite:///{workdir / f'{case.name}.sqlite'}")  # type: ignore[attr-defined]
        engine.sync(store, destination, f"bench_{case.name}", records, interval="bench", mode="full")  # type: ignore[attr-defined]
        store.close()
        return
    for start in range(0, len(records), destination.max_batch):
        batch = records[start : start + destination.max_batch]
        for _attempt in range(20):  # a bare retry loop, so that a too-fast client shows its 429s
            try:
                destination.deliver(Operation.ADD, batch, idempotency_key=f"bench:{case.name}:{start}")
                break
            except TransientError as exc:
                time.sleep(exc.retry_after if exc.retry_after is not None else 0.05)


def run(
    requests: int,
    limit: float,
    client: float,
    burst: int,
    mode: str,
    only: set[str] | None,
    in_process: bool,
    sms: dict[str, int] | None = None,
) -> list[dict]:
    """One row per destination; ``sms`` holds the SMS destination's ``max_batch`` and
    ``concurrency`` (default: the destination's defaults)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="yorisoi-api-bench-") as tmp:
        workdir = Path(tmp)
        for case in CASES:
            if only and case.name not in only:
                continue
            records = [case.record(i) for i in range(requests * case.per_request)]
            with server_process(case.server, limit, burst, workdir, in_process) as (port, arrivals):
                if case.server == "smtp":
                    os.environ[f"AIRFLOW_CONN_{SMTP_CONN.upper()}"] = json.dumps(
                        {
                            "conn_type": "smtp",
                            "host": "127.0.0.1",
                            "port": port,
                            "extra": {"from_email": "news@shop.example.jp", "disable_tls": True, "disable_ssl": True},
                        }
                    )
                options = (sms or {}) if case.name == "sms" else {}
                destination = case.build(f"http://127.0.0.1:{port}", client or None, **options)
                started = time.perf_counter()
                _push(mode, destination, case, records, workdir)
                seconds = time.perf_counter() - started
                destination.close()
            served = sorted(at for at, status in arrivals if status != 429)
            limited = sum(1 for _, status in arrivals if status == 429)
            span = served[-1] - served[0] if len(served) > 1 else 0.0
            rate = (len(served) - 1) / span if span > 0 else float("nan")
            smtp = case.server == "smtp"
            rows.append(
                {
                    "destination": case.name,
                    "requests": len(served),
                    "recipients": len(records),
                    "seconds": round(seconds, 2),
                    "requests_per_s": round(rate, 1),
                    "pct_of_limit": None if smtp else round(100 * rate / limit, 1),
                    "pct_of_client_rate": round(100 * rate / client, 1) if client else None,
                    "http_429": None if smtp else limited,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per destination")
    parser.add_argument("--limit", type=float, default=100.0, help="server limit, requests/s")
    parser.add_argument("--client", type=float, default=95.0, help="destination rate_per_second (0: unpaced)")
    parser.add_argument("--burst", type=int, default=10, help="server bucket size (requests)")
    parser.add_argument("--mode", choices=("auto", "engine", "loop"), default="auto")
    parser.add_argument("--only", nargs="*", help="destination names to run")
    parser.add_argument("--in-process", action="store_true", help="run the fakes on threads of this process")
    parser.add_argument("--sms-batch", type=int, default=50, help="SMS recipients per batch (one request each)")
    parser.add_argument("--sms-concurrency", type=int, default=4, help="SMS requests under way at once")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--serve", choices=("line", "esp", "sms", "smtp"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return _child(args.serve, args.limit, args.burst, args.out)
    mode = args.mode if args.mode != "auto" else ("engine" if _engine() else "loop")
    if mode == "engine" and _engine() is None:
        parser.error("yorisoi.activation.delivery.engine.sync is not available")
    only = set(args.only) if args.only else None
    sms = {"max_batch": args.sms_batch, "concurrency": args.sms_concurrency}
    rows = run(args.requests, args.limit, args.client, args.burst, mode, only, args.in_process, sms)
    load = os.getloadavg()[0]
    if args.json:
        print(
            json.dumps(
                {"mode": mode, "limit": args.limit, "client": args.client, "sms": sms, "load": load, "rows": rows},
                indent=2,
            )
        )
        return 0
    where = "in-process" if args.in_process else "separate process"
    print(
        f"mode={mode}  servers: {where}, limit {args.limit:g}/s (burst {args.burst})  client={args.client:g}/s  "
        f"sms: batch {args.sms_batch}, concurrency {args.sms_concurrency}  load {load:.2f}  "
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    )
    header = list(rows[0]) if rows else []
    print(" | ".join(header))
    for row in rows:
        print(" | ".join("-" if row[h] is None else str(row[h]) for h in header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
