"""Client-side rate limiting: a token bucket per destination (docs/reliability.md #7).

A destination publishes a limit (LINE's "other endpoints" 2,000 requests/s, Braze's 3,000 per
3 s, an SMS gateway's messages per second); the engine sets ``rate_per_second`` a little below it
and takes one token per request, retries included, so the system never has to answer 429.

The bucket refills continuously at ``rate_per_second`` up to ``capacity`` tokens. The default
capacity of one token means no burst: requests are spaced at least ``1 / rate`` seconds apart, so
no window of any length ever sees more than ``rate * window + 1`` requests (a larger burst allows
``capacity`` requests at once after an idle spell, which a server counting per fixed second may
refuse).

``clock`` and ``sleep`` are injectable, so tests run it on a fake clock::

    bucket = TokenBucket(10, clock=fake.now, sleep=fake.sleep)
    bucket.acquire()  # waits (fake-sleeps) until a token is there
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A thread-safe token bucket.

    :param rate_per_second: tokens added per second (> 0).
    :param capacity: the most tokens the bucket holds (the largest burst); default 1 (no burst).
    :param clock: monotonic seconds (``time.monotonic``).
    :param sleep: waits the given seconds (``time.sleep``).
    """

    def __init__(
        self,
        rate_per_second: float,
        *,
        capacity: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second or rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 token, got {capacity!r}")
        self.rate = float(rate_per_second)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for the run's log

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = now

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` (at most ``capacity``), waiting until they are there; returns the
        seconds waited."""
        if tokens > self.capacity:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.capacity}")
        waited = 0.0
        with self._lock:
            while True:
                self._refill()
                if self._tokens >= tokens - 1e-9:  # float rounding after an exact wait
                    self._tokens = max(0.0, self._tokens - tokens)
                    self.waited += waited
                    return waited
                wait = (tokens - self._tokens) / self.rate
                self._sleep(wait)
                waited += wait
