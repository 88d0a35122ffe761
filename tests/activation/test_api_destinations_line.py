"""LINE destinations through the official SDK against the LINE fake on loopback (``servers/line.py``).

docs/reliability.md #4 (retry key: a retry of the same batch reuses ``X-Line-Retry-Key``, a 500 after
acceptance followed by a retry delivers once), 5 (429 / 5xx / timeouts transient, LINE 409 =
already delivered, 401 never retried) and 14 (nothing but the user ID leaves).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from yorisoi.activation.delivery.destinations._api import AuthenticationFailed, PermanentError, QuotaExceeded
from yorisoi.activation.delivery.destinations.base import (
    BatchRejected,
    DestinationError,
    Operation,
    Record,
    TransientError,
)
from yorisoi.activation.delivery.destinations.line import LineAudienceDestination, LineMulticastDestination, retry_key
from yorisoi_kit.servers import line as fake
from yorisoi_kit.servers._loopback import RunningApi

TOKEN = "line-channel-token-for-tests"
MESSAGES = {"A": "春の新作のお知らせ (A)", "B": [{"type": "text", "text": "春の新作、先行販売中 (B)"}]}


@pytest.fixture
def server() -> Iterator[RunningApi]:
    with fake.serve_in_thread(TOKEN) as running:
        yield running


def _multicast(server: RunningApi, **kwargs) -> LineMulticastDestination:
    kwargs.setdefault("templates", MESSAGES)
    kwargs.setdefault("channel_access_token", TOKEN)
    return LineMulticastDestination(base_url=server.base_url, **kwargs)


def _people(n: int, start: int = 0, variant: str | None = "A") -> list[Record]:
    return [
        Record(
            fake.make_user_id(i),
            f"P{i:05d}",
            {"full_name": f"山田{i}", "phone": "+819012345678", "email": f"p{i}@example.jp"},
            variant,
        )
        for i in range(start, start + n)
    ]


def test_multicast_sends_each_variant_its_message_and_nothing_but_user_ids(server: RunningApi) -> None:
    records = _people(3, variant="A") + _people(2, start=3, variant="B")
    destination = _multicast(server)

    results = destination.deliver(Operation.ADD, records, idempotency_key="run-1:batch-0")

    assert [r.key for r in results] == [r.key for r in records]
    assert all(r.ok and not r.already_done for r in results)
    state = server.state.line
    assert state.receipts() == {r.key: 1 for r in records}
    for record in records:
        (delivery,) = state.received(record.key)
        text = delivery.messages[0]["text"]
        assert text == ("春の新作のお知らせ (A)" if record.variant == "A" else "春の新作、先行販売中 (B)")
    calls = server.state.calls.all()
    assert [c.status for c in calls] == [200, 200]  # one multicast per variant
    keys = [c.headers["x-line-retry-key"] for c in calls]
    assert len(set(keys)) == 2 and all(uuid.UUID(k).version == 5 for k in keys)
    # docs/reliability.md #14: no member column reaches LINE, only the user IDs
    for delivery in state.deliveries:
        assert "山田" not in str(delivery.messages) and "example.jp" not in str(delivery.messages)


def test_invalid_user_ids_are_row_failures_and_the_rest_is_sent_once(server: RunningApi) -> None:
    good = _people(3)
    bad = [Record("U-not-a-user", "P90000", {}, "A"), Record("line:abc", "P90001", {}, "A")]
    records = [good[0], bad[0], good[1], bad[1], good[2]]

    results = {r.key: r for r in _multicast(server).deliver(Operation.ADD, records, idempotency_key="k")}

    assert {key for key, r in results.items() if not r.ok} == {b.key for b in bad}
    assert all(results[b.key].code == "invalid_user_id" for b in bad)
    assert all(results[g.key].ok for g in good)
    assert server.state.line.receipts() == {g.key: 1 for g in good}
    assert [c.status for c in server.state.calls.all()] == [400, 200]  # LINE carried out nothing on the 400


def test_500_after_acceptance_then_retry_reuses_the_key_and_409_means_already_done(server: RunningApi) -> None:
    """docs/reliability.md #4 + 5: LINE accepted the batch but answered 500; the retry carries the same
    retry key, LINE answers 409 and the rows count as delivered: everyone received it once."""
    records = _people(4)
    destination = _multicast(server)
    server.state.faults.fail_after_accept(1)

    with pytest.raises(TransientError) as failed:
        destination.deliver(Operation.ADD, records, idempotency_key="2025-12-01:batch-7")
    assert failed.value.status == 500

    # the engine retries the same batch (maybe from a new process: a new destination object)
    again = _multicast(server).deliver(Operation.ADD, records, idempotency_key="2025-12-01:batch-7")

    assert all(r.ok and r.already_done and r.code == "409" for r in again)
    assert server.state.line.receipts() == {r.key: 1 for r in records}
    first, retried = server.state.calls.all()
    assert (first.status, retried.status) == (500, 409)
    assert first.headers["x-line-retry-key"] == retried.headers["x-line-retry-key"]
    assert first.headers["x-line-retry-key"] == retry_key("2025-12-01:batch-7", "A")
    assert retry_key("2025-12-01:batch-8", "A") != retry_key("2025-12-01:batch-7", "A")


def test_timeout_then_retry_delivers_once(server: RunningApi) -> None:
    """The request is slow, the client gives up and retries with the same key: whichever of the
    two LINE carries out first wins, the other answers 409."""
    records = _people(2)
    destination = _multicast(server, timeout=0.3)
    server.state.faults.set_delay(1.0, count=1)

    with pytest.raises(TransientError):
        destination.deliver(Operation.ADD, records, idempotency_key="slow")
    results = destination.deliver(Operation.ADD, records, idempotency_key="slow")
    time.sleep(1.2)  # let the delayed first request finish on the server

    assert all(r.ok for r in results)
    assert server.state.line.receipts() == {r.key: 1 for r in records}
    assert sorted(c.status for c in server.state.calls.all()) == [200, 409]


def test_rate_limit_is_transient_without_retry_after() -> None:
    """LINE answers 429 with its message and no Retry-After; the batch is retried later."""
    frozen = 1000.0
    with fake.serve_in_thread(TOKEN, rate_per_second=1, burst=1, clock=lambda: frozen) as server:
        destination = _multicast(server)
        destination.deliver(Operation.ADD, _people(1), idempotency_key="a")
        with pytest.raises(TransientError) as limited:
            destination.deliver(Operation.ADD, _people(1, start=1), idempotency_key="b")
        assert limited.value.status == 429
        assert limited.value.retry_after is None
        assert "rate limit" in str(limited.value)
        assert server.state.line.receipts() == {fake.make_user_id(0): 1}


def test_5xx_is_transient(server: RunningApi) -> None:
    server.state.faults.inject(503)
    with pytest.raises(TransientError) as failed:
        _multicast(server).deliver(Operation.ADD, _people(1), idempotency_key="k")
    assert failed.value.status == 503
    assert server.state.line.deliveries == []


def test_monthly_limit_is_not_transient() -> None:
    with fake.serve_in_thread(TOKEN, monthly_limit=3) as server:
        destination = _multicast(server)
        destination.deliver(Operation.ADD, _people(3), idempotency_key="a")
        with pytest.raises(QuotaExceeded) as exhausted:
            destination.deliver(Operation.ADD, _people(1, start=3), idempotency_key="b")
        assert not isinstance(exhausted.value, TransientError)


def test_wrong_token_is_permanent(server: RunningApi) -> None:
    destination = _multicast(server, channel_access_token="expired-token")
    with pytest.raises(AuthenticationFailed) as refused:
        destination.deliver(Operation.ADD, _people(2), idempotency_key="k")
    assert isinstance(refused.value, DestinationError)
    assert not isinstance(refused.value, TransientError | BatchRejected)
    assert "401" in str(refused.value) and "credentials" in str(refused.value)
    assert [c.status for c in server.state.calls.all()] == [401]


def test_unknown_variant_is_a_configuration_error(server: RunningApi) -> None:
    destination = _multicast(server, templates={"A": "only A"})
    with pytest.raises(PermanentError, match="variant 'C'"):
        destination.deliver(Operation.ADD, _people(1, variant="C"), idempotency_key="k")
    assert len(server.state.calls) == 0


def test_retry_keys_are_kept_24_hours() -> None:
    now = [0.0]
    with fake.serve_in_thread(TOKEN, clock=lambda: now[0]) as server:
        records = _people(1)
        _multicast(server).deliver(Operation.ADD, records, idempotency_key="k")
        now[0] = 23 * 3600.0
        assert _multicast(server).deliver(Operation.ADD, records, idempotency_key="k")[0].already_done
        now[0] = 24 * 3600.0 + 1
        assert not _multicast(server).deliver(Operation.ADD, records, idempotency_key="k")[0].already_done
        assert server.state.line.receipts()[records[0].key] == 2


def test_audience_is_created_once_and_gets_every_batch(server: RunningApi) -> None:
    first = LineAudienceDestination(audience_name="VIP 2025-12", channel_access_token=TOKEN, base_url=server.base_url)
    first.deliver(Operation.ADD, _people(3), idempotency_key="a")
    # another process (a mapped task) finds the same audience by name
    second = LineAudienceDestination(audience_name="VIP 2025-12", channel_access_token=TOKEN, base_url=server.base_url)
    results = second.deliver(Operation.ADD, _people(3, start=2), idempotency_key="b")

    assert all(r.ok for r in results)
    groups = server.state.line.audience_groups
    assert len(groups) == 1 and first.audience_group_id == second.audience_group_id
    assert server.state.line.group_members(second.audience_group_id) == {fake.make_user_id(i) for i in range(5)}


def test_audience_create_whose_answer_was_lost_is_not_duplicated(server: RunningApi) -> None:
    destination = LineAudienceDestination(audience_name="cart", channel_access_token=TOKEN, base_url=server.base_url)
    server.state.faults.fail_after_accept(1)  # the create is carried out, the answer is a 500
    with pytest.raises(TransientError):
        destination.deliver(Operation.ADD, _people(2), idempotency_key="a")
    destination.deliver(Operation.ADD, _people(2), idempotency_key="a")
    (group,) = server.state.line.audience_groups.values()
    assert group.user_ids == {fake.make_user_id(0), fake.make_user_id(1)}


def test_audience_upload_with_a_bad_id_is_rejected_as_a_batch(server: RunningApi) -> None:
    destination = LineAudienceDestination(audience_name="x", channel_access_token=TOKEN, base_url=server.base_url)
    with pytest.raises(BatchRejected, match="INVALID_AUDIENCE_ID_FORMAT"):
        destination.deliver(Operation.ADD, [*_people(2), Record("nope", "P1", {})], idempotency_key="a")
    (group,) = server.state.line.audience_groups.values()
    assert group.user_ids == set()
    # LINE cannot remove from an upload audience: a REMOVE outside a rebuild is refused
    with pytest.raises(PermanentError, match="outside a rebuild"):
        destination.deliver(Operation.REMOVE, _people(1), idempotency_key="b")
