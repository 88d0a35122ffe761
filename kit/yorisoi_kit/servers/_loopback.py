"""What the activation API fakes (:mod:`.line`, :mod:`.esp`, :mod:`.sms`) share: fault injection,
a call log, a rate limiter and a uvicorn runner on a background thread.

The rate limiter is the leaky bucket the shop API (:mod:`.ecommerce`) applies too (one call fills the bucket by one, the
bucket drains ``rate`` per second, a call that would overflow ``burst`` is refused and does not
fill it). Each server decides how a refusal looks on the wire (LINE sends no ``Retry-After``;
the Twilio-like and ESP-like servers do).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

__all__ = [
    "ApiCall",
    "ApiFaults",
    "BucketDecision",
    "CallLog",
    "RateLimiter",
    "RunningApi",
    "limiter_for",
    "serve_app_in_thread",
]


@dataclass(frozen=True)
class BucketDecision:
    """Outcome of :meth:`RateLimiter.acquire`: ``allowed``; ``used`` and ``size`` for the
    call-limit header; ``retry_after`` seconds until a slot frees (0 when allowed)."""

    allowed: bool
    used: int
    size: int
    retry_after: float

    @property
    def header(self) -> str:
        """Value of ``X-Shopify-Shop-Api-Call-Limit``, e.g. ``"12/40"``."""
        return f"{self.used}/{self.size}"


class RateLimiter:
    """Leaky bucket per API key, as Shopify REST applies per app and store.

    Each accepted call adds 1 to the key's bucket; the bucket drains ``leak_per_second`` per second;
    a call that would overflow ``bucket_size`` is rejected (and does not fill the bucket).

    Parameters: ``bucket_size`` capacity in calls; ``leak_per_second`` drain rate (> 0);
    ``clock`` a monotonic clock in seconds (inject a fake one in tests).
    """

    def __init__(self, bucket_size: int, leak_per_second: float, clock: Callable[[], float] = time.monotonic):
        if bucket_size < 1:
            raise ValueError("bucket_size must be at least 1")
        if leak_per_second <= 0:
            raise ValueError("leak_per_second must be positive")
        self.bucket_size = bucket_size
        self.leak_per_second = leak_per_second
        self.clock = clock
        self._levels: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        level, last = self._levels.get(key, (0.0, now))
        return max(0.0, level - (now - last) * self.leak_per_second)

    def acquire(self, key: str) -> BucketDecision:
        """Try to add one call for ``key``; the decision says whether it is allowed."""
        with self._lock:
            now = self.clock()
            level = self._level(key, now)
            if level + 1 > self.bucket_size + 1e-9:
                self._levels[key] = (level, now)
                wait = (level + 1 - self.bucket_size) / self.leak_per_second
                return BucketDecision(False, self.bucket_size, self.bucket_size, math.ceil(wait * 10) / 10)
            level += 1
            self._levels[key] = (level, now)
            return BucketDecision(True, min(self.bucket_size, math.ceil(level - 1e-9)), self.bucket_size, 0.0)

    def used(self, key: str) -> float:
        """Current (drained) level of ``key``'s bucket."""
        with self._lock:
            return self._level(key, self.clock())

    def reset(self) -> None:
        """Empty every bucket."""
        with self._lock:
            self._levels.clear()


def limiter_for(rate_per_second: float | None, burst: int | None, clock: Callable[[], float]) -> RateLimiter | None:
    """A leaky bucket draining ``rate_per_second`` with room for ``burst`` calls (default: one
    second's worth, at least 1), or None when ``rate_per_second`` is None (no limit)."""
    if rate_per_second is None:
        return None
    size = burst if burst is not None else max(1, round(rate_per_second))
    return RateLimiter(size, rate_per_second, clock)


class ApiFaults:
    """Fault injection for retry and idempotency tests, found on ``app.state.faults``.

    - ``inject(500, 429, ...)``: the next authenticated requests answer these statuses, in order,
      *without* doing anything (an injected 429 carries ``Retry-After: retry_after`` where the
      server's protocol has one);
    - ``fail_after_accept(n)``: the next ``n`` requests are carried out (messages recorded as
      delivered, members changed, retry keys remembered) and *then* answered 500: the request
      was accepted although the client saw a failure;
    - ``hold_after_accept(seconds, count, skip)``: after ``skip`` requests answered normally,
      carry out the next ``count`` requests, then wait ``seconds`` before answering (a test can
      kill the client while it waits for the answer to a request that was already accepted);
    - ``set_delay(seconds, count)``: delay the next ``count`` responses (all when None), before
      carrying them out, to trigger client timeouts;
    - ``clear()``: drop all of the above.
    """

    def __init__(self) -> None:
        self._statuses: deque[tuple[int, float]] = deque()
        self._accept_then_fail = 0
        self._holds: deque[float] = deque()
        self._delay = 0.0
        self._delay_count: int | None = 0
        self._lock = threading.Lock()

    def inject(self, *statuses: int, retry_after: float = 2.0) -> None:
        """Queue ``statuses`` (each 400..599) for the next requests."""
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"not an error status: {status}")
        with self._lock:
            self._statuses.extend((status, retry_after) for status in statuses)

    def fail_after_accept(self, count: int = 1) -> None:
        """Carry out the next ``count`` requests, then answer 500 to each."""
        with self._lock:
            self._accept_then_fail += count

    def hold_after_accept(self, seconds: float, count: int = 1, *, skip: int = 0) -> None:
        """After ``skip`` carried-out requests answered at once, hold the answers of the next
        ``count`` for ``seconds``."""
        with self._lock:
            self._holds.extend([0.0] * skip + [max(0.0, seconds)] * count)

    def set_delay(self, seconds: float, count: int | None = None) -> None:
        """Delay the next ``count`` responses (all when None) by ``seconds``."""
        with self._lock:
            self._delay, self._delay_count = max(0.0, seconds), count

    def clear(self) -> None:
        """Drop queued statuses, pending accept-then-fail answers and the delay."""
        with self._lock:
            self._statuses.clear()
            self._accept_then_fail = 0
            self._holds.clear()
            self._delay, self._delay_count = 0.0, 0

    def take_status(self) -> tuple[int, float] | None:
        """The next injected ``(status, retry_after)``, or None to answer normally."""
        with self._lock:
            return self._statuses.popleft() if self._statuses else None

    def take_accept_then_fail(self) -> bool:
        """Whether this request, once carried out, must be answered 500 (consumes one)."""
        with self._lock:
            if self._accept_then_fail <= 0:
                return False
            self._accept_then_fail -= 1
            return True

    async def after_accept(self) -> bool:
        """Called by a server once it carried a request out: waits if a hold is pending, then
        says whether the answer must be a 500 (consumes one of each)."""
        with self._lock:
            hold = self._holds.popleft() if self._holds else 0.0
        if hold:
            await asyncio.sleep(hold)
        return self.take_accept_then_fail()

    def take_delay(self) -> float:
        """Seconds to wait before this response (consumes one delayed response)."""
        with self._lock:
            if self._delay <= 0 or self._delay_count == 0:
                return 0.0
            if self._delay_count is not None:
                self._delay_count -= 1
            return self._delay


@dataclass(frozen=True)
class ApiCall:
    """One request as the server saw it: ``method``, ``path``, ``status`` answered, ``at`` (the
    server's clock), ``headers`` worth asserting on (retry / idempotency keys, lower-case names)
    and ``note`` (what the server did, e.g. ``"accepted"``, ``"replayed"``, ``"rate_limited"``)."""

    method: str
    path: str
    status: int
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


class CallLog:
    """Every request (authenticated or not) in arrival order, found on ``app.state.calls``."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._calls: deque[ApiCall] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, call: ApiCall) -> None:
        with self._lock:
            self._calls.append(call)

    def all(self) -> list[ApiCall]:
        """A copy of the calls, oldest first."""
        with self._lock:
            return list(self._calls)

    def statuses(self) -> list[int]:
        """The answered statuses, oldest first."""
        with self._lock:
            return [call.status for call in self._calls]

    def count(self, status: int | None = None, path_contains: str = "") -> int:
        """How many calls answered ``status`` (any when None) on a path containing ``path_contains``."""
        with self._lock:
            return sum(
                1 for call in self._calls if (status is None or call.status == status) and path_contains in call.path
            )

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)


@dataclass
class RunningApi:
    """A server started by :func:`serve_app_in_thread`: ``base_url`` (``http://127.0.0.1:PORT``),
    ``app`` (its ``state`` holds the fakes' stores, ``faults``, ``calls``) and ``port``."""

    base_url: str
    app: FastAPI
    port: int
    server: uvicorn.Server

    @property
    def state(self) -> Any:
        """``app.state``: the server's stores, faults and call log."""
        return self.app.state


@contextlib.contextmanager
def serve_app_in_thread(
    app: FastAPI, *, name: str, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[RunningApi]:
    """Run ``app`` with uvicorn on a background thread for the duration of a ``with`` block.

    ``port`` 0 picks a free port (the socket is bound before the thread starts, so there is no
    race); ``name`` names the thread. The server is stopped and the thread joined on exit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        actual_port = sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(
        app,
        host=host,
        port=actual_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{actual_port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the {name} server failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {name} server did not start within {startup_timeout} s")
            time.sleep(0.01)
        yield RunningApi(base_url=f"http://{host}:{actual_port}", app=app, port=actual_port, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
