"""SMS through the Twilio-style destination against the SMS fake on loopback (``servers/sms.py``),
and the shared pieces of the API destinations (``_api.py``).

docs/reliability.md #4 (idempotency token per recipient: a retry never texts twice; a batch failing
part-way reports who was already texted, so a rerun in a new process texts only the others), 5
(429 with Retry-After, 5xx transient, 401 never retried), 6 (Twilio error codes per recipient), 7
(the pacer keeps below the configured rate, with concurrent requests too) and 14 (only allowed
columns in the text).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from yorisoi.activation.delivery import engine
from yorisoi.activation.delivery.destinations._api import (
    AuthenticationFailed,
    PermanentError,
    error_for_status,
    parse_retry_after,
    request_bucket,
)
from yorisoi.activation.delivery.destinations.base import BatchRejected, Operation, Record, TransientError
from yorisoi.activation.delivery.destinations.sms import SmsDestination, idempotency_token
from yorisoi.activation.delivery.store import ActivationStore
from yorisoi_kit.servers import sms as fake
from yorisoi_kit.servers._loopback import RunningApi

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "sms-auth-token-for-tests"
FROM = "+815012345678"
TEMPLATES = {"A": "{full_name}様 春の新作を公開しました", "B": "{full_name}様 先行販売のご案内", "default": "お知らせ"}
MOBILE = ["+819012345678", "+818011112222", "+817033334444"]
SECRET_FIELDS = {"email": "secret@example.jp", "address": "大阪府大阪市北区梅田9-9"}


@pytest.fixture
def server() -> Iterator[RunningApi]:
    with fake.serve_in_thread(SID, TOKEN) as running:
        yield running


def _destination(server: RunningApi, **kwargs) -> SmsDestination:
    kwargs.setdefault("auth_token", TOKEN)
    return SmsDestination(
        templates=TEMPLATES,
        account_sid=SID,
        from_number=FROM,
        base_url=server.base_url,
        allowed_columns=("full_name",),
        **kwargs,
    )


def _person(phone: str, name: str = "山田", variant: str | None = "A") -> Record:
    return Record(phone, f"P{phone[-4:]}", {"full_name": name, **SECRET_FIELDS}, variant)


def test_sms_sends_each_variant_its_text_with_allowed_columns_only(server: RunningApi) -> None:
    records = [_person(MOBILE[0], "山田", "A"), _person(MOBILE[1], "佐藤", "B"), _person(MOBILE[2], "鈴木", None)]

    results = _destination(server).deliver(Operation.ADD, records, idempotency_key="d1:0")

    assert [(r.ok, r.code, r.already_done) for r in results] == [(True, "201", False)] * 3
    sent = {m["to"]: m for m in server.state.sms.messages}
    assert sent[MOBILE[0]]["body"] == "山田様 春の新作を公開しました"
    assert sent[MOBILE[1]]["body"] == "佐藤様 先行販売のご案内"
    assert sent[MOBILE[2]]["body"] == "お知らせ"
    assert {m["from"] for m in sent.values()} == {FROM}
    for message in sent.values():
        assert all(value not in message["body"] for value in SECRET_FIELDS.values())
    tokens = Counter(c.headers["idempotency-token"] for c in server.state.calls.all())
    assert tokens == Counter(idempotency_token("d1:0", phone) for phone in MOBILE)


def test_sms_twilio_error_codes_are_row_failures(server: RunningApi) -> None:
    server.state.sms.stopped.add(MOBILE[2])
    records = [
        _person(MOBILE[0]),
        _person("+8190123"),  # not a number
        _person("+81312345678"),  # a Tokyo landline
        _person(MOBILE[2]),  # replied STOP
    ]
    results = {r.key: r for r in _destination(server).deliver(Operation.ADD, records, idempotency_key="k")}

    assert results[MOBILE[0]].ok
    assert (results["+8190123"].ok, results["+8190123"].code) == (False, "21211")
    assert results["+81312345678"].code == "21614"
    assert results[MOBILE[2]].code == "21610"
    assert "unsubscribed" in (results[MOBILE[2]].reason or "")
    assert server.state.sms.receipts() == {MOBILE[0]: 1}


def test_sms_429_is_transient_with_retry_after(server: RunningApi) -> None:
    server.state.faults.inject(429, retry_after=3)
    with pytest.raises(TransientError) as limited:
        _destination(server).deliver(Operation.ADD, [_person(MOBILE[0])], idempotency_key="k")
    assert limited.value.status == 429
    assert limited.value.retry_after == 3.0
    assert server.state.sms.messages == []


def test_sms_server_rate_limit_answers_429_with_retry_after() -> None:
    with fake.serve_in_thread(SID, TOKEN, rate_per_second=0.5, burst=1, clock=lambda: 7.0) as server:
        with pytest.raises(TransientError) as limited:
            _destination(server).deliver(Operation.ADD, [_person(MOBILE[0]), _person(MOBILE[1])], idempotency_key="k")
        assert (limited.value.status, limited.value.retry_after) == (429, 2.0)
        assert server.state.sms.receipts() == {MOBILE[0]: 1}
        assert [(r.key, r.ok) for r in limited.value.partial] == [(MOBILE[0], True)]  # who was texted


def test_sms_500_after_acceptance_then_retry_texts_each_person_once(server: RunningApi) -> None:
    """docs/reliability.md #4: the API created the message but answered 500. The retry of the same batch
    (in the same process, or in a new one after a crash) carries the same idempotency tokens, so
    nobody is texted twice."""
    records = [_person(MOBILE[0]), _person(MOBILE[1]), _person(MOBILE[2])]
    server.state.faults.fail_after_accept(1)
    with pytest.raises(TransientError) as failed:
        _destination(server).deliver(Operation.ADD, records, idempotency_key="2025-12-01:3")
    assert failed.value.status == 500
    assert failed.value.partial == []  # the first request goes alone: nothing else was sent

    rerun = _destination(server)  # a new process
    results = rerun.deliver(Operation.ADD, records, idempotency_key="2025-12-01:3")

    assert all(r.ok for r in results)
    assert [r.already_done for r in results] == [True, False, False]  # the API replayed the first
    assert server.state.sms.receipts() == {phone: 1 for phone in MOBILE}
    assert sorted(c.note for c in server.state.calls.all()) == ["accepted", "accepted", "accepted", "replayed"]


class FakeTime:
    """Seconds that pass only when someone sleeps: the API's rate limit and the engine's backoff
    share it, so each retry finds exactly the capacity the wait freed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sms_batch_limited_part_way_reports_who_was_answered(concurrency: int) -> None:
    """The API takes 2 requests, then answers 429 to the rest: the TransientError lists the 2
    answers (a text sent, a number refused per row), and exactly those were carried out."""
    time = FakeTime()
    records = [_person(MOBILE[0]), _person("+81312345678"), *(_person(f"+81901111{i:04d}") for i in range(6))]
    with fake.serve_in_thread(SID, TOKEN, rate_per_second=2.0, burst=2, clock=time.clock) as server:
        with pytest.raises(TransientError) as limited:
            _destination(server, concurrency=concurrency).deliver(Operation.ADD, records, idempotency_key="k")
        assert (limited.value.status, limited.value.retry_after) == (429, 1.0)
        answered = {r.key: r for r in limited.value.partial}
        assert len(answered) == 2 and MOBILE[0] in answered  # the first request goes alone
        assert {key for key, r in answered.items() if r.ok} == set(server.state.sms.receipts())
        assert all(r.code == "21614" for r in answered.values() if not r.ok)
        assert server.state.calls.count(201) + server.state.calls.count(400) == 2


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sms_limited_part_way_on_every_attempt_then_a_rerun_texts_everyone_exactly_once(
    tmp_path: Path, concurrency: int
) -> None:
    """docs/reliability.md #4 through the engine: the API lets 2 requests through, then answers 429, on
    every attempt, until the engine gives up. What was texted is settled as sent at once; the
    rerun (a new process: a fresh destination) texts only the others, and never asks the API
    again for a message it created (no idempotent replay needed)."""
    time = FakeTime()
    landline = Record("+81312345678", "P-landline", {"full_name": "固定"})  # refused per row (21614)
    people = [Record(f"+81902222{i:04d}", f"P{i}", {"full_name": f"顧客{i}"}) for i in range(9)]
    people.insert(1, landline)
    with (
        fake.serve_in_thread(SID, TOKEN, rate_per_second=2.0, burst=2, clock=time.clock) as server,
        ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}") as store,
    ):

        def run(max_attempts: int) -> engine.SyncSummary:
            return engine.sync(
                store,
                _destination(server, max_batch=10, concurrency=concurrency),
                "flash_sale",
                people,
                interval="2025-12-01",
                sleep=time.sleep,
                jitter=lambda: 0.0,
                max_attempts=max_attempts,
            )

        with pytest.raises(engine.DestinationUnavailable) as stopped:
            run(max_attempts=3)
        first = stopped.value.summary
        assert first.delivered + first.rejected == 6 and first.failed == 4  # 2 answered per attempt
        ledger = {row["key"]: row["status"] for row in store.ledger("flash_sale", "sms", "2025-12-01")}
        texted = set(server.state.sms.receipts())
        assert {key for key, status in ledger.items() if status == "sent"} == texted
        assert len(texted) == first.delivered

        time.sleep(3600)  # the task is retried an hour later
        second = run(max_attempts=5)

        assert second.delivered == 9 - first.delivered  # only those not texted yet
        assert server.state.sms.receipts() == {p.key: 1 for p in people if p is not landline}
        carried_out = Counter(c.headers["idempotency-token"] for c in server.state.calls.all() if c.status == 201)
        assert len(carried_out) == 9 and set(carried_out.values()) == {1}  # one request per person texted
        assert [c.note for c in server.state.calls.all()].count("replayed") == 0
        # a refused number is answered, never sent (a rerun may ask again: the ledger keeps it failed)
        assert {(r["key"], r["code"]) for r in store.rejects(audience="flash_sale")} == {(landline.key, "21614")}


def test_sms_wrong_token_is_never_retried(server: RunningApi) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        _destination(server, auth_token="wrong").deliver(Operation.ADD, [_person(MOBILE[0])], idempotency_key="k")
    assert not isinstance(refused.value, TransientError | BatchRejected)
    assert "20003" in str(refused.value)
    assert server.state.sms.messages == []


def test_sms_credentials_from_an_airflow_connection(server: RunningApi, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {
        "conn_type": "http",
        "host": server.base_url,
        "login": SID,
        "password": TOKEN,
        "extra": {"from_number": FROM},
    }
    monkeypatch.setenv("AIRFLOW_CONN_YORISOI_TEST_SMS", json.dumps(connection))
    destination = SmsDestination(conn_id="yorisoi_test_sms", templates=TEMPLATES, allowed_columns=("full_name",))
    assert destination.deliver(Operation.ADD, [_person(MOBILE[0])], idempotency_key="k")[0].ok
    assert server.state.sms.messages[0]["from"] == FROM


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def test_http_statuses_map_onto_the_contract() -> None:
    assert isinstance(error_for_status(429, system="x", detail="", retry_after=2), TransientError)
    assert error_for_status(429, system="x", detail="", retry_after=2).retry_after == 2  # type: ignore[union-attr]
    for status in (408, 500, 502, 503, 504):
        assert isinstance(error_for_status(status, system="x", detail=""), TransientError)
    assert isinstance(error_for_status(400, system="x", detail=""), BatchRejected)
    assert isinstance(error_for_status(413, system="x", detail=""), BatchRejected)
    for status in (401, 403):
        error = error_for_status(status, system="x", detail="")
        assert isinstance(error, AuthenticationFailed) and not isinstance(error, TransientError)
    for status in (404, 409, 422):
        error = error_for_status(status, system="x", detail="")
        assert isinstance(error, PermanentError) and not isinstance(error, TransientError | BatchRejected)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 12, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Mon, 01 Dec 2025 00:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("Sun, 30 Nov 2025 00:00:00 GMT", now=lambda: now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def _fake_time() -> tuple[list[float], Callable[[float], None]]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return now, sleep


def test_request_bucket_never_exceeds_rate_plus_burst_in_any_window() -> None:
    """docs/reliability.md #7: whatever the request times, no window holds more than rate × window + burst."""
    now, sleep = _fake_time()
    bucket = request_bucket(100.0, clock=lambda: now[0], sleep=sleep)
    assert bucket.capacity == 5
    starts = []
    for i in range(2000):
        bucket.acquire()
        starts.append(now[0])
        now[0] += 0.02 if i % 50 == 0 else 0.002  # now and then a slow request
    for window in (0.01, 0.05, 0.1, 1.0):
        most = max(bisect.bisect_right(starts, t + window) - i for i, t in enumerate(starts))
        assert most <= 100.0 * window + bucket.capacity + 1e-9
    assert (len(starts) - 1) / (starts[-1] - starts[0]) >= 95.0  # the burst absorbs the slow requests


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sms_paces_its_own_requests(server: RunningApi, concurrency: int) -> None:
    """One request per recipient: the destination spaces them itself at rate_per_second, all its
    threads taking their slots from the same bucket."""
    now, sleep = _fake_time()
    destination = _destination(server, rate_per_second=10.0, concurrency=concurrency, clock=lambda: now[0], sleep=sleep)
    records = [_person(f"+81901234{i:04d}") for i in range(25)]
    destination.deliver(Operation.ADD, records, idempotency_key="k")
    assert len(server.state.sms.messages) == 25
    assert now[0] == pytest.approx((25 - 1) / 10.0)  # 1 token at the start, then one per 0.1 s
