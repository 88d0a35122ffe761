"""Email destinations over real protocols on loopback: SMTP through Airflow's SmtpHook against an
aiosmtpd server (the Airflow connection given as ``AIRFLOW_CONN_<ID>`` JSON), and list sync
against the ESP fake (``servers/esp.py``).

docs/reliability.md #4 (a batch failing part-way reports what the server took, so neither the engine's
retry nor a rerun in a new process sends it again), 5 (what is transient, what is never retried),
6 (per-row rejections, batch rejections) and 14 (only allowed columns leave).
"""

from __future__ import annotations

import asyncio
import email
import json
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

from yorisoi.activation.delivery import engine
from yorisoi.activation.delivery.destinations._api import AuthenticationFailed, PermanentError
from yorisoi.activation.delivery.destinations.base import (
    BatchRejected,
    DestinationError,
    Operation,
    Record,
    TransientError,
)
from yorisoi.activation.delivery.destinations.email import EspListDestination, SmtpEmailDestination, message_id
from yorisoi.activation.delivery.store import ActivationStore
from yorisoi_kit.servers import esp as esp_fake
from yorisoi_kit.servers._loopback import RunningApi

# the loopback SMTP server takes AUTH without TLS (production connections use TLS)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SMTP_USER, SMTP_PASSWORD = "shop-mailer", "smtp-password-for-tests"
SENDER = "news@shop.example.jp"
TEMPLATES = {
    "A": {"subject": "{full_name}様、春の新作をご覧ください", "body": "<p>{full_name}様</p><p>A案: 新作のご案内</p>"},
    "B": {"subject": "【先行販売】春の新作", "body": "<p>{full_name}様</p><p>B案: 先行販売</p>"},
}
ALLOWED = ("full_name",)
# columns C's selection could hold but this destination does not allow: none may leave
SECRET_FIELDS = {"phone": "+819099998888", "address": "東京都千代田区丸の内9-9-9", "postal_code": "100-0005"}


# --------------------------------------------------------------------------------------------
# SMTP: an aiosmtpd server with AUTH, refusing and deferring some recipients
# --------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received; ``deferred`` domains answer 451 to RCPT. With
    ``per_connection`` set, a connection takes that many MAIL FROM; the next one is answered
    ``421`` and the connection closed (``cutoff="421"``), or the connection is dropped without a
    reply (``cutoff="drop"``)."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # every RCPT TO, accepted or not
    deferred: set[str] = field(default_factory=lambda: {"grey.example"})
    per_connection: int | None = None
    cutoff: str = "421"
    mails: Counter[tuple[str, int]] = field(default_factory=Counter)  # MAIL FROM per connection

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails[session.peer] += 1
        if self.per_connection is None or self.mails[session.peer] <= self.per_connection:
            return MISSING  # aiosmtpd's own handling: 250
        if self.cutoff == "drop":
            server.transport.abort()
            return MISSING
        asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply is written
        return "421 4.7.0 too many messages on this connection, closing"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.attempts.append(address)
        domain = address.rsplit("@", 1)[-1]
        if domain == "bounce.example":
            return "550 5.1.1 <%s>: mailbox unavailable" % address  # noqa: UP031
        if domain in self.deferred:
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]  # type: ignore[misc]

    def recipients(self) -> list[str]:
        return [rcpt for _, rcpts, _ in self.received for rcpt in rcpts]


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=False,  # loopback only; production connections use TLS
    )
    controller.start()
    _set_connection(monkeypatch, "yorisoi_test_smtp", port, SMTP_PASSWORD)
    try:
        yield SmtpServer(mailbox, port)
    finally:
        controller.stop()


def _set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, port: int, password: str) -> None:
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "login": SMTP_USER,
        "password": password,
        "extra": {"from_email": SENDER, "disable_tls": True, "disable_ssl": True, "timeout": 5, "retry_limit": 3},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def _smtp_destination(conn_id: str = "yorisoi_test_smtp", **kwargs) -> SmtpEmailDestination:
    kwargs.setdefault("templates", TEMPLATES)
    kwargs.setdefault("allowed_columns", ALLOWED)
    return SmtpEmailDestination(conn_id=conn_id, list_unsubscribe="<mailto:unsubscribe@shop.example.jp>", **kwargs)


def _person(address: str, name: str, variant: str | None = "A") -> Record:
    return Record(address, f"P-{address}", {"full_name": name, **SECRET_FIELDS}, variant)


def _text(message: EmailMessage) -> str:
    return "\n".join(str(part.get_content()) for part in message.walk() if part.get_content_maintype() == "text")


def test_smtp_sends_one_message_per_recipient_with_the_variants_content(smtp: SmtpServer) -> None:
    records = [_person("hanako@example.jp", "山田<花子>", "A"), _person("taro@example.jp", "佐藤太郎", "B")]
    destination = _smtp_destination()

    results = destination.deliver(Operation.ADD, records, idempotency_key="2025-12-01:0")
    destination.close()

    assert [(r.key, r.ok, r.code) for r in results] == [(r.key, True, "250") for r in records]
    assert [(sender, rcpts) for sender, rcpts, _ in smtp.mailbox.received] == [
        (SENDER, ["hanako@example.jp"]),
        (SENDER, ["taro@example.jp"]),
    ]
    hanako, taro = smtp.mailbox.messages()
    assert hanako["From"] == SENDER and hanako["To"] == "hanako@example.jp"
    assert hanako["Subject"] == "山田<花子>様、春の新作をご覧ください"
    assert taro["Subject"] == "【先行販売】春の新作"
    assert "A案" in _text(hanako) and "B案" in _text(taro)
    assert "山田&lt;花子&gt;様" in _text(hanako)  # values are HTML-escaped in the body
    assert hanako["Message-ID"] == message_id("2025-12-01:0", "hanako@example.jp", "shop.example.jp")
    assert hanako["Message-ID"] != taro["Message-ID"]
    assert hanako["List-Unsubscribe"] == "<mailto:unsubscribe@shop.example.jp>"
    # docs/reliability.md #14: no column outside the allow-list, in the headers or the decoded body
    for message, (_, _, raw) in zip(smtp.mailbox.messages(), smtp.mailbox.received, strict=True):
        for value in SECRET_FIELDS.values():
            assert value not in _text(message) and value not in str(message) and value.encode() not in raw


def test_smtp_refused_recipients_are_row_failures(smtp: SmtpServer) -> None:
    records = [
        _person("ok1@example.jp", "一"),
        _person("nobody@bounce.example", "二"),
        _person("evil@example.jp\r\nBcc: all@example.jp", "三"),  # header injection: never sent
        _person("ok2@example.jp", "四"),
    ]
    results = {r.key: r for r in _smtp_destination().deliver(Operation.ADD, records, idempotency_key="k")}

    assert results["nobody@bounce.example"].ok is False and results["nobody@bounce.example"].code == "550"
    assert "mailbox unavailable" in (results["nobody@bounce.example"].reason or "")
    assert results[records[2].key].code == "invalid_email"
    assert results["ok1@example.jp"].ok and results["ok2@example.jp"].ok
    assert smtp.mailbox.recipients() == ["ok1@example.jp", "ok2@example.jp"]


def test_smtp_deferral_is_transient_and_the_retry_sends_only_what_is_missing(smtp: SmtpServer) -> None:
    """docs/reliability.md #4/5: a 451 mid-batch fails the batch as transient, naming the recipients the
    server already took; retrying the rest sends nobody twice (the provider's retry loop is off)."""
    records = [_person("first@example.jp", "一"), _person("late@grey.example", "二"), _person("last@example.jp", "三")]
    destination = _smtp_destination()
    with pytest.raises(TransientError, match="451") as deferred:
        destination.deliver(Operation.ADD, records, idempotency_key="k")
    assert [(r.key, r.ok, r.code) for r in deferred.value.partial] == [("first@example.jp", True, "250")]
    assert smtp.mailbox.recipients() == ["first@example.jp"]
    assert smtp.mailbox.attempts == ["first@example.jp", "late@grey.example"]  # not the hook's retry_limit times

    smtp.mailbox.deferred.clear()
    answered = {r.key for r in deferred.value.partial}
    results = destination.deliver(Operation.ADD, [r for r in records if r.key not in answered], idempotency_key="k")

    assert [(r.key, r.ok) for r in results] == [("late@grey.example", True), ("last@example.jp", True)]
    assert Counter(smtp.mailbox.recipients()) == {"first@example.jp": 1, "late@grey.example": 1, "last@example.jp": 1}


@pytest.mark.parametrize("cutoff", ["421", "drop"], ids=["421 closing", "connection dropped"])
def test_smtp_relay_cutting_off_every_attempt_then_a_rerun_emails_everyone_exactly_once(
    smtp: SmtpServer, tmp_path, cutoff: str
) -> None:
    """docs/reliability.md #4 through the engine: the relay takes 2 messages per connection, then answers
    421 (or drops the connection), on every attempt until the engine gives up. The messages it
    took are settled as sent at once, so the rerun (a new process: a fresh destination) emails
    only the others. SMTP has no deduplication: without the partial answer they would be sent
    again."""
    smtp.mailbox.per_connection, smtp.mailbox.cutoff = 2, cutoff
    people = [Record(f"customer{i}@example.jp", f"P{i}", {"full_name": f"顧客{i}"}, "A") for i in range(9)]
    bounce = Record("nobody@bounce.example", "P-bounce", {"full_name": "不明"}, "A")  # 550: refused per row
    people.insert(1, bounce)
    with ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}") as store:

        def run(max_attempts: int) -> engine.SyncSummary:
            return engine.sync(
                store,
                _smtp_destination(max_batch=10),
                "winter_sale",
                people,
                interval="2025-12-01",
                sleep=lambda _seconds: None,
                max_attempts=max_attempts,
            )

        with pytest.raises(engine.DestinationUnavailable) as stopped:
            run(max_attempts=3)
        assert ("SMTPServerDisconnected" in str(stopped.value)) == (cutoff == "drop")
        first = stopped.value.summary
        # attempt 1: customer0 sent, bounce refused; attempts 2 and 3: two sent each
        assert (first.delivered, first.rejected, first.failed) == (5, 1, 4)
        ledger = {row["key"]: row["status"] for row in store.ledger("winter_sale", "smtp_email", "2025-12-01")}
        assert {key for key, status in ledger.items() if status == "sent"} == set(smtp.mailbox.recipients())

        second = run(max_attempts=5)

    assert second.delivered == 4
    assert Counter(smtp.mailbox.recipients()) == {p.key: 1 for p in people if p is not bounce}


def test_smtp_wrong_password_is_never_retried(smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, "yorisoi_test_smtp_bad", smtp.port, "wrong-password")
    with pytest.raises(AuthenticationFailed) as refused:
        _smtp_destination("yorisoi_test_smtp_bad").deliver(
            Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="k"
        )
    assert not isinstance(refused.value, TransientError | BatchRejected)
    assert "yorisoi_test_smtp_bad" in str(refused.value)
    assert smtp.mailbox.received == []


def test_smtp_server_down_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, "yorisoi_test_smtp_down", _free_port(), SMTP_PASSWORD)
    with pytest.raises(TransientError):
        _smtp_destination("yorisoi_test_smtp_down").deliver(
            Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="k"
        )


def test_smtp_templates_cannot_use_columns_outside_the_allow_list() -> None:
    with pytest.raises(ValueError, match="outside the allow-list"):
        SmtpEmailDestination(templates={"default": {"subject": "x", "body": "{phone}"}}, allowed_columns=ALLOWED)
    with pytest.raises(ValueError, match="plain column name"):
        SmtpEmailDestination(
            templates={"default": {"subject": "x", "body": "{full_name.__class__}"}}, allowed_columns=ALLOWED
        )


# --------------------------------------------------------------------------------------------
# ESP list sync
# --------------------------------------------------------------------------------------------

ESP_KEY = "esp-api-key-for-tests"


@pytest.fixture
def esp() -> Iterator[RunningApi]:
    with esp_fake.serve_in_thread(ESP_KEY, list_ids=("main",)) as running:
        yield running


def _esp_destination(server: RunningApi, **kwargs) -> EspListDestination:
    kwargs.setdefault("api_key", ESP_KEY)
    kwargs.setdefault("list_id", "main")
    return EspListDestination(
        base_url=server.base_url, field_map={"full_name": "FNAME"}, allowed_columns=ALLOWED, **kwargs
    )


def test_esp_upserts_and_removes_with_only_allowed_fields(esp: RunningApi) -> None:
    destination = _esp_destination(esp)
    people = [_person("a@example.jp", "青木"), _person("b@example.jp", "馬場"), _person("c@example.jp", "千葉")]

    added = destination.deliver(Operation.ADD, people, idempotency_key="r1:add")
    changed = destination.deliver(
        Operation.UPDATE, [_person("a@example.jp", "青木 花子"), people[1]], idempotency_key="r2:upd"
    )
    removed = destination.deliver(
        Operation.REMOVE, [people[2], _person("gone@example.jp", "x")], idempotency_key="r2:rm"
    )

    assert [r.code for r in added] == ["created"] * 3
    assert [r.code for r in changed] == ["updated", "unchanged"]
    assert [(r.ok, r.code) for r in removed] == [(True, "removed"), (True, "not_member")]
    members = esp.state.esp.members("main")
    assert set(members) == {"a@example.jp", "b@example.jp"}
    assert members["a@example.jp"].merge_fields == {"FNAME": "青木 花子"}  # nothing but the allowed column
    assert esp.state.esp.removed == [("main", "c@example.jp")]


def test_esp_invalid_addresses_are_row_failures(esp: RunningApi) -> None:
    records = [_person("ok@example.jp", "a"), _person("not-an-address", "b"), _person("ok@example.jp", "c")]
    results = _esp_destination(esp).deliver(Operation.ADD, records, idempotency_key="k")

    assert [(r.ok, r.code) for r in results] == [
        (True, "created"),
        (False, "invalid_email"),
        (False, "duplicate_in_batch"),
    ]
    assert set(esp.state.esp.members("main")) == {"ok@example.jp"}


def test_esp_batch_level_400_is_batch_rejected(esp: RunningApi) -> None:
    records = [_person("a@example.jp", "a"), _person("b@example.jp", "長" * 300)]  # a merge field too long
    with pytest.raises(BatchRejected) as rejected:
        _esp_destination(esp).deliver(Operation.ADD, records, idempotency_key="k")
    assert rejected.value.status == 400 and "255" in str(rejected.value)
    assert esp.state.esp.members("main") == {}


def test_esp_429_is_transient_with_retry_after() -> None:
    with esp_fake.serve_in_thread(ESP_KEY, rate_per_second=0.5, burst=1, clock=lambda: 50.0) as server:
        destination = _esp_destination(server)
        destination.deliver(Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="1")
        with pytest.raises(TransientError) as limited:
            destination.deliver(Operation.ADD, [_person("b@example.jp", "b")], idempotency_key="2")
    assert limited.value.status == 429
    assert limited.value.retry_after == 2.0


def test_esp_500_after_acceptance_is_replayed_not_applied_twice(esp: RunningApi) -> None:
    records = [_person("a@example.jp", "a"), _person("b@example.jp", "b")]
    esp.state.faults.fail_after_accept(1)
    with pytest.raises(TransientError):
        _esp_destination(esp).deliver(Operation.ADD, records, idempotency_key="k")
    results = _esp_destination(esp).deliver(Operation.ADD, records, idempotency_key="k")

    assert [r.code for r in results] == ["created", "created"]  # the original answer, replayed
    assert [c.note for c in esp.state.calls.all()] == ["accepted", "replayed"]


def test_esp_wrong_key_and_unknown_list_are_permanent(esp: RunningApi) -> None:
    with pytest.raises(AuthenticationFailed):
        _esp_destination(esp, api_key="revoked").deliver(
            Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="k"
        )
    with pytest.raises(PermanentError) as missing:
        _esp_destination(esp, list_id="nope").deliver(
            Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="k"
        )
    assert isinstance(missing.value, DestinationError) and not isinstance(missing.value, TransientError)
    assert missing.value.status == 404


def test_esp_credentials_from_an_airflow_connection(esp: RunningApi, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "http", "host": esp.base_url, "password": ESP_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_YORISOI_TEST_ESP", json.dumps(connection))
    destination = EspListDestination(conn_id="yorisoi_test_esp", list_id="main", allowed_columns=ALLOWED)
    assert destination.deliver(Operation.ADD, [_person("a@example.jp", "a")], idempotency_key="k")[0].ok
