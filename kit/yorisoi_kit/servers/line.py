"""A LINE Messaging API fake on loopback: the endpoints Yorisoi's LINE destinations use, with the
paths, JSON shapes, headers and error semantics of LINE's reference, so that the official
``line-bot-sdk`` (v3, ``Configuration(host=...)``) talks to it unchanged.

Endpoints (``Authorization: Bearer <channel access token>`` on every call, else 401)::

    POST   /v2/bot/message/multicast               {"to": [≤500 user IDs], "messages": [1..5]}  → 200 {}
    POST   /v2/bot/message/push                    {"to": user ID, "messages": [1..5]}  → 200 {"sentMessages": [...]}
    POST   /v2/bot/audienceGroup/upload            create an upload audience   → 202 CreateAudienceGroupResponse
    PUT    /v2/bot/audienceGroup/upload            add user IDs to an audience → 202 {}
    GET    /v2/bot/audienceGroup/list              ?page=1&size=20&description=... → GetAudienceGroupsResponse
    GET    /v2/bot/audienceGroup/{audienceGroupId} → {"audienceGroup": {...}, "jobs": [...]}
    DELETE /v2/bot/audienceGroup/{audienceGroupId} → 202 {}
    PUT    /v2/bot/audienceGroup/{audienceGroupId}/updateDescription  {"description"} → 200 {}
    GET    /v2/bot/message/aggregation/list        units used → {"customAggregationUnits", "next"}
    GET    /v2/bot/insight/message/event/aggregation   ?customAggregationUnit=&from=yyyyMMdd&to=yyyyMMdd
                                                   → {"overview", "messages", "clicks"} (statistics per unit)

Semantics, as LINE documents them:

- **Retry keys** (``X-Line-Retry-Key``, push and multicast only, a hexadecimal UUID): a request
  whose key was already *accepted* (answered 2xx, or carried out before an injected 500) within
  the last 24 hours is not carried out again and answers ``409`` with
  ``{"message": "The retry key is already accepted"}`` and the ``x-line-accepted-request-id``
  header naming the request that was accepted. A malformed key answers 400; a retry key on an
  endpoint that does not support it answers 400.
- **Rate limit**: per channel and endpoint; over the limit the answer is ``429`` with
  ``{"message": "The API rate limit has been exceeded. Try again later."}`` and **no**
  ``Retry-After`` (LINE sends none). With ``monthly_limit`` set, sending beyond it answers
  ``429`` ``{"message": "You have reached your monthly limit."}`` (not worth retrying this month).
- **Errors** use LINE's error response ``{"message": ..., "details": [{"message", "property"}]}``.
  A malformed user ID in ``to`` answers ``400`` with one detail per bad entry, ``property``
  ``to[i]``; the request is not carried out for anybody (so the client can drop the named rows and
  resend the rest). Audience uploads with a malformed ID answer ``400``
  ``{"message": "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT"}`` naming no row.
- **Statistics per unit**: a multicast naming ``customAggregationUnits`` counts towards them. The
  insight is aggregate only (LINE gives no per-user opens or clicks): unique impressions and
  clicks over the messages sent from ``from`` to ``to`` (JST days, at most 30 days apart), and
  per message (``seq``) impressions and per URL clicks. Like LINE, a count over fewer than 20
  users is ``null``. Tests and the demo say who viewed and clicked with
  :meth:`LineState.view` and :meth:`LineState.click`.
- Every response carries ``x-line-request-id``.

State on ``app.state``: ``line`` (:class:`LineState`: deliveries per user, accepted retry keys,
audience groups), ``faults`` (:class:`~._loopback.ApiFaults`), ``calls``
(:class:`~._loopback.CallLog`, with each request's ``x-line-retry-key``).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ._loopback import ApiCall, ApiFaults, CallLog, RunningApi, limiter_for, serve_app_in_thread

UNIT_RE = re.compile(r"^[a-zA-Z0-9_]{1,30}$")
USER_ID_RE = re.compile(r"^U[0-9a-f]{32}$")
RETRY_KEY_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RETRY_KEY_TTL = 24 * 3600.0
MAX_MULTICAST = 500
MAX_MESSAGES = 5
MAX_AUDIENCE_UPLOAD = 10_000
MAX_TEXT = 5000
PRIVACY_THRESHOLD = 20  # LINE's statistics are null below this many users
MAX_INSIGHT_DAYS = 30
JST = timezone(timedelta(hours=9))

RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
UNAUTHORIZED = "Authentication failed. Confirm that the access token in the authorization header is valid."
_RETRY_KEY_PATHS = frozenset({"/v2/bot/message/push", "/v2/bot/message/multicast"})


def make_user_id(n: int) -> str:
    """A well-formed LINE user ID for tests and demos (``U`` + 32 hex digits)."""
    return f"U{n:032x}"


@dataclass(frozen=True)
class Delivery:
    """One message batch received by one user: ``user_id``, the ``messages`` (LINE message
    objects), the ``endpoint`` (``push``/``multicast``), the ``retry_key`` and ``request_id`` of the
    request that carried it, ``at`` (the server clock)."""

    user_id: str
    messages: tuple[dict[str, Any], ...]
    endpoint: str
    retry_key: str | None
    request_id: str
    at: float
    units: tuple[str, ...] = ()
    day: date | None = None


@dataclass
class AudienceGroup:
    """An upload audience: ``audience_group_id``, ``description`` (its name), ``created`` (UNIX
    seconds), ``user_ids`` (a set: uploading an ID twice keeps one), ``jobs`` (upload descriptions)."""

    audience_group_id: int
    description: str
    created: int
    user_ids: set[str] = field(default_factory=set)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "audienceGroupId": self.audience_group_id,
            "type": "UPLOAD",
            "description": self.description,
            "status": "READY",
            "audienceCount": len(self.user_ids),
            "created": self.created,
            "permission": "READ_WRITE",
            "createRoute": "MESSAGING_API",
            "isIfaAudience": False,
        }


class LineState:
    """What the fake LINE platform holds, thread-safe: the deliveries, the accepted retry keys
    (key → accepted request ID and time, kept 24 h), the audience groups and this month's count."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.deliveries: list[Delivery] = []
        self.accepted_keys: dict[str, tuple[str, float]] = {}
        self.audience_groups: dict[int, AudienceGroup] = {}
        self.sent_this_month = 0
        self.views: set[tuple[str, str]] = set()
        self.clicks: list[tuple[str, str, str]] = []
        self._ids = itertools.count(4_000_000_000_001)
        self.lock = threading.Lock()

    def view(self, unit: str, user_id: str) -> None:
        """``user_id`` opened the message of aggregation unit ``unit``."""
        with self.lock:
            self.views.add((unit, user_id))

    def click(self, unit: str, user_id: str, url: str) -> None:
        """``user_id`` tapped ``url`` in the message of ``unit`` (a click implies a view)."""
        with self.lock:
            self.views.add((unit, user_id))
            self.clicks.append((unit, user_id, url))

    def units(self) -> list[str]:
        """The aggregation units messages were sent with, in first-use order."""
        with self.lock:
            return list(dict.fromkeys(unit for delivery in self.deliveries for unit in delivery.units))

    def insight(self, unit: str, first: date, last: date) -> dict[str, Any]:
        """LINE's statistics of ``unit`` over the messages sent on days ``first`` .. ``last``."""
        with self.lock:
            reached = {d.user_id for d in self.deliveries if unit in d.units and d.day and first <= d.day <= last}
            viewers = {user for u, user in self.views if u == unit and user in reached}
            clicks = [(user, url) for u, user, url in self.clicks if u == unit and user in reached]
        by_url: dict[str, list[str]] = {}
        for user, url in clicks:
            by_url.setdefault(url, []).append(user)
        overview = {
            "uniqueImpression": _private(len(viewers)),
            "uniqueClick": _private(len({user for user, _ in clicks})),
            "uniqueMediaPlayed": None,
            "uniqueMediaPlayed100Percent": None,
        }
        messages = [{"seq": 1, "impression": _private(len(viewers)), "uniqueImpression": _private(len(viewers)),
                     "mediaPlayed": None, "mediaPlayed25Percent": None, "mediaPlayed50Percent": None,
                     "mediaPlayed75Percent": None, "mediaPlayed100Percent": None, "uniqueMediaPlayed": None,
                     "uniqueMediaPlayed25Percent": None, "uniqueMediaPlayed50Percent": None,
                     "uniqueMediaPlayed75Percent": None, "uniqueMediaPlayed100Percent": None}]  # fmt: skip
        link_clicks = [
            {"seq": 1, "url": url, "click": _private(len(users)), "uniqueClick": _private(len(set(users))),
             "uniqueClickOfRequest": _private(len(set(users)))}
            for url, users in by_url.items()
        ]  # fmt: skip
        return {"overview": overview, "messages": messages, "clicks": link_clicks}

    def accepted_request(self, retry_key: str) -> str | None:
        """The request ID that was accepted with ``retry_key`` in the last 24 h, or None."""
        with self.lock:
            entry = self.accepted_keys.get(retry_key)
            if entry is None:
                return None
            request_id, at = entry
            if self.clock() - at > RETRY_KEY_TTL:
                del self.accepted_keys[retry_key]
                return None
            return request_id

    def receipts(self) -> Counter[str]:
        """How many message batches each user received."""
        with self.lock:
            return Counter(delivery.user_id for delivery in self.deliveries)

    def received(self, user_id: str) -> list[Delivery]:
        with self.lock:
            return [delivery for delivery in self.deliveries if delivery.user_id == user_id]

    def new_group_id(self) -> int:
        return next(self._ids)

    def group_members(self, audience_group_id: int) -> set[str]:
        with self.lock:
            return set(self.audience_groups[audience_group_id].user_ids)

    def clear(self) -> None:
        with self.lock:
            self.deliveries.clear()
            self.accepted_keys.clear()
            self.audience_groups.clear()
            self.sent_this_month = 0
            self.views.clear()
            self.clicks.clear()


def _private(count: int) -> int | None:
    """LINE withholds a statistic over fewer than 20 users."""
    return count if count >= PRIVACY_THRESHOLD else None


def _error(status: int, message: str, details: list[dict[str, str]] | None = None, **headers: str) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _request_error(details: list[dict[str, str]]) -> JSONResponse:
    return _error(400, f"The request body has {len(details)} error(s)", details)


def _check_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        return [{"message": f"Size must be between 1 and {MAX_MESSAGES}", "property": "messages"}]
    details = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "type" not in message:
            details.append({"message": "Must be specified", "property": f"messages[{i}].type"})
        elif message["type"] == "text":
            text = message.get("text")
            if not isinstance(text, str) or not text:
                details.append({"message": "Must be specified", "property": f"messages[{i}].text"})
            elif len(text) > MAX_TEXT:
                too_long = f"Length must be between 0 and {MAX_TEXT}"
                details.append({"message": too_long, "property": f"messages[{i}].text"})
    return details


def _refused_name(description: Any) -> JSONResponse | None:
    """LINE's answer to an audience name it refuses (empty, or longer than 120 characters)."""
    if not isinstance(description, str) or not description:
        return _error(400, "AUDIENCE_GROUP_NAME_EMPTY")
    if len(description) > 120:
        return _error(400, "AUDIENCE_GROUP_NAME_SIZE_OVER")
    return None


async def _json_body(request: Request) -> tuple[dict[str, Any] | None, JSONResponse | None]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        return None, _error(400, f"The request body could not be parsed as JSON ({exc.msg})")
    if not isinstance(body, dict):
        return None, _error(400, "The request body could not be parsed as JSON")
    return body, None


def create_app(
    channel_access_token: str,
    *,
    rate_per_second: float | None = None,
    burst: int | None = None,
    monthly_limit: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    today: Callable[[], date] = lambda: datetime.now(JST).date(),
) -> FastAPI:
    """Build the fake LINE Messaging API.

    Parameters: ``channel_access_token`` the only accepted bearer token; ``rate_per_second`` the
    per-endpoint rate limit (None: unlimited; LINE publishes a limit per endpoint, 2,000/s for
    most, lower for some sending endpoints) and
    ``burst`` its bucket size (default one second's worth); ``monthly_limit`` messages (one per
    recipient) allowed this month (None: unlimited); ``clock`` a monotonic clock (rate limit,
    retry-key expiry; inject a fake one in tests); ``today`` the JST day a message is sent on
    (statistics per unit and day).
    """
    if not channel_access_token:
        raise ValueError("channel_access_token must not be empty")
    state = LineState(clock)
    faults = ApiFaults()
    calls = CallLog()
    limiter = limiter_for(rate_per_second, burst, clock)
    app = FastAPI(title="LINE Messaging API (loopback fake)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.line = state
    app.state.faults = faults
    app.state.calls = calls
    app.state.rate_limiter = limiter
    expected = f"Bearer {channel_access_token}".encode()

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        request_id = str(uuid.uuid4())
        request.state.request_id = request_id
        request.state.note = ""
        path = request.url.path
        retry_key = request.headers.get("x-line-retry-key")
        response: Response
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            response = _error(401, UNAUTHORIZED)
        else:
            decision = limiter.acquire(f"{request.method} {path}") if limiter else None
            if decision is not None and not decision.allowed:
                request.state.note = "rate_limited"
                response = _error(429, RATE_LIMITED)
            else:
                delay = faults.take_delay()
                if delay:
                    await asyncio.sleep(delay)
                injected = faults.take_status()
                if injected is not None:
                    status = injected[0]
                    request.state.note = "injected"
                    message = RATE_LIMITED if status == 429 else HTTPStatus(status).phrase
                    response = _error(status, message)
                else:
                    response = await call_next(request)
        response.headers["x-line-request-id"] = request_id
        headers = {"x-line-retry-key": retry_key} if retry_key else {}
        calls.add(ApiCall(request.method, path, response.status_code, clock(), headers, request.state.note))
        return response

    def _check_retry_key(request: Request) -> JSONResponse | None:
        key = request.headers.get("x-line-retry-key")
        if key is None:
            return None
        if request.url.path not in _RETRY_KEY_PATHS:
            return _error(400, "The X-Line-Retry-Key header is not supported by this endpoint")
        if not RETRY_KEY_RE.match(key):
            return _error(400, "The value of the X-Line-Retry-Key header is invalid")
        accepted = state.accepted_request(key.lower())
        if accepted is not None:
            request.state.note = "retry_key_accepted"
            return _error(409, RETRY_KEY_ACCEPTED, **{"x-line-accepted-request-id": accepted})
        return None

    def _accept(
        request: Request, endpoint: str, to: list[str], messages: list[dict[str, Any]], units: tuple[str, ...] = ()
    ) -> JSONResponse | None:
        """Carry out a send: record one delivery per recipient and remember the retry key.
        Returns an error response instead when the monthly limit would be exceeded."""
        key = request.headers.get("x-line-retry-key")
        with state.lock:
            if monthly_limit is not None and state.sent_this_month + len(to) > monthly_limit:
                request.state.note = "monthly_limit"
                return _error(429, MONTHLY_LIMIT)
            now = clock()
            frozen = tuple(messages)
            day = today()
            for user_id in to:
                state.deliveries.append(
                    Delivery(user_id, frozen, endpoint, key, request.state.request_id, now, units, day)
                )
            state.sent_this_month += len(to)
            if key:
                state.accepted_keys[key.lower()] = (request.state.request_id, now)
        request.state.note = "accepted"
        return None

    async def _after_accept(ok: JSONResponse) -> JSONResponse:
        if await faults.after_accept():
            return _error(500, "Internal Server Error")
        return ok

    @app.post("/v2/bot/message/multicast")
    async def multicast(request: Request) -> JSONResponse:
        refused = _check_retry_key(request)
        if refused is not None:
            return refused
        body, bad = await _json_body(request)
        if bad is not None or body is None:
            return bad or _error(400, "The request body could not be parsed as JSON")
        to = body.get("to")
        details = []
        if not isinstance(to, list) or not 1 <= len(to) <= MAX_MULTICAST:
            details.append({"message": f"Size must be between 1 and {MAX_MULTICAST}", "property": "to"})
        else:
            details += [
                {"message": "Invalid user ID", "property": f"to[{i}]"}
                for i, user_id in enumerate(to)
                if not isinstance(user_id, str) or not USER_ID_RE.match(user_id)
            ]
        details += _check_messages(body.get("messages"))
        if details:
            return _request_error(details)
        units = body.get("customAggregationUnits") or []
        if (
            not isinstance(units, list)
            or len(units) > 1
            or not all(isinstance(u, str) and UNIT_RE.match(u) for u in units)
        ):
            bad_unit = {"message": "Invalid custom aggregation unit", "property": "customAggregationUnits"}
            return _request_error([bad_unit])
        refused = _accept(request, "multicast", list(dict.fromkeys(to)), body["messages"], tuple(units))
        if refused is not None:
            return refused
        return await _after_accept(JSONResponse({}))

    @app.post("/v2/bot/message/push")
    async def push(request: Request) -> JSONResponse:
        refused = _check_retry_key(request)
        if refused is not None:
            return refused
        body, bad = await _json_body(request)
        if bad is not None or body is None:
            return bad or _error(400, "The request body could not be parsed as JSON")
        to = body.get("to")
        details = []
        if not isinstance(to, str) or not USER_ID_RE.match(to):
            details.append({"message": "Invalid user ID", "property": "to"})
        details += _check_messages(body.get("messages"))
        if details:
            return _request_error(details)
        refused = _accept(request, "push", [to], body["messages"])
        if refused is not None:
            return refused
        sent = [{"id": str(state.new_group_id()), "quoteToken": uuid.uuid4().hex} for _ in body["messages"]]
        return await _after_accept(JSONResponse({"sentMessages": sent}))

    def _audience_ids(body: dict[str, Any]) -> tuple[list[str] | None, JSONResponse | None]:
        audiences = body.get("audiences") or []
        if not isinstance(audiences, list) or len(audiences) > MAX_AUDIENCE_UPLOAD:
            return None, _error(400, "AUDIENCE_GROUP_AUDIENCE_SIZE_OVER")
        ids = [item.get("id") if isinstance(item, dict) else None for item in audiences]
        if any(not isinstance(user_id, str) or not USER_ID_RE.match(user_id) for user_id in ids):
            return None, _error(400, "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT")
        return [str(user_id) for user_id in ids], None

    @app.post("/v2/bot/audienceGroup/upload")
    async def create_audience(request: Request) -> JSONResponse:
        refused = _check_retry_key(request)
        if refused is not None:
            return refused
        body, bad = await _json_body(request)
        if bad is not None or body is None:
            return bad or _error(400, "The request body could not be parsed as JSON")
        refused = _refused_name(body.get("description"))
        if refused is not None:
            return refused
        ids, bad = _audience_ids(body)
        if bad is not None or ids is None:
            return bad or _error(400, "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT")
        with state.lock:
            group = AudienceGroup(state.new_group_id(), body["description"], int(time.time()), set(ids))
            group.jobs.append({"description": body.get("uploadDescription"), "audienceCount": len(ids)})
            state.audience_groups[group.audience_group_id] = group
        request.state.note = "accepted"
        created = {key: value for key, value in group.as_json().items() if key not in {"status", "audienceCount"}}
        return await _after_accept(JSONResponse(created, status_code=202))

    @app.put("/v2/bot/audienceGroup/upload")
    async def add_audience(request: Request) -> JSONResponse:
        refused = _check_retry_key(request)
        if refused is not None:
            return refused
        body, bad = await _json_body(request)
        if bad is not None or body is None:
            return bad or _error(400, "The request body could not be parsed as JSON")
        group_id = body.get("audienceGroupId")
        ids, bad = _audience_ids(body)
        if bad is not None or ids is None:
            return bad or _error(400, "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT")
        if not ids:
            return _error(400, "AUDIENCE_GROUP_AUDIENCE_INSUFFICIENT")
        with state.lock:
            group = state.audience_groups.get(group_id) if isinstance(group_id, int) else None
            if group is None:
                return _error(400, "AUDIENCE_GROUP_NOT_FOUND")
            group.user_ids.update(ids)
            group.jobs.append({"description": body.get("uploadDescription"), "audienceCount": len(ids)})
        request.state.note = "accepted"
        return await _after_accept(JSONResponse({}, status_code=202))

    @app.get("/v2/bot/audienceGroup/list")
    def list_audiences(request: Request) -> JSONResponse:
        params = request.query_params
        try:
            page = int(params.get("page", "1"))
            size = int(params.get("size", "20"))
        except ValueError:
            return _error(400, "The request parameters are invalid")
        if page < 1 or not 1 <= size <= 40:
            return _error(400, "The request parameters are invalid")
        wanted = (params.get("description") or "").lower()
        with state.lock:
            groups = [g for g in state.audience_groups.values() if wanted in g.description.lower()]
            groups.sort(key=lambda g: g.audience_group_id, reverse=True)
            chosen = [g.as_json() for g in groups[(page - 1) * size : page * size]]
        return JSONResponse(
            {
                "audienceGroups": chosen,
                "hasNextPage": page * size < len(groups),
                "totalCount": len(groups),
                "readWriteAudienceGroupTotalCount": len(groups),
                "page": page,
                "size": size,
            }
        )

    @app.get("/v2/bot/audienceGroup/{audience_group_id}")
    def get_audience(audience_group_id: int) -> JSONResponse:
        with state.lock:
            group = state.audience_groups.get(audience_group_id)
            if group is None:
                return _error(400, "AUDIENCE_GROUP_NOT_FOUND")
            jobs = [dict(job, jobStatus="FINISHED", type="DIFF_ADD") for job in group.jobs]
            return JSONResponse({"audienceGroup": group.as_json(), "jobs": jobs})

    @app.put("/v2/bot/audienceGroup/{audience_group_id}/updateDescription")
    async def rename_audience(audience_group_id: int, request: Request) -> JSONResponse:
        body, bad = await _json_body(request)
        if bad is not None or body is None:
            return bad or _error(400, "The request body could not be parsed as JSON")
        refused = _refused_name(body.get("description"))
        if refused is not None:
            return refused
        with state.lock:
            group = state.audience_groups.get(audience_group_id)
            if group is None:
                return _error(400, "AUDIENCE_GROUP_NOT_FOUND")
            group.description = body["description"]
        request.state.note = "accepted"
        return await _after_accept(JSONResponse({}))

    @app.get("/v2/bot/message/aggregation/list")
    def list_units() -> JSONResponse:
        return JSONResponse({"customAggregationUnits": state.units(), "next": None})

    @app.get("/v2/bot/insight/message/event/aggregation")
    def unit_insight(request: Request) -> JSONResponse:
        params = request.query_params
        unit = params.get("customAggregationUnit") or ""
        try:
            first = datetime.strptime(params.get("from") or "", "%Y%m%d").date()
            last = datetime.strptime(params.get("to") or "", "%Y%m%d").date()
        except ValueError:
            return _error(400, "The request parameters are invalid")
        if not UNIT_RE.match(unit) or not timedelta(0) <= last - first < timedelta(days=MAX_INSIGHT_DAYS):
            return _error(400, "The request parameters are invalid")
        return JSONResponse(state.insight(unit, first, last))

    @app.delete("/v2/bot/audienceGroup/{audience_group_id}")
    def delete_audience(audience_group_id: int) -> JSONResponse:
        with state.lock:
            if state.audience_groups.pop(audience_group_id, None) is None:
                return _error(400, "AUDIENCE_GROUP_NOT_FOUND")
        return JSONResponse({}, status_code=202)

    return app


def serve_in_thread(channel_access_token: str, **app_kwargs: Any) -> AbstractContextManager[RunningApi]:
    """Run the fake on a free loopback port for a ``with`` block; yields a
    :class:`~._loopback.RunningApi` (``base_url`` is what ``Configuration(host=...)`` takes).
    ``app_kwargs`` go to :func:`create_app`."""
    return serve_app_in_thread(create_app(channel_access_token, **app_kwargs), name="line-api")
