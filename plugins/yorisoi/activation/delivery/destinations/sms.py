"""SMS through a Twilio-style API: one ``POST /2010-04-01/Accounts/{sid}/Messages.json`` per
recipient (form-encoded ``To``, ``From``, ``Body``; HTTP basic auth ``sid:token``).

Every request carries ``I-Twilio-Idempotency-Token`` and ``Idempotency-Key``, both a UUID derived
from the batch's idempotency key and the recipient, so a retried request that the API already
carried out is answered from its record instead of texting the person again (the API fake in
``servers/sms.py`` honours either header).

The first request of a batch goes alone (wrong credentials or an API that is down are answered
once); the others go out on up to ``concurrency`` threads, all paced by one thread-safe token
bucket at ``rate_per_second``: the rate holds, and the time one request waits for its answer no
longer delays the next one. When a request fails, no new request starts; the requests already
under way finish, and the batch fails with the answers it has.

=====================================  =================================================
answer                                 result
=====================================  =================================================
201                                    RowResult ok (``already_done`` when the API says it
                                       replayed an earlier request)
400 (the request names one recipient)  RowResult failed, code = Twilio's error code
                                       (21211 invalid number, 21614 not mobile, 21610
                                       replied STOP, ...)
429, 5xx, timeout, reset               TransientError (``retry_after``: the longest
                                       ``Retry-After`` among the failed requests), its
                                       ``partial`` = the RowResults of every recipient
                                       already answered (201 or 400): the engine settles
                                       those, so only the others are sent again
401 / 403                              AuthenticationFailed (never retried)
other 4xx                              PermanentError
=====================================  =================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ._api import (
    ApiDestination,
    PermanentError,
    Template,
    airflow_connection,
    coerce_templates,
    error_for_status,
    parse_retry_after,
    stable_uuid,
    template_for,
)
from .base import Operation, Record, RowResult, TransientError

TWILIO_API = "https://api.twilio.com"
API_VERSION = "2010-04-01"


def idempotency_token(idempotency_key: str, recipient: str) -> str:
    """The token of the message to ``recipient`` in the batch ``idempotency_key``."""
    return stable_uuid("sms", idempotency_key, recipient)


class SmsDestination(ApiDestination):
    """Text each recipient (``Record.key`` = an E.164 number) through a Twilio-style API.

    Parameters (keyword only): ``templates`` per A/B variant (key = ``Record.variant``,
    ``"default"`` as the fallback): the message text with ``{column}`` placeholders from the
    allowed columns; either ``conn_id`` (an Airflow connection: login = account SID, password =
    auth token, host = the API's base URL if not Twilio's, extra ``from_number``) or
    ``account_sid``, ``auth_token``, ``from_number`` and optionally ``base_url``;
    ``allowed_columns``; ``rate_per_second`` (messages per second, one request each);
    ``concurrency`` (requests under way at once, default 4; 1 sends them one after another);
    ``max_batch`` (default 50); ``timeout`` seconds per request; ``name``; ``clock``/``sleep``
    (pacing) and ``transport`` (httpx) for tests.
    """

    channel = "sms"
    key_field = "phone"
    supports = frozenset({Operation.ADD})
    MAX_BATCH = 1000

    def __init__(
        self,
        *,
        templates: Mapping[str | None, Template | str],
        conn_id: str | None = None,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_number: str | None = None,
        base_url: str | None = None,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        concurrency: int = 4,
        max_batch: int = 50,
        timeout: float = 30.0,
        name: str = "sms",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            name=name,
            allowed_columns=allowed_columns,
            rate_per_second=rate_per_second,
            max_batch=max_batch,
            clock=clock,
            sleep=sleep,
        )
        if int(concurrency) < 1:
            raise ValueError(f"{name}: concurrency must be at least 1, got {concurrency}")
        self.concurrency = int(concurrency)
        self.templates = coerce_templates(templates, allowed=self.allowed_columns, needs_subject=False)
        if conn_id is not None:
            info = airflow_connection(conn_id)
            base_url = base_url or info.base_url
            account_sid = account_sid or info.login
            auth_token = auth_token or info.password
            from_number = from_number or info.extra.get("from_number")
        if not account_sid or not auth_token or not from_number:
            raise ValueError(f"{name}: give conn_id, or account_sid, auth_token and from_number")
        self.from_number = from_number
        self.url = f"{(base_url or TWILIO_API).rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self._http = httpx.Client(
            auth=(account_sid, auth_token),
            headers={"User-Agent": "yorisoi-activation", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    def close(self) -> None:
        self._http.close()

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.check_operation(operation)
        texts = [self._text(record) for record in records]  # a template error stops the batch before any send
        answers: list[RowResult | Exception | None] = [None] * len(records)
        stop = threading.Event()

        def send(index: int) -> None:
            if stop.is_set():
                return
            self.pace()
            if stop.is_set():  # another request failed while this one waited for its slot
                return
            record = records[index]
            try:
                answers[index] = self._send(record, texts[index], idempotency_token(idempotency_key, record.key))
            except Exception as exc:
                answers[index] = exc
                stop.set()

        # the first request goes alone: wrong credentials or an API that is down answer it once,
        # not once per thread
        if records:
            send(0)
        workers = min(self.concurrency, len(records) - 1)
        if workers <= 1:
            for index in range(1, len(records)):
                send(index)
        elif not stop.is_set():
            with ThreadPoolExecutor(workers, thread_name_prefix=self.name) as pool:
                try:
                    for _ in pool.map(send, range(1, len(records))):
                        pass
                finally:
                    stop.set()  # should the caller be interrupted (a task's SIGTERM), start nothing more
        answered = [answer for answer in answers if isinstance(answer, RowResult)]
        failures = [answer for answer in answers if isinstance(answer, Exception)]
        if not failures:
            return answered
        transient = [failure for failure in failures if isinstance(failure, TransientError)]
        if len(transient) < len(failures):
            raise next(failure for failure in failures if not isinstance(failure, TransientError))
        first = transient[0]
        raise TransientError(
            f"{first} ({len(answered)} of {len(records)} recipients answered)",
            status=first.status,
            retry_after=max((f.retry_after for f in transient if f.retry_after is not None), default=None),
            partial=answered,
        ) from first

    def _text(self, record: Record) -> str:
        _subject, body = template_for(self.templates, record.variant, system=self.name).render(
            self.allowed_fields(record)
        )
        return body

    def _send(self, record: Record, text: str, token: str) -> RowResult:
        try:
            response = self._http.post(
                self.url,
                data={"To": record.key, "From": self.from_number, "Body": text},
                headers={"I-Twilio-Idempotency-Token": token, "Idempotency-Key": token},
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        answer = _json(response)
        status = response.status_code
        if status in (200, 201):
            replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
            return RowResult(record.key, ok=True, code=str(status), already_done=replayed)
        code = answer.get("code")
        detail = f"{code} {answer.get('message', response.text[:300])}"
        if status == 400:
            return RowResult(record.key, ok=False, code=str(code or status), reason=str(answer.get("message") or ""))
        error = error_for_status(
            status,
            system=self.name,
            detail=detail,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            code=str(code) if code is not None else None,
        )
        if isinstance(error, PermanentError | TransientError):
            raise error
        raise PermanentError(str(error), status=status)  # e.g. 413: one message cannot be split further


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


__all__ = ["SmsDestination", "idempotency_token"]
