"""Extraction from the e-commerce API (Shopify-like Admin REST, and GraphQL bulk operations)
into the raw layer.

Four parts:

- :class:`ShopClient`: an httpx client that walks a list endpoint page by page, following the
  ``Link: <...>; rel="next"`` header (Shopify's cursor pagination: later pages carry only
  ``page_info`` and ``limit``), and retries what is worth retrying (docs/reliability.md #5).
- ``flatten_customers`` / ``flatten_orders`` / ``flatten_products``: one page of API JSON to Arrow
  tables with explicit schemas (ids as text; money as int64 whole units, or decimals in the
  source's minor unit (the registry's ``money``); timestamps as UTC microseconds), nested
  consent, address, shipping and variant objects flattened into the columns of the data contract
  (``docs/synthetic-brand.md``).
- the bulk path (:meth:`ShopClient.run_bulk`, :meth:`ShopClient.download`,
  :func:`read_bulk_result`): one ``bulkOperationRunQuery`` per endpoint, ``currentBulkOperation``
  polled until COMPLETED, its JSONL downloaded (only from the shop's origin or Shopify's result
  storage, never with the token) and read back into the REST records the flatteners take.
- :func:`ingest_ecommerce`: per registry table, read the watermark, read what changed since it
  (:func:`read_records`: a bulk operation for a first load, the REST walk with
  ``updated_at_min = watermark`` for increments; the registry's ``read`` can force either),
  stream the records into parts of at most ``rows_per_part`` rows through the same flattening and
  row checks (:func:`land_chunk`) and land them with :meth:`yorisoi.sources.landing.Warehouse.batch`,
  so the rows and the new watermark reach the warehouse in one transaction, or not at all.

Retry rules (what the client does with each answer):

===========================================  ===================================================
answer                                       action
===========================================  ===================================================
2xx                                          done
429 or 5xx carrying ``Retry-After``          wait ``Retry-After + jitter() * backoff_base`` seconds
                                             (never less than the server asked), retry
other 429 / 5xx, timeout, connection or      wait ``min(backoff_cap, backoff_base * 2**(n-1) +
protocol error                               jitter() * backoff_base)`` after the n-th attempt,
                                             retry
any other 4xx (400, 401, 403, 404, 422...)   raise :class:`ShopApiError` at once (never retried)
===========================================  ===================================================

``jitter()`` returns a number in [0, 1) (``random.random`` by default; tests pass a constant).
After ``max_attempts`` attempts the client raises :class:`ShopApiError` naming the last failure.
Every wait is logged at WARNING with the URL, the reason and the attempt number.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import tenacity

from ..runbook import next_step
from .landing import BatchWriter, LandResult, Warehouse
from .registry import RegistryError, Source, Table
from .screening import Findings, screen

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Shopify-Access-Token"  # noqa: S105 (a header name, not a secret)
DEFAULT_API_VERSION = "2025-01"
SHOPIFY_BULK_ORIGIN = "https://storage.googleapis.com"
"""Where Shopify puts bulk results (signed URLs): the one origin besides the shop's own that a
result URL may point to, unless the client is given others."""

TS = pa.timestamp("us", tz="UTC")

CUSTOMERS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("email", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("last_name_kana", pa.string()),
        ("first_name_kana", pa.string()),
        ("phone", pa.string()),
        ("created_at", TS),
        ("updated_at", TS),
        ("state", pa.string()),
        ("tags", pa.string()),
        ("email_marketing_state", pa.string()),
        ("email_marketing_opt_in_level", pa.string()),
        ("email_marketing_updated_at", TS),
        ("sms_marketing_state", pa.string()),
        ("sms_marketing_updated_at", TS),
        ("zip", pa.string()),
        ("province", pa.string()),
        ("city", pa.string()),
        ("address1", pa.string()),
        ("verified_email", pa.bool_()),
        ("birth_date", pa.date32()),
    ]
)

ORDERS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("name", pa.string()),
        ("customer_id", pa.string()),
        ("email", pa.string()),
        ("created_at", TS),
        ("processed_at", TS),
        ("updated_at", TS),
        ("cancelled_at", TS),
        ("cancel_reason", pa.string()),
        ("financial_status", pa.string()),
        ("fulfillment_status", pa.string()),
        ("source_name", pa.string()),
        ("subtotal_price", pa.int64()),
        ("total_discounts", pa.int64()),
        ("shipping_price", pa.int64()),
        ("points_used", pa.int64()),
        ("points_earned", pa.int64()),
        ("total_price", pa.int64()),
        ("currency", pa.string()),
    ]
)

ORDER_LINES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("order_id", pa.string()),
        ("product_id", pa.string()),
        ("sku", pa.string()),
        ("title", pa.string()),
        ("quantity", pa.int64()),
        ("price", pa.int64()),
        ("compare_at_price", pa.int64()),
    ]
)

PRODUCTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sku", pa.string()),
        ("title", pa.string()),
        ("vendor", pa.string()),
        ("product_type", pa.string()),
        ("variant_title", pa.string()),
        ("price", pa.int64()),
        ("sale_price", pa.int64()),
        ("created_at", TS),
        ("updated_at", TS),
    ]
)


RAW_SCHEMAS = {
    "customers": CUSTOMERS_SCHEMA,
    "orders": ORDERS_SCHEMA,
    "order_lines": ORDER_LINES_SCHEMA,
    "products": PRODUCTS_SCHEMA,
}
"""Registry table → the columns the flatteners give it (its raw table's shape before any row lands)."""


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class ShopApiError(RuntimeError):
    """The API refused a request (a 4xx other than 429), or kept failing until the attempts ran out.

    Attributes: ``status`` the last HTTP status (None after a timeout or connection error);
    ``url`` the request URL; ``errors`` the body's ``"errors"`` (or the start of the body);
    ``attempts`` how many attempts were made.
    """

    def __init__(self, message: str, *, status: int | None, url: str, errors: Any = None, attempts: int = 1):
        super().__init__(message)
        self.status = status
        self.url = url
        self.errors = errors
        self.attempts = attempts


class BulkOperationError(ShopApiError):
    """A bulk operation that did not give a result to land: refused, FAILED, CANCELED, EXPIRED,
    timed out, or whose result URL was expired or on a foreign origin. ``operation`` holds what
    the shop said of it (``status``, ``errorCode``, ``url``...)."""

    def __init__(self, message: str, *, operation: dict[str, Any]):
        super().__init__(message, status=None, url=str(operation.get("url") or ""), errors=operation.get("errorCode"))
        self.operation = operation


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


_BULK_FIELDS = "id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt"
_BULK_STARTED = "bulkOperation { id status } userErrors { field message code }"


class _Transient(Exception):
    """A failure worth retrying: ``status`` (None for a transport error), ``retry_after`` seconds
    the server asked for (or None), ``url``, ``errors`` and a short ``reason`` for the log."""

    def __init__(
        self,
        reason: str,
        *,
        url: str,
        status: int | None = None,
        retry_after: float | None = None,
        errors: Any = None,
        method: str = "GET",
    ):
        super().__init__(reason)
        self.reason = reason
        self.method = method
        self.url = url
        self.status = status
        self.retry_after = retry_after
        self.errors = errors


# Timeouts, refused / reset connections and a server that hangs up mid-response are transient;
# an unsupported scheme or an invalid URL (other TransportErrors) are not.
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def parse_retry_after(value: str | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds (Shopify sends ``"2.0"``)
    or an HTTP date. Returns None when ``value`` is absent or unreadable, never a negative number.
    ``now`` gives the current time for the HTTP-date form."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _errors_of(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return body.get("errors", body) if isinstance(body, dict) else body


class ShopClient:
    """A client of the Shopify-like Admin REST API.

    Parameters: ``base_url`` the shop's root (``https://shop.example`` or ``http://127.0.0.1:PORT``;
    paths ``/admin/api/{api_version}/...`` are added); ``token`` the access token, sent as
    ``X-Shopify-Access-Token``; ``api_version`` the Admin API version; ``timeout`` seconds per
    request (connect, read, write, pool); ``max_attempts`` attempts per request, the first one
    included (at least 1); ``backoff_base`` seconds of the first back-off and the scale of the
    jitter; ``backoff_cap`` the longest back-off (a server's ``Retry-After`` is honoured in full
    even when longer); ``sleep`` called with each wait in seconds (inject a recorder or a fake clock
    in tests); ``jitter`` returns a number in [0, 1) (see the module docstring for the rules);
    ``transport`` an optional httpx transport (tests); ``deadline`` seconds a whole request may
    take, body included (``timeout`` bounds each read, so a server trickling a byte at a time
    would otherwise never time out); ``max_pages`` pages one walk may read (a cursor that keeps
    changing but never ends stops there).

    ``Link`` URLs are followed only on the shop's own origin (scheme, host and port of
    ``base_url``): the access token is never sent to another host. A page whose records repeat an
    earlier page's (a cursor that loops while changing) stops the walk too.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        deadline: float = 300.0,
        max_pages: int = 200_000,
        poll_interval: float = 1.0,
        bulk_timeout: float = 4 * 3600.0,
        download_deadline: float = 3600.0,
        download_origins: tuple[str, ...] = (SHOPIFY_BULK_ORIGIN,),
    ):
        if not token:
            raise ValueError("token must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_base < 0 or backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must not be negative")
        if deadline <= 0 or max_pages < 1:
            raise ValueError("deadline must be positive and max_pages at least 1")
        self.deadline = deadline
        self.max_pages = max_pages
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._jitter = jitter
        self._http = httpx.Client(
            headers={TOKEN_HEADER: token, "Accept": "application/json", "User-Agent": "yorisoi-ingest"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )
        # bulk results are signed storage URLs: fetched with a client that has no token to send
        self._plain = httpx.Client(
            headers={"User-Agent": "yorisoi-ingest"}, timeout=httpx.Timeout(timeout), transport=transport
        )
        self.poll_interval = poll_interval
        self.bulk_timeout = bulk_timeout
        self.download_deadline = download_deadline
        self.download_origins = tuple(_origin(httpx.URL(o)) for o in download_origins)

    def __enter__(self) -> ShopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._plain.close()

    def resource_url(self, resource: str) -> str:
        """URL of a list endpoint: ``resource`` is ``"orders"`` or ``"orders.json"``."""
        return f"{self.base_url}/admin/api/{self.api_version}/{resource.removesuffix('.json')}.json"

    # ---- waits ------------------------------------------------------------------------------

    def _jitter01(self) -> float:
        return min(1.0, max(0.0, float(self._jitter())))

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): ``retry_after`` (the
        server's ``Retry-After``) plus up to ``backoff_base`` of jitter when given, else the capped
        exponential back-off with jitter."""
        spread = self._jitter01() * self.backoff_base
        if retry_after is not None:
            return retry_after + spread
        return min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1) + spread)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, _Transient) else None
        return self.backoff(state.attempt_number, retry_after)

    def _log_wait(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        url = exc.url if isinstance(exc, _Transient) else "?"
        log.warning(
            "%s %s: %s; retrying in %.2f s (attempt %d of %d failed)",
            exc.method if isinstance(exc, _Transient) else "?",
            url,
            reason,
            state.upcoming_sleep,
            state.attempt_number,
            self.max_attempts,
        )

    # ---- requests ---------------------------------------------------------------------------

    def _fetch(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any = None, sink: Any = None
    ) -> httpx.Response:
        """One request, read in full within ``deadline`` seconds (a trickling body is cut off);
        a successful body goes to ``sink`` (a file) when given, else into the response."""
        started = time.monotonic()
        http = self._http if sink is None else self._plain
        deadline = self.deadline if sink is None else self.download_deadline
        with http.stream(method, url, params=params, json=body) as streamed:
            content = bytearray()
            write = sink.write if sink is not None and streamed.status_code < 300 else content.extend
            read = 0
            for chunk in streamed.iter_bytes():
                write(chunk)
                read += len(chunk)
                if time.monotonic() - started > deadline:
                    raise httpx.ReadTimeout(
                        f"the whole request took over {deadline:g} s ({read} bytes read)", request=streamed.request
                    )
            return httpx.Response(
                streamed.status_code, headers=streamed.headers, content=bytes(content), request=streamed.request
            )

    def _attempt(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any = None, sink: Any = None
    ) -> httpx.Response:
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        try:
            response = self._fetch(method, url, params, body, sink)
        except _TRANSIENT_TRANSPORT as exc:
            shown = str(httpx.URL(url, params=params))
            raise _Transient(f"{type(exc).__name__}: {exc}", url=shown, method=method) from exc
        status = response.status_code
        if status < 400:
            return response
        shown = str(response.url)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            errors = _errors_of(response)
            raise _Transient(
                f"HTTP {status} ({errors})",
                url=shown,
                status=status,
                retry_after=retry_after,
                errors=errors,
                method=method,
            )
        errors = _errors_of(response)
        raise ShopApiError(
            f"{method} {shown} answered HTTP {status}: {errors}", status=status, url=shown, errors=errors
        )

    def request(
        self, method: str, url: str, params: Mapping[str, Any] | None = None, *, body: Any = None, sink: Any = None
    ) -> httpx.Response:
        """``method`` ``url`` (absolute) with the retry rules; returns the successful response.

        ``params`` are query parameters (None when ``url`` already carries them); ``body`` a JSON
        body; ``sink`` a binary file the body is streamed into (a bulk result: sent without the
        access token, within ``download_deadline``). Raises :class:`ShopApiError` on a
        non-retryable answer or when the attempts run out.
        """
        # tenacity expresses every rule: `wait` is a callable of the retry state, so it can read
        # the Retry-After of the failure it is waiting after; `sleep` is injectable.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_wait,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, url, params, body, sink)
        except _Transient as exc:
            raise ShopApiError(
                f"{method} {exc.url} still failing after {self.max_attempts} attempt(s): {exc.reason}",
                status=exc.status,
                url=exc.url,
                errors=exc.errors,
                attempts=self.max_attempts,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET ``url`` (absolute) with the retry rules (:meth:`request`)."""
        return self.request("GET", url, params)

    def pages(self, resource: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of a list endpoint page by page.

        ``resource``: ``"customers"``, ``"orders"``, ``"products"`` (``.json`` optional).
        ``params``: query parameters of the first request (``limit``, ``updated_at_min``...); the
        following requests are the ``rel="next"`` URLs of the ``Link`` header, which carry only
        ``page_info`` and ``limit`` (and ``fields``), as Shopify requires.
        """
        key = resource.removesuffix(".json")
        url: str = self.resource_url(key)
        query: Mapping[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        origin = httpx.URL(self.base_url)
        seen: set[str] = set()
        pages_seen: set[int] = set()  # a hash of each page's record ids (memory stays small at L)
        for number in range(1, self.max_pages + 1):
            response = self.get(url, query)
            try:
                body = response.json()
                records = body[key]
            except (ValueError, KeyError, TypeError):
                raise ShopApiError(
                    f"GET {response.url}: expected a JSON object with {key!r}, got {response.text[:200]!r}",
                    status=response.status_code,
                    url=str(response.url),
                ) from None
            ids = hash(tuple(r.get("id") for r in records if isinstance(r, dict)))
            if records and ids in pages_seen:
                raise ShopApiError(
                    f"pagination loops: page {number} ({response.url}) repeats the records of an earlier page",
                    status=None,
                    url=str(response.url),
                )
            pages_seen.add(ids)
            yield records
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return
            target = response.url.join(next_url)
            if _origin(target) != _origin(origin):
                raise ShopApiError(
                    f"Link header points to another origin ({target.scheme}://{target.host}"
                    f"{f':{target.port}' if target.port else ''}); not followed: the access token goes only to "
                    f"{self.base_url}",
                    status=None,
                    url=str(target),
                )
            next_url = str(target)
            if next_url in seen:
                raise ShopApiError(f"pagination loops: {next_url} came twice", status=None, url=next_url)
            seen.add(next_url)
            url, query = next_url, None
        raise ShopApiError(
            f"GET {self.resource_url(key)}: more than {self.max_pages} pages in one walk (max_pages); stopped",
            status=None,
            url=str(url),
        )

    # ---- bulk operations (GraphQL Admin API) ------------------------------------------------

    def graphql(self, query: str) -> dict[str, Any]:
        """POST a GraphQL document to ``graphql.json``; returns its ``data``. A ``THROTTLED``
        error is retried like a 429; any other top-level error raises :class:`ShopApiError`."""
        url = self.resource_url("graphql")
        for attempt in range(1, self.max_attempts + 1):
            response = self.request("POST", url, body={"query": query})
            try:
                body = response.json()
            except ValueError:
                raise ShopApiError(
                    f"POST {url}: expected JSON, got {response.text[:200]!r}", status=response.status_code, url=url
                ) from None
            errors = body.get("errors") if isinstance(body, dict) else "not a JSON object"
            throttled = isinstance(errors, list) and any(
                isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
            )
            if throttled and attempt < self.max_attempts:
                wait = self.backoff(attempt)
                log.warning("POST %s: throttled; retrying in %.2f s (attempt %d)", url, wait, attempt)
                self._sleep(wait)
                continue
            if errors:
                raise ShopApiError(
                    f"POST {url}: GraphQL errors: {errors}", status=response.status_code, url=url, errors=errors
                )
            return body.get("data") or {}
        raise AssertionError("unreachable")  # pragma: no cover

    def run_bulk(self, query: str) -> dict[str, Any]:
        """Start a bulk query (``bulkOperationRunQuery``) and poll ``currentBulkOperation`` until
        it ends; returns the COMPLETED operation (its ``url`` is None when nothing matched).

        Raises :class:`BulkOperationError` when it ends FAILED, CANCELED or EXPIRED (its partial
        data is never landed: a watermark must not move over what it left out), when another
        bulk query of this app is running, or after ``bulk_timeout`` seconds of waiting.
        """
        document = f'mutation {{ bulkOperationRunQuery(query: """{query}""") {{ {_BULK_STARTED} }} }}'
        started = self.graphql(document).get("bulkOperationRunQuery") or {}
        errors = started.get("userErrors") or []
        operation = started.get("bulkOperation") or {}
        if errors or not operation.get("id"):
            raise BulkOperationError(f"the shop refused the bulk query: {errors or started}", operation=operation)
        op_id = operation["id"]
        log.info("bulk operation %s started", op_id)
        waited, pause = 0.0, self.poll_interval
        while True:
            current = self.graphql(f"query {{ currentBulkOperation {{ {_BULK_FIELDS} }} }}").get("currentBulkOperation")
            if not current or current.get("id") != op_id:
                raise BulkOperationError(
                    f"bulk operation {op_id} is no longer the current one: {current}", operation=operation
                )
            status = current.get("status")
            if status == "COMPLETED":
                log.info(
                    "bulk operation %s completed: %s object(s), %s byte(s)",
                    op_id, current.get("objectCount"), current.get("fileSize"),
                )  # fmt: skip
                return current
            if status in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                raise BulkOperationError(
                    f"bulk operation {op_id} ended {status}"
                    + (f" ({current.get('errorCode')})" if current.get("errorCode") else "")
                    + ("; its partial data is not landed" if current.get("partialDataUrl") else "")
                    + "; nothing landed and the watermark did not move: rerun the task to start a new one",
                    operation=current,
                )
            if waited >= self.bulk_timeout:
                raise BulkOperationError(
                    f"bulk operation {op_id} still {status} after {waited:.0f} s (bulk_timeout)", operation=current
                )
            self._sleep(pause)
            waited += pause
            pause = min(pause * 1.5, 10.0)

    def download(self, url: str, sink: Any) -> int:
        """Stream a bulk result into ``sink`` (a binary file); returns the bytes written.

        ``url`` must be on the shop's origin or one of ``download_origins`` (else refused before
        any request), and is fetched without the access token (a signed URL needs none). An
        expired URL (HTTP 403) raises :class:`BulkOperationError`.
        """
        target = httpx.URL(url)
        allowed = (_origin(httpx.URL(self.base_url)), *self.download_origins)
        if _origin(target) not in allowed:
            raise BulkOperationError(
                f"bulk result URL on another origin ({target.scheme}://{target.host}"
                f"{f':{target.port}' if target.port else ''}); not fetched: results are read only from "
                f"{', '.join(f'{s}://{h}' + (f':{p}' if p else '') for s, h, p in allowed)}",
                operation={"url": url},
            )
        try:
            response = self.request("GET", url, sink=sink)
        except ShopApiError as exc:
            if exc.status == 403:
                raise BulkOperationError(
                    f"the bulk result URL was refused (expired or no longer valid): {exc.errors}; "
                    "nothing landed and the watermark did not move: rerun the task to start a new bulk operation",
                    operation={"url": url},
                ) from exc
            raise
        if response.status_code != 200:
            raise BulkOperationError(
                f"bulk result download answered HTTP {response.status_code}", operation={"url": url}
            )
        return sink.tell()


# --------------------------------------------------------------------------------------------
# Flattening: API JSON pages → Arrow
# --------------------------------------------------------------------------------------------


def _ts(values: list[str | None]) -> pa.Array:
    """ISO 8601 strings with an offset (``2025-03-01T09:30:00+09:00``) → UTC microseconds;
    Arrow's cast parses and normalises the offsets in one vectorised pass."""
    return pa.array(values, pa.string()).cast(TS)


_EXACT = pa.decimal128(38, 9)


def _money(values: list[Any]) -> pa.Array:
    """Amounts as the API sends them (``"1234"``, ``"1234.00"``, ``"12.99"``) → exact decimals;
    :func:`_table` casts them to the table's money type (whole units or the source's minor unit)
    and refuses, by name, an amount that would lose a digit."""
    return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(_EXACT)


def money_type(scale: int) -> pa.DataType:
    """How a source's amounts land: int64 whole units (scale 0, JPY), else DECIMAL(18, scale)."""
    return pa.int64() if scale == 0 else pa.decimal128(18, scale)


MONEY_COLUMNS = frozenset(
    {"subtotal_price", "total_discounts", "shipping_price", "total_price", "price", "compare_at_price", "sale_price"}
)


def with_money(schema: pa.Schema, scale: int) -> pa.Schema:
    """`schema` with its money columns in the source's money type (:func:`money_type`)."""
    if scale == 0:
        return schema
    return pa.schema([f.with_type(money_type(scale)) if f.name in MONEY_COLUMNS else f for f in schema])


def raw_schemas(scale: int = 0) -> dict[str, pa.Schema]:
    """Registry table → its raw table's columns, with money in the source's minor unit."""
    return {name: with_money(schema, scale) for name, schema in RAW_SCHEMAS.items()}


ID_COLUMNS = frozenset({"id", "customer_id", "order_id", "product_id"})
"""Identifiers: text, whatever the platform sends (Shopify's are JSON numbers; other carts' hold
letters), so one shop's key never has to fit a 64-bit integer."""


def _table(schema: pa.Schema, columns: dict[str, pa.Array | list[Any]]) -> pa.Table:
    """One table of ``schema`` from columns given as Arrow arrays or as plain Python lists."""
    arrays = []
    for f in schema:
        column = columns[f.name]
        if f.name in ID_COLUMNS and not isinstance(column, pa.Array):
            column = [None if v is None else str(v) for v in column]
        if isinstance(column, pa.Array) and column.type != f.type:
            try:
                column = column.cast(f.type)
            except pa.ArrowInvalid as exc:
                raise ValueError(
                    f"{f.name}: an amount has more decimals than the source's money type {f.type} allows; "
                    "set `money: {currency: <code>, minor_unit: <decimal places>}` on the source in the registry"
                ) from exc
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


CUSTOMER_FIELDS = ("last_name_kana", "first_name_kana", "birth_date")
"""What Japanese carts collect beyond Shopify's own fields: furigana and birthday. Each is read
from where the brand's cart keeps it, the registry's ``fields`` on the customers table:
``{field: a.b}`` (a key of the customer JSON, dotted for nested objects; the default is the
column's own name), ``{metafield: namespace.key}`` (the customer's ``metafields``, as a bulk
export or the REST ``metafields`` include returns them) or ``{note: ラベル}`` (a ``ラベル: value``
line of the customer's ``note``, where cart apps without metafields write them)."""

_FIELD_KINDS = ("field", "metafield", "note")


def customer_field_specs(fields: Any) -> dict[str, tuple[str, str]]:
    """The registry's ``fields`` of the customers table, checked: column → (kind, name)."""
    where = "sources.<api>.tables.customers.fields"
    if fields is None:
        return {c: ("field", c) for c in CUSTOMER_FIELDS}
    if not isinstance(fields, dict):
        raise RegistryError(f"{where}: expected {{<column>: {{field|metafield|note: <name>}}}}")
    specs = {c: ("field", c) for c in CUSTOMER_FIELDS}
    for column, spec in fields.items():
        if column not in CUSTOMER_FIELDS:
            raise RegistryError(f"{where}.{column}: not one of {list(CUSTOMER_FIELDS)}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _FIELD_KINDS:
            raise RegistryError(f"{where}.{column}: expected one of {{field|metafield|note: <name>}}, got {spec!r}")
        kind, name = next(iter(spec.items()))
        if not isinstance(name, str) or not name.strip() or (kind == "metafield" and "." not in name):
            raise RegistryError(f"{where}.{column}.{kind}: {name!r} is not a name (a metafield is namespace.key)")
        specs[column] = (kind, name.strip())
    return specs


def _field_value(record: dict[str, Any], kind: str, name: str) -> Any:
    if kind == "field":
        value: Any = record
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    if kind == "metafield":
        namespace, _, key = name.partition(".")
        metafields = record.get("metafields") or []
        if isinstance(metafields, dict):  # GraphQL's connection shape: {"edges": [{"node": {...}}]}
            metafields = [e.get("node") or {} for e in metafields.get("edges") or []]
        for m in metafields:
            if isinstance(m, dict) and m.get("namespace") == namespace and m.get("key") == key:
                return m.get("value")
        return None
    for line in str(record.get("note") or "").splitlines():  # note: "ラベル: value" lines
        label, sep, value = line.replace("：", ":").partition(":")
        if sep and label.strip() == name:
            return value.strip() or None
    return None


def _birth_dates(values: list[Any]) -> pa.Array:
    """Birthdays as carts keep them (``1980-04-01``, ``1980/4/1``, ``19800401``, full-width digits)
    → dates; empty or impossible dates become null (the OMS rule)."""
    from .oms import _as_date

    return pa.array([_as_date(v) if v not in (None, "") else None for v in values], pa.date32())


def flatten_customers(records: list[dict[str, Any]], fields: Any = None) -> pa.Table:
    """Customers JSON → Arrow (:data:`CUSTOMERS_SCHEMA`). ``records``: the ``customers`` of a page.

    ``email_marketing_consent`` and ``sms_marketing_consent`` become ``*_state``, ``*_opt_in_level``
    (email) and ``*_updated_at``; ``default_address`` becomes ``zip``, ``province``, ``city``,
    ``address1``. Furigana and birthday come from where ``fields`` says (:data:`CUSTOMER_FIELDS`;
    default: the top-level keys of the same names).
    """
    specs = customer_field_specs(fields)
    extra = {c: [_field_value(r, *specs[c]) for r in records] for c in CUSTOMER_FIELDS}
    email = [r.get("email_marketing_consent") or {} for r in records]
    sms = [r.get("sms_marketing_consent") or {} for r in records]
    addr = [r.get("default_address") or {} for r in records]
    return _table(
        CUSTOMERS_SCHEMA,
        {
            "id": [r["id"] for r in records],
            "email": [r.get("email") for r in records],
            "first_name": [r.get("first_name") for r in records],
            "last_name": [r.get("last_name") for r in records],
            "last_name_kana": extra["last_name_kana"],
            "first_name_kana": extra["first_name_kana"],
            "phone": [r.get("phone") for r in records],
            "created_at": _ts([r.get("created_at") for r in records]),
            "updated_at": _ts([r.get("updated_at") for r in records]),
            "state": [r.get("state") for r in records],
            "tags": [r.get("tags") for r in records],
            "email_marketing_state": [c.get("state") for c in email],
            "email_marketing_opt_in_level": [c.get("opt_in_level") for c in email],
            "email_marketing_updated_at": _ts([c.get("consent_updated_at") for c in email]),
            "sms_marketing_state": [c.get("state") for c in sms],
            "sms_marketing_updated_at": _ts([c.get("consent_updated_at") for c in sms]),
            "zip": [a.get("zip") for a in addr],
            "province": [a.get("province") for a in addr],
            "city": [a.get("city") for a in addr],
            "address1": [a.get("address1") for a in addr],
            "verified_email": [r.get("verified_email") for r in records],
            "birth_date": _birth_dates(extra["birth_date"]),
        },
    )


def flatten_orders(records: list[dict[str, Any]], money_scale: int = 0) -> tuple[pa.Table, pa.Table]:
    """Orders JSON → ``(orders, order_lines)`` Arrow tables (:data:`ORDERS_SCHEMA`,
    :data:`ORDER_LINES_SCHEMA`). ``records``: the ``orders`` of a page.

    ``customer.id`` becomes ``customer_id`` (null for a guest); ``total_shipping_price_set.
    shop_money.amount`` becomes ``shipping_price``; each of ``line_items`` becomes an order line
    carrying its ``order_id``.
    """
    shipping = [((r.get("total_shipping_price_set") or {}).get("shop_money") or {}).get("amount") for r in records]
    orders = _table(
        with_money(ORDERS_SCHEMA, money_scale),
        {
            "id": [r["id"] for r in records],
            "name": [r.get("name") for r in records],
            "customer_id": [(r.get("customer") or {}).get("id") for r in records],
            "email": [r.get("email") for r in records],
            "created_at": _ts([r.get("created_at") for r in records]),
            "processed_at": _ts([r.get("processed_at") for r in records]),
            "updated_at": _ts([r.get("updated_at") for r in records]),
            "cancelled_at": _ts([r.get("cancelled_at") for r in records]),
            "cancel_reason": [r.get("cancel_reason") for r in records],
            "financial_status": [r.get("financial_status") for r in records],
            "fulfillment_status": [r.get("fulfillment_status") for r in records],
            "source_name": [r.get("source_name") for r in records],
            "subtotal_price": _money([r.get("subtotal_price") for r in records]),
            "total_discounts": _money([r.get("total_discounts") for r in records]),
            "shipping_price": _money(shipping),
            "points_used": [r.get("points_used") for r in records],
            "points_earned": [r.get("points_earned") for r in records],
            "total_price": _money([r.get("total_price") for r in records]),
            "currency": [r.get("currency") for r in records],
        },
    )
    pairs = [(r["id"], item) for r in records for item in r.get("line_items") or ()]
    lines = _table(
        with_money(ORDER_LINES_SCHEMA, money_scale),
        {
            "id": [item["id"] for _, item in pairs],
            "order_id": [order_id for order_id, _ in pairs],
            "product_id": [item.get("product_id") for _, item in pairs],
            "sku": [item.get("sku") for _, item in pairs],
            "title": [item.get("title") for _, item in pairs],
            "quantity": [item.get("quantity") for _, item in pairs],
            "price": _money([item.get("price") for _, item in pairs]),
            "compare_at_price": _money([item.get("compare_at_price") for _, item in pairs]),
        },
    )
    return orders, lines


def flatten_products(records: list[dict[str, Any]], money_scale: int = 0) -> pa.Table:
    """Products JSON → Arrow (:data:`PRODUCTS_SCHEMA`), one row per product from its first
    variant. ``records``: the ``products`` of a page.

    Shopify's variant ``price`` is the selling price and ``compare_at_price`` the list price (null
    when not on sale), so the contract's ``price`` (list) is ``compare_at_price`` or else ``price``,
    and ``sale_price`` is the variant ``price`` when it differs from the list price, else null.
    A ``variant_title`` of ``"Default Title"`` (Shopify's name for "no options") becomes null.
    """
    multi = sum(1 for r in records if len(r.get("variants") or ()) > 1)
    if multi:
        log.warning("%d product(s) have several variants; keeping the first variant of each", multi)
    variants = [(r.get("variants") or [{}])[0] or {} for r in records]
    selling = _money([v.get("price") for v in variants])
    compare = _money([v.get("compare_at_price") for v in variants])
    list_price = pc.coalesce(compare, selling)
    on_sale = pc.fill_null(pc.not_equal(selling, list_price), False)
    sale_price = pc.if_else(on_sale, selling, pa.scalar(None, selling.type))
    titles = pa.array([v.get("title") for v in variants], pa.string())
    titles = pc.if_else(pc.fill_null(pc.equal(titles, "Default Title"), False), pa.scalar(None, pa.string()), titles)
    return _table(
        with_money(PRODUCTS_SCHEMA, money_scale),
        {
            "id": [r["id"] for r in records],
            "sku": [v.get("sku") for v in variants],
            "title": [r.get("title") for r in records],
            "vendor": [r.get("vendor") for r in records],
            "product_type": [r.get("product_type") for r in records],
            "variant_title": titles,
            "price": list_price,
            "sale_price": sale_price,
            "created_at": _ts([r.get("created_at") for r in records]),
            "updated_at": _ts([r.get("updated_at") for r in records]),
        },
    )


Page = list[dict[str, Any]]


def _flatten_customers(records: Page, money_scale: int = 0, fields: Any = None) -> dict[str, pa.Table]:
    return {"customers": flatten_customers(records, fields)}


def _flatten_orders(records: Page, money_scale: int = 0, fields: Any = None) -> dict[str, pa.Table]:
    orders, lines = flatten_orders(records, money_scale)
    return {"orders": orders, "order_lines": lines}


def _flatten_products(records: Page, money_scale: int = 0, fields: Any = None) -> dict[str, pa.Table]:
    return {"products": flatten_products(records, money_scale)}


# resource (endpoint without .json) → flattener giving one Arrow table per registry table, with
# money in the source's minor unit (the registry's `money`)
FLATTENERS: dict[str, Callable[..., dict[str, pa.Table]]] = {
    "customers": _flatten_customers,
    "orders": _flatten_orders,
    "products": _flatten_products,
}

_FLATTEN_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError, TypeError, ValueError)


def _paths(record: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Every field of a record: top-level keys, keys of nested objects and of objects in lists."""
    for key, value in record.items():
        if isinstance(value, dict):
            yield from ((key, inner) for inner in value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    yield from ((key, i, inner) for inner in item)
        yield (key,)


def _without(record: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = None
    return out


def _culprit(flatten: Callable[[list[dict[str, Any]]], dict[str, pa.Table]], record: dict[str, Any]) -> str:
    """The field that stops `record` from flattening (found by blanking one field at a time)."""
    for path in _paths(record):
        try:
            flatten([_without(record, path)])
        except _FLATTEN_ERRORS:
            continue
        value = record
        for step in path:
            value = value[step]
        return f"{'.'.join(str(p) for p in path)} = {value!r}"
    return "?"


def flatten_page(
    flatten: Callable[[list[dict[str, Any]]], dict[str, pa.Table]],
    page: list[dict[str, Any]],
    findings: Findings,
    *,
    first_line: int = 1,
    lines: list[int] | None = None,
    where: str,
) -> tuple[dict[str, pa.Table], list[int]]:
    """Flatten a page; a record that cannot be typed (a price of ``"abc"``, a timestamp that is not
    one) goes to the rejects naming its id and field, and the rest of the page is kept. Returns
    the tables and the positions (in the page) of the records kept. A reject's line is
    ``first_line`` + the record's position, or ``lines[position]`` when given."""
    try:
        return flatten(page), list(range(len(page)))
    except _FLATTEN_ERRORS:
        pass
    kept: list[int] = []
    for i, record in enumerate(page):  # the error path only: find the records that fail
        try:
            flatten([record])
        except _FLATTEN_ERRORS as exc:
            rid = record.get("id") if isinstance(record, dict) else None
            field = _culprit(flatten, record) if isinstance(record, dict) else "the record is not an object"
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            line = lines[i] if lines is not None else first_line + i
            findings.reject(line, f"record id={rid!r} ({where}): {field}: {message}", record)
        else:
            kept.append(i)
    return flatten([page[i] for i in kept]), kept


# extra query parameters per resource: Shopify lists only open orders unless asked for all
_EXTRA_PARAMS: dict[str, dict[str, str]] = {"orders": {"status": "any"}}


# --------------------------------------------------------------------------------------------
# Bulk results: JSONL nodes in the GraphQL shape → the REST records the flatteners read
# --------------------------------------------------------------------------------------------

_MONEY = "{ shopMoney { amount currencyCode } }"
_NODE_FIELDS: dict[str, str] = {
    "customers": (
        "id email firstName lastName phone state tags verifiedEmail createdAt updatedAt note "
        "emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt } "
        "smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt } "
        "defaultAddress { address1 city province zip }"
    ),
    "orders": (
        "id name email createdAt processedAt updatedAt cancelledAt cancelReason displayFinancialStatus "
        f"displayFulfillmentStatus sourceName currencyCode subtotalPriceSet {_MONEY} totalDiscountsSet {_MONEY} "
        f"totalShippingPriceSet {_MONEY} totalPriceSet {_MONEY} customer {{ id }} points_used points_earned "
        f"lineItems {{ edges {{ node {{ id sku title name quantity originalUnitPriceSet {_MONEY} "
        "variant { id compareAtPrice } product { id } } } }"
    ),
    "products": (
        "id title vendor productType status createdAt updatedAt "
        "variants { edges { node { id title sku price compareAtPrice } } }"
    ),
}
"""What a bulk query selects per resource: the Admin GraphQL fields the flatteners need (plus, on
orders, the points the stand-in shop keeps as custom keys)."""

_CHILD_KEY = {"orders": "line_items", "products": "variants"}
"""The nested connection of a resource, under the key its REST record keeps it."""
_NESTED = frozenset({"products"})
"""Resources whose children are folded into their parent's record (a product's first variant
makes its row); other children (order lines) land on their own, keyed by ``__parentId``."""


def bulk_query(resource: str, search: str, fields: Any = None) -> str:
    """The bulk query document reading ``resource`` rows matching ``search`` (Shopify search
    syntax). On customers, the keys the registry's ``fields`` names are selected too."""
    selection = _NODE_FIELDS[resource]
    if resource == "customers":
        specs = customer_field_specs(fields).values()
        if any(kind == "metafield" for kind, _ in specs):
            raise RegistryError(
                "sources.<api>.tables.customers.fields: the bulk read does not select metafields; "
                "set `read: rest` on the source"
            )
        extra = sorted({name.split(".")[0] for kind, name in specs if kind == "field"})
        selection = " ".join([selection, *extra])
    where = f'(query: "{search}") ' if search else ""
    return f"{{ {resource} {where}{{ edges {{ node {{ {selection} }} }} }} }}"


def _gid_tail(value: Any) -> str | None:
    """``gid://shopify/Order/123`` → ``"123"`` (any other id as text)."""
    if value is None:
        return None
    text = str(value)
    return text.rsplit("/", 1)[1] if text.startswith("gid://") else text


def _amount(bag: Any) -> Any:
    """A MoneyBag's shop amount (``{"shopMoney": {"amount": "1234.0"}}``)."""
    if bag is None:
        return None
    if not isinstance(bag, dict) or not isinstance(bag.get("shopMoney"), dict):
        raise TypeError(f"not a MoneyBag: {bag!r}")
    return bag["shopMoney"].get("amount")


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _consent(node: Any) -> dict[str, Any] | None:
    if not node:
        return None
    return {
        "state": _lower(node.get("marketingState")),
        "opt_in_level": _lower(node.get("marketingOptInLevel")),
        "consent_updated_at": node.get("consentUpdatedAt"),
    }


_FULFILLMENT = {"UNFULFILLED": None, "PARTIALLY_FULFILLED": "partial"}


def _customer_record(n: dict[str, Any]) -> dict[str, Any]:
    tags = n.get("tags")
    return {
        **n,  # keys the registry's `fields` names (furigana, birthday) ride along as they are
        "id": _gid_tail(n["id"]),
        "first_name": n.get("firstName"),
        "last_name": n.get("lastName"),
        "created_at": n.get("createdAt"),
        "updated_at": n.get("updatedAt"),
        "state": _lower(n.get("state")),
        "tags": ", ".join(tags) if isinstance(tags, list) else tags,
        "verified_email": n.get("verifiedEmail"),
        "email_marketing_consent": _consent(n.get("emailMarketingConsent")),
        "sms_marketing_consent": _consent(n.get("smsMarketingConsent")),
        "default_address": n.get("defaultAddress"),
    }


def _order_record(n: dict[str, Any]) -> dict[str, Any]:
    customer = n.get("customer")
    status = n.get("displayFulfillmentStatus")
    return {
        "id": _gid_tail(n["id"]),
        "name": n.get("name"),
        "email": n.get("email"),
        "created_at": n.get("createdAt"),
        "processed_at": n.get("processedAt"),
        "updated_at": n.get("updatedAt"),
        "cancelled_at": n.get("cancelledAt"),
        "cancel_reason": _lower(n.get("cancelReason")),
        "financial_status": _lower(n.get("displayFinancialStatus")),
        "fulfillment_status": _FULFILLMENT.get(status, _lower(status)),
        "source_name": n.get("sourceName"),
        "currency": n.get("currencyCode"),
        "subtotal_price": _amount(n.get("subtotalPriceSet")),
        "total_discounts": _amount(n.get("totalDiscountsSet")),
        "total_shipping_price_set": {"shop_money": {"amount": _amount(n.get("totalShippingPriceSet"))}},
        "total_price": _amount(n.get("totalPriceSet")),
        "points_used": n.get("points_used"),
        "points_earned": n.get("points_earned"),
        "customer": {"id": _gid_tail(customer["id"])} if customer else None,
        "line_items": [],
    }


def _line_item_record(n: dict[str, Any]) -> dict[str, Any]:
    variant, product = n.get("variant") or {}, n.get("product") or {}
    return {
        "id": _gid_tail(n["id"]),
        "product_id": _gid_tail(product.get("id")),
        "sku": n.get("sku"),
        "title": n.get("title"),
        "quantity": n.get("quantity"),
        "price": _amount(n.get("originalUnitPriceSet")),
        "compare_at_price": variant.get("compareAtPrice"),
    }


def _product_record(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _gid_tail(n["id"]),
        "title": n.get("title"),
        "vendor": n.get("vendor"),
        "product_type": n.get("productType"),
        "created_at": n.get("createdAt"),
        "updated_at": n.get("updatedAt"),
        "variants": [],
    }


def _variant_record(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _gid_tail(n["id"]),
        "title": n.get("title"),
        "sku": n.get("sku"),
        "price": n.get("price"),
        "compare_at_price": n.get("compareAtPrice"),
    }


_RECORD_OF: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], Any]] = {
    "customers": (_customer_record, None),
    "orders": (_order_record, _line_item_record),
    "products": (_product_record, _variant_record),
}
_NODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError)

Chunk = tuple[str, list[dict[str, Any]] | pa.Table, list[int], str]
"""What a read yields for landing: (registry table, REST-shaped records or rows already
flattened, the line of each in the read, where it was read for the reasons)."""


def read_bulk_result(
    lines: Iterator[bytes], resource: str, parent: str, child: str | None, findings: dict[str, Findings], *, size: int
) -> Iterator[Chunk]:
    """Chunks of REST records from a bulk result's JSONL ``lines``, ``size`` records at most.

    A line that is not a JSON object, or whose node lacks what its record needs (an id, a
    MoneyBag), is rejected to its table (the child's when it names a ``__parentId``) with its
    line number; the read goes on. Order lines come as records ``{"id": <order>, "line_items":
    [line]}``, flattened on their own; a product's variants are folded into the product, which
    Shopify writes before them (a variant whose product is not in the chunk being read is
    rejected, never dropped silently).
    """
    to_root, to_child = _RECORD_OF[resource]
    nested = resource in _NESTED
    roots: list[dict[str, Any]] = []
    root_lines: list[int] = []
    kids: list[dict[str, Any]] = []
    kid_lines: list[int] = []
    owners: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        table, node = parent, None
        try:
            node = json.loads(raw)
            if not isinstance(node, dict):
                raise TypeError(f"a line must hold a JSON object, not {type(node).__name__}")
            parent_gid = node.pop("__parentId", None)
            if parent_gid is None:
                if roots and len(roots) >= size:  # cut between roots: a product's variants follow it
                    yield parent, roots, root_lines, "bulk result"
                    roots, root_lines, owners = [], [], {}
                record = to_root(node)
                roots.append(record)
                root_lines.append(number)
                if nested:
                    owners[str(node["id"])] = record
                continue
            table = child or parent
            if to_child is None:
                raise ValueError(f"{resource} has no nested connection, yet the line names a parent")
            if nested:
                owner = owners.get(str(parent_gid))
                if owner is None:
                    raise ValueError(f"its parent {parent_gid} is not among the records just before it")
                owner[_CHILD_KEY[resource]].append(to_child(node))
                continue
            kids.append({"id": _gid_tail(parent_gid), _CHILD_KEY[resource]: [to_child(node)]})
            kid_lines.append(number)
            if len(kids) >= size:
                yield table, kids, kid_lines, "bulk result"
                kids, kid_lines = [], []
        except json.JSONDecodeError as exc:
            findings[table].reject(number, f"line {number} of the bulk result: not JSON: {exc}", {"jsonl": _text(raw)})
        except _NODE_ERRORS as exc:
            shown = node if isinstance(node, dict) else {"jsonl": _text(raw)}
            findings[table].reject(number, f"line {number} of the bulk result: {type(exc).__name__}: {exc}", shown)
    if roots:
        yield parent, roots, root_lines, "bulk result"
    if kids and child:
        yield child, kids, kid_lines, "bulk result"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\n")[:2000]


# A bulk result of orders read by DuckDB (its JSON reader and the SQL below run in C++; the
# columns are typed by the same Arrow casts as the flatteners'). Any line DuckDB cannot read, or a
# value that does not cast, sends the whole file to the line-by-line reader instead, which rejects
# exactly the lines at fault.
_BAG = "STRUCT(shopMoney STRUCT(amount VARCHAR))"
_ORDER_LINE_COLUMNS = {
    "id": "VARCHAR", "__parentId": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR", "createdAt": "VARCHAR",
    "processedAt": "VARCHAR", "updatedAt": "VARCHAR", "cancelledAt": "VARCHAR", "cancelReason": "VARCHAR",
    "displayFinancialStatus": "VARCHAR", "displayFulfillmentStatus": "VARCHAR", "sourceName": "VARCHAR",
    "currencyCode": "VARCHAR", "subtotalPriceSet": _BAG, "totalDiscountsSet": _BAG, "totalShippingPriceSet": _BAG,
    "totalPriceSet": _BAG, "customer": "STRUCT(id VARCHAR)", "points_used": "VARCHAR", "points_earned": "VARCHAR",
    "sku": "VARCHAR", "title": "VARCHAR", "quantity": "VARCHAR", "originalUnitPriceSet": _BAG,
    "variant": "STRUCT(compareAtPrice VARCHAR)", "product": "STRUCT(id VARCHAR)",
}  # fmt: skip
_GID_SQL = "CASE WHEN starts_with({0}, 'gid://') THEN regexp_extract({0}, '[^/]*$') ELSE {0} END"
_ORDERS_SQL = f"""
    SELECT _line, {_GID_SQL.format("id")} AS id, name, {_GID_SQL.format("customer.id")} AS customer_id, email,
        createdAt AS created_at, processedAt AS processed_at, updatedAt AS updated_at, cancelledAt AS cancelled_at,
        lower(cancelReason) AS cancel_reason, lower(displayFinancialStatus) AS financial_status,
        CASE displayFulfillmentStatus WHEN 'UNFULFILLED' THEN NULL WHEN 'PARTIALLY_FULFILLED' THEN 'partial'
            ELSE lower(displayFulfillmentStatus) END AS fulfillment_status,
        sourceName AS source_name, subtotalPriceSet.shopMoney.amount AS subtotal_price,
        totalDiscountsSet.shopMoney.amount AS total_discounts,
        totalShippingPriceSet.shopMoney.amount AS shipping_price, points_used, points_earned,
        totalPriceSet.shopMoney.amount AS total_price, currencyCode AS currency
    FROM nodes WHERE __parentId IS NULL"""  # noqa: S608 (fixed SQL)
_ORDER_LINES_SQL = f"""
    SELECT _line, {_GID_SQL.format("id")} AS id, {_GID_SQL.format("__parentId")} AS order_id,
        {_GID_SQL.format("product.id")} AS product_id, sku, title, quantity,
        originalUnitPriceSet.shopMoney.amount AS price, variant.compareAtPrice AS compare_at_price
    FROM nodes WHERE __parentId IS NOT NULL"""  # noqa: S608 (fixed SQL)


_CUSTOMER_COLUMNS = {
    "id": "VARCHAR", "__parentId": "VARCHAR", "email": "VARCHAR", "firstName": "VARCHAR", "lastName": "VARCHAR",
    "phone": "VARCHAR", "createdAt": "VARCHAR", "updatedAt": "VARCHAR", "state": "VARCHAR", "tags": "VARCHAR[]",
    "verifiedEmail": "BOOLEAN",
    "defaultAddress": "STRUCT(zip VARCHAR, province VARCHAR, city VARCHAR, address1 VARCHAR)",
    "emailMarketingConsent": "STRUCT(marketingState VARCHAR, marketingOptInLevel VARCHAR, consentUpdatedAt VARCHAR)",
    "smsMarketingConsent": "STRUCT(marketingState VARCHAR, consentUpdatedAt VARCHAR)",
}  # fmt: skip


def _customers_sql(fields: Any) -> tuple[str, dict[str, str]] | None:
    """The customers' SQL and JSON columns, or None when ``fields`` reads a nested key, a
    metafield or the note (the line reader's job)."""
    specs = customer_field_specs(fields)
    if any(kind != "field" or "." in name for kind, name in specs.values()):
        return None
    columns = {**_CUSTOMER_COLUMNS, **{name: "VARCHAR" for _, name in specs.values()}}
    extra = ", ".join(f'"{name}" AS {column}' for column, (_, name) in specs.items())
    sql = f"""
        SELECT _line, {_GID_SQL.format("id")} AS id, email, firstName AS first_name, lastName AS last_name,
            phone, createdAt AS created_at, updatedAt AS updated_at, lower(state) AS state,
            array_to_string(tags, ', ') AS tags,
            lower(emailMarketingConsent.marketingState) AS email_marketing_state,
            lower(emailMarketingConsent.marketingOptInLevel) AS email_marketing_opt_in_level,
            emailMarketingConsent.consentUpdatedAt AS email_marketing_updated_at,
            lower(smsMarketingConsent.marketingState) AS sms_marketing_state,
            smsMarketingConsent.consentUpdatedAt AS sms_marketing_updated_at,
            defaultAddress.zip AS zip, defaultAddress.province AS province, defaultAddress.city AS city,
            defaultAddress.address1 AS address1, verifiedEmail AS verified_email, {extra}
        FROM nodes WHERE __parentId IS NULL"""  # noqa: S608 (fixed SQL, names checked by customer_field_specs)
    return sql, columns


def _typed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A batch of text columns in ``schema``'s types, cast as the flatteners cast them."""
    columns: dict[str, pa.Array] = {}
    for f in schema:
        column = batch.column(f.name)
        if f.type == TS:
            column = column.cast(TS)  # as _ts: ISO 8601 with an offset → UTC
        elif f.name in MONEY_COLUMNS:
            column = column.cast(_EXACT)  # as _money; _table refuses an amount that would lose a digit
        elif f.name == "birth_date":
            column = _birth_dates(column.to_pylist())  # the OMS's date rule, as flatten_customers
        columns[f.name] = column
    return _table(schema, columns)


def _by_duckdb(
    path: Path, resource: str, parent: Table, child: str | None, folder: Path, size: int
) -> list[tuple[str, Path]] | None:
    """The rows of a bulk result of orders (and their lines) or customers, typed, in Parquet
    files under ``folder`` (each row with its line in the file); None when a line or a value
    needs the line-by-line reader, or for another resource."""
    import duckdb
    import pyarrow.parquet as pq

    schemas = raw_schemas(parent.money_scale)
    if resource == "orders":
        wanted = [(parent.name, _ORDERS_SQL, schemas["orders"])]
        if child:
            wanted.append((child, _ORDER_LINES_SQL, schemas["order_lines"]))
        json_columns = _ORDER_LINE_COLUMNS
    elif resource == "customers" and (found := _customers_sql(parent.options.get("fields"))) is not None:
        wanted, json_columns = [(parent.name, found[0], schemas["customers"])], found[1]
    else:
        return None
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in json_columns.items()) + "}"
    con = duckdb.connect()
    out: list[tuple[str, Path]] = []
    try:
        con.execute("SET TimeZone = 'UTC'")
        quoted = "'" + str(path).replace("'", "''") + "'"
        con.execute(
            f"CREATE VIEW nodes AS SELECT row_number() OVER () AS _line, * FROM read_json({quoted}, "  # noqa: S608
            f"format = 'newline_delimited', columns = {columns}, maximum_object_size = 16777216)"
        )
        for name, sql, schema in wanted:
            target = folder / f"{name}.parquet"
            with pq.ParquetWriter(target, schema.append(pa.field("_line", pa.int64()))) as writer:
                for batch in con.sql(sql).to_arrow_reader(size):
                    typed = _typed(batch, schema)
                    writer.write_table(typed.append_column("_line", batch.column("_line").cast(pa.int64())))
            out.append((name, target))
    except (duckdb.Error, OSError, *_FLATTEN_ERRORS) as exc:  # OSError: DuckDB's error through the Arrow reader
        log.warning("bulk result %s: not read by DuckDB (%s); reading it line by line", path.name, str(exc)[:300])
        return None
    finally:
        con.close()
    return out


def _chunks_of(files: list[tuple[str, Path]], size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    for name, path in files:
        for batch in pq.ParquetFile(path).iter_batches(size):
            table = pa.Table.from_batches([batch])
            yield name, table.drop_columns(["_line"]), table.column("_line").to_pylist(), "bulk result"


def _search(mark_column: str | None, since: str | None, until: datetime | None) -> str:
    """The bulk query's search string: the same window as the REST walk's ``*_min`` / ``*_max``."""
    terms = []
    if mark_column and since is not None:
        terms.append(f"{mark_column}:>='{_iso(since)}'")
    if mark_column and until is not None:
        terms.append(f"{mark_column}:<='{_iso(until)}'")
    return " AND ".join(terms)


def read_records(
    client: ShopClient,
    parent: Table,
    children: list[Table],
    findings: dict[str, Findings],
    *,
    bulk: bool,
    since: str | None,
    until: datetime | None,
    page_limit: int = 250,
    chunk_records: int = 5_000,
    workdir: Path | None = None,
) -> Iterator[Chunk]:
    """Read an endpoint's records changed in [``since``, ``until``] (either bound may be None),
    by the paged REST walk or by one bulk operation, as :data:`Chunk` s for the same landing.

    REST: one chunk per page, order lines inside their orders. Bulk: the operation's JSONL is
    downloaded to a temporary file in ``workdir`` (deleted after the read), then read in chunks
    of ``chunk_records`` (:func:`read_bulk_result`); lines that cannot be read go to ``findings``.
    """
    resource = str(parent.options["endpoint"]).removesuffix(".json")
    mark_column = parent.watermark
    if not bulk:
        params: dict[str, Any] = {"limit": page_limit, **_EXTRA_PARAMS.get(resource, {})}
        if mark_column and until is not None:
            params[f"{mark_column}_max"] = _iso(until)
        if mark_column and since is not None:
            params[f"{mark_column}_min"] = _iso(since)
        records = 0
        for number, page in enumerate(client.pages(resource, params), start=1):
            yield parent.name, page, list(range(records + 1, records + 1 + len(page))), f"page {number}"
            records += len(page)
        return
    query = bulk_query(resource, _search(mark_column, since, until), parent.options.get("fields"))
    operation = client.run_bulk(query)
    if not operation.get("url"):  # nothing matched: Shopify gives no file
        return
    child = children[0].name if children else None
    with (
        tempfile.TemporaryDirectory(prefix=f"bulk-{resource}-", dir=workdir) as folder,
        open(Path(folder) / "result.jsonl", "w+b") as sink,
    ):
        size = client.download(operation["url"], sink)
        sink.flush()
        log.info("bulk result of %s: %d byte(s) downloaded", resource, size)
        files = _by_duckdb(Path(sink.name), resource, parent, child, Path(folder), 50_000)
        if files is not None:
            yield from _chunks_of(files, 50_000)
            return
        sink.seek(0)
        yield from read_bulk_result(iter(sink), resource, parent.name, child, findings, size=chunk_records)


# --------------------------------------------------------------------------------------------
# Ingestion
# --------------------------------------------------------------------------------------------


class _Parts:
    """Buffers Arrow pages for one batch and writes a part each time ``rows_per_part`` rows are
    buffered, so memory holds at most about one part per table."""

    def __init__(self, writer: BatchWriter, rows_per_part: int):
        self.writer = writer
        self.rows_per_part = rows_per_part
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def add(self, page: pa.Table) -> None:
        if page.num_rows == 0:
            return
        self.buffer.append(page)
        self.buffered += page.num_rows
        if self.buffered >= self.rows_per_part:
            whole = pa.concat_tables(self.buffer)
            start = 0
            while whole.num_rows - start >= self.rows_per_part:
                self.writer.write(whole.slice(start, self.rows_per_part).combine_chunks())
                start += self.rows_per_part
            rest = whole.slice(start)
            self.buffer = [rest] if rest.num_rows else []
            self.buffered = rest.num_rows

    def flush(self) -> None:
        if self.buffer:
            self.writer.write(pa.concat_tables(self.buffer).combine_chunks())
        self.buffer, self.buffered = [], 0


def _iso(value: str | datetime) -> str:
    """A watermark or bound as ISO 8601 with an offset (a naive value is taken as UTC, how the
    warehouse stores time), so the API never reads it as shop time."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _plan(source: Source, tables: list[str] | None) -> list[tuple[Table, list[Table]]]:
    """The endpoint tables to read, each with its child tables (``parent:`` in the registry)."""
    enabled = source.enabled_tables().values()
    parents = [t for t in enabled if t.options.get("endpoint") and not t.options.get("parent")]
    children = {p.name: [t for t in enabled if t.options.get("parent") == p.name] for p in parents}
    for parent in parents:
        resource = str(parent.options["endpoint"]).removesuffix(".json")
        if resource not in FLATTENERS:
            raise ValueError(f"sources.{source.name}.tables.{parent.name}: no flattener for endpoint {resource!r}")
    if tables is None:
        return [(p, children[p.name]) for p in parents]
    wanted: set[str] = set()
    for name in tables:
        table = source.tables.get(name)
        if table is None or not table.options.get("endpoint"):
            known = sorted(t.name for t in source.tables.values() if t.options.get("endpoint"))
            raise ValueError(f"{name!r} is not an API table of source {source.name!r}; have {known}")
        wanted.add(str(table.options.get("parent") or name))  # a child is read with its parent
    return [(p, children[p.name]) for p in parents if p.name in wanted]


READS = ("auto", "rest", "bulk")
"""How a shop table is read: ``auto`` (a bulk operation for a first load, when the table has no
watermark yet, and the paged REST walk for increments), or always ``rest`` / ``bulk``."""


def bulk_can_read(table: Table) -> bool:
    """Whether a bulk query selects what the table needs (not metafields: see :func:`bulk_query`);
    ``auto`` reads such a table by REST."""
    if str(table.options.get("endpoint", "")).removesuffix(".json") != "customers":
        return True
    return all(kind != "metafield" for kind, _ in customer_field_specs(table.options.get("fields")).values())


def read_mode(source: Source, read: str | None) -> str:
    """The read mode: ``read`` (a CLI's or a caller's choice) or else the source's ``read:`` in
    the registry, ``auto`` by default."""
    mode = str(read or source.options.get("read") or "auto")
    if mode not in READS:
        raise RegistryError(f"sources.{source.name}.read: expected one of {list(READS)}, got {mode!r}")
    return mode


def _ingest_endpoint(
    warehouse: Warehouse,
    parent: Table,
    children: list[Table],
    client: ShopClient,
    *,
    run_id: str,
    load_date: date,
    page_limit: int,
    rows_per_part: int,
    until: datetime,
    read: str,
    workdir: Path | None,
) -> dict[str, LandResult]:
    resource = str(parent.options["endpoint"]).removesuffix(".json")
    flatten = partial(FLATTENERS[resource], money_scale=parent.money_scale, fields=parent.options.get("fields"))
    if resource == "customers":
        customer_field_specs(parent.options.get("fields"))  # a bad `fields` stops here, not per record
    mark_column = parent.watermark
    mark = warehouse.get_watermark(parent) if mark_column else None
    if mark is not None and datetime.fromisoformat(_iso(mark)) > until:  # left in the future by a bad row
        log.error(
            "ALERT %s: watermark %s is after the run's bound %s; reading from the bound. %s",
            parent.raw_name,
            mark,
            until,
            next_step("flags"),
        )
        mark = _iso(until)
    bulk = read == "bulk" or (read == "auto" and mark is None and bulk_can_read(parent))
    how = "a bulk operation" if bulk else "the REST walk"
    log.info("reading %s from %s by %s (watermark %s, until %s)", resource, client.base_url, how, mark, until)
    started = time.perf_counter()
    chunks = records = 0
    writers: dict[str, BatchWriter] = {}
    findings: dict[str, Findings] = {}
    lines: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        # The parent's batch is entered first and so closed last: its rows and watermark are
        # committed only after every child's rows are in. An error anywhere skips every upsert.
        for table, watermark in [(parent, mark_column)] + [(child, None) for child in children]:
            batch_id = f"{run_id}:{table.name}"
            writers[table.name] = stack.enter_context(
                warehouse.batch(table, batch_id=batch_id, load_date=load_date, watermark=watermark, ceiling=until)
            )
            findings[table.name], lines[table.name] = Findings(table, batch_id), 1
        parts = {name: _Parts(writer, rows_per_part) for name, writer in writers.items()}
        # the inclusive lower bound re-reads the boundary second (the API truncates to the
        # second); the upsert by primary key makes that overlap harmless (never a gap)
        read_chunks = read_records(
            client, parent, children, findings, bulk=bulk, since=mark, until=until, page_limit=page_limit,
            workdir=workdir,
        )  # fmt: skip
        for name, page, numbers, where in read_chunks:
            chunks += 1
            land_chunk(flatten, name, page, numbers, where, parent=parent.name, findings=findings,
                       add=lambda table, rows: parts[table].add(rows), lines=lines,
                       watermarks={t: w.watermark for t, w in writers.items()}, ceiling=until)  # fmt: skip
            records += len(page)
        for part in parts.values():
            part.flush()
    for found in findings.values():
        found.store(warehouse)
    elapsed = time.perf_counter() - started
    log.info(
        "%s: %d record(s) in %d chunk(s) by %s in %.1f s (%.0f records/s)",
        resource,
        records,
        chunks,
        how,
        elapsed,
        records / elapsed if elapsed else 0.0,
    )
    return {name: writer.result for name, writer in writers.items() if writer.result is not None}


def land_chunk(
    flatten: Callable[..., dict[str, pa.Table]],
    name: str,
    page: list[dict[str, Any]] | pa.Table,
    numbers: list[int],
    where: str,
    *,
    parent: str,
    findings: dict[str, Findings],
    add: Callable[[str, pa.Table], None],
    lines: dict[str, int],
    watermarks: Mapping[str, str | None],
    ceiling: datetime | None,
) -> None:
    """Flatten one chunk of records of table ``name`` (the endpoint's ``parent`` table, whose
    records carry their children, or a child table read on its own), screen every table it gives
    and pass the rows to land to ``add(table, rows)``. ``lines`` counts each table's rows
    for the line of a child row read inside its parent."""
    if isinstance(page, pa.Table):  # already flattened (a bulk result read by DuckDB)
        flat_tables, kept = {name: page}, list(range(page.num_rows))
    else:
        flat_tables, kept = flatten_page(flatten, page, findings[name], lines=numbers, where=where)
    for table, flat in flat_tables.items():
        if table not in findings or (name != parent and table != name):
            continue  # a table the registry leaves out, or the parent's empty part of a child chunk
        row_lines = [numbers[i] for i in kept] if table == name else None
        good = screen(
            flat,
            findings[table],
            first_line=lines[table],
            lines=row_lines,
            where=where,
            watermark=watermarks.get(table),
            ceiling=ceiling,
        )
        lines[table] += flat.num_rows
        add(table, good)


def ingest_ecommerce(
    warehouse: Warehouse,
    source: Source,
    client: ShopClient,
    *,
    run_id: str,
    load_date: date,
    tables: list[str] | None = None,
    page_limit: int = 250,
    rows_per_part: int = 50_000,
    until: datetime | None = None,
    read: str | None = None,
    workdir: Path | None = None,
) -> dict[str, LandResult]:
    """Pull the e-commerce tables changed since their watermarks into ``raw.ecommerce__<table>``.

    Parameters: ``warehouse`` the DuckDB warehouse and its lake; ``source`` the registry's
    ``ecommerce`` source (every table with an ``endpoint`` is read; a table with ``parent`` is
    landed together with its parent); ``client`` a :class:`ShopClient`; ``run_id`` names the
    batches (``f"{run_id}:{table}"``: rerunning the same run replaces its files and rows);
    ``load_date`` the lake partition; ``tables`` a subset of table names (None: all; naming
    ``order_lines`` reads ``orders``); ``page_limit`` records per request (1..250);
    ``rows_per_part`` rows per Parquet part (memory stays at about one part per table);
    ``until`` the upper bound ``updated_at_max`` of this run (default: now, UTC); ``read`` how
    to read (:data:`READS`; default: the registry's ``read``, else ``auto``: a table without a
    watermark is read by one bulk operation, the others by the REST walk); ``workdir`` where a
    bulk result is downloaded (default: the system's temporary folder).

    Each table's request is ``updated_at_min`` = its watermark (inclusive) and ``updated_at_max`` =
    ``until``. The upper bound closes a gap: the API walks by id, so a record updated during the
    walk behind the cursor would be missed while a later one ahead of it raised the watermark past
    it; bounded, such records wait for the next run. The watermark moves in the same transaction as
    the rows. Orders and their lines are two batches; the lines are committed first, so the orders
    watermark advances only once the lines are in. An error (after the client's retries) leaves the
    table's rows and watermark unchanged. Returns the :class:`~yorisoi.sources.landing.LandResult` per table.
    """
    if not 1 <= page_limit <= 250:
        raise ValueError(f"page_limit must be between 1 and 250, got {page_limit}")
    if rows_per_part < 1:
        raise ValueError(f"rows_per_part must be positive, got {rows_per_part}")
    mode = read_mode(source, read)
    bound = datetime.fromisoformat(_iso(until or datetime.now(UTC).replace(microsecond=0)))
    results: dict[str, LandResult] = {}
    for parent, children in _plan(source, tables):
        results.update(
            _ingest_endpoint(
                warehouse,
                parent,
                children,
                client,
                run_id=run_id,
                load_date=load_date,
                page_limit=page_limit,
                rows_per_part=rows_per_part,
                until=bound,
                read=mode,
                workdir=workdir,
            )
        )
    return results
