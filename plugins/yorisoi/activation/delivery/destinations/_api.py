"""What the API destinations (:mod:`.email`, :mod:`.line`, :mod:`.sms`) share.

- **Errors beyond the contract of** :mod:`.base`: :class:`PermanentError` (and its
  :class:`AuthenticationFailed`, :class:`QuotaExceeded`) for answers that sending again cannot
  fix. They are plain :class:`~.base.DestinationError` subclasses, so the engine never retries
  them (docs/reliability.md #5) and stops with their message.
- **The HTTP mapping** every API destination follows (:func:`error_for_status`):

  ====================================  ==================================================
  answer                                raised
  ====================================  ==================================================
  408, 425, 429, 5xx, timeout, reset    :class:`~.base.TransientError` (``retry_after`` from
                                        the ``Retry-After`` header when there is one)
  400 naming rows                       no exception: one failed :class:`~.base.RowResult`
                                        per named row (each destination reads its system's
                                        answer)
  400 naming no row, 413                :class:`~.base.BatchRejected` (the engine splits)
  401, 403                              :class:`AuthenticationFailed` (never retried)
  any other 4xx (404 ...)               :class:`PermanentError` (never retried)
  ====================================  ==================================================

- :func:`request_bucket`: the :class:`~yorisoi.activation.delivery.ratelimit.TokenBucket` each destination
  paces its own requests with, at ``rate_per_second``. A batch is one request for LINE and the
  ESP but one request per recipient for SMS and SMTP, so each destination paces its requests
  itself; the engine's bucket per batch is then only an upper bound (docs/reliability.md #7).
- :func:`stable_uuid`: deterministic UUIDs (LINE retry keys, ESP / SMS idempotency tokens).
- :class:`Template`: subject/body templates per A/B variant whose placeholders must be allowed
  columns (docs/reliability.md #14: a template cannot pull in a column the destination may not send).
- :func:`airflow_connection`: credentials from an Airflow connection (``AIRFLOW_CONN_<ID>`` or
  the secrets backend), never from code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from ..ratelimit import TokenBucket
from .base import BatchRejected, Destination, DestinationError, Operation, Record, RowResult, TransientError

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/yorisoi/activation")
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class PermanentError(DestinationError):
    """The system refused the whole request for a reason that sending it again cannot fix: an
    unknown list, a misconfigured template, an unsupported operation. Never retried."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        partial: Sequence[RowResult] = (),
    ) -> None:
        super().__init__(message, partial=partial)
        self.status = status
        self.code = code


class AuthenticationFailed(PermanentError):
    """401 / 403 (or SMTP 535): the credentials are wrong, expired or lack a permission. Fix the
    Airflow connection; retrying would only repeat the refusal (and may lock the account)."""


class QuotaExceeded(PermanentError):
    """The account's message quota is used up (LINE's monthly limit): nothing more goes out until
    the quota is raised or the month turns, so retrying within the run is pointless."""


def parse_retry_after(value: str | None, *, now: Callable[[], dt.datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"2"``, ``"2.5"``) or an
    HTTP date. None when absent or unreadable; never negative."""
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
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or (lambda: dt.datetime.now(dt.UTC)))()).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def error_for_status(
    status: int, *, system: str, detail: str, retry_after: float | None = None, code: str | None = None
) -> DestinationError:
    """The exception for an answer that is not read row by row (see the module docstring).
    ``system`` names the destination in the message; ``detail`` is the system's own words."""
    message = f"{system} answered HTTP {status}: {detail}"
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationFailed(
            f"{message} (check the credentials in the Airflow connection; not retried)", status=status, code=code
        )
    if status in (400, 413):
        return BatchRejected(message, status=status, code=code)
    return PermanentError(f"{message} (not retried)", status=status, code=code)


def stable_uuid(*parts: str) -> str:
    """A UUID (version 5, lower-case hexadecimal with dashes, the form LINE's retry key wants)
    that depends only on ``parts``: the same batch retried gets the same key."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def digest(*parts: str) -> str:
    """SHA-256 hex digest of ``parts`` joined by an unprintable separator."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """A warehouse value as JSON: dates and times in ISO 8601, decimals as numbers."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON: the same payload always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_bucket(
    rate_per_second: float,
    *,
    burst: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenBucket:
    """The token bucket a destination paces its own requests with: ``rate_per_second`` in the
    long run and a burst of ``burst`` requests (default 50 ms worth, at least 1). The small burst
    lets the request after a slow one go at once, so the achieved rate stays close to the
    configured one; it never exceeds ``rate × window + burst`` in any window."""
    capacity = burst if burst is not None else max(1, math.ceil(rate_per_second / 20))
    return TokenBucket(rate_per_second, capacity=capacity, clock=clock, sleep=sleep)


_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Template:
    """A message template: ``body`` (and ``subject`` for email) with ``{column}`` placeholders
    (``str.format`` syntax, plain names only: no attribute or index lookups, no conversions).
    ``{{`` and ``}}`` are literal braces."""

    body: str
    subject: str | None = None

    @property
    def placeholders(self) -> frozenset[str]:
        names: set[str] = set()
        for text in (self.subject, self.body):
            if text is None:
                continue
            for _literal, name, spec, conversion in _FORMATTER.parse(text):
                if name is None:
                    continue
                if not name.isidentifier() or spec or conversion:
                    raise ValueError(f"template placeholder {{{name}}} must be a plain column name")
                names.add(name)
        return frozenset(names)

    def render(self, fields: Mapping[str, Any], escape: Callable[[str], str] = str) -> tuple[str | None, str]:
        """``(subject, body)`` with placeholders filled from ``fields`` (None → empty);
        ``escape`` is applied to each value in the body (e.g. ``html.escape``)."""
        values = {name: "" if fields.get(name) is None else str(fields.get(name)) for name in self.placeholders}
        subject = self.subject.format_map(values) if self.subject is not None else None
        return subject, self.body.format_map({name: escape(value) for name, value in values.items()})


DEFAULT_VARIANT = "default"


def coerce_templates(
    templates: Mapping[str | None, Template | Mapping[str, str] | str], *, allowed: frozenset[str], needs_subject: bool
) -> dict[str, Template]:
    """Check and normalise templates per variant (key ``"default"`` or None for records without a
    variant, or as the fallback). Every placeholder must be an allowed column."""
    if not templates:
        raise ValueError("at least one template is needed (key 'default' or a variant name)")
    out: dict[str, Template] = {}
    for variant, given in templates.items():
        if isinstance(given, Template):
            template = given
        elif isinstance(given, str):
            template = Template(body=given)
        else:
            template = Template(body=given["body"], subject=given.get("subject"))
        if needs_subject and not template.subject:
            raise ValueError(f"the email template for variant {variant!r} has no subject")
        outside = template.placeholders - allowed
        if outside:
            raise ValueError(
                f"the template for variant {variant!r} uses {sorted(outside)}, outside the allow-list {sorted(allowed)}"
            )
        out[DEFAULT_VARIANT if variant is None else str(variant)] = template
    return out


def template_for(templates: Mapping[str, Template], variant: str | None, *, system: str) -> Template:
    """The template of ``variant`` (falling back to ``"default"``); a variant without one is a
    configuration error, never a per-recipient rejection."""
    found = templates.get(variant or DEFAULT_VARIANT) or templates.get(DEFAULT_VARIANT)
    if found is None:
        raise PermanentError(f"{system}: no template for variant {variant!r} (have {sorted(templates)})")
    return found


@dataclass(frozen=True)
class ConnectionInfo:
    """What a destination reads from an Airflow connection."""

    base_url: str | None
    login: str | None
    password: str | None
    extra: Mapping[str, Any]


def airflow_connection(conn_id: str) -> ConnectionInfo:
    """Read connection ``conn_id`` through Airflow (environment ``AIRFLOW_CONN_<ID>``, the
    secrets backend or the metadata database). ``base_url``: the host when it already holds a
    scheme, else ``<schema or https>://host[:port]``."""
    from airflow.sdk import BaseHook  # imported here: Airflow costs seconds to import

    conn = BaseHook.get_connection(conn_id)
    base_url: str | None = None
    if conn.host:
        if "://" in conn.host:
            base_url = conn.host.rstrip("/")
        else:
            scheme = conn.schema or "https"
            port = f":{conn.port}" if conn.port else ""
            base_url = f"{scheme}://{conn.host}{port}"
    return ConnectionInfo(base_url, conn.login, conn.password, conn.extra_dejson)


class ApiDestination(Destination):
    """Common construction of the API destinations: ``name``, ``allowed_columns`` (the only
    record fields that may leave, besides the key), ``rate_per_second`` (requests per second this
    destination makes; None: unpaced), ``max_batch`` (at most ``MAX_BATCH``), ``clock`` and
    ``sleep`` (the pacer's, injectable in tests)."""

    MAX_BATCH = 500

    def __init__(
        self,
        *,
        name: str,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        max_batch: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        batch = self.MAX_BATCH if max_batch is None else int(max_batch)
        if not 1 <= batch <= self.MAX_BATCH:
            raise ValueError(f"{name}: max_batch must be between 1 and {self.MAX_BATCH}, got {max_batch}")
        self.name = name
        self.allowed_columns = frozenset(allowed_columns)
        self.rate_per_second = rate_per_second
        self.max_batch = batch
        self._bucket = request_bucket(rate_per_second, clock=clock, sleep=sleep) if rate_per_second else None

    def allowed_fields(self, record: Record) -> dict[str, Any]:
        """``record.fields`` restricted to the allow-list (the engine already drops the rest;
        this is the second lock on the same door)."""
        return {name: value for name, value in record.fields.items() if name in self.allowed_columns}

    def pace(self) -> None:
        """Wait for this destination's next request slot."""
        if self._bucket is not None:
            self._bucket.acquire()

    def check_operation(self, operation: Operation) -> None:
        if operation not in self.supports:
            raise PermanentError(f"{self.name} does not support {operation.value!r} (supports {sorted(self.supports)})")
