"""Email destinations: one message per recipient over SMTP, or list sync to an ESP's REST API.

:class:`SmtpEmailDestination` sends through Airflow's SMTP provider (``SmtpHook``, connection
``conn_id``: host, port, login, password; extra ``from_email``, ``disable_tls``,
``disable_ssl``, ``timeout``). The hook's own retry loop is switched off (it would resend a
message the server may already have accepted); the engine retries instead. SMTP has no
deduplication, so a batch that fails part-way says which recipients were already answered (the
``partial`` of its :class:`~.base.TransientError`): the engine records those at once, and
neither its retry nor a rerun in another process sends them again. Each message carries a
``Message-ID`` derived from the batch's idempotency key and the recipient, so a duplicate that
slipped through a crash is recognisable downstream.

SMTP replies map onto the contract as follows:

==========================================  ==============================================
reply                                       result
==========================================  ==============================================
250 after DATA                              RowResult ok (code ``"250"``)
5xx to RCPT / DATA (unknown user, refused)  RowResult failed, code = the SMTP code
4xx (greylisting, busy, 421 closing),       TransientError, ``partial`` = the RowResults
disconnect, timeout, refused connection     of the recipients answered before it (sent or
                                            refused): only the rest is retried
535 / other authentication failure          AuthenticationFailed (never retried)
5xx to MAIL FROM                            PermanentError (the sender is refused)
==========================================  ==============================================

:class:`EspListDestination` keeps an ESP list in step (``servers/esp.py`` documents the API):
ADD and UPDATE are upserts, REMOVE is an explicit removal, up to 500 members per request, one
:class:`~.base.RowResult` per member from the answer's ``results``.
"""

from __future__ import annotations

import html
import logging
import re
import smtplib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from ._api import (
    ApiDestination,
    AuthenticationFailed,
    PermanentError,
    Template,
    airflow_connection,
    canonical_json,
    coerce_templates,
    digest,
    error_for_status,
    jsonable,
    parse_retry_after,
    stable_uuid,
    template_for,
)
from .base import Operation, Record, RowResult, TransientError

log = logging.getLogger(__name__)

# One address, no display name, no header-breaking characters: the key goes into To: and RCPT TO.
_ADDRESS_RE = re.compile(r"^[^@\s<>,;\"\\]+@[^@\s<>,;\"\\]+\.[^@\s<>,;\"\\]+$")


def message_id(idempotency_key: str, recipient: str, domain: str) -> str:
    """``<hash@domain>``: the same batch (idempotency key) and recipient always give the same
    Message-ID, so duplicates are detectable by whoever receives both."""
    return f"<{digest(idempotency_key, recipient.strip().lower())[:40]}@{domain}>"


def _smtp_hook_class() -> type:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class SingleAttemptSmtpHook(SmtpHook):
        """SmtpHook without its retry loop: the provider resends on *any* exception (up to
        ``retry_limit`` times), which can deliver a message twice. The engine owns retries."""

        @property
        def smtp_retry_limit(self) -> int:
            return 0

    return SingleAttemptSmtpHook


class SmtpEmailDestination(ApiDestination):
    """One email per recipient through Airflow's SMTP connection.

    Parameters (keyword only):

    - ``conn_id``: the Airflow SMTP connection (``AIRFLOW_CONN_<ID>`` in tests);
    - ``templates``: per A/B variant (key = ``Record.variant``; ``"default"`` for records without
      one, and the fallback): ``{"subject": ..., "body": ...}`` or a :class:`Template`. The body is
      HTML; ``{column}`` placeholders must be allowed columns, values are HTML-escaped;
    - ``from_email``: the sender (default: the connection's ``from_email`` extra);
    - ``list_unsubscribe``: value of the ``List-Unsubscribe`` header (e.g.
      ``"<mailto:unsubscribe@shop.example>"``); the opt-out link itself belongs in the body, as
      特定電子メール法 requires;
    - ``allowed_columns``, ``rate_per_second`` (messages per second), ``max_batch`` (default
      100), ``name``, ``clock``/``sleep`` (pacing, tests).
    """

    channel = "email"
    key_field = "email"
    supports = frozenset({Operation.ADD})
    MAX_BATCH = 1000

    def __init__(
        self,
        *,
        templates: Mapping[str | None, Template | Mapping[str, str]],
        conn_id: str = "smtp_default",
        from_email: str | None = None,
        list_unsubscribe: str | None = None,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        max_batch: int = 100,
        name: str = "smtp_email",
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
        self.templates = coerce_templates(templates, allowed=self.allowed_columns, needs_subject=True)
        self.conn_id = conn_id
        self.from_email = from_email
        self.list_unsubscribe = list_unsubscribe
        self._hook: Any = None

    # ---- connection -----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._hook is not None:
            return self._hook
        from airflow.providers.common.compat.sdk import AirflowException

        hook = _smtp_hook_class()(smtp_conn_id=self.conn_id)
        try:
            hook.get_conn()
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthenticationFailed(
                f"{self.name}: the SMTP server refused the login of connection {self.conn_id!r}: "
                f"{exc.smtp_code} {exc.smtp_error!r} (fix the connection; not retried)",
                status=exc.smtp_code,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{self.name}: {exc} (connection {self.conn_id!r})") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"{self.name}: cannot reach the SMTP server: {exc!r}") from exc
        except AirflowException as exc:
            if "not found" in str(exc):
                raise PermanentError(f"{self.name}: Airflow connection {self.conn_id!r} is not defined") from exc
            raise TransientError(f"{self.name}: {exc}") from exc
        self._hook = hook
        return hook

    def _disconnect(self) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            try:
                hook.__exit__(None, None, None)
            except Exception:  # a broken connection may fail to close; it is dropped either way
                log.debug("closing the SMTP connection failed", exc_info=True)

    def close(self) -> None:
        self._disconnect()

    # ---- sending --------------------------------------------------------------------------

    def _sender(self, hook: Any) -> str:
        sender = self.from_email or hook.from_email
        if not sender or not _ADDRESS_RE.match(sender):
            raise PermanentError(f"{self.name}: no valid from_email (argument or connection {self.conn_id!r} extra)")
        return sender

    def _transient(self, message: str, exc: BaseException, answered: list[RowResult]) -> TransientError:
        """Drop the connection (the next attempt opens a new one) and fail the batch, with the
        answers it already has (``answered``) as the error's ``partial``."""
        self._disconnect()
        return TransientError(f"{self.name}: {message}: {exc!r}", partial=answered)

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.check_operation(operation)
        hook = self._connect()
        sender = self._sender(hook)
        domain = sender.rsplit("@", 1)[1]
        results: list[RowResult] = []
        for record in records:
            recipient = record.key.strip()
            if not _ADDRESS_RE.match(recipient):
                results.append(
                    RowResult(record.key, ok=False, code="invalid_email", reason="not a single plain address")
                )
                continue
            subject, body = template_for(self.templates, record.variant, system=self.name).render(
                self.allowed_fields(record), escape=html.escape
            )
            headers = {"Message-ID": message_id(idempotency_key, recipient, domain)}
            if self.list_unsubscribe:
                headers["List-Unsubscribe"] = self.list_unsubscribe
            self.pace()
            try:
                hook.send_email_smtp(
                    to=[recipient],
                    subject=subject,
                    html_content=body,
                    from_email=sender,
                    mime_subtype="alternative",
                    custom_headers=headers,
                )
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()), (550, b""))
                if 400 <= code < 500:
                    raise self._transient(f"{recipient!r} deferred ({code})", exc, results) from exc
                results.append(RowResult(record.key, ok=False, code=str(code), reason=_text(reply)))
            except smtplib.SMTPSenderRefused as exc:
                if 400 <= exc.smtp_code < 500:
                    raise self._transient("sender deferred", exc, results) from exc
                raise PermanentError(
                    f"{self.name}: the SMTP server refuses the sender {sender!r}: "
                    f"{exc.smtp_code} {_text(exc.smtp_error)}",
                    partial=results,
                ) from exc
            except smtplib.SMTPAuthenticationError as exc:
                self._disconnect()
                failed = f"{self.name}: SMTP authentication failed: {exc.smtp_code}"
                raise AuthenticationFailed(failed, partial=results) from exc
            except smtplib.SMTPResponseException as exc:  # DATA refused, or another reply
                if 400 <= exc.smtp_code < 500:
                    raise self._transient(f"message to {recipient!r} deferred ({exc.smtp_code})", exc, results) from exc
                results.append(RowResult(record.key, ok=False, code=str(exc.smtp_code), reason=_text(exc.smtp_error)))
            except (smtplib.SMTPException, OSError) as exc:  # disconnected, timed out, reset
                raise self._transient("SMTP connection failed", exc, results) from exc
            else:
                results.append(RowResult(record.key, ok=True, code="250"))
        return results


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


# --------------------------------------------------------------------------------------------
# ESP list sync
# --------------------------------------------------------------------------------------------


class EspListDestination(ApiDestination):
    """Keep an ESP list in step with an audience (the API of ``servers/esp.py``).

    Parameters (keyword only): ``list_id``; either ``conn_id`` (an Airflow HTTP connection: host
    = the API's base URL, password = the API key) or ``base_url`` and ``api_key``; ``field_map``
    (allowed column → the ESP's merge field name, e.g. ``{"full_name": "FNAME"}``; unmapped
    allowed columns keep their name); ``allowed_columns``; ``rate_per_second`` (requests per
    second); ``max_batch`` (≤ 500); ``timeout`` seconds per request; ``name``; ``clock``/``sleep``
    (pacing) and ``transport`` (an httpx transport) for tests.

    Each request carries an ``Idempotency-Key`` derived from the batch's idempotency key and the
    payload, so a retried batch is answered from the ESP's record instead of being applied twice.
    """

    channel = "email"
    key_field = "email"
    supports = frozenset({Operation.ADD, Operation.UPDATE, Operation.REMOVE})
    MAX_BATCH = 500

    def __init__(
        self,
        *,
        list_id: str,
        conn_id: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        field_map: Mapping[str, str] | None = None,
        allowed_columns: Iterable[str] = (),
        rate_per_second: float | None = None,
        max_batch: int = 500,
        timeout: float = 30.0,
        name: str = "esp_list",
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
        if conn_id is not None:
            info = airflow_connection(conn_id)
            base_url = base_url or info.base_url
            api_key = api_key or info.password
        if not base_url or not api_key:
            raise ValueError(f"{name}: give conn_id, or base_url and api_key")
        self.list_id = list_id
        self.field_map = dict(field_map or {})
        self.url = f"{base_url.rstrip('/')}/v1/lists/{list_id}/members/batch"
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "yorisoi-activation"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _member(self, operation: Operation, record: Record) -> dict[str, Any]:
        if operation is Operation.REMOVE:
            return {"email_address": record.key, "action": "remove"}
        fields = {
            self.field_map.get(name, name): jsonable(value) for name, value in self.allowed_fields(record).items()
        }
        return {"email_address": record.key, "action": "upsert", "merge_fields": fields}

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        self.check_operation(operation)
        if not records:
            return []
        payload = {"members": [self._member(operation, record) for record in records]}
        body = canonical_json(payload)
        key = stable_uuid("esp", self.list_id, idempotency_key, digest(body))
        self.pace()
        try:
            response = self._http.post(
                self.url,
                content=body.encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 200:
            return self._rows(records, response)
        problem = _json(response)
        detail = str(problem.get("detail") or problem.get("title") or response.text[:300])
        raise error_for_status(
            response.status_code,
            system=self.name,
            detail=detail,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            code=problem.get("title"),
        )

    def _rows(self, records: Sequence[Record], response: httpx.Response) -> list[RowResult]:
        results = _json(response).get("results")
        if not isinstance(results, list) or len(results) != len(records):
            # Carried out, but the answer cannot be matched to the rows: retrying is safe (upserts
            # and removals are idempotent, and the Idempotency-Key replays the same answer).
            raise TransientError(f"{self.name}: the answer does not list one result per member")
        rows = []
        for record, result in zip(records, results, strict=True):
            status = str(result.get("status"))
            if status == "error":
                rows.append(RowResult(record.key, ok=False, code=result.get("error_code"), reason=result.get("error")))
            else:
                rows.append(RowResult(record.key, ok=True, code=status))
        return rows


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


__all__ = ["EspListDestination", "SmtpEmailDestination", "message_id"]
