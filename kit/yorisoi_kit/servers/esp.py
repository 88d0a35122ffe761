"""An email service provider's list API on loopback, modelled on the batch member endpoints of
common ESPs (Mailchimp's ``POST /lists/{id}`` batch subscribe, Braze's ``/users/track``): one
request upserts or removes up to 500 list members and the answer reports each row.

Endpoints (``Authorization: Bearer <api key>`` on every call, else 401)::

    POST /v1/lists/{list_id}/members/batch   batch upsert / remove (below)
    GET  /v1/lists/{list_id}/members         {"members": [...], "total_items": n}
    GET  /v1/lists/{list_id}/members/{email} one member, 404 if absent

Batch request and answer::

    {"members": [{"email_address": "a@example.jp", "action": "upsert", "merge_fields": {"FNAME": "花子"}},
                 {"email_address": "b@example.jp", "action": "remove"}]}
    200 {"list_id": "main", "total_created": 1, "total_updated": 0, "total_unchanged": 0,
         "total_removed": 1, "error_count": 0,
         "results": [{"email_address": "a@example.jp", "status": "created"},
                     {"email_address": "b@example.jp", "status": "removed"}]}

``results`` follow the request's order. Row statuses: ``created``, ``updated``, ``unchanged``,
``removed``, ``not_member`` (a removal of someone not on the list: nothing to do), ``error`` with
``error_code`` and ``error``: ``invalid_email`` (not an address), ``duplicate_in_batch`` (the
address appears earlier in the same request). A row error never stops the other rows.

Whole-request errors use problem+json (``{"type", "title", "status", "detail"}``), like
Mailchimp: 400 ``Invalid Resource`` when the body is malformed, has no or more than 500 members,
an unknown ``action``, or a merge field that is not a scalar or is longer than 255 characters
(the row is not named: the client must split the batch to find it); 401 ``API Key Invalid``;
404 ``Resource Not Found`` for an unknown list; 429 ``Too Many Requests`` with ``Retry-After``
(whole seconds) over the rate limit.

``Idempotency-Key`` (optional): the answer to a carried-out request is kept 24 h under its key; a
request with the same key gets that answer again (header ``Idempotent-Replayed: true``) without
being carried out twice.

State on ``app.state``: ``esp`` (:class:`EspState`: the lists' members), ``faults``
(:class:`~._loopback.ApiFaults`, with ``fail_after_accept`` to answer 500 after carrying a
request out), ``calls`` (:class:`~._loopback.CallLog`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ._loopback import ApiCall, ApiFaults, CallLog, RunningApi, limiter_for, serve_app_in_thread

MAX_MEMBERS = 500
MAX_FIELD_LENGTH = 255
IDEMPOTENCY_TTL = 24 * 3600.0
EMAIL_RE = re.compile(r"^[^@\s\"(),:;<>\[\\\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
PROBLEM_TYPE = "https://esp.example/problems/"


@dataclass
class Member:
    """A list member: ``email_address`` (as first given), ``merge_fields``, ``updated_at``."""

    email_address: str
    merge_fields: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"email_address": self.email_address, "status": "subscribed", "merge_fields": dict(self.merge_fields)}


class EspState:
    """The ESP's lists (list id → lower-cased email → :class:`Member`), the history of removals
    and the kept answers of idempotent requests; thread-safe through ``lock``."""

    def __init__(self, list_ids: Iterable[str], clock: Callable[[], float]) -> None:
        self.lists: dict[str, dict[str, Member]] = {list_id: {} for list_id in list_ids}
        self.removed: list[tuple[str, str]] = []  # (list id, email) in removal order
        self.replies: dict[str, tuple[float, dict[str, Any]]] = {}
        self.clock = clock
        self.lock = threading.Lock()

    def members(self, list_id: str) -> dict[str, Member]:
        """A copy of one list's members by lower-cased address."""
        with self.lock:
            return dict(self.lists[list_id])

    def reply_for(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            kept = self.replies.get(key)
            if kept is None or self.clock() - kept[0] > IDEMPOTENCY_TTL:
                self.replies.pop(key, None)
                return None
            return kept[1]


def _problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    body = {"type": PROBLEM_TYPE + title.lower().replace(" ", "-"), "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


class _Invalid(Exception):
    """The batch is malformed as a whole (answered 400 Invalid Resource)."""


def _validate(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("members"), list):
        raise _Invalid("The request body must be an object with a 'members' array.")
    members = body["members"]
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise _Invalid(f"'members' must hold between 1 and {MAX_MEMBERS} items, got {len(members)}.")
    for member in members:
        if not isinstance(member, dict) or not isinstance(member.get("email_address"), str):
            raise _Invalid("Every member needs an 'email_address' string.")
        if member.get("action", "upsert") not in {"upsert", "remove"}:
            raise _Invalid("'action' must be 'upsert' or 'remove'.")
        fields = member.get("merge_fields") or {}
        if not isinstance(fields, dict):
            raise _Invalid("'merge_fields' must be an object.")
        for value in fields.values():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise _Invalid("Merge field values must be strings, numbers, booleans or null.")
            if isinstance(value, str) and len(value) > MAX_FIELD_LENGTH:
                raise _Invalid(f"A merge field value is longer than {MAX_FIELD_LENGTH} characters.")
    return members


def _apply(state: EspState, list_id: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """Carry out one validated batch; returns the 200 answer."""
    results: list[dict[str, Any]] = []
    totals = dict.fromkeys(("created", "updated", "unchanged", "removed"), 0)
    seen: set[str] = set()
    errors = 0
    with state.lock:
        book = state.lists[list_id]
        now = state.clock()
        for member in members:
            address = member["email_address"].strip()
            lowered = address.lower()
            row: dict[str, Any] = {"email_address": member["email_address"]}
            if not EMAIL_RE.match(address) or len(address) > 254:
                row.update(status="error", error_code="invalid_email", error=f"{address!r} is not a valid address.")
            elif lowered in seen:
                row.update(status="error", error_code="duplicate_in_batch", error="The address appears twice.")
            elif member.get("action", "upsert") == "remove":
                if book.pop(lowered, None) is None:
                    row["status"] = "not_member"
                else:
                    state.removed.append((list_id, lowered))
                    row["status"] = "removed"
                    totals["removed"] += 1
            else:
                fields = dict(member.get("merge_fields") or {})
                current = book.get(lowered)
                if current is None:
                    book[lowered] = Member(address, fields, now)
                    row["status"] = "created"
                elif current.merge_fields == fields:
                    row["status"] = "unchanged"
                else:
                    current.merge_fields, current.updated_at = fields, now
                    row["status"] = "updated"
                totals[row["status"]] += 1
            if row["status"] == "error":
                errors += 1
            seen.add(lowered)
            results.append(row)
    return {
        "list_id": list_id,
        **{f"total_{name}": count for name, count in totals.items()},
        "error_count": errors,
        "results": results,
    }


def create_app(
    api_key: str,
    *,
    list_ids: Iterable[str] = ("main",),
    rate_per_second: float | None = None,
    burst: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the ESP-like list API.

    Parameters: ``api_key`` the only accepted bearer token; ``list_ids`` the lists that exist;
    ``rate_per_second`` the rate limit per key (None: unlimited) and ``burst`` its bucket size
    (default one second's worth); ``clock`` a monotonic clock (rate limit, idempotency expiry).
    """
    if not api_key:
        raise ValueError("api_key must not be empty")
    state = EspState(list_ids, clock)
    faults = ApiFaults()
    calls = CallLog()
    limiter = limiter_for(rate_per_second, burst, clock)
    app = FastAPI(title="ESP list API (loopback fake)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.esp = state
    app.state.faults = faults
    app.state.calls = calls
    app.state.rate_limiter = limiter
    expected = f"Bearer {api_key}".encode()

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        request.state.note = ""
        response: Response
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            response = _problem(401, "API Key Invalid", "Your API key may be invalid or revoked.")
        else:
            decision = limiter.acquire(api_key) if limiter else None
            if decision is not None and not decision.allowed:
                request.state.note = "rate_limited"
                wait = str(max(1, math.ceil(decision.retry_after)))
                response = _problem(
                    429, "Too Many Requests", "You have exceeded the rate limit.", **{"Retry-After": wait}
                )
            else:
                delay = faults.take_delay()
                if delay:
                    await asyncio.sleep(delay)
                injected = faults.take_status()
                if injected is not None:
                    status, retry_after = injected
                    request.state.note = "injected"
                    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if status == 429 else {}
                    response = _problem(status, HTTPStatus(status).phrase, "Injected fault.", **headers)
                else:
                    response = await call_next(request)
        key = request.headers.get("idempotency-key")
        headers = {"idempotency-key": key} if key else {}
        calls.add(ApiCall(request.method, request.url.path, response.status_code, clock(), headers, request.state.note))
        return response

    @app.post("/v1/lists/{list_id}/members/batch")
    async def batch(list_id: str, request: Request) -> Response:
        if list_id not in state.lists:
            return _problem(404, "Resource Not Found", f"The list {list_id!r} could not be found.")
        key = request.headers.get("idempotency-key")
        if key:
            kept = state.reply_for(key)
            if kept is not None:
                request.state.note = "replayed"
                return JSONResponse(kept, headers={"Idempotent-Replayed": "true"})
        try:
            members = _validate(json.loads(await request.body() or b"null"))
        except ValueError:
            return _problem(400, "Invalid Resource", "The request body could not be parsed as JSON.")
        except _Invalid as exc:
            return _problem(400, "Invalid Resource", str(exc))
        answer = _apply(state, list_id, members)
        if key:
            with state.lock:
                state.replies[key] = (clock(), answer)
        request.state.note = "accepted"
        if await faults.after_accept():
            return _problem(500, "Internal Server Error", "An unexpected internal error has occurred.")
        return JSONResponse(answer)

    @app.get("/v1/lists/{list_id}/members")
    def members(list_id: str) -> Response:
        if list_id not in state.lists:
            return _problem(404, "Resource Not Found", f"The list {list_id!r} could not be found.")
        book = state.members(list_id)
        return JSONResponse({"members": [m.as_json() for m in book.values()], "total_items": len(book)})

    @app.get("/v1/lists/{list_id}/members/{email}")
    def member(list_id: str, email: str) -> Response:
        found = state.members(list_id).get(email.lower()) if list_id in state.lists else None
        if found is None:
            return _problem(404, "Resource Not Found", "The requested resource could not be found.")
        return JSONResponse(found.as_json())

    return app


def serve_in_thread(api_key: str, **app_kwargs: Any) -> AbstractContextManager[RunningApi]:
    """Run the fake on a free loopback port for a ``with`` block; yields a
    :class:`~._loopback.RunningApi`. ``app_kwargs`` go to :func:`create_app`."""
    return serve_app_in_thread(create_app(api_key, **app_kwargs), name="esp-api")
