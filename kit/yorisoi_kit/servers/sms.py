"""A Twilio-like SMS API on loopback: the Programmable Messaging "create a Message" call, its
authentication, its error codes and its rate limiting, enough for Yorisoi's SMS destination.

Endpoints (HTTP basic auth ``AccountSid:AuthToken``, else 401 with code 20003)::

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   form-encoded To, From, Body → 201 Message
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   ?To=&DateSent>=&PageSize=&Page= → a page
                                                           {"messages": [...], "next_page_uri", ...}

A created message (``status`` ``queued``)::

    {"sid": "SM…", "account_sid": "AC…", "to": "+819012345678", "from": "+815012345678",
     "body": "…", "status": "queued", "num_segments": "1", "direction": "outbound-api",
     "api_version": "2010-04-01", "date_created": "Mon, 01 Dec 2025 09:00:00 +0000", …,
     "error_code": null, "error_message": null, "uri": "/2010-04-01/Accounts/AC…/Messages/SM….json"}

Errors, Twilio's shape ``{"code", "message", "more_info", "status"}``:

============  =====  =========================================================================
code          HTTP   when
============  =====  =========================================================================
20003         401    wrong or missing credentials, or the path's AccountSid is not the caller's
20404         404    unknown path
21604 / 21603 400    ``To`` / ``From`` missing
21602         400    ``Body`` missing or empty
21211         400    ``To`` is not a valid phone number (E.164, checked with ``phonenumbers``)
21614         400    ``To`` is valid but not a mobile number
21610         400    the recipient replied STOP (``app.state.sms.stopped``)
21617         400    ``Body`` longer than 1,600 characters
20429         429    over the rate limit; ``Retry-After`` in whole seconds
============  =====  =========================================================================

Delivery receipts: a created message settles at once, as the carrier's receipt would later:
``delivered`` (``date_sent`` set), or ``undelivered`` with error 30003 (unreachable handset)
for numbers in ``app.state.sms.unreachable``. The list is newest first, filtered by ``To`` and
``DateSent>`` (Twilio's "on or after", a ``YYYY-MM-DD`` date, UTC), paged by ``PageSize`` (at
most 1,000) and ``Page`` with ``next_page_uri`` (null on the last page), as Twilio pages.

Idempotency: a request carrying ``I-Twilio-Idempotency-Token`` (or ``Idempotency-Key``) that
was already carried out gets the same message back (201, same ``sid``, header
``Idempotent-Replayed: true``) and nothing is sent again.

State on ``app.state``: ``sms`` (:class:`SmsState`: messages sent, STOP list), ``faults``
(:class:`~._loopback.ApiFaults`), ``calls`` (:class:`~._loopback.CallLog`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

import phonenumbers
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ._loopback import ApiCall, ApiFaults, CallLog, RunningApi, limiter_for, serve_app_in_thread

API_VERSION = "2010-04-01"
MAX_BODY = 1600
IDEMPOTENCY_HEADERS = ("i-twilio-idempotency-token", "idempotency-key")
_MOBILE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "Invalid 'To' Phone Number: {to}",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number {to} is not a valid mobile number",
    20001: "Invalid paging or date parameter",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


def twilio_error(status: int, code: int, *, retry_after: float | None = None, **context: str) -> JSONResponse:
    """Twilio's error body for ``code``, answered with ``status``; ``retry_after`` seconds become a
    ``Retry-After`` header in whole seconds (at least 1); ``context`` fills the message."""
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else {}
    message = _MESSAGES.get(code, HTTPStatus(status).phrase).format(**context)
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


class SmsState:
    """What the fake has sent (``messages``, in order), who replied STOP (``stopped``, E.164
    numbers), whose handset the carrier cannot reach (``unreachable``: their messages settle
    ``undelivered``) and the answers kept per idempotency token; thread-safe through ``lock``."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.stopped: set[str] = set()
        self.unreachable: set[str] = set()
        self.replies: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def receipts(self) -> Counter[str]:
        """How many messages each number received."""
        with self.lock:
            return Counter(message["to"] for message in self.messages)

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [message for message in self.messages if message["to"] == number]


def _receipt(message: dict[str, Any], unreachable: bool) -> dict[str, Any]:
    """``message`` as the carrier's receipt leaves it: delivered, or undelivered (30003)."""
    settled = {**message, "date_sent": message["date_created"], "date_updated": message["date_created"]}
    if unreachable:
        unreached = {"status": "undelivered", "error_code": 30003, "error_message": "Unreachable destination handset"}
        return {**settled, **unreached}
    return {**settled, "status": "delivered"}


def _number_error(to: str) -> int | None:
    try:
        parsed = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return 21211
    if not to.startswith("+") or not phonenumbers.is_valid_number(parsed):
        return 21211
    if phonenumbers.number_type(parsed) not in _MOBILE:
        return 21614
    return None


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def create_app(
    account_sid: str,
    auth_token: str,
    *,
    rate_per_second: float | None = None,
    burst: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the Twilio-like API.

    Parameters: ``account_sid`` and ``auth_token`` the only accepted credentials;
    ``rate_per_second`` the account's rate limit (None: unlimited) and ``burst`` its bucket size
    (default one second's worth); ``clock`` a monotonic clock (rate limit).
    """
    if not account_sid or not auth_token:
        raise ValueError("account_sid and auth_token must not be empty")
    state = SmsState()
    faults = ApiFaults()
    calls = CallLog()
    limiter = limiter_for(rate_per_second, burst, clock)
    app = FastAPI(title="Twilio-like SMS API (loopback fake)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sms = state
    app.state.faults = faults
    app.state.calls = calls
    app.state.rate_limiter = limiter
    messages_path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        request.state.note = ""
        credentials = _basic_auth(request.headers.get("authorization", ""))
        authorised = credentials is not None and (
            hmac.compare_digest(credentials[0].encode(), account_sid.encode())
            & hmac.compare_digest(credentials[1].encode(), auth_token.encode())
        )
        response: Response
        path = request.url.path
        other_account = path.startswith(f"/{API_VERSION}/Accounts/") and not path.startswith(
            f"/{API_VERSION}/Accounts/{account_sid}/"
        )
        if not authorised or other_account:
            response = twilio_error(401, 20003)
        else:
            decision = limiter.acquire(account_sid) if limiter else None
            if decision is not None and not decision.allowed:
                request.state.note = "rate_limited"
                response = twilio_error(429, 20429, retry_after=decision.retry_after)
            else:
                delay = faults.take_delay()
                if delay:
                    await asyncio.sleep(delay)
                injected = faults.take_status()
                if injected is not None:
                    status, retry_after = injected
                    request.state.note = "injected"
                    if status == 429:
                        response = twilio_error(429, 20429, retry_after=retry_after)
                    else:
                        response = twilio_error(status, 20000 + status)
                else:
                    response = await call_next(request)
        token = next((request.headers[name] for name in IDEMPOTENCY_HEADERS if name in request.headers), None)
        headers = {"idempotency-token": token} if token else {}
        calls.add(ApiCall(request.method, request.url.path, response.status_code, clock(), headers, request.state.note))
        return response

    @app.post(messages_path)
    async def create_message(request: Request) -> Response:
        token = next((request.headers[name] for name in IDEMPOTENCY_HEADERS if name in request.headers), None)
        if token:
            with state.lock:
                kept = state.replies.get(token)
            if kept is not None:
                request.state.note = "replayed"
                return JSONResponse(kept, status_code=201, headers={"Idempotent-Replayed": "true"})
        form = {
            key: values[0] for key, values in parse_qs((await request.body()).decode(), keep_blank_values=True).items()
        }
        to, sender, body = form.get("To", "").strip(), form.get("From", "").strip(), form.get("Body", "")
        if not to:
            return twilio_error(400, 21604)
        if not sender:
            return twilio_error(400, 21603)
        if not body.strip():
            return twilio_error(400, 21602)
        if len(body) > MAX_BODY:
            return twilio_error(400, 21617)
        code = _number_error(to)
        if code is not None:
            return twilio_error(400, code, to=to)
        if to in state.stopped:
            return twilio_error(400, 21610)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = "SM" + uuid.uuid4().hex
        message = {
            "sid": sid,
            "account_sid": account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": str(max(1, math.ceil(len(body) / 70))),
            "direction": "outbound-api",
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
        }
        with state.lock:
            state.messages.append(message)
            if token:
                state.replies[token] = message
            receipt = _receipt(message, to in state.unreachable)
            state.messages[-1] = receipt
        request.state.note = "accepted"
        if await faults.after_accept():
            return twilio_error(500, 20500)
        return JSONResponse(message, status_code=201)

    @app.get(messages_path)
    def list_messages(request: Request) -> Response:
        params = request.query_params
        wanted, since = params.get("To"), params.get("DateSent>")
        try:
            size = min(1000, max(1, int(params.get("PageSize", "50"))))
            page = max(0, int(params.get("Page", "0")))
            day = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC) if since else None
        except ValueError:
            return twilio_error(400, 20001)
        with state.lock:
            found = [
                m
                for m in reversed(state.messages)
                if (wanted is None or m["to"] == wanted)
                and (day is None or (m["date_sent"] and parsedate_to_datetime(m["date_sent"]) >= day))
            ]
        chosen = found[page * size : (page + 1) * size]
        query = {k: v for k, v in params.items() if k not in ("Page", "PageSize")}
        following = urlencode({**query, "PageSize": size, "Page": page + 1})
        return JSONResponse(
            {
                "messages": chosen,
                "page": page,
                "page_size": size,
                "uri": str(request.url.path) + "?" + str(request.url.query),
                "next_page_uri": f"{messages_path}?{following}" if (page + 1) * size < len(found) else None,
            }
        )

    @app.exception_handler(404)
    async def _not_found(_request: Request, _exc: Exception) -> Response:
        return twilio_error(404, 20404)

    return app


def serve_in_thread(account_sid: str, auth_token: str, **app_kwargs: Any) -> AbstractContextManager[RunningApi]:
    """Run the fake on a free loopback port for a ``with`` block; yields a
    :class:`~._loopback.RunningApi`. ``app_kwargs`` go to :func:`create_app`."""
    return serve_app_in_thread(create_app(account_sid, auth_token, **app_kwargs), name="sms-api")
