"""A Shopify-Admin-REST-like HTTP API over the synthetic brand's e-commerce Parquet files.

Used for demos (`yorisoi serve ecommerce`) and for tests of the ingestion code, which talk to it
over real HTTP on loopback. The data contract is ``docs/synthetic-brand.md``; the Parquet files
are ``DIR/ecommerce/{customers,orders,order_lines,products}.parquet``.

The data is loaded once into an in-memory DuckDB database; every request is one or two small
queries (``WHERE id > cursor ... ORDER BY id LIMIT n``, then the line items of the page's orders
only), so a page costs a few milliseconds even at 11 M orders / 16 M lines. DuckDB also encodes
each record's JSON (in C++); Python only joins the encoded records, so what a bench times is the
client, not the stand-in.

Endpoints (``{version}`` is any ``YYYY-MM``; the demos and tests use ``2025-01``)::

    GET /admin/api/{version}/customers.json        {"customers": [...]}
    GET /admin/api/{version}/orders.json           {"orders": [...]}
    GET /admin/api/{version}/products.json         {"products": [...]}
    GET /admin/api/{version}/{resource}/count.json {"count": n}
    GET /admin/api/{version}/{resource}/{id}.json  {"customer": {...}} etc., 404 if absent
    POST /admin/api/{version}/graphql.json         bulkOperationRunQuery / currentBulkOperation only
    GET /bulk-results/{file}?expires=…&signature=…  a bulk result (JSONL), signed, no token

Bulk operations (:class:`BulkOperations`), as Shopify's GraphQL Admin API runs them: a
``bulkOperationRunQuery`` whose query reads ``customers``, ``orders`` or ``products`` (with an
optional search ``updated_at:>='…' AND updated_at:<='…'``) starts one operation (one at a time:
``OPERATION_IN_PROGRESS`` otherwise); ``currentBulkOperation`` reports its ``status`` (CREATED,
RUNNING, COMPLETED, FAILED, CANCELED, EXPIRED), ``errorCode``, counts and, once COMPLETED, a
signed ``url`` that expires. The result is JSONL: one node per line in the GraphQL shape
(camelCase, ``gid://shopify/...`` ids, MoneyBags, enums in capitals), a nested connection's nodes
(order line items, product variants) on their own lines after their parent's, naming it in
``__parentId``. The stand-in answers with every field of its node whatever the query selects.

List parameters (as in Shopify): ``limit`` (default 50, 1..250, else 400), ``since_id``, ``ids``
(comma-separated), ``created_at_min``, ``created_at_max``, ``updated_at_min``, ``updated_at_max``
(inclusive bounds, ISO 8601; a value without an offset is read as shop time, +09:00), ``fields``
(comma-separated top-level keys to keep), ``page_info``; orders also take ``status``
(``any`` | ``open`` | ``cancelled``). **Unlike Shopify, orders default to ``status=any``** so that a
plain walk returns every order. ``count.json`` takes the same filters. Results are sorted by id.

Pagination is cursor-based like Shopify's: each list response that has more rows carries
``Link: <.../orders.json?page_info=XYZ&limit=N>; rel="next"`` and, past the first page,
``rel="previous"``. ``page_info`` is opaque (urlsafe base64 of a JSON object holding the resource,
the direction, the boundary id and the original filters); a request with ``page_info`` may only add
``limit`` and ``fields``, any other parameter answers 400, like Shopify.

Shapes, Shopify-like:

- **money** is a string of integer yen, as Shopify sends JPY amounts (``"1234"``). The custom
  ``points_used`` / ``points_earned`` on orders are integers (points are counts, not money).
- **timestamps** are ISO 8601 in shop time, ``2025-03-01T09:30:00+09:00``, converted from the stored
  UTC and truncated to the second (so ``updated_at_min`` set to the largest value seen re-reads that
  second: harmless overlap, never a gap).
- customers: ``id, email, first_name, last_name, last_name_kana, first_name_kana, phone, state,
  tags, verified_email, currency, created_at, updated_at, email_marketing_consent {state,
  opt_in_level, consent_updated_at}, sms_marketing_consent {state, opt_in_level,
  consent_updated_at} (null without an SMS state), default_address {id, customer_id, zip,
  province, city, address1, country_code "JP", ...} (null without any address field), addresses
  [default_address]``. The address id is the customer id. ``last_name_kana`` / ``first_name_kana``
  are the フリガナ Japanese carts collect (katakana, sometimes hiragana, null when not given).
- orders: ``id, name, order_number, email, created_at, processed_at, updated_at, cancelled_at,
  cancel_reason, financial_status, fulfillment_status, source_name, currency, subtotal_price,
  total_discounts, total_price, total_shipping_price_set {shop_money, presentment_money},
  points_used, points_earned, customer {id} (null for a guest), line_items [{id, product_id,
  variant_id, sku, title, quantity, price, compare_at_price}]``.
- products: ``id, title, vendor, product_type, status "active", created_at, updated_at,
  variants [{id, product_id, title, sku, price, compare_at_price, position}]``: one variant per
  product, whose id is the product id; ``price`` is the selling price (``sale_price``, else the
  list price) and ``compare_at_price`` the list price.

Auth: header ``X-Shopify-Access-Token`` must equal the API key, else 401. Rate limit: a leaky
bucket per key, like Shopify REST (``X-Shopify-Shop-Api-Call-Limit: used/size`` on every
authenticated response; 429 with ``Retry-After`` when full; a rejected call does not fill the
bucket). Faults for retry tests: ``app.state.faults`` (:class:`Faults`). Every authenticated call
is recorded in ``app.state.calls`` (:class:`CallLog`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._loopback import RateLimiter, serve_app_in_thread

log = logging.getLogger(__name__)

API_VERSION = "2025-01"
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
SHOP_TZ = timezone(timedelta(hours=9), "JST")
TOKEN_HEADER = "X-Shopify-Access-Token"  # noqa: S105 (a header name, not a secret)
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"
UNAUTHORIZED_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"
TABLES = ("customers", "orders", "order_lines", "products")
_VERSION_RE = re.compile(r"^\d{4}-\d{2}$")
_TIME_FILTERS = ("created_at_min", "created_at_max", "updated_at_min", "updated_at_max")
_PAGE_INFO_COMPANIONS = frozenset({"page_info", "limit", "fields"})


class ApiError(Exception):
    """An error answered as a Shopify-style JSON body ``{"errors": ...}``.

    Parameters: ``status`` the HTTP status; ``errors`` a message or a ``{param: message}`` dict;
    ``headers`` extra response headers.
    """

    def __init__(self, status: int, errors: str | dict[str, str], headers: Mapping[str, str] | None = None):
        super().__init__(str(errors))
        self.status = status
        self.errors = errors
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The JSON response for this error."""
        return JSONResponse({"errors": self.errors}, status_code=self.status, headers=self.headers)


# --------------------------------------------------------------------------------------------
# Rate limiting, fault injection, call log
# --------------------------------------------------------------------------------------------


class Faults:
    """Fault injection for tests of retry logic, found on ``app.state.faults``.

    ``inject(500, 503, 429)`` makes the next three authenticated requests answer those statuses,
    in order, then the server answers normally. An injected 429 carries ``Retry-After``.
    ``set_delay(seconds, count)`` delays the next ``count`` responses (every response when
    ``count`` is None) by ``seconds``, e.g. to trigger client timeouts. ``clear()`` removes both.
    """

    def __init__(self) -> None:
        self._statuses: deque[tuple[int, float]] = deque()
        self._delay = 0.0
        self._delay_count: int | None = 0
        self._lock = threading.Lock()

    def inject(self, *statuses: int, retry_after: float = 2.0) -> None:
        """Queue ``statuses`` (each 400..599) for the next requests; an injected 429 sends
        ``Retry-After: retry_after``."""
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"not an error status: {status}")
        with self._lock:
            self._statuses.extend((status, retry_after) for status in statuses)

    def set_delay(self, seconds: float, count: int | None = None) -> None:
        """Delay the next ``count`` responses (all when None) by ``seconds``."""
        with self._lock:
            self._delay = max(0.0, seconds)
            self._delay_count = count

    def clear(self) -> None:
        """Drop queued statuses and the delay."""
        with self._lock:
            self._statuses.clear()
            self._delay, self._delay_count = 0.0, 0

    @property
    def pending(self) -> tuple[int, ...]:
        """Statuses still queued."""
        with self._lock:
            return tuple(status for status, _ in self._statuses)

    def take_delay(self) -> float:
        """Seconds to wait before this response (consumes one delayed response)."""
        with self._lock:
            if self._delay <= 0 or self._delay_count == 0:
                return 0.0
            if self._delay_count is not None:
                self._delay_count -= 1
            return self._delay

    def take_status(self) -> tuple[int, float] | None:
        """The next injected ``(status, retry_after)``, or None to answer normally."""
        with self._lock:
            return self._statuses.popleft() if self._statuses else None


@dataclass(frozen=True)
class Call:
    """One authenticated request as the server saw it: ``method``, ``path``, ``query`` (raw
    string), ``status`` answered, ``at`` (the rate limiter's clock)."""

    method: str
    path: str
    query: str
    status: int
    at: float


class CallLog:
    """The last ``maxlen`` authenticated calls, found on ``app.state.calls``; lets tests count
    requests and retries. Parameters: ``maxlen`` how many calls to keep."""

    def __init__(self, maxlen: int = 10_000):
        self._calls: deque[Call] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        """Record ``call``."""
        with self._lock:
            self._calls.append(call)

    def all(self) -> list[Call]:
        """A copy of the recorded calls, oldest first."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        """Forget every recorded call."""
        with self._lock:
            self._calls.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)


# --------------------------------------------------------------------------------------------
# Filters and page_info tokens
# --------------------------------------------------------------------------------------------


def parse_timestamp(value: str, param: str) -> datetime:
    """Parse a filter timestamp into naive UTC (how the Parquet files store time).

    ``value`` is ISO 8601 (``2025-01-01``, ``2025-01-01T00:00:00+09:00``, ``...Z``); without an
    offset it is read as shop time (+09:00). A ``+`` decoded to a space by a client that did not
    URL-encode it is tolerated. ``param`` names the parameter in the 400 error.
    """
    text = value.strip()
    if " " in text and "T" in text:
        text = text.replace(" ", "+")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, {param: f"invalid timestamp: {value!r}"}) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHOP_TZ)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _parse_int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, {param: f"expected an integer, got {value!r}"}) from None


@dataclass(frozen=True)
class Filters:
    """Row filters of a list or count request (all optional, combined with AND).

    ``since_id``: id > since_id. ``ids``: id in the tuple. ``created_at_min`` ... ``updated_at_max``:
    inclusive bounds in naive UTC. ``status`` (orders): ``any``, ``open`` (not cancelled) or
    ``cancelled``.
    """

    since_id: int | None = None
    ids: tuple[int, ...] | None = None
    created_at_min: datetime | None = None
    created_at_max: datetime | None = None
    updated_at_min: datetime | None = None
    updated_at_max: datetime | None = None
    status: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str], resource: str) -> Filters:
        """Read the filters from query ``params`` of a request on ``resource``."""
        values: dict[str, Any] = {}
        if "since_id" in params:
            values["since_id"] = _parse_int(params["since_id"], "since_id")
        if "ids" in params:
            parts = [part for part in params["ids"].split(",") if part.strip()]
            values["ids"] = tuple(_parse_int(part.strip(), "ids") for part in parts)
        for name in _TIME_FILTERS:
            if name in params:
                values[name] = parse_timestamp(params[name], name)
        if resource == "orders" and "status" in params:
            status = params["status"]
            if status not in ("any", "open", "cancelled"):
                raise ApiError(400, {"status": f"expected any, open or cancelled, got {status!r}"})
            values["status"] = status
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the set filters (for page_info tokens)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Filters:
        """Inverse of :meth:`to_json`; raises ValueError / TypeError on a malformed dict."""
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "since_id":
                values[key] = int(value)
            elif key == "ids":
                values[key] = tuple(int(v) for v in value)
            elif key in _TIME_FILTERS:
                values[key] = datetime.fromisoformat(value)
            elif key == "status":
                values[key] = str(value)
            else:
                raise ValueError(f"unknown filter {key}")
        return cls(**values)

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions (on columns ``id``, ``created_at``, ``updated_at``, ``cancelled_at``) and
        their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.since_id is not None:
            clauses.append("id > ?")
            params.append(self.since_id)
        if self.ids is not None:
            clauses.append("id IN (SELECT unnest(?::BIGINT[]))")
            params.append(list(self.ids))
        for name in _TIME_FILTERS:
            value = getattr(self, name)
            if value is not None:
                column, op = name.rsplit("_", 1)
                clauses.append(f"{column} {'>=' if op == 'min' else '<='} ?")
                params.append(value)
        if self.status == "open":
            clauses.append("cancelled_at IS NULL")
        elif self.status == "cancelled":
            clauses.append("cancelled_at IS NOT NULL")
        return clauses, params


@dataclass(frozen=True)
class PageInfo:
    """Decoded ``page_info`` token: ``resource``; ``direction`` ``"next"`` (rows with id >
    ``cursor``) or ``"previous"`` (rows with id < ``cursor``); the original ``filters``."""

    resource: str
    direction: str
    cursor: int
    filters: Filters = field(default_factory=Filters)

    def encode(self) -> str:
        """Opaque urlsafe-base64 token."""
        payload = {"r": self.resource, "d": self.direction, "c": self.cursor, "f": self.filters.to_json()}
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, resource: str) -> PageInfo:
        """Parse ``token`` for a request on ``resource``; 400 if it is not a token of ours."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = json.loads(raw)
            info = cls(
                resource=str(payload["r"]),
                direction=str(payload["d"]),
                cursor=int(payload["c"]),
                filters=Filters.from_json(payload["f"]),
            )
        except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            raise ApiError(400, {"page_info": "Invalid value."}) from None
        if info.resource != resource or info.direction not in ("next", "previous"):
            raise ApiError(400, {"page_info": "Invalid value."})
        return info


# --------------------------------------------------------------------------------------------
# Resources: SQL and JSON shapes
# --------------------------------------------------------------------------------------------

_MACROS = (
    "CREATE MACRO iso_jst(ts) AS strftime(ts + INTERVAL 9 HOUR, '%Y-%m-%dT%H:%M:%S+09:00')",
    "CREATE MACRO money(x) AS CAST(CAST(round(x) AS BIGINT) AS VARCHAR)",
    "CREATE MACRO gid(kind, id) AS 'gid://shopify/' || kind || '/' || CAST(id AS VARCHAR)",
    # "a,b" or "a, b" → ['a', 'b'] (Shopify's tags; REST joins them with ", ")
    "CREATE MACRO tag_list(t) AS "
    "list_filter(list_transform(string_split(coalesce(t, ''), ','), lambda x: trim(x)), lambda x: x <> '')",
)

_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "id", "email", "first_name", "last_name", "last_name_kana", "first_name_kana", "phone", "created_at",
        "updated_at", "state", "tags", "email_marketing_state", "email_marketing_opt_in_level",
        "email_marketing_updated_at", "sms_marketing_state", "sms_marketing_updated_at", "zip", "province",
        "city", "address1", "verified_email",
    ),
    "orders": (
        "id", "name", "customer_id", "email", "created_at", "processed_at", "updated_at", "cancelled_at",
        "cancel_reason", "financial_status", "fulfillment_status", "source_name", "subtotal_price",
        "total_discounts", "shipping_price", "points_used", "points_earned", "total_price", "currency",
    ),
    "order_lines": ("id", "order_id", "product_id", "sku", "title", "quantity", "price", "compare_at_price"),
    "products": (
        "id", "sku", "title", "vendor", "product_type", "variant_title", "price", "sale_price",
        "created_at", "updated_at",
    ),
}  # fmt: skip

_HAS_ADDRESS = "(zip IS NOT NULL OR province IS NOT NULL OR city IS NOT NULL OR address1 IS NOT NULL)"
_ADDRESS = """{'id': id, 'customer_id': id, 'first_name': first_name, 'last_name': last_name,
    'company': NULL::VARCHAR, 'address1': address1, 'address2': NULL::VARCHAR, 'city': city,
    'province': province, 'country': 'Japan', 'zip': zip, 'phone': phone, 'country_code': 'JP',
    'country_name': 'Japan', 'default': true}"""

# Each record's REST JSON, built and encoded by DuckDB over a relation named like its table: a
# page is cut first (``SELECT * ... ORDER BY id LIMIT n``, answered from the id zonemaps), then
# only its rows are encoded, in C++; Python joins the encoded records into the body. (Encoding a
# dict per row in Python made the stand-in, not the client, most of what a bench timed.)
_REST_JSON: dict[str, str] = {
    "customers": f"""{{
        'id': id, 'email': email, 'created_at': iso_jst(created_at), 'updated_at': iso_jst(updated_at),
        'first_name': first_name, 'last_name': last_name, 'last_name_kana': last_name_kana,
        'first_name_kana': first_name_kana, 'state': state, 'note': NULL::VARCHAR,
        'verified_email': verified_email, 'tags': array_to_string(tag_list(tags), ', '), 'currency': 'JPY',
        'phone': phone,
        'addresses': CASE WHEN {_HAS_ADDRESS} THEN [{_ADDRESS}] ELSE [] END,
        'email_marketing_consent': CASE WHEN email_marketing_state IS NOT NULL THEN {{
            'state': email_marketing_state, 'opt_in_level': email_marketing_opt_in_level,
            'consent_updated_at': iso_jst(email_marketing_updated_at)}} END,
        'sms_marketing_consent': CASE WHEN sms_marketing_state IS NOT NULL THEN {{
            'state': sms_marketing_state, 'opt_in_level': NULL::VARCHAR,
            'consent_updated_at': iso_jst(sms_marketing_updated_at)}} END,
        'admin_graphql_api_id': gid('Customer', id),
        'default_address': CASE WHEN {_HAS_ADDRESS} THEN {_ADDRESS} END}}""",
    # line_items are added per page from _LINE_ITEMS_SQL
    "orders": """{
        'id': id, 'admin_graphql_api_id': gid('Order', id), 'name': name,
        'order_number': TRY_CAST(ltrim(name, '#') AS BIGINT), 'email': email,
        'created_at': iso_jst(created_at), 'processed_at': iso_jst(processed_at),
        'updated_at': iso_jst(updated_at), 'cancelled_at': iso_jst(cancelled_at), 'cancel_reason': cancel_reason,
        'closed_at': NULL::VARCHAR, 'financial_status': financial_status,
        'fulfillment_status': fulfillment_status, 'source_name': source_name, 'currency': currency,
        'presentment_currency': currency, 'subtotal_price': money(subtotal_price),
        'total_discounts': money(total_discounts), 'total_price': money(total_price),
        'total_shipping_price_set': {
            'shop_money': {'amount': money(shipping_price), 'currency_code': currency},
            'presentment_money': {'amount': money(shipping_price), 'currency_code': currency}},
        'points_used': CAST(points_used AS BIGINT), 'points_earned': CAST(points_earned AS BIGINT),
        'customer': CASE WHEN customer_id IS NOT NULL THEN {'id': customer_id} END}""",
    "products": """{
        'id': id, 'admin_graphql_api_id': gid('Product', id), 'title': title, 'body_html': NULL::VARCHAR,
        'vendor': vendor, 'product_type': product_type, 'status': 'active', 'tags': '',
        'created_at': iso_jst(created_at), 'updated_at': iso_jst(updated_at), 'published_at': iso_jst(created_at),
        'variants': [{
            'id': id, 'product_id': id, 'admin_graphql_api_id': gid('ProductVariant', id),
            'title': coalesce(variant_title, 'Default Title'), 'sku': sku,
            'price': money(coalesce(sale_price, price)), 'compare_at_price': money(price), 'position': 1,
            'created_at': iso_jst(created_at), 'updated_at': iso_jst(updated_at)}]}""",
}

_LINE_ITEMS_SQL = """
    SELECT order_id, to_json(list({
        'id': id, 'admin_graphql_api_id': gid('LineItem', id), 'product_id': product_id,
        'variant_id': product_id, 'sku': sku, 'title': title, 'name': title,
        'quantity': CAST(quantity AS BIGINT), 'price': money(price),
        'compare_at_price': money(compare_at_price)} ORDER BY id))
    FROM order_lines
    WHERE order_id IN (SELECT unnest(?::BIGINT[]))
    GROUP BY order_id"""

SINGULAR = {"customers": "customer", "orders": "order", "products": "product"}

# The bulk export's nodes, in the GraphQL Admin API's shape: camelCase fields, global ids
# (``gid://shopify/Order/1``), enums in capitals, money as MoneyBags. The furigana and points,
# which a real shop keeps in metafields, keep the REST stand-in's own keys.
_NODE_JSON: dict[str, str] = {
    "customers": f"""{{
        'id': gid('Customer', id), 'email': email, 'firstName': first_name, 'lastName': last_name,
        'last_name_kana': last_name_kana, 'first_name_kana': first_name_kana, 'phone': phone,
        'state': upper(state), 'tags': tag_list(tags), 'verifiedEmail': verified_email,
        'createdAt': iso_jst(created_at), 'updatedAt': iso_jst(updated_at),
        'emailMarketingConsent': CASE WHEN email_marketing_state IS NOT NULL THEN {{
            'marketingState': upper(email_marketing_state),
            'marketingOptInLevel': upper(email_marketing_opt_in_level),
            'consentUpdatedAt': iso_jst(email_marketing_updated_at)}} END,
        'smsMarketingConsent': CASE WHEN sms_marketing_state IS NOT NULL THEN {{
            'marketingState': upper(sms_marketing_state), 'marketingOptInLevel': NULL::VARCHAR,
            'consentUpdatedAt': iso_jst(sms_marketing_updated_at)}} END,
        'defaultAddress': CASE WHEN {_HAS_ADDRESS} THEN {{
            'address1': address1, 'city': city, 'province': province, 'zip': zip}} END}}""",
    "orders": """{
        'id': gid('Order', id), 'name': name, 'email': email, 'createdAt': iso_jst(created_at),
        'processedAt': iso_jst(processed_at), 'updatedAt': iso_jst(updated_at),
        'cancelledAt': iso_jst(cancelled_at), 'cancelReason': upper(cancel_reason),
        'displayFinancialStatus': upper(financial_status),
        'displayFulfillmentStatus': coalesce(upper(fulfillment_status), 'UNFULFILLED'),
        'sourceName': source_name, 'currencyCode': currency,
        'subtotalPriceSet': {'shopMoney': {'amount': money(subtotal_price), 'currencyCode': currency}},
        'totalDiscountsSet': {'shopMoney': {'amount': money(total_discounts), 'currencyCode': currency}},
        'totalShippingPriceSet': {'shopMoney': {'amount': money(shipping_price), 'currencyCode': currency}},
        'totalPriceSet': {'shopMoney': {'amount': money(total_price), 'currencyCode': currency}},
        'points_used': CAST(points_used AS BIGINT), 'points_earned': CAST(points_earned AS BIGINT),
        'customer': CASE WHEN customer_id IS NOT NULL THEN {'id': gid('Customer', customer_id)} END}""",
    "products": """{
        'id': gid('Product', id), 'title': title, 'vendor': vendor, 'productType': product_type,
        'status': 'ACTIVE', 'createdAt': iso_jst(created_at), 'updatedAt': iso_jst(updated_at)}""",
}

# A nested connection's nodes: one JSONL line each, after its parent's, naming it in __parentId
# (parent id, child id, the child's JSON) over the parent's rows, named ``p``.
_CHILD_SQL: dict[str, str] = {
    "orders": """
        SELECT l.order_id, l.id, to_json({
            'id': gid('LineItem', l.id), 'sku': l.sku, 'title': l.title, 'name': l.title,
            'quantity': CAST(l.quantity AS BIGINT),
            'originalUnitPriceSet': {'shopMoney': {'amount': money(l.price), 'currencyCode': 'JPY'}},
            'variant': CASE WHEN l.product_id IS NOT NULL THEN {
                'id': gid('ProductVariant', l.product_id), 'compareAtPrice': money(l.compare_at_price)} END,
            'product': CASE WHEN l.product_id IS NOT NULL THEN {'id': gid('Product', l.product_id)} END,
            '__parentId': gid('Order', l.order_id)})
        FROM order_lines AS l JOIN p ON l.order_id = p.id""",
    "products": """
        SELECT id, id, to_json({
            'id': gid('ProductVariant', id), 'title': coalesce(variant_title, 'Default Title'), 'sku': sku,
            'price': money(coalesce(sale_price, price)), 'compareAtPrice': money(price),
            '__parentId': gid('Product', id)})
        FROM p""",
}


def resolve_ecommerce_dir(data_dir: Path) -> Path:
    """The folder holding the four Parquet files: ``data_dir/ecommerce`` when ``data_dir`` is a
    brand folder (``yorisoi synth --out DIR``), else ``data_dir`` itself."""
    data_dir = Path(data_dir)
    nested = data_dir / "ecommerce"
    if (nested / "customers.parquet").exists():
        return nested
    return data_dir


class EcommerceStore:
    """The e-commerce tables in an in-memory DuckDB database, queried per request.

    Parameters: ``data_dir`` the brand folder (or its ``ecommerce/`` folder) with
    ``customers``, ``orders``, ``order_lines`` and ``products`` Parquet files.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = resolve_ecommerce_dir(data_dir)
        missing = [name for name in TABLES if not (self.data_dir / f"{name}.parquet").exists()]
        if missing:
            raise FileNotFoundError(f"{self.data_dir}: missing {', '.join(f'{m}.parquet' for m in missing)}")
        self._con = duckdb.connect(":memory:")
        for table in TABLES:
            path = str(self.data_dir / f"{table}.parquet")
            # table names come from the fixed TABLES tuple
            self._con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)", [path])  # noqa: S608
            columns = {row[0] for row in self._con.execute(f"DESCRIBE {table}").fetchall()}
            absent = [c for c in _REQUIRED_COLUMNS[table] if c not in columns]
            if absent:
                raise ValueError(f"{path}: missing columns {', '.join(absent)} (see docs/synthetic-brand.md)")
        for macro in _MACROS:
            self._con.execute(macro)

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A per-request connection to the shared in-memory database (thread-safe use)."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        """Release the database."""
        self._con.close()

    def _encoded(
        self, cur: duckdb.DuckDBPyConnection, resource: str, relation: str, params: list[Any], order: str = "ASC"
    ) -> list[tuple[int, str]]:
        """(id, REST JSON) of each row of ``relation`` (a subquery named like the table), by id."""
        sql = f"SELECT id, to_json({_REST_JSON[resource]}) FROM {relation} ORDER BY id {order}"  # noqa: S608
        return cur.execute(sql, params).fetchall()

    def _with_line_items(self, cur: duckdb.DuckDBPyConnection, resource: str, rows: list[tuple[int, str]]) -> list[str]:
        if resource != "orders" or not rows:
            return [encoded for _, encoded in rows]
        items = dict(cur.execute(_LINE_ITEMS_SQL, [[id_ for id_, _ in rows]]).fetchall())
        # the order's JSON object ends with "}": its line items go in as its last key
        return [f'{encoded[:-1]},"line_items":{items.get(id_, "[]")}}}' for id_, encoded in rows]

    def page(
        self,
        resource: str,
        filters: Filters,
        limit: int,
        *,
        after: int | None = None,
        before: int | None = None,
    ) -> tuple[list[str], list[int], bool]:
        """One page of ``resource`` matching ``filters``, sorted by id ascending.

        ``after``: rows with id > after (forward); ``before``: the ``limit`` rows just below
        ``before`` (backward). Returns the encoded JSON objects, their ids and whether more rows
        lie beyond the page in the direction walked.
        """
        clauses, params = filters.where()
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if before is not None else "ASC"
        cut = f"(SELECT * FROM {resource}{where} ORDER BY id {order} LIMIT ?) AS {resource}"  # noqa: S608
        with self.cursor() as cur:
            rows = self._encoded(cur, resource, cut, [*params, limit + 1], order)
            more = len(rows) > limit
            rows = rows[:limit]
            if before is not None:
                rows.reverse()
            return self._with_line_items(cur, resource, rows), [id_ for id_, _ in rows], more

    def count(self, resource: str, filters: Filters) -> int:
        """Number of rows of ``resource`` matching ``filters``."""
        clauses, params = filters.where()
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.cursor() as cur:
            result = cur.execute(f"SELECT count(*) FROM {resource}{where}", params).fetchone()  # noqa: S608 (fixed table names)
        return int(result[0]) if result else 0

    def get(self, resource: str, id_: int) -> str | None:
        """The encoded JSON object of ``resource`` with id ``id_``, or None."""
        with self.cursor() as cur:
            relation = f"(SELECT * FROM {resource} WHERE id = ?) AS {resource}"  # noqa: S608
            encoded = self._with_line_items(cur, resource, self._encoded(cur, resource, relation, [id_]))
            return encoded[0] if encoded else None

    def export(self, resource: str, filters: Filters, path: Path) -> tuple[int, int]:
        """Write the bulk result of ``resource`` to ``path`` as JSONL (each node a line, a nested
        connection's nodes after their parent's with ``__parentId``). Returns (objects, roots)."""
        clauses, params = filters.where()
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        roots = f"SELECT id AS k, 0 AS o, 0 AS c, to_json({_NODE_JSON[resource]}) AS j FROM p"  # noqa: S608
        union = roots
        if resource in _CHILD_SQL:
            union = f"{roots} UNION ALL SELECT k, 1, c, j FROM ({_CHILD_SQL[resource]}) AS x(k, c, j)"  # noqa: S608
        sql = f"WITH p AS (SELECT * FROM {resource}{where}) SELECT j, o FROM ({union}) ORDER BY k, o, c"  # noqa: S608
        objects = root_count = 0
        with self.cursor() as cur, path.open("wb") as out:
            reader = cur.sql(sql, params=params).to_arrow_reader(100_000)
            for batch in reader:
                lines = batch.column(0).to_pylist()
                out.write(("\n".join(lines) + "\n").encode())
                objects += len(lines)
                root_count += batch.num_rows - sum(batch.column(1).to_pylist())
        return objects, root_count


# --------------------------------------------------------------------------------------------
# Bulk operations (GraphQL Admin API's bulkOperationRunQuery, the way a first load is exported)
# --------------------------------------------------------------------------------------------

_BULK_RUN_RE = re.compile(r'bulkOperationRunQuery\s*\(\s*query:\s*"""(?P<inner>.*?)"""', re.S)
_ROOT_RE = re.compile(r'^\s*\{\s*(?P<root>\w+)\s*(?:\(\s*query:\s*"(?P<search>[^"]*)"\s*\))?\s*\{', re.S)
_SEARCH_TERM_RE = re.compile(r"^(?P<field>created_at|updated_at):(?P<op><=|>=)'?(?P<value>[^'\s]+)'?$")
BULK_RESULTS_PATH = "/bulk-results/"


def parse_bulk_search(search: str | None) -> Filters:
    """The row filters of a bulk query's search string, the subset of Shopify's search syntax this
    stand-in understands: terms ``updated_at:>='…'`` / ``updated_at:<='…'`` (and ``created_at``)
    joined by ``AND``. Anything else is a user error (``INVALID``)."""
    values: dict[str, Any] = {}
    for term in (t.strip() for t in re.split(r"\s+AND\s+", search or "") if t.strip()):
        match = _SEARCH_TERM_RE.match(term)
        if not match:
            raise ValueError(f"unsupported search term {term!r} (this stand-in reads created_at / updated_at >= <=)")
        name = f"{match['field']}_{'min' if match['op'] == '>=' else 'max'}"
        values[name] = parse_timestamp(match["value"], match["field"])
    return Filters(**values)


@dataclass
class BulkOperation:
    """One bulk query as ``currentBulkOperation`` reports it (the GraphQL ``BulkOperation``)."""

    id: str
    query: str
    status: str = "CREATED"
    errorCode: str | None = None
    objectCount: int = 0
    rootObjectCount: int = 0
    fileSize: int | None = None
    url: str | None = None
    partialDataUrl: str | None = None
    createdAt: str = ""
    completedAt: str | None = None
    type: str = "QUERY"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["objectCount"], out["rootObjectCount"] = str(self.objectCount), str(self.rootObjectCount)
        out["fileSize"] = None if self.fileSize is None else str(self.fileSize)
        return out


class BulkOperations:
    """The shop's bulk queries, found on ``app.state.bulk``.

    A started query is exported by a background thread into a JSONL file, written once per
    (resource, search) and served from disk afterwards, so the client's download and parse are
    what a bench times. The result URL is signed and expires like a storage URL
    (``/bulk-results/<file>?expires=…&signature=…``), needs no access token (the shop's token is
    never sent with it) and answers 403 once expired or tampered with.

    Faults for tests: ``end_next_as(status, error_code)`` ends the next operation ``FAILED`` /
    ``CANCELED`` / ``EXPIRED``; ``url_origin`` puts another origin in result URLs; ``url_ttl``
    seconds until a URL expires; ``trickle = (bytes, seconds)`` sends the file that many bytes at a
    time with a pause between; ``edit_next`` rewrites the next result's lines (a list of bytes
    lines) before it is served. ``downloads`` records each download as (path, whether an access
    token came with it).
    """

    def __init__(self, store: EcommerceStore, secret: bytes, clock: Callable[[], float] = time.time):
        self.store = store
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._folder = Path(tempfile.mkdtemp(prefix="yorisoi-bulk-"))
        self._files: dict[tuple[str, str], tuple[Path, int, int]] = {}
        self._serial = 0
        self.current: BulkOperation | None = None
        self.downloads: list[tuple[str, bool]] = []
        self.clear()

    def clear(self) -> None:
        """Drop every fault and the download log."""
        self.url_origin: str | None = None
        self.url_ttl = 7 * 24 * 3600.0
        self.trickle: tuple[int, float] | None = None
        self.edit_next: Callable[[list[bytes]], list[bytes]] | None = None
        self._end_as: tuple[str, str | None] | None = None
        self.downloads = []

    def end_next_as(self, status: str, error_code: str | None = None) -> None:
        """End the next operation in ``status`` (FAILED, CANCELED or EXPIRED) with ``error_code``."""
        if status not in ("FAILED", "CANCELED", "EXPIRED"):
            raise ValueError(f"not a final failure status: {status}")
        self._end_as = (status, error_code)

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def _now(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def start(self, query: str, base_url: str) -> tuple[BulkOperation | None, list[dict[str, Any]]]:
        """Start a bulk query: the operation and the user errors (``bulkOperationRunQuery``'s payload)."""
        match = _BULK_RUN_RE.search(query)
        root = _ROOT_RE.match(match["inner"]) if match else None
        if root is None or root["root"] not in SINGULAR:
            message = f"the bulk query must read one of {sorted(SINGULAR)} (a connection at its root)"
            return None, [{"field": ["query"], "message": message, "code": "INVALID"}]
        try:
            filters = parse_bulk_search(root["search"])
        except ApiError as exc:
            return None, [{"field": ["query"], "message": str(exc.errors), "code": "INVALID"}]
        except ValueError as exc:
            return None, [{"field": ["query"], "message": str(exc), "code": "INVALID"}]
        with self._lock:
            if self.current is not None and self.current.status in ("CREATED", "RUNNING"):
                message = f"A bulk query operation for this app and shop is already in progress: {self.current.id}."
                return None, [{"field": None, "message": message, "code": "OPERATION_IN_PROGRESS"}]
            self._serial += 1
            op = BulkOperation(id=f"gid://shopify/BulkOperation/{self._serial}", query=match["inner"].strip())
            op.createdAt = self._now()
            self.current = op
            end_as, self._end_as = self._end_as, None
            edit, self.edit_next = self.edit_next, None
        worker = threading.Thread(
            target=self._run, args=(op, root["root"], root["search"] or "", filters, base_url, end_as, edit),
            name=f"bulk-{self._serial}", daemon=True,
        )  # fmt: skip
        worker.start()
        return op, []

    def _run(self, op, resource, search, filters, base_url, end_as, edit) -> None:
        op.status = "RUNNING"
        try:
            path, objects, roots = self._file(resource, search, filters)
            if edit is not None:
                lines = edit(path.read_bytes().splitlines())
                path = self._folder / f"op{op.id.rsplit('/', 1)[1]}.jsonl"
                path.write_bytes(b"".join(line + b"\n" for line in lines))
                objects = len(lines)
        except Exception as exc:  # an export that breaks ends FAILED, as a shop's would
            op.status, op.errorCode = "FAILED", "INTERNAL_SERVER_ERROR"
            op.completedAt = self._now()
            log.exception("bulk operation %s failed: %s", op.id, exc)
            return
        if end_as is not None:
            op.status, op.errorCode = end_as
            op.completedAt = self._now()
            return
        op.objectCount, op.rootObjectCount, op.fileSize = objects, roots, path.stat().st_size
        op.url = self.signed_url(base_url, path.name)
        op.completedAt = self._now()
        op.status = "COMPLETED"

    def _file(self, resource: str, search: str, filters: Filters) -> tuple[Path, int, int]:
        key = (resource, search)
        with self._lock:
            if key in self._files:
                return self._files[key]
            path = self._folder / f"{resource}-{len(self._files) + 1}.jsonl"
            objects, roots = self.store.export(resource, filters, path)
            self._files[key] = (path, objects, roots)
            return self._files[key]

    def _signature(self, name: str, expires: int) -> str:
        return hmac.new(self._secret, f"{name}:{expires}".encode(), "sha256").hexdigest()

    def signed_url(self, base_url: str, name: str) -> str:
        expires = int(self._clock() + self.url_ttl)
        origin = (self.url_origin or base_url).rstrip("/")
        query = urlencode({"expires": expires, "signature": self._signature(name, expires)})
        return f"{origin}{BULK_RESULTS_PATH}{name}?{query}"

    def resolve(self, name: str, expires: str | None, signature: str | None) -> Path:
        """The file a signed URL names; ApiError 403 when the signature is wrong or expired."""
        try:
            when = int(expires or "")
        except ValueError:
            raise ApiError(403, "SignatureDoesNotMatch") from None
        if not hmac.compare_digest(self._signature(name, when), signature or ""):
            raise ApiError(403, "SignatureDoesNotMatch")
        if self._clock() > when:
            raise ApiError(403, "ExpiredToken: the signed URL has expired")
        path = self._folder / name
        if not path.is_file():
            raise ApiError(404, "NoSuchKey")
        return path

    async def stream(self, path: Path) -> AsyncIterator[bytes]:
        """The file's bytes, trickled when ``trickle`` is set."""
        size, pause = self.trickle or (1 << 20, 0.0)
        with path.open("rb") as handle:
            while chunk := handle.read(size):
                yield chunk
                if pause:
                    await asyncio.sleep(pause)


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


def _parse_limit(params: Mapping[str, str]) -> int:
    if "limit" not in params:
        return DEFAULT_LIMIT
    limit = _parse_int(params["limit"], "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, {"limit": f"must be between 1 and {MAX_LIMIT}, got {limit}"})
    return limit


def _parse_fields(params: Mapping[str, str]) -> list[str] | None:
    if "fields" not in params:
        return None
    return [name.strip() for name in params["fields"].split(",") if name.strip()] or None


def _check_resource(version: str, resource: str) -> None:
    if not _VERSION_RE.match(version) or resource not in SINGULAR:
        raise ApiError(404, "Not Found")


def _page_link(request: Request, version: str, resource: str, info: PageInfo, limit: int, fields: str | None) -> str:
    query = {"page_info": info.encode(), "limit": str(limit)}
    if fields:
        query["fields"] = fields
    base = str(request.base_url).rstrip("/")
    return f'<{base}/admin/api/{version}/{resource}.json?{urlencode(query)}>; rel="{info.direction}"'


def create_app(
    data_dir: Path,
    api_key: str,
    *,
    bucket_size: int = 40,
    leak_per_second: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the Shopify-like API app over the brand's e-commerce Parquet files.

    Parameters: ``data_dir`` the brand folder (``yorisoi synth --out DIR``) or its ``ecommerce/``
    folder; ``api_key`` the only accepted ``X-Shopify-Access-Token``; ``bucket_size`` and
    ``leak_per_second`` the leaky bucket (Shopify REST: 40 and 2); ``clock`` the monotonic clock of
    the rate limiter (a fake one in tests).

    The app's state holds ``store`` (:class:`EcommerceStore`), ``rate_limiter``
    (:class:`RateLimiter`), ``faults`` (:class:`Faults`) and ``calls`` (:class:`CallLog`).
    """
    if not api_key:
        raise ValueError("api_key must not be empty")
    store = EcommerceStore(data_dir)
    limiter = RateLimiter(bucket_size, leak_per_second, clock)
    faults = Faults()
    calls = CallLog()
    app = FastAPI(title="Yorisoi e-commerce API (Shopify-like)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.rate_limiter = limiter
    app.state.faults = faults
    app.state.calls = calls
    bulk = BulkOperations(store, secrets.token_bytes(32))
    app.state.bulk = bulk
    expected = api_key.encode()
    throttled_message = (
        f"Exceeded {leak_per_second:g} calls per second for api client. "
        "Reduce request rates to resume uninterrupted service."
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"errors": exc.detail}, status_code=exc.status_code)

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        token = request.headers.get(TOKEN_HEADER, "")
        if request.url.path.startswith(BULK_RESULTS_PATH):  # a signed storage URL: no token, no bucket
            bulk.downloads.append((request.url.path, TOKEN_HEADER.lower() in request.headers))
            return await call_next(request)
        if not hmac.compare_digest(token.encode(), expected):
            return JSONResponse({"errors": UNAUTHORIZED_MESSAGE}, status_code=401)
        decision = limiter.acquire(token)
        response: Response
        if not decision.allowed:
            response = JSONResponse(
                {"errors": throttled_message},
                status_code=429,
                headers={"Retry-After": f"{decision.retry_after:.1f}"},
            )
        else:
            delay = faults.take_delay()
            if delay:
                await asyncio.sleep(delay)
            injected = faults.take_status()
            if injected is not None:
                status, retry_after = injected
                headers = {"Retry-After": f"{retry_after:.1f}"} if status == 429 else {}
                response = JSONResponse({"errors": HTTPStatus(status).phrase}, status_code=status, headers=headers)
            else:
                response = await call_next(request)
        response.headers[CALL_LIMIT_HEADER] = decision.header
        calls.add(Call(request.method, request.url.path, request.url.query, response.status_code, clock()))
        return response

    @app.post("/admin/api/{version}/graphql.json")
    async def graphql(version: str, request: Request) -> JSONResponse:
        if not _VERSION_RE.match(version):
            raise ApiError(404, "Not Found")
        try:
            body = await request.json()
            query = str(body["query"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "Bad Request: expected a JSON body with a query") from None
        if "bulkOperationRunQuery" in query:
            base = str(request.base_url).rstrip("/")
            op, errors = bulk.start(query, base)
            payload = {"bulkOperation": op.to_json() if op else None, "userErrors": errors}
            return JSONResponse({"data": {"bulkOperationRunQuery": payload}})
        if "currentBulkOperation" in query:
            current = bulk.current.to_json() if bulk.current else None
            return JSONResponse({"data": {"currentBulkOperation": current}})
        message = "this stand-in answers bulkOperationRunQuery and currentBulkOperation only"
        return JSONResponse({"errors": [{"message": message}]})

    @app.get(BULK_RESULTS_PATH + "{name}")
    def bulk_result(name: str, request: Request) -> StreamingResponse:
        path = bulk.resolve(name, request.query_params.get("expires"), request.query_params.get("signature"))
        headers = {"Content-Length": str(path.stat().st_size)}
        return StreamingResponse(bulk.stream(path), media_type="application/jsonl", headers=headers)

    @app.get("/admin/api/{version}/{resource}/count.json")
    def count(version: str, resource: str, request: Request) -> JSONResponse:
        _check_resource(version, resource)
        filters = Filters.from_query(request.query_params, resource)
        return JSONResponse({"count": store.count(resource, filters)})

    @app.get("/admin/api/{version}/{resource}/{item_id:int}.json")
    def get_one(version: str, resource: str, item_id: int, request: Request) -> Response:
        _check_resource(version, resource)
        encoded = store.get(resource, item_id)
        if encoded is None:
            raise ApiError(404, "Not Found")
        fields = _parse_fields(request.query_params)
        if fields:
            item = json.loads(encoded)
            return JSONResponse({SINGULAR[resource]: {key: item[key] for key in fields if key in item}})
        return Response(f'{{"{SINGULAR[resource]}":{encoded}}}', media_type="application/json")

    @app.get("/admin/api/{version}/{resource}.json")
    def list_resource(version: str, resource: str, request: Request) -> Response:
        _check_resource(version, resource)
        params = request.query_params
        limit = _parse_limit(params)
        fields = _parse_fields(params)
        after: int | None = None
        before: int | None = None
        if "page_info" in params:
            extra = sorted(set(params) - _PAGE_INFO_COMPANIONS)
            if extra:
                raise ApiError(
                    400,
                    {"page_info": f"only limit and fields may come with page_info, not {', '.join(extra)}"},
                )
            info = PageInfo.decode(params["page_info"], resource)
            filters = info.filters
            if info.direction == "next":
                after = info.cursor
            else:
                before = info.cursor
        else:
            filters = Filters.from_query(params, resource)
        encoded, ids, more = store.page(resource, filters, limit, after=after, before=before)

        # Like Shopify: no "previous" on the first page; "next" while rows remain ahead.
        if before is not None:
            has_previous, has_next = more, True
        else:
            has_previous, has_next = after is not None, more
        links: list[PageInfo] = []
        if has_previous:
            # an empty page (rows vanished) still points back at what lies before it
            cursor = ids[0] if ids else (after + 1 if after is not None else before)
            links.append(PageInfo(resource, "previous", int(cursor), filters))
        if has_next:
            cursor = ids[-1] if ids else (after if after is not None else before - 1)
            links.append(PageInfo(resource, "next", int(cursor), filters))
        headers = {}
        if links:
            fields_param = params.get("fields")
            headers["Link"] = ", ".join(
                _page_link(request, version, resource, link, limit, fields_param) for link in links
            )
        if fields:
            items = [json.loads(item) for item in encoded]
            kept = [{key: item[key] for key in fields if key in item} for item in items]
            return JSONResponse({resource: kept}, headers=headers)
        body = f'{{"{resource}":[{",".join(encoded)}]}}'
        return Response(body, media_type="application/json", headers=headers)

    return app


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`: ``base_url`` (``http://127.0.0.1:PORT``),
    ``app`` (for ``app.state.faults`` etc.), ``port`` and the uvicorn ``server``."""

    base_url: str
    app: FastAPI
    port: int
    server: uvicorn.Server

    @property
    def api_url(self) -> str:
        """``base_url`` + ``/admin/api/2025-01``."""
        return f"{self.base_url}/admin/api/{API_VERSION}"


@contextlib.contextmanager
def serve_in_thread(
    data_dir: Path,
    api_key: str,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    **app_kwargs: Any,
) -> Iterator[RunningServer]:
    """Run the API with uvicorn on a background thread for the duration of a ``with`` block.

    Parameters: ``data_dir`` and ``api_key`` as in :func:`create_app`; ``port`` (0: any free
    port); ``host`` (loopback by default); ``startup_timeout`` seconds to wait for the server;
    ``app_kwargs`` passed on to :func:`create_app` (``bucket_size``, ``leak_per_second``, ``clock``).
    Yields a :class:`RunningServer`; the server is stopped and the thread joined on exit.
    """

    app = create_app(data_dir, api_key, **app_kwargs)
    try:
        with serve_app_in_thread(
            app, name="ecommerce-api", host=host, port=port, startup_timeout=startup_timeout
        ) as api:
            yield RunningServer(base_url=api.base_url, app=app, port=api.port, server=api.server)
    finally:
        app.state.bulk.close()
        app.state.store.close()


@dataclass
class ProcessServer:
    """A server started by :func:`serve_in_process`: ``base_url``, ``port`` and the server's
    process ``pid`` (no ``app``: its state lives in the other process)."""

    base_url: str
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """CPU seconds the server's process has used so far (user + system)."""
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system


def _serve_process(data_dir: str, api_key: str, host: str, port: int, app_kwargs: dict[str, Any]) -> None:
    import signal
    import sys

    # uvicorn re-raises the SIGTERM it caught once it has shut down: exit through `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = create_app(Path(data_dir), api_key, **app_kwargs)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    finally:
        app.state.bulk.close()
        app.state.store.close()


@contextlib.contextmanager
def serve_in_process(
    data_dir: Path, api_key: str, *, host: str = "127.0.0.1", startup_timeout: float = 300.0, **app_kwargs: Any
) -> Iterator[ProcessServer]:
    """Run the API in a process of its own for the duration of a ``with`` block, so a bench of a
    client in this process times the client (and can read the server's CPU apart).

    Parameters as :func:`serve_in_thread` (``app_kwargs``: ``bucket_size``, ``leak_per_second``).
    The process is stopped (SIGTERM, then SIGKILL after 10 s) on exit.
    """
    import multiprocessing
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_process, args=(str(data_dir), api_key, host, port, app_kwargs), name=f"ecommerce-api-{port}"
    )
    process.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if not process.is_alive():
                raise RuntimeError(f"the ecommerce API process exited with {process.exitcode} before serving")
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ecommerce API process did not serve within {startup_timeout} s")
            time.sleep(0.1)
        yield ProcessServer(base_url=f"http://{host}:{port}", port=port, pid=process.pid or 0)
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def serve(
    data_dir: Path,
    host: str,
    port: int,
    api_key: str,
    *,
    bucket_size: int = 40,
    leak_per_second: float = 2.0,
    log_level: str = "info",
) -> None:
    """Serve the API until interrupted (Ctrl-C); what ``yorisoi serve ecommerce`` calls.

    Parameters: ``data_dir`` the brand folder or its ``ecommerce/`` folder; ``host`` and ``port``
    to listen on; ``api_key`` the accepted ``X-Shopify-Access-Token``; ``bucket_size`` and
    ``leak_per_second`` the rate limit; ``log_level`` uvicorn's log level.
    """
    app = create_app(data_dir, api_key, bucket_size=bucket_size, leak_per_second=leak_per_second)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="off")
    finally:  # the bulk results written while serving
        app.state.bulk.close()
        app.state.store.close()
