"""A send-type destination whose deliveries outlive its process, and the process the crash tests
kill with SIGKILL in the middle of a send (docs/reliability.md #21).

:class:`FileSendFake` behaves like LINE's multicast: one JSON line per accepted request, a request
whose idempotency key (X-Line-Retry-Key) it has already accepted is answered "already accepted"
and not delivered again. Run as a script (``crash_harness.py URL OUT READY``) it syncs nine users
to OUT through the store at URL and, on its second request, after accepting it, touches READY and
hangs until it is killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from yorisoi.activation.delivery.destinations.base import Destination, Operation, Record, RowResult
from yorisoi.activation.delivery.engine import sync
from yorisoi.activation.delivery.store import ActivationStore

AUDIENCE = "vip_reached"
INTERVAL = "2026-11-01"
KILLED_RUN = "run-killed"


class FileSendFake(Destination):
    name = "line_multicast"
    channel = "line"
    key_field = "line_user_id"
    allowed_columns = frozenset({"variant"})
    supports = frozenset({Operation.ADD})
    rate_per_second = None

    def __init__(self, path: Path, *, max_batch: int = 3, hang_on_call: int | None = None, ready: Path | None = None):
        self.path = Path(path)
        self.max_batch = max_batch
        self.hang_on_call = hang_on_call
        self.ready = ready
        self.calls = 0

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.calls += 1
        if idempotency_key in {line["idempotency_key"] for line in requests(self.path)}:
            return [RowResult(key=r.key, ok=True, code="409", already_done=True) for r in records]
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"idempotency_key": idempotency_key, "keys": [r.key for r in records]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.calls == self.hang_on_call and self.ready is not None:
            self.ready.touch()
            time.sleep(600)  # accepted, not yet confirmed: the test kills the process here
        return [RowResult(key=r.key, ok=True) for r in records]


def requests(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def received(path: Path) -> Counter[str]:
    """Deliveries per recipient."""
    return Counter(key for line in requests(path) for key in line["keys"])


def line_users(n: int) -> list[Record]:
    return [Record(key=f"U{i:032x}", person_id=f"P{i}", fields={"variant": "A"}, variant="A") for i in range(n)]


if __name__ == "__main__":
    url, out, ready = sys.argv[1:4]
    with ActivationStore(url) as store:
        sync(
            store,
            FileSendFake(Path(out), hang_on_call=2, ready=Path(ready)),
            AUDIENCE,
            line_users(9),
            interval=INTERVAL,
            run_id=KILLED_RUN,
        )
