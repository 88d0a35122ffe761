"""LINE destinations through the official SDK (``line-bot-sdk`` v3).

:class:`LineMulticastDestination` sends a message to up to 500 user IDs per request
(``MessagingApi.multicast``). Every request carries ``X-Line-Retry-Key``: a UUID derived from the
batch's idempotency key (and the A/B variant, since each variant is its own request), so a retry
of the same batch carries the same key and LINE carries it out at most once. LINE's answers:

=======================================  ====================================================
answer                                   result
=======================================  ====================================================
200                                      every recipient of the request ok
409 "The retry key is already accepted"  every recipient ok with ``already_done=True``: an
                                         earlier attempt was accepted (docs/reliability.md #4, 5)
400 naming ``to[i]``                     those recipients failed (code ``invalid_user_id``);
                                         LINE carried out nothing, so the others are resent
                                         at once under a retry key derived from the first
400 about the messages                   PermanentError (the template is wrong for everyone)
400 naming nothing else                  BatchRejected
429 "You have reached your monthly …"    QuotaExceeded (not retried this run)
429 (rate limit), 5xx, timeout           TransientError (LINE sends no Retry-After)
401 / 403                                AuthenticationFailed (never retried)
=======================================  ====================================================

:class:`LineAudienceDestination` uploads user IDs to an upload audience (``ManageAudience``):
it finds the audience group by name (``audience_name``) or creates it, then adds each batch
(``PUT /v2/bot/audienceGroup/upload``, up to 10,000 IDs). Adding an ID twice is harmless (an
audience is a set), so a retried batch needs no key. **LINE cannot remove a user from an upload
audience**, so removals (opt-outs, blocks, people who left the audience) are made by rebuilding
(``rebuilds = True``, driven by the sync engine): every current member is uploaded to a new group
named ``"<audience_name> (rebuilding)"``, then the REMOVE call publishes it: the old group is
deleted and the new one renamed to ``audience_name``. Until then the old group is untouched, so a
rebuild that fails part-way changes nothing and the next run starts it again (a leftover
rebuilding group is deleted first, since it may hold people who opted out since). The group's ID
changes with every rebuild: narrowcasts should look the audience up by name, not keep its ID.

The SDK talks to ``base_url`` (``Configuration(host=...)``; LINE's is ``https://api.line.me``), so
tests run it against ``yorisoi_kit.servers.line`` on loopback. The SDK's own urllib3 retries are off:
the engine owns retries.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._api import (
    DEFAULT_VARIANT,
    ApiDestination,
    PermanentError,
    QuotaExceeded,
    airflow_connection,
    error_for_status,
    parse_retry_after,
    stable_uuid,
)
from .base import BatchRejected, Operation, Record, RowResult, TransientError

LINE_API = "https://api.line.me"
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
MONTHLY_LIMIT = "You have reached your monthly limit."
_TO_INDEX = re.compile(r"^to\[(\d+)\]$")
AGGREGATION_UNIT_LENGTH = 30  # LINE's limit on a custom aggregation unit's name
_UNIT_HASH_LENGTH = 8


def aggregation_unit(audience: str) -> str:
    """The custom aggregation unit LINE counts an audience's messages under: the audience's name
    when it fits LINE's 30 characters, else its first 21 characters, "_" and the first 8 hex
    digits of its MD5, so two audiences sharing their first 30 characters keep apart statistics.
    The same on every run; fct_campaign_line_insights derives it in SQL (macro
    line_aggregation_unit) to join LINE's statistics back to the audience."""
    if len(audience) <= AGGREGATION_UNIT_LENGTH:
        return audience
    digest = hashlib.md5(audience.encode("utf-8"), usedforsecurity=False).hexdigest()[:_UNIT_HASH_LENGTH]
    return f"{audience[: AGGREGATION_UNIT_LENGTH - _UNIT_HASH_LENGTH - 1]}_{digest}"


MessageSpec = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""Per variant: a text, one LINE message object, or up to five message objects."""


def retry_key(idempotency_key: str, *parts: str) -> str:
    """The ``X-Line-Retry-Key`` of one request of a batch: a UUID that depends only on the batch's
    idempotency key and ``parts`` (the variant, the rows left out after a 400)."""
    return stable_uuid("line", idempotency_key, *parts)


def _credentials(conn_id: str | None, base_url: str | None, token: str | None, name: str) -> tuple[str, str]:
    if conn_id is not None:
        info = airflow_connection(conn_id)
        base_url = base_url or info.base_url
        token = token or info.password
    if not token:
        raise ValueError(f"{name}: give conn_id (password = the channel access token) or channel_access_token")
    return (base_url or LINE_API).rstrip("/"), token


def _answer(exc: Any) -> tuple[str, list[dict[str, Any]]]:
    """LINE's error JSON of an SDK ApiException: (message, details)."""
    try:
        body = json.loads(exc.body or b"{}")
    except (TypeError, ValueError):
        return (str(exc.body)[:300] if exc.body else str(exc.reason)), []
    if not isinstance(body, dict):
        return str(body)[:300], []
    details = body.get("details") if isinstance(body.get("details"), list) else []
    return str(body.get("message", "")), [d for d in details if isinstance(d, dict)]


def _header(exc: Any, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    return headers.get(name) if hasattr(headers, "get") else None


def _http_error(exc: Any, system: str) -> Exception:
    """Map a LINE error answer that is not read row by row."""
    message, details = _answer(exc)
    status = int(exc.status or 0)
    if status == 0:  # the SDK's own failure, e.g. TLS: not an answer from LINE
        return PermanentError(f"{system}: {exc.reason}")
    if status == 429 and message == MONTHLY_LIMIT:
        return QuotaExceeded(f"{system}: LINE says: {message} (not retried this run)", status=429, code="monthly_limit")
    detail = message + (f" {details}" if details else "")
    return error_for_status(
        status, system=system, detail=detail, retry_after=parse_retry_after(_header(exc, "Retry-After"))
    )


def _transport_error(exc: Exception, system: str) -> TransientError:
    return TransientError(f"{system}: {type(exc).__name__}: {exc}")


class _LineApiDestination(ApiDestination):
    channel = "line"
    key_field = "line_user_id"

    def _pool(self, sdk: Any, base_url: str, token: str) -> Any:
        configuration = sdk.Configuration(host=base_url, access_token=token)
        configuration.retries = False  # urllib3 must not resend a POST behind the engine's back
        return sdk.ApiClient(configuration)


class LineMulticastDestination(_LineApiDestination):
    """Send a LINE message to the batch's user IDs by multicast (≤ 500 per request).

    Parameters (keyword only): ``templates``, the messages per A/B variant (key = ``Record.variant``;
    ``"default"`` for records without one and as the fallback): a text, a LINE message object or
    a list of up to five (a multicast sends the same messages to everyone in the request, so they
    cannot hold per-recipient columns); either ``conn_id`` (an Airflow connection whose password
    is the channel access token and whose host, if set, is the API's base URL) or
    ``channel_access_token`` and optionally ``base_url``; ``notification_disabled``;
    ``aggregation_unit`` (LINE's custom aggregation unit name, for statistics per campaign);
    ``allowed_columns``; ``rate_per_second`` (requests per second, below LINE's published limit
    for the endpoint);
    ``max_batch`` (≤ 500); ``timeout`` seconds per request; ``name``; ``clock``/``sleep``.
    """

    supports = frozenset({Operation.ADD})
    MAX_BATCH = 500

    def __init__(
        self,
        *,
        templates: Mapping[str | None, MessageSpec],
        conn_id: str | None = None,
        channel_access_token: str | None = None,
        base_url: str | None = None,
        notification_disabled: bool = False,
        aggregation_unit: str | None = None,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        max_batch: int = 500,
        timeout: float = 30.0,
        name: str = "line_multicast",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            name=name,
            allowed_columns=allowed_columns,
            rate_per_second=rate_per_second,
            max_batch=max_batch,
            clock=clock,
            sleep=sleep,
        )
        from linebot.v3 import messaging as sdk

        self._sdk = sdk
        self.base_url, token = _credentials(conn_id, base_url, channel_access_token, name)
        self.messages = {
            DEFAULT_VARIANT if variant is None else str(variant): self._message_objects(spec, variant)
            for variant, spec in templates.items()
        }
        if not self.messages:
            raise ValueError(f"{name}: at least one template (key 'default' or a variant name) is needed")
        self.notification_disabled = notification_disabled
        self.aggregation_unit = aggregation_unit
        self.timeout = timeout
        self._client = self._pool(sdk, self.base_url, token)
        self._api = sdk.MessagingApi(self._client)

    def _message_objects(self, spec: MessageSpec, variant: str | None) -> list[Any]:
        if isinstance(spec, str):
            raw: list[Mapping[str, Any]] = [{"type": "text", "text": spec}]
        elif isinstance(spec, Mapping):
            raw = [spec]
        else:
            raw = list(spec)
        if not 1 <= len(raw) <= 5:
            raise ValueError(f"{self.name}: variant {variant!r} needs 1 to 5 messages, got {len(raw)}")
        return [self._sdk.Message.from_dict(dict(message)) for message in raw]

    def close(self) -> None:
        self._client.close()

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.check_operation(operation)
        by_variant: dict[str, list[Record]] = {}
        for record in records:
            by_variant.setdefault(record.variant or DEFAULT_VARIANT, []).append(record)
        results: dict[str, RowResult] = {}
        for variant, group in by_variant.items():
            messages = self.messages.get(variant) or self.messages.get(DEFAULT_VARIANT)
            if messages is None:
                raise PermanentError(f"{self.name}: no message for variant {variant!r} (have {sorted(self.messages)})")
            for row in self._send(group, messages, idempotency_key, variant):
                results[row.key] = row
        return [results[record.key] for record in records]

    def _send(self, group: list[Record], messages: list[Any], idempotency_key: str, variant: str) -> list[RowResult]:
        """Multicast to ``group``; after a 400 naming rows, resend to the others (LINE carried
        out nothing) under a key derived from the rows left out, until nobody is left."""
        from urllib3.exceptions import HTTPError as Urllib3Error

        failed: dict[str, RowResult] = {}
        pending = list(group)
        while pending:
            key = retry_key(idempotency_key, variant, *sorted(failed))
            request = self._sdk.MulticastRequest(
                to=[record.key for record in pending],
                messages=messages,
                notification_disabled=self.notification_disabled,
                custom_aggregation_units=[self.aggregation_unit] if self.aggregation_unit else None,
            )
            self.pace()
            try:
                self._api.multicast(request, x_line_retry_key=key, _request_timeout=self.timeout)
            except self._sdk.ApiException as exc:
                message, details = _answer(exc)
                if exc.status == 409 and message == RETRY_KEY_ACCEPTED:
                    done = [RowResult(r.key, ok=True, code="409", reason=message, already_done=True) for r in pending]
                    return done + list(failed.values())
                if exc.status == 400:
                    named = self._named_rows(pending, details)
                    if named is not None and named:
                        for record, reason in named:
                            failed[record.key] = RowResult(record.key, ok=False, code="invalid_user_id", reason=reason)
                        pending = [record for record in pending if record.key not in failed]
                        continue
                    if any(str(d.get("property", "")).startswith("messages") for d in details):
                        refused = f"{self.name}: LINE refuses the message of variant {variant!r}: {message} {details}"
                        raise PermanentError(refused, status=400) from exc
                    raise BatchRejected(f"{self.name}: LINE answered 400: {message} {details}", status=400) from exc
                raise _http_error(exc, self.name) from exc
            except Urllib3Error as exc:
                raise _transport_error(exc, self.name) from exc
            return [RowResult(r.key, ok=True, code="200") for r in pending] + list(failed.values())
        return list(failed.values())

    @staticmethod
    def _named_rows(pending: list[Record], details: list[dict[str, Any]]) -> list[tuple[Record, str]] | None:
        """The rows a 400 names through ``to[i]``; None when any detail is about something else."""
        named = []
        for detail in details:
            match = _TO_INDEX.match(str(detail.get("property", "")))
            if match is None:
                return None
            index = int(match.group(1))
            if index < len(pending):
                named.append((pending[index], str(detail.get("message") or "invalid user ID")))
        return named


class LineAudienceDestination(_LineApiDestination):
    """Add user IDs to a LINE upload audience named ``audience_name`` (created on first use), and
    remove them by rebuilding the audience (see the module docstring).

    Parameters (keyword only): ``audience_name`` (≤ 100 characters; the audience's
    ``description``); credentials as for :class:`LineMulticastDestination`; ``allowed_columns``
    (nothing but the user ID is uploaded); ``rate_per_second`` (requests per second);
    ``max_batch`` (≤ 10,000 IDs per upload); ``timeout``; ``name``; ``clock``/``sleep``.
    """

    supports = frozenset({Operation.ADD, Operation.REMOVE})
    rebuilds = True
    MAX_BATCH = 10_000
    REBUILDING = " (rebuilding)"

    def __init__(
        self,
        *,
        audience_name: str,
        conn_id: str | None = None,
        channel_access_token: str | None = None,
        base_url: str | None = None,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        max_batch: int = 10_000,
        timeout: float = 30.0,
        name: str = "line_audience",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            name=name,
            allowed_columns=allowed_columns,
            rate_per_second=rate_per_second,
            max_batch=max_batch,
            clock=clock,
            sleep=sleep,
        )
        if not audience_name or len(audience_name) > 120 - len(self.REBUILDING):
            raise ValueError(f"{name}: audience_name must have 1 to {120 - len(self.REBUILDING)} characters")
        from linebot.v3 import audience as sdk

        self._sdk = sdk
        self.audience_name = audience_name
        self.base_url, token = _credentials(conn_id, base_url, channel_access_token, name)
        self.timeout = timeout
        self._client = self._pool(sdk, self.base_url, token)
        self._api = sdk.ManageAudience(self._client)
        self.audience_group_id: int | None = None
        self.rebuilding = False
        self.rebuild_group_id: int | None = None

    def close(self) -> None:
        self._client.close()

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        from urllib3.exceptions import HTTPError as Urllib3Error

        self.pace()
        try:
            return method(*args, _request_timeout=self.timeout)
        except self._sdk.ApiException as exc:
            message, details = _answer(exc)
            if exc.status == 400:
                rejected = f"{self.name}: LINE answered 400: {message} {details}"
                raise BatchRejected(rejected, status=400, code=message) from exc
            raise _http_error(exc, self.name) from exc
        except Urllib3Error as exc:
            raise _transport_error(exc, self.name) from exc

    def _groups_named(self, description: str) -> list[int]:
        """The upload audiences whose name is exactly ``description`` (LINE's search matches parts)."""
        found, page = [], 1
        while True:
            answer = self._call(self._api.get_audience_groups, page, description, None, 40)
            found += [
                int(group.audience_group_id)
                for group in answer.audience_groups or []
                if group.description == description and group.type == "UPLOAD"
            ]
            if not answer.has_next_page:
                return found
            page += 1

    def _find_group(self) -> int | None:
        found = self._groups_named(self.audience_name)
        return found[0] if found else None

    def _create(self, description: str) -> int:
        request = self._sdk.CreateAudienceGroupRequest(description=description, audiences=[])
        return int(self._call(self._api.create_audience_group, request).audience_group_id)

    def _delete(self, group_id: int) -> None:
        try:
            self._call(self._api.delete_audience_group, group_id)
        except BatchRejected as exc:
            if exc.code != "AUDIENCE_GROUP_NOT_FOUND":  # already gone: a retry after a lost answer
                raise PermanentError(str(exc), status=400, code=exc.code) from exc

    def _group_id(self) -> int:
        """The audience group's ID: found by name, else created (empty). A create whose answer
        was lost is found by name on the retry, so a retry never creates a second group."""
        if self.audience_group_id is None:
            found = self._find_group()
            self.audience_group_id = found if found is not None else self._create(self.audience_name)
        return self.audience_group_id

    def start_rebuild(self) -> None:
        self.rebuilding = True
        self.rebuild_group_id = None

    def _rebuild_group(self) -> int:
        """The new copy, created empty on the first upload of a rebuild after deleting any copy a
        failed rebuild left (it may hold people who opted out since). A create whose answer was
        lost is deleted and made again on the retry: nothing was uploaded to it yet."""
        if self.rebuild_group_id is None:
            for leftover in self._groups_named(self.audience_name + self.REBUILDING):
                self._delete(leftover)
            self.rebuild_group_id = self._create(self.audience_name + self.REBUILDING)
        return self.rebuild_group_id

    def _publish(self, records: Sequence[Record]) -> list[RowResult]:
        """Delete the live group and give the rebuilt copy its name. Safe to retry: the copy is
        never deleted, and renaming it twice is harmless."""
        if not self.rebuilding:
            raise PermanentError(f"{self.name}: LINE cannot remove users from an upload audience outside a rebuild")
        if self.rebuild_group_id is None:  # nobody is left: the published audience is empty
            self.rebuild_group_id = self._rebuild_group()
        for live in self._groups_named(self.audience_name):
            if live != self.rebuild_group_id:
                self._delete(live)
        request = self._sdk.UpdateAudienceGroupDescriptionRequest(description=self.audience_name)
        try:
            self._call(self._api.update_audience_group_description, self.rebuild_group_id, request)
        except BatchRejected as exc:
            raise PermanentError(f"{self.name}: the rebuilt audience could not be renamed: {exc}") from exc
        self.audience_group_id, self.rebuild_group_id, self.rebuilding = self.rebuild_group_id, None, False
        return [RowResult(record.key, ok=True, code="rebuilt") for record in records]

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.check_operation(operation)
        if operation == Operation.REMOVE:
            return self._publish(records)
        if not records:
            return []
        group_id = self._rebuild_group() if self.rebuilding else self._group_id()
        request = self._sdk.AddAudienceToAudienceGroupRequest(
            audience_group_id=group_id,
            upload_description=f"yorisoi {idempotency_key}"[:300],
            audiences=[self._sdk.Audience(id=record.key) for record in records],
        )
        try:
            self._call(self._api.add_audience_to_audience_group, request)
        except BatchRejected as exc:
            if exc.code == "AUDIENCE_GROUP_NOT_FOUND" and self.rebuilding:  # what it held is lost
                raise PermanentError(f"{self.name}: the rebuilt audience {group_id} was deleted mid-rebuild") from exc
            if exc.code == "AUDIENCE_GROUP_NOT_FOUND":  # deleted behind our back: recreate next attempt
                self.audience_group_id = None
                raise TransientError(f"{self.name}: audience group {group_id} no longer exists") from exc
            raise
        return [RowResult(record.key, ok=True, code="202") for record in records]


__all__ = ["LineAudienceDestination", "LineMulticastDestination", "retry_key"]
