"""A Shopify-Admin-REST-like HTTP API over the synthetic brand's e-commerce Parquet files.

Used for demos (`yorisoi serve ecommerce`) and for tests of the ingestion code, which talk to it
over real HTTP on loopback. The data contract is ``docs/synthetic-brand.md``; the Parquet files
are ``DIR/ecommerce/{customers,orders,order_lines,products}.parquet``.

The data is loaded once into an in-memory DuckDB database; every request is one or two small
queries (``WHERE id > cursor ... ORDER BY id LIMIT n``, then the line items of the page's orders
only), so a page costs a few milliseconds even at 11 M orders / 16 M lines.

Endpoints (``{version}`` is any ``YYYY-MM``; the demos and tests use ``2025-01``)::

    GET /admin/api/{version}/customers.json        {"customers": [...]}
    GET /admin/api/{version}/orders.json           {"orders": [...]}
    GET /admin/api/{version}/products.json         {"products": [...]}
    GET /admin/api/{version}/{resource}/count.json {"count": n}
    GET /admin/api/{version}/{resource}/{id}.json  {"customer": {...}} etc., 404 if absent

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
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._loopback import RateLimiter, serve_app_in_thread

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

# The JSON-ready columns of each resource, over a relation named like its table. A page is
# cut first (``SELECT * ... ORDER BY id LIMIT n``, which DuckDB answers from the id zonemaps) and
# only its rows are formatted: formatting before the limit costs ~40 ms a page at 11 M orders.
_COLUMNS: dict[str, str] = {
    "customers": """
        id, email, first_name, last_name, last_name_kana, first_name_kana, phone, state, tags, verified_email,
        iso_jst(created_at) AS created_at, iso_jst(updated_at) AS updated_at,
        email_marketing_state, email_marketing_opt_in_level,
        iso_jst(email_marketing_updated_at) AS email_marketing_updated_at,
        sms_marketing_state, iso_jst(sms_marketing_updated_at) AS sms_marketing_updated_at,
        zip, province, city, address1""",
    "orders": """
        id, name, TRY_CAST(ltrim(name, '#') AS BIGINT) AS order_number, email, customer_id,
        iso_jst(created_at) AS created_at, iso_jst(processed_at) AS processed_at,
        iso_jst(updated_at) AS updated_at, iso_jst(cancelled_at) AS cancelled_at, cancel_reason,
        financial_status, fulfillment_status, source_name, currency,
        money(subtotal_price) AS subtotal_price, money(total_discounts) AS total_discounts,
        money(shipping_price) AS shipping_price, money(total_price) AS total_price,
        CAST(points_used AS BIGINT) AS points_used, CAST(points_earned AS BIGINT) AS points_earned""",
    "products": """
        id, title, vendor, product_type, variant_title, sku,
        money(coalesce(sale_price, price)) AS selling_price, money(price) AS list_price,
        iso_jst(created_at) AS created_at, iso_jst(updated_at) AS updated_at""",
}

_LINE_ITEMS_SQL = """
    SELECT order_id, id, product_id, sku, title, CAST(quantity AS BIGINT) AS quantity,
           money(price) AS price, money(compare_at_price) AS compare_at_price
    FROM order_lines
    WHERE order_id IN (SELECT unnest(?::BIGINT[]))
    ORDER BY order_id, id"""

SINGULAR = {"customers": "customer", "orders": "order", "products": "product"}
_GID_TYPE = {"customers": "Customer", "orders": "Order", "products": "Product"}


def _gid(kind: str, id_: int) -> str:
    return f"gid://shopify/{kind}/{id_}"


def _tags(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _customer_json(row: dict[str, Any]) -> dict[str, Any]:
    address_fields = ("zip", "province", "city", "address1")
    address = None
    if any(row[name] is not None for name in address_fields):
        address = {
            "id": row["id"],
            "customer_id": row["id"],
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "company": None,
            "address1": row["address1"],
            "address2": None,
            "city": row["city"],
            "province": row["province"],
            "country": "Japan",
            "zip": row["zip"],
            "phone": row["phone"],
            "country_code": "JP",
            "country_name": "Japan",
            "default": True,
        }
    email_consent = None
    if row["email_marketing_state"] is not None:
        email_consent = {
            "state": row["email_marketing_state"],
            "opt_in_level": row["email_marketing_opt_in_level"],
            "consent_updated_at": row["email_marketing_updated_at"],
        }
    sms_consent = None
    if row["sms_marketing_state"] is not None:
        sms_consent = {
            "state": row["sms_marketing_state"],
            "opt_in_level": None,
            "consent_updated_at": row["sms_marketing_updated_at"],
        }
    return {
        "id": row["id"],
        "email": row["email"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "last_name_kana": row["last_name_kana"],
        "first_name_kana": row["first_name_kana"],
        "state": row["state"],
        "note": None,
        "verified_email": bool(row["verified_email"]) if row["verified_email"] is not None else None,
        "tags": _tags(row["tags"]),
        "currency": "JPY",
        "phone": row["phone"],
        "addresses": [address] if address else [],
        "email_marketing_consent": email_consent,
        "sms_marketing_consent": sms_consent,
        "admin_graphql_api_id": _gid("Customer", row["id"]),
        "default_address": address,
    }


def _line_item_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "admin_graphql_api_id": _gid("LineItem", row["id"]),
        "product_id": row["product_id"],
        "variant_id": row["product_id"],
        "sku": row["sku"],
        "title": row["title"],
        "name": row["title"],
        "quantity": row["quantity"],
        "price": row["price"],
        "compare_at_price": row["compare_at_price"],
    }


def _order_json(row: dict[str, Any], line_items: list[dict[str, Any]]) -> dict[str, Any]:
    shipping = {"amount": row["shipping_price"], "currency_code": row["currency"]}
    customer_id = row["customer_id"]
    return {
        "id": row["id"],
        "admin_graphql_api_id": _gid("Order", row["id"]),
        "name": row["name"],
        "order_number": row["order_number"],
        "email": row["email"],
        "created_at": row["created_at"],
        "processed_at": row["processed_at"],
        "updated_at": row["updated_at"],
        "cancelled_at": row["cancelled_at"],
        "cancel_reason": row["cancel_reason"],
        "closed_at": None,
        "financial_status": row["financial_status"],
        "fulfillment_status": row["fulfillment_status"],
        "source_name": row["source_name"],
        "currency": row["currency"],
        "presentment_currency": row["currency"],
        "subtotal_price": row["subtotal_price"],
        "total_discounts": row["total_discounts"],
        "total_price": row["total_price"],
        "total_shipping_price_set": {"shop_money": shipping, "presentment_money": dict(shipping)},
        "points_used": row["points_used"],
        "points_earned": row["points_earned"],
        "customer": None if customer_id is None else {"id": customer_id},
        "line_items": line_items,
    }


def _product_json(row: dict[str, Any]) -> dict[str, Any]:
    variant = {
        "id": row["id"],
        "product_id": row["id"],
        "admin_graphql_api_id": _gid("ProductVariant", row["id"]),
        "title": row["variant_title"] or "Default Title",
        "sku": row["sku"],
        "price": row["selling_price"],
        "compare_at_price": row["list_price"],
        "position": 1,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    return {
        "id": row["id"],
        "admin_graphql_api_id": _gid("Product", row["id"]),
        "title": row["title"],
        "body_html": None,
        "vendor": row["vendor"],
        "product_type": row["product_type"],
        "status": "active",
        "tags": "",
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "published_at": row["created_at"],
        "variants": [variant],
    }


def _fetch_dicts(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = [column[0] for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


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

    def _render(
        self, cur: duckdb.DuckDBPyConnection, resource: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if resource == "customers":
            return [_customer_json(row) for row in rows]
        if resource == "products":
            return [_product_json(row) for row in rows]
        lines: dict[int, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
        if rows:
            for line in _fetch_dicts(cur, _LINE_ITEMS_SQL, [list(lines)]):
                lines[line["order_id"]].append(_line_item_json(line))
        return [_order_json(row, lines[row["id"]]) for row in rows]

    def page(
        self,
        resource: str,
        filters: Filters,
        limit: int,
        *,
        after: int | None = None,
        before: int | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of ``resource`` matching ``filters``, sorted by id ascending.

        ``after``: rows with id > after (forward); ``before``: the ``limit`` rows just below
        ``before`` (backward). Returns the JSON objects and whether more rows lie beyond the page in
        the direction walked.
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
        page = f"(SELECT * FROM {resource}{where} ORDER BY id {order} LIMIT ?) AS {resource}"  # noqa: S608
        sql = f"SELECT {_COLUMNS[resource]} FROM {page} ORDER BY id {order}"  # noqa: S608
        with self.cursor() as cur:
            rows = _fetch_dicts(cur, sql, [*params, limit + 1])
            more = len(rows) > limit
            rows = rows[:limit]
            if before is not None:
                rows.reverse()
            return self._render(cur, resource, rows), more

    def count(self, resource: str, filters: Filters) -> int:
        """Number of rows of ``resource`` matching ``filters``."""
        clauses, params = filters.where()
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.cursor() as cur:
            result = cur.execute(f"SELECT count(*) FROM {resource}{where}", params).fetchone()  # noqa: S608 (fixed table names)
        return int(result[0]) if result else 0

    def get(self, resource: str, id_: int) -> dict[str, Any] | None:
        """The JSON object of ``resource`` with id ``id_``, or None."""
        with self.cursor() as cur:
            sql = f"SELECT {_COLUMNS[resource]} FROM {resource} WHERE id = ?"  # noqa: S608
            rows = _fetch_dicts(cur, sql, [id_])
            return self._render(cur, resource, rows)[0] if rows else None


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

    @app.get("/admin/api/{version}/{resource}/count.json")
    def count(version: str, resource: str, request: Request) -> JSONResponse:
        _check_resource(version, resource)
        filters = Filters.from_query(request.query_params, resource)
        return JSONResponse({"count": store.count(resource, filters)})

    @app.get("/admin/api/{version}/{resource}/{item_id:int}.json")
    def get_one(version: str, resource: str, item_id: int, request: Request) -> JSONResponse:
        _check_resource(version, resource)
        item = store.get(resource, item_id)
        if item is None:
            raise ApiError(404, "Not Found")
        fields = _parse_fields(request.query_params)
        if fields:
            item = {key: item[key] for key in fields if key in item}
        return JSONResponse({SINGULAR[resource]: item})

    @app.get("/admin/api/{version}/{resource}.json")
    def list_resource(version: str, resource: str, request: Request) -> JSONResponse:
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
        items, more = store.page(resource, filters, limit, after=after, before=before)

        # Like Shopify: no "previous" on the first page; "next" while rows remain ahead.
        if before is not None:
            has_previous, has_next = more, True
        else:
            has_previous, has_next = after is not None, more
        links: list[PageInfo] = []
        if has_previous:
            # an empty page (rows vanished) still points back at what lies before it
            cursor = items[0]["id"] if items else (after + 1 if after is not None else before)
            links.append(PageInfo(resource, "previous", int(cursor), filters))
        if has_next:
            cursor = items[-1]["id"] if items else (after if after is not None else before - 1)
            links.append(PageInfo(resource, "next", int(cursor), filters))
        headers = {}
        if links:
            fields_param = params.get("fields")
            headers["Link"] = ", ".join(
                _page_link(request, version, resource, link, limit, fields_param) for link in links
            )
        if fields:
            items = [{key: item[key] for key in fields if key in item} for item in items]
        return JSONResponse({resource: items}, headers=headers)

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
        app.state.store.close()


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
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="off")
