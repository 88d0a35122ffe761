"""The API destinations through the engine (``engine.sync``: ledger, retries, splits, snapshots)
against the real protocols on loopback: one or two end-to-end checks per destination.

docs/reliability.md #4 (a run killed while LINE had accepted a batch, then rerun: everyone received the
message exactly once; a 500 after acceptance is retried under the same retry key), 5 (Retry-After
honoured, 401 never retried), 6 (a bad row isolated by splitting), 7 (zero 429s at steady state
below the fake's limit), 8 (what the changelog calls succeeded is what the server received).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

# the SMTP server of the email tests (aiosmtpd with AUTH, refusing @bounce.example)
from test_api_destinations_email import smtp  # noqa: F401 - the fixture

from yorisoi.activation.delivery import engine
from yorisoi.activation.delivery.destinations.base import Record
from yorisoi.activation.delivery.destinations.email import EspListDestination, SmtpEmailDestination
from yorisoi.activation.delivery.destinations.line import LineAudienceDestination, LineMulticastDestination
from yorisoi.activation.delivery.destinations.sms import SmsDestination
from yorisoi.activation.delivery.store import ActivationStore
from yorisoi_kit.servers import esp as esp_fake
from yorisoi_kit.servers import line as line_fake
from yorisoi_kit.servers import sms as sms_fake
from yorisoi_kit.servers._loopback import RunningApi

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

TOKEN = "line-token-for-sync-tests"
INTERVAL = "2025-12-01"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ActivationStore]:
    with ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}") as opened:
        yield opened


class Waits:
    """The engine's ``sleep``: records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _line_users(n: int, variant: str = "A") -> list[Record]:
    return [Record(line_fake.make_user_id(i), f"P{i:05d}", {}, variant) for i in range(n)]


def _multicast(server: RunningApi, **kwargs) -> LineMulticastDestination:
    return LineMulticastDestination(
        templates={"A": "冬のギフト特集"}, channel_access_token=TOKEN, base_url=server.base_url, **kwargs
    )


def _succeeded(store: ActivationStore, run_id: str) -> Counter[str]:
    return Counter(row["key"] for row in store.changelog(run_id) if row["status"] == "succeeded")


# --------------------------------------------------------------------------------------------
# LINE multicast
# --------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from yorisoi.activation.delivery import engine
    from yorisoi.activation.delivery.destinations.base import Record
    from yorisoi.activation.delivery.destinations.line import LineMulticastDestination
    from yorisoi.activation.delivery.store import ActivationStore
    from yorisoi_kit.servers.line import make_user_id

    url, database, n, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    destination = LineMulticastDestination(
        templates={"A": "冬のギフト特集"}, channel_access_token=token, base_url=url, max_batch=5
    )
    records = [Record(make_user_id(i), f"P{i:05d}", {}, "A") for i in range(n)]
    engine.sync(ActivationStore(f"sqlite:///{database}"), destination, "winter_gift", records, interval="2025-12-01")
    """
)


def test_line_run_killed_after_line_accepted_a_batch_then_rerun_delivers_exactly_once(tmp_path: Path) -> None:
    """docs/reliability.md #4: a real process is killed while LINE has accepted its third batch but not
    answered; the rerun takes the dead run's claim over and resends that batch under the same
    idempotency key, hence the same X-Line-Retry-Key: LINE answers 409 and nobody gets it twice."""
    database = tmp_path / "activation.sqlite"
    users = _line_users(40)
    with line_fake.serve_in_thread(TOKEN) as server:
        server.state.faults.hold_after_accept(5.0, skip=2)  # batches 1, 2 answered; 3 accepted, held
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(database), str(len(users)), TOKEN],
            env=env,
        )
        try:
            deadline = time.monotonic() + 90
            while len(server.state.line.deliveries) < 15:  # the third batch is in
                assert child.poll() is None, "the sync process ended before it was killed"
                assert time.monotonic() < deadline, "the sync process did not get to its third batch"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        held_key = server.state.line.deliveries[-1].retry_key  # batch 3's (its answer is still held)

        with ActivationStore(f"sqlite:///{database}") as store:
            ledger = Counter(row["status"] for row in store.ledger("winter_gift", "line_multicast", INTERVAL))
            assert ledger == {"sent": 10, "claimed": 5}  # the killed run never learnt batch 3's fate
            summary = engine.sync(
                store, _multicast(server, max_batch=5), "winter_gift", users, interval=INTERVAL, claim_lease=0
            )
        assert server.state.line.receipts() == {u.key: 1 for u in users}  # exactly once each
        assert summary.adds == summary.delivered == 30  # the 10 confirmed are in the snapshot
        conflicts = [c for c in server.state.calls.all() if c.status == 409]
        assert len(conflicts) == 1 and conflicts[0].headers["x-line-retry-key"] == held_key


def test_line_500_after_acceptance_is_retried_under_the_same_key(store: ActivationStore) -> None:
    users = _line_users(12)
    with line_fake.serve_in_thread(TOKEN) as server:
        server.state.faults.fail_after_accept(1)
        summary = engine.sync(
            store, _multicast(server, max_batch=5), "winter_gift", users, interval=INTERVAL, sleep=Waits()
        )
        calls = server.state.calls.all()
        assert server.state.line.receipts() == {u.key: 1 for u in users}
    assert [c.status for c in calls] == [500, 409, 200, 200]
    assert calls[0].headers["x-line-retry-key"] == calls[1].headers["x-line-retry-key"]
    assert summary.delivered == 12
    assert _succeeded(store, summary.run_id) == {u.key: 1 for u in users}  # docs/reliability.md #8


def test_line_steady_state_below_the_limit_sees_no_429(store: ActivationStore) -> None:
    """docs/reliability.md #7: the fake allows 50 requests/s (5 at once); at 45/s nothing is refused.
    Unpaced against a stricter fake, the same run is refused at once (the fake enforces its limit)."""
    users = _line_users(300)
    with line_fake.serve_in_thread(TOKEN, rate_per_second=50, burst=5) as server:
        summary = engine.sync(
            store, _multicast(server, max_batch=5, rate_per_second=45), "winter_gift", users, interval=INTERVAL
        )
        assert summary.delivered == 300
        assert server.state.calls.count(429) == 0 and server.state.calls.count(200) == 60
        assert server.state.line.receipts() == {u.key: 1 for u in users}

    # The control: the fake does enforce a limit. Against 2 requests/s, an unpaced client is refused
    # however slowly a loaded machine runs it (it would need over half a second per request).
    with line_fake.serve_in_thread(TOKEN, rate_per_second=2, burst=1) as strict:
        with pytest.raises(engine.DestinationUnavailable):
            engine.sync(store, _multicast(strict, max_batch=5), "unpaced", users, interval=INTERVAL, max_attempts=1)
        assert strict.state.calls.count(429) >= 1


# --------------------------------------------------------------------------------------------
# LINE audience, SMTP, ESP, SMS
# --------------------------------------------------------------------------------------------


def test_line_audience_bad_id_is_isolated_by_splitting(store: ActivationStore) -> None:
    """docs/reliability.md #6: LINE refuses the whole upload for one malformed ID; the engine splits the
    batch until that row stands alone, and only it lands in the rejects."""
    users = [*_line_users(7), Record("not-a-line-id", "P99999", {})]
    with line_fake.serve_in_thread(TOKEN) as server:
        destination = LineAudienceDestination(
            audience_name="winter_gift", channel_access_token=TOKEN, base_url=server.base_url
        )
        summary = engine.sync(store, destination, "winter_gift", users, interval=INTERVAL, sleep=Waits())
        (group,) = server.state.line.audience_groups.values()
    assert group.user_ids == {u.key for u in users[:7]}
    assert summary.delivered == 7 and summary.rejected == 1
    (reject,) = store.rejects(summary.run_id)
    assert reject["key"] == "not-a-line-id" and "INVALID_AUDIENCE_ID_FORMAT" in reject["reason"]


def _audience(server: RunningApi, **kwargs) -> LineAudienceDestination:
    return LineAudienceDestination(audience_name="vip", channel_access_token=TOKEN, base_url=server.base_url, **kwargs)


def _groups(server: RunningApi) -> dict[str, set[str]]:
    return {g.description: set(g.user_ids) for g in server.state.line.audience_groups.values()}


def _opted_out(*people: Record):
    out = {r.person_id for r in people}
    return lambda person_ids: person_ids & out


def test_line_audience_opt_out_is_removed_by_rebuilding_and_a_full_resync_never_readds_it(
    store: ActivationStore,
) -> None:
    """docs/reliability.md #2 for a LINE upload audience, which has no endpoint to remove a user: the
    engine rebuilds it without the person who opted out and publishes it under the same name."""
    users = _line_users(5)
    with line_fake.serve_in_thread(TOKEN) as server:
        engine.sync(store, _audience(server), "vip", users, interval=INTERVAL, sleep=Waits())
        assert _groups(server) == {"vip": {u.key for u in users}}

        blocked = users[1]
        summary = engine.sync(
            store, _audience(server), "vip", users, interval="2025-12-02", suppressed=_opted_out(blocked), sleep=Waits()
        )
        assert summary.removes == 1 and summary.delivered == 1
        assert _groups(server) == {"vip": {u.key for u in users if u is not blocked}}
        assert blocked.key not in store.load_snapshot("vip", "line_audience")
        statuses = {(row["operation"], row["status"]) for row in store.changelog(summary.run_id)}
        assert statuses == {("remove", "succeeded")}

        # a full resync from a stale selection that still lists the blocked person
        engine.sync(
            store,
            _audience(server),
            "vip",
            users,
            interval="2025-12-03",
            mode="full",
            suppressed=_opted_out(blocked),
            sleep=Waits(),
        )
        assert _groups(server) == {"vip": {u.key for u in users if u is not blocked}}

        # nobody left in the audience: the published audience is empty, never the old one
        engine.sync(store, _audience(server), "vip", [], interval="2025-12-04", sleep=Waits())
        assert _groups(server) == {"vip": set()}


def test_line_audience_rebuild_failing_part_way_changes_nothing_and_a_rerun_publishes(
    store: ActivationStore,
) -> None:
    users = _line_users(25)
    left = users[7]
    with line_fake.serve_in_thread(TOKEN) as server:
        engine.sync(store, _audience(server, max_batch=10), "vip", users, interval=INTERVAL, sleep=Waits())

        class DropsAfterFirstUpload(LineAudienceDestination):
            def deliver(self, operation, records, *, idempotency_key):
                results = super().deliver(operation, records, idempotency_key=idempotency_key)
                server.state.faults.inject(*[503] * 10)  # LINE goes down after the first batch
                return results

        broken = DropsAfterFirstUpload(audience_name="vip", channel_access_token=TOKEN, base_url=server.base_url)
        broken.max_batch = 10
        with pytest.raises(engine.DestinationUnavailable) as stopped:
            engine.sync(
                store, broken, "vip", users[:7] + users[8:], interval="2025-12-02", max_attempts=3, sleep=Waits()
            )
        groups = _groups(server)
        assert groups["vip"] == {u.key for u in users}  # the live audience is untouched
        assert len(groups["vip (rebuilding)"]) == 10  # the copy got one batch
        assert left.key in store.load_snapshot("vip", "line_audience")  # not confirmed removed
        statuses = Counter((row["operation"], row["status"]) for row in store.changelog(stopped.value.summary.run_id))
        assert statuses[("remove", "failed")] == 1

        server.state.faults.clear()
        summary = engine.sync(
            store, _audience(server, max_batch=10), "vip", users[:7] + users[8:], interval="2025-12-02", sleep=Waits()
        )
        assert summary.removes == 1 and summary.delivered == 1
        assert _groups(server) == {"vip": {u.key for u in users if u is not left}}  # one group, by its name


def test_line_audience_publish_whose_answer_was_lost_is_not_repeated_wrongly(store: ActivationStore) -> None:
    users = _line_users(4)
    with line_fake.serve_in_thread(TOKEN) as server:
        engine.sync(store, _audience(server), "vip", users, interval=INTERVAL, sleep=Waits())
        destination = _audience(server)
        original = destination._api.update_audience_group_description

        def rename_then_lose_the_answer(*args, **kwargs):
            destination._api.update_audience_group_description = original
            server.state.faults.fail_after_accept(1)  # the rename is carried out, the answer is a 500
            return original(*args, **kwargs)

        destination._api.update_audience_group_description = rename_then_lose_the_answer
        waits = Waits()
        engine.sync(store, destination, "vip", users[1:], interval="2025-12-02", sleep=waits)
        assert waits.waits  # the publish was retried
        assert _groups(server) == {"vip": {u.key for u in users[1:]}}


def test_smtp_sync_sends_once_per_interval_and_records_bounces(store: ActivationStore, smtp) -> None:  # noqa: F811
    people = [
        Record(f"{name}@example.jp", f"P-{name}", {"full_name": name}, "A") for name in ("aoki", "baba", "chiba")
    ] + [Record("ghost@bounce.example", "P-ghost", {"full_name": "ghost"}, "B")]
    templates = {
        "A": {"subject": "{full_name}様へ", "body": "<p>A</p>"},
        "B": {"subject": "{full_name}様へ(B)", "body": "<p>B</p>"},
    }

    def destination() -> SmtpEmailDestination:
        return SmtpEmailDestination(
            conn_id="yorisoi_test_smtp", templates=templates, allowed_columns=("full_name",), max_batch=2
        )

    first = engine.sync(store, destination(), "winter_gift", people, interval=INTERVAL)
    again = engine.sync(store, destination(), "winter_gift", people, interval=INTERVAL, mode="full")

    assert sorted(smtp.mailbox.recipients()) == ["aoki@example.jp", "baba@example.jp", "chiba@example.jp"]
    assert _succeeded(store, first.run_id) == Counter(smtp.mailbox.recipients())  # docs/reliability.md #8
    (bounce,) = store.rejects(first.run_id)
    assert (bounce["key"], bounce["code"]) == ("ghost@bounce.example", "550")
    assert again.delivered == 0  # the ledger: nobody is emailed twice in one interval


def test_esp_list_sync_adds_updates_and_removes(store: ActivationStore) -> None:
    def person(name: str, full_name: str) -> Record:
        return Record(f"{name}@example.jp", f"P-{name}", {"full_name": full_name})

    with esp_fake.serve_in_thread("esp-key") as server:

        def destination() -> EspListDestination:
            return EspListDestination(
                base_url=server.base_url, api_key="esp-key", list_id="main", allowed_columns=("full_name",)
            )

        engine.sync(
            store, destination(), "vip", [person("a", "青木"), person("b", "馬場"), person("c", "千葉")], interval="1"
        )
        server.state.faults.fail_after_accept(1)  # the removal is carried out, the answer lost
        second = engine.sync(
            store,
            destination(),
            "vip",
            [person("a", "青木 花子"), person("b", "馬場"), person("c", "千葉")],
            interval="2",
            suppressed=lambda people: {"P-c"} & people,  # c opted out since
            sleep=Waits(),
        )
        members = server.state.esp.members("main")
        notes = [c.note for c in server.state.calls.all()]
    assert set(members) == {"a@example.jp", "b@example.jp"}
    assert members["a@example.jp"].merge_fields == {"full_name": "青木 花子"}
    assert (second.removes, second.updates, second.adds) == (1, 1, 0)
    assert notes == ["accepted", "accepted", "replayed", "accepted"]  # the retry was answered from the record


def test_sms_honours_retry_after_and_never_retries_a_401(store: ActivationStore) -> None:
    sid, token = "AC" + "1" * 32, "sms-token"
    people = [Record(f"+8190123400{i:02d}", f"P{i}", {"full_name": f"顧客{i}"}) for i in range(4)]
    with sms_fake.serve_in_thread(sid, token) as server:

        def destination(auth_token: str) -> SmsDestination:
            return SmsDestination(
                templates={"default": "{full_name}様 本日限定"},
                account_sid=sid,
                auth_token=auth_token,
                from_number="+815012345678",
                base_url=server.base_url,
                allowed_columns=("full_name",),
                max_batch=2,
            )

        server.state.faults.inject(429, retry_after=2)
        waits = Waits()
        summary = engine.sync(store, destination(token), "flash_sale", people, interval=INTERVAL, sleep=waits)
        assert summary.delivered == 4
        assert server.state.sms.receipts() == {p.key: 1 for p in people}
        assert waits.waits and waits.waits[0] >= 2.0  # Retry-After honoured

        server.state.calls.clear()
        with pytest.raises(engine.SyncError) as refused:
            engine.sync(store, destination("revoked"), "restock", people, interval=INTERVAL, sleep=Waits())
        assert not isinstance(refused.value, engine.DestinationUnavailable)
        assert [c.status for c in server.state.calls.all()] == [401]  # never retried
