"""File destinations: audience lists as files, for S3 and for the OMS over SFTP (docs/reliability.md #9).

- :class:`S3FileDestination` writes CSV (UTF-8) or Parquet to
  ``s3://<bucket>/<prefix>/<audience>/<interval>/<file>`` through Airflow's S3Hook (``aws_conn_id``;
  ``endpoint_url`` in the connection's extra reaches a local S3) or boto3.
- :class:`SftpFileDestination` writes DM lists and 同梱物 (package-insert) lists in the OMS's
  column layout (``include/activation/oms_file_layouts.yml``) as CP932 CSV to
  ``<remote_dir>/<audience>/<interval>/<file>`` over SFTP, with the server's host key pinned
  (Airflow's SFTPHook with ``host_key`` in the connection's extra, or paramiko with
  ``RejectPolicy``; never ``AutoAddPolicy``).

Both are *send-type* destinations (ADD only) that take every record of a run in one
:meth:`deliver` call (``max_batch`` is very large). The engine claims the records in the ledger
first, so a file holds exactly the recipients claimed for the interval in that batch, each once;
its name carries the batch's idempotency key, which is the same for the same recipients of the
same interval, so a rerun after a crash publishes the same file under the same name once.

Publishing is crash-safe, in this order:

1. the bytes are written to a temporary name (SFTP: ``.<file>.<token>.part`` beside the final
   name; S3: ``<prefix>/_staging/...``, outside the folders consumers read);
2. they are verified: size by ``stat`` / ``HEAD`` and SHA-256 (SFTP re-reads the file; S3 compares
   the checksum the server computed when copying, and the object's metadata);
3. they are published under the final name by an atomic ``posix_rename`` (SFTP) or a server-side
   copy followed by deleting the temporary object (S3 has no rename);
4. the manifest ``<file>.manifest.json`` (``file, rows, bytes, sha256, columns, audience,
   run_id, created_at``, plus interval, destination, idempotency key, format and encoding) is
   written last, the same way, so a consumer that waits for the manifest never sees a partial
   file. A killed upload leaves only a temporary name, which the rerun removes.

A rerun finds the manifest of its batch (same idempotency key) and publishes nothing again; it
finds a final file without a manifest (killed between the two) and, if its checksum matches,
writes only the manifest.

Rows of an OMS list are checked before writing, column by column with Arrow: an empty required
column, a postal code that is not 7 digits, a value longer than the OMS column, a line break, or a
character CP932 cannot encode (𠮷, emoji...) reject that row with the column and the reason (a :class:`RowResult` with
``ok=False``: the engine puts it in ``sync_rejects``). Nothing is replaced or dropped silently.

Test sends (``mode="test"``) go to a ``_test/`` folder, so the OMS never imports a seed list.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hashlib
import io
import json
import logging
import posixpath
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter, methodcaller
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from ....sources.registry import PROJECT_ROOT
from .base import Destination, DestinationError, Operation, Record, RowResult, RowResults, RunContext, TransientError

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)

LAYOUTS_FILE = PROJECT_ROOT / "include" / "activation" / "oms_file_layouts.yml"
MANIFEST_SUFFIX = ".manifest.json"
FILE_MAX_BATCH = 100_000_000  # every record of a run in one call
_SHIFT_JIS_NAMES = {"shift_jis", "shift-jis", "sjis", "s_jis", "shiftjis", "csshiftjis", "ms_kanji"}
_FORMATS = {"postal_code", "jp_phone"}
_WRITE_CHUNK = 1 << 20
_READ_CHUNK = 32768  # paramiko reads fastest with prefetch and 32 KiB reads


# --------------------------------------------------------------------------------------------
# OMS layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutColumn:
    """One column of an OMS file: its header, the field that fills it and its checks."""

    header: str
    field: str
    required: bool = False
    format: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Layout:
    """An OMS import layout (see ``include/activation/oms_file_layouts.yml``)."""

    name: str
    title: str
    key: str
    channel: str
    encoding: str
    eol: str
    file_name: str
    columns: tuple[LayoutColumn, ...]

    @property
    def fields(self) -> list[str]:
        return [c.field for c in self.columns]


def load_layouts(path: str | Path | None = None) -> dict[str, Layout]:
    """The OMS layouts by name, validated (CP932, never shift_jis; known formats)."""
    path = Path(path) if path else LAYOUTS_FILE
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    layouts: dict[str, Layout] = {}
    for name, spec in doc.items():
        encoding = str(spec.get("encoding", "cp932")).lower()
        if encoding in _SHIFT_JIS_NAMES:
            raise ValueError(f"{path}: layout {name}: use cp932, not {encoding} (shift_jis cannot write ①, ㈱, 髙)")
        columns = []
        for col in spec["columns"]:
            fmt = col.get("format")
            if fmt is not None and fmt not in _FORMATS:
                raise ValueError(f"{path}: layout {name}: unknown format {fmt!r} (known: {sorted(_FORMATS)})")
            columns.append(
                LayoutColumn(
                    header=str(col["header"]),
                    field=str(col["field"]),
                    required=bool(col.get("required", False)),
                    format=fmt,
                    max_length=int(col["max_length"]) if col.get("max_length") else None,
                )
            )
        layouts[name] = Layout(
            name=name,
            title=str(spec.get("title", name)),
            key=str(spec.get("key", "person_id")),
            channel=str(spec.get("channel", "dm")),
            encoding=encoding,
            eol=str(spec.get("eol", "\r\n")),
            file_name=str(spec.get("file_name", "{audience}_{interval}_{batch}.csv")),
            columns=tuple(columns),
        )
    return layouts


# --------------------------------------------------------------------------------------------
# Building the file
# --------------------------------------------------------------------------------------------


def _safe(part: str) -> str:
    """A path component from an audience name or an interval (``2026-11-01T00:00:00+00:00`` →
    ``2026-11-01T00-00-00-00-00``)."""
    cleaned = re.sub(r"[^0-9A-Za-z._-]+", "-", str(part)).strip("-.")
    return cleaned or "_"


def _array(values: list[Any], as_text: bool) -> pa.Array:
    try:
        array = pa.array(values, type=pa.string()) if as_text else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return array


def _values(records: Sequence[Record], name: str, key_field: str) -> list[Any]:
    if name == key_field:
        return list(map(attrgetter("key"), records))
    if name in ("person_id", "variant"):
        return list(map(attrgetter(name), records))
    return list(map(methodcaller("get", name), map(attrgetter("fields"), records)))


@dataclass
class _Rows:
    """The rows of a file being built: the Arrow columns, and the reason of every rejected row."""

    records: Sequence[Record]
    columns: dict[str, pa.Array] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)

    def reject(self, mask: pa.Array | np.ndarray, reason: Callable[[int], str]) -> None:
        flags = mask.to_numpy(zero_copy_only=False) if isinstance(mask, pa.Array) else mask
        for index in np.flatnonzero(np.asarray(flags, dtype=bool)):
            self.reasons.setdefault(int(index), reason(int(index)))

    def table(self) -> pa.Table:
        table = pa.table(self.columns)
        if not self.reasons:
            return table
        keep = np.ones(len(self.records), dtype=bool)
        keep[list(self.reasons)] = False
        return table.filter(pa.array(keep))

    def failures(self, code: str) -> dict[str, RowResult]:
        return {
            self.records[i].key: RowResult(key=self.records[i].key, ok=False, code=code, reason=reason)
            for i, reason in self.reasons.items()
        }


def _empty(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(array), ""), True)
    return pc.is_null(array)


def build_layout_rows(
    records: Sequence[Record], layout: Layout, writable: set[str], derived: Mapping[str, list[Any]] | None = None
) -> _Rows:
    """The layout's columns as text, formatted and checked; rejected rows carry a reason.
    ``derived`` gives the values of fields that are not audience fields (the 同梱物コード)."""
    rows = _Rows(records)
    derived = derived or {}
    for col in layout.columns:
        if col.field in derived:
            array = _array(derived[col.field], as_text=True)
        elif col.field in writable:
            array = _array(_values(records, col.field, layout.key), as_text=True)
        else:
            array = pa.nulls(len(records), pa.string())
        header = col.header
        if col.required:
            rows.reject(_empty(array), lambda i, h=header: f"{h} is empty")
        if col.format == "postal_code":
            digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(array), r"^(\d{3})-?(\d{4})$", r"\1-\2")
            valid = pc.match_substring_regex(digits, r"^\d{3}-\d{4}$")
            bad = pc.fill_null(pc.and_(pc.invert(_empty(array)), pc.invert(valid)), False)
            values = array
            rows.reject(bad, lambda i, h=header, v=values: f"{h} {v[i].as_py()!r} is not a 7-digit postal code")
            array = digits
        elif col.format == "jp_phone":
            array = pc.replace_substring_regex(array, r"^\+81(\d+)$", r"0\1")
        if col.max_length:
            too_long = pc.fill_null(pc.greater(pc.utf8_length(array), col.max_length), False)
            rows.reject(too_long, lambda i, h=header, n=col.max_length: f"{h} is longer than {n} characters")
        breaks = pc.fill_null(pc.match_substring_regex(array, r"[\r\n]"), False)
        rows.reject(breaks, lambda i, h=header: f"{h} contains a line break (the OMS reads one record per line)")
        rows.columns[header] = array
    return rows


_found = threading.local()


def _collect(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler ``yorisoi_collect``: note the unencodable span and carry on."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    _found.spans.append(error.start)
    return "?", error.end


codecs.register_error("yorisoi_collect", _collect)


def _unencodable(values: pa.Array, encoding: str) -> dict[int, str]:
    """Index → the first character of that value ``encoding`` cannot write."""
    texts = ["" if v is None else v for v in values.to_pylist()]
    joined = "\n".join(texts)
    _found.spans = []
    joined.encode(encoding, errors="yorisoi_collect")
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    found: dict[int, str] = {}
    for start in _found.spans:
        index = int(np.searchsorted(starts, start, side="right") - 1)
        found.setdefault(index, joined[start])
    return found


def encode_csv(rows: _Rows, encoding: str, eol: str) -> tuple[bytes, pa.Table]:
    """The CSV bytes in ``encoding`` of the rows not rejected; rows with a character the
    encoding cannot write are rejected (column and character named) and left out."""
    for _ in range(2):
        table = rows.table()
        buffer = io.BytesIO()
        pacsv.write_csv(
            table,
            buffer,
            write_options=pacsv.WriteOptions(
                include_header=True, eol=eol, quoting_style="needed", quoting_header="none"
            ),
        )
        text = buffer.getvalue().decode("utf-8")
        if encoding in ("utf-8", "utf8"):
            return text.encode("utf-8"), table
        try:
            return text.encode(encoding), table
        except UnicodeEncodeError:
            pass
        kept = np.flatnonzero(~np.isin(np.arange(len(rows.records)), list(rows.reasons)))
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            for index, char in _unencodable(column, encoding).items():
                rows.reasons.setdefault(
                    int(kept[index]), f"{name}: {char!r} (U+{ord(char):04X}) cannot be written in {encoding.upper()}"
                )
    raise ValueError(f"the header cannot be written in {encoding}: {table.column_names}")


# --------------------------------------------------------------------------------------------
# The common part
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """A file ready to publish: its name, bytes, row count, columns and manifest."""

    name: str
    data: bytes
    rows: int
    columns: list[str]
    sha256: str
    manifest: dict[str, Any]


class _FileDestination(Destination):
    supports = frozenset({Operation.ADD})
    max_batch = FILE_MAX_BATCH
    file_format = "csv"
    encoding = "utf-8"

    def __init__(self) -> None:
        self._context: RunContext | None = None
        self.published: list[dict[str, Any]] = []  # the manifests this instance published

    def begin_run(self, context: RunContext) -> None:
        """Called by the engine before the first request: the names for paths and the manifest."""
        self._context = context

    def _require_context(self) -> RunContext:
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} needs the run's names: deliver through engine.sync")
        return self._context

    def folder(self, context: RunContext) -> str:
        parts = ["_test"] if context.mode == "test" else []
        return "/".join([*parts, _safe(context.audience), _safe(context.interval)])

    def _build(self, records: Sequence[Record]) -> tuple[bytes, int, list[str], dict[str, RowResult]]:
        raise NotImplementedError

    def _file_name(self, context: RunContext, idempotency_key: str) -> str:
        raise NotImplementedError

    def _publish(self, context: RunContext, payload: Payload) -> None:
        raise NotImplementedError

    def location(self, context: RunContext, name: str) -> str:
        """Where the file ``name`` of this run is published (for the operation log)."""
        raise NotImplementedError

    def deliver(self, operation: Operation, records: Sequence[Record], *, idempotency_key: str) -> list[RowResult]:
        if operation != Operation.ADD:
            raise DestinationError(f"{self.name} only adds recipients to a file, not {operation.value}")
        context = self._require_context()
        data, count, columns, failures = self._build(records)
        if count == 0:
            log.warning("%s: no row of %d left to write for %s", self.name, len(records), context.audience)
            return RowResults(records, failures)  # type: ignore[return-value]
        name = self._file_name(context, idempotency_key)
        digest = hashlib.sha256(data).hexdigest()
        manifest = {
            "file": name,
            "rows": count,
            "bytes": len(data),
            "sha256": digest,
            "columns": columns,
            "audience": context.audience,
            "run_id": context.run_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "interval": context.interval,
            "destination": self.name,
            "idempotency_key": idempotency_key,
            "format": self.file_format,
            "encoding": self.encoding,
        }
        self._publish(context, Payload(name, data, count, columns, digest, manifest))
        self.published.append({**manifest, "path": self.location(context, name)})
        return RowResults(records, failures)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# SFTP (OMS)
# --------------------------------------------------------------------------------------------


def pinned_client(
    host: str,
    port: int,
    *,
    username: str,
    host_key: str,
    password: str | None = None,
    private_key: paramiko.PKey | None = None,
    timeout: float = 30.0,
) -> paramiko.SSHClient:
    """A paramiko SSH client that accepts only the pinned host key (an OpenSSH line,
    ``"ssh-ed25519 AAAA..."``): any other key is refused (``RejectPolicy``)."""
    import paramiko

    key_type, key_data = host_key.split()[:2]
    client = paramiko.SSHClient()
    pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
    client.get_host_keys().add(host if port == 22 else f"[{host}]:{port}", key_type, pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host,
        port=port,
        username=username,
        password=password,
        pkey=private_key,
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


class SftpFileDestination(_FileDestination):
    """DM / 同梱物 lists for the OMS as CP932 CSV over SFTP.

    :param name: the destination's name (``include/destinations.yml``).
    :param layout: ``dm_list`` or ``insert_list``; by default the layout whose key is
        ``key_field`` (``person_id`` → ``dm_list``, ``order_id`` → ``insert_list``), or the one
        ``kind`` names.
    :param remote_dir: the OMS's inbox folder on the server (default ``/outbox/<layout>``).
    :param conn_id: an Airflow SSH/SFTP connection (``sftp_conn_id`` is the same); its extra must
        pin ``host_key``; a connection with ``no_host_key_check`` or ``allow_host_key_change`` is
        refused.
    :param host, port, username, password, private_key, host_key: an explicit connection (tests);
        ``host_key`` is the server's public key line and is required.
    :param encoding: overrides the layout's (``cp932`` or ``utf-8``; shift_jis is refused).
    :param insert_code: the 同梱物コード for every row; ``insert_codes`` maps a variant to its
        code; without either the variant's name is the code (a record's own ``insert_code``
        field wins).
    :param allowed_columns: the fields that may be written besides the key (default: the
        layout's); a required layout column outside them is a configuration error, an optional
        one is written empty.
    :param verify: ``sha256`` (re-read the uploaded file) or ``size``.
    """

    def __init__(
        self,
        *,
        name: str = "sftp_dm_list",
        kind: str | None = None,
        layout: str | None = None,
        key_field: str | None = None,
        remote_dir: str | None = None,
        conn_id: str | None = None,
        sftp_conn_id: str | None = None,
        host: str | None = None,
        port: int = 22,
        username: str | None = None,
        password: str | None = None,
        private_key: paramiko.PKey | None = None,
        host_key: str | None = None,
        encoding: str | None = None,
        insert_code: str | None = None,
        insert_codes: Mapping[str, str] | None = None,
        allowed_columns: Iterable[str] | None = None,
        channel: str | None = None,
        max_batch: int = FILE_MAX_BATCH,
        rate_per_second: float | None = None,
        verify: str = "sha256",
        layouts_path: str | Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        layouts = load_layouts(layouts_path)
        if layout is None:
            if kind in ("sftp_insert_list", "sftp_dm_list"):
                layout = kind.removeprefix("sftp_")
            elif key_field is not None:
                layout = next((n for n, spec in layouts.items() if spec.key == key_field), None)
                if layout is None:
                    raise ValueError(f"no OMS layout is keyed by {key_field!r}; have {sorted(layouts)}")
            else:
                layout = "dm_list"
        if layout not in layouts:
            raise ValueError(f"unknown OMS layout {layout!r}; have {sorted(layouts)}")
        self.layout = layouts[layout]
        if key_field is not None and key_field != self.layout.key:
            raise ValueError(f"layout {layout} is keyed by {self.layout.key}, not {key_field}")
        conn_id = sftp_conn_id or conn_id
        if conn_id is None and host is None:
            raise ValueError("give conn_id (an Airflow SFTP connection) or host / username / host_key")
        if conn_id is None and not host_key:
            raise ValueError("host_key (the server's public key line) is required: the server key is pinned")
        if verify not in ("sha256", "size"):
            raise ValueError(f"verify must be 'sha256' or 'size', got {verify!r}")
        self.encoding = (encoding or self.layout.encoding).lower()
        if self.encoding in _SHIFT_JIS_NAMES:
            raise ValueError(f"{name}: write cp932, not {self.encoding} (shift_jis cannot write ①, ㈱, 髙)")
        "".encode(self.encoding)  # an unknown codec fails here, not at the first run
        self.name = name
        self.channel = channel or self.layout.channel
        self.key_field = self.layout.key
        self.insert_code = insert_code
        self.insert_codes = dict(insert_codes or {})
        derived = {"insert_code"}  # not personal data: the insert's product code
        default_allowed = {f for f in self.layout.fields if f not in derived and f != self.key_field}
        self.allowed_columns = frozenset(allowed_columns if allowed_columns is not None else default_allowed)
        self.writable = set(self.allowed_columns) | {self.key_field} | derived
        missing = [c for c in self.layout.columns if c.required and c.field not in self.writable]
        if missing:
            raise ValueError(
                f"layout {layout} needs {[f'{c.header} ({c.field})' for c in missing]}, which destination {name} "
                f"may not write: add them to allowed_columns"
            )
        empty = [c.header for c in self.layout.columns if c.field not in self.writable]
        if empty:
            log.info("%s: columns %s are not allowed and stay empty", name, empty)
        self.max_batch = max_batch
        self.rate_per_second = rate_per_second
        self.remote_dir = (remote_dir or f"/outbox/{layout}").rstrip("/") or "/"
        self.sftp_conn_id = conn_id
        self.host, self.port, self.username = host, port, username
        self.password, self.private_key, self.host_key = password, private_key, host_key
        self.verify = verify
        self.timeout = timeout

    # ---- building ------------------------------------------------------------------------

    def _insert_codes(self, records: Sequence[Record]) -> list[str | None]:
        codes, fixed = self.insert_codes, self.insert_code
        return [
            r.fields.get("insert_code") or codes.get(r.variant or "") or fixed or r.variant  # type: ignore[misc]
            for r in records
        ]

    def _build(self, records: Sequence[Record]) -> tuple[bytes, int, list[str], dict[str, RowResult]]:
        derived = {}
        if "insert_code" in self.layout.fields:
            derived["insert_code"] = self._insert_codes(records)
        rows = build_layout_rows(records, self.layout, self.writable, derived)
        data, table = encode_csv(rows, self.encoding, self.layout.eol)
        return data, table.num_rows, table.column_names, rows.failures("invalid_row")

    def _file_name(self, context: RunContext, idempotency_key: str) -> str:
        return self.layout.file_name.format(
            audience=_safe(context.audience),
            interval=_safe(context.interval),
            batch=idempotency_key.replace("-", "")[:12],
        )

    # ---- connection ----------------------------------------------------------------------

    def _connect(self) -> tuple[paramiko.SFTPClient, Callable[[], None]]:
        import paramiko

        try:
            if self.sftp_conn_id is not None:
                from airflow.providers.sftp.hooks.sftp import SFTPHook

                hook = SFTPHook(ssh_conn_id=self.sftp_conn_id, conn_retry_attempts=1)
                if hook.no_host_key_check or hook.allow_host_key_change:
                    raise DestinationError(
                        f"connection {self.sftp_conn_id} does not verify the server's host key: pin host_key "
                        "in its extra and set no_host_key_check to false"
                    )
                sftp = hook.get_conn()

                def close() -> None:
                    hook.close_conn()
                    ssh = getattr(hook, "client", None)
                    if ssh is not None:
                        ssh.close()

            else:
                client = pinned_client(
                    self.host or "",
                    self.port,
                    username=self.username or "",
                    host_key=self.host_key or "",
                    password=self.password,
                    private_key=self.private_key,
                    timeout=self.timeout,
                )
                sftp = client.open_sftp()
                close = client.close  # type: ignore[assignment]
        except (paramiko.BadHostKeyException, paramiko.AuthenticationException) as exc:
            raise DestinationError(f"{self.name}: SFTP server refused or not trusted: {exc}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransientError(f"{self.name}: cannot connect: {exc}") from exc
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.timeout)
        return sftp, close

    # ---- publishing ------------------------------------------------------------------------

    def _publish(self, context: RunContext, payload: Payload) -> None:
        import paramiko

        sftp, close = self._connect()
        try:
            self._publish_on(sftp, context, payload)
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            if isinstance(exc, PermissionError | FileNotFoundError):
                raise DestinationError(f"{self.name}: {exc}") from exc
            raise TransientError(f"{self.name}: SFTP transfer failed: {exc}") from exc
        finally:
            close()

    def location(self, context: RunContext, name: str) -> str:
        return posixpath.join(self.remote_dir, self.folder(context), name)

    def _publish_on(self, sftp: paramiko.SFTPClient, context: RunContext, payload: Payload) -> None:
        final = self.location(context, payload.name)
        folder = posixpath.dirname(final)
        _makedirs(sftp, folder)
        manifest_path = final + MANIFEST_SUFFIX
        existing = _read_json(sftp, manifest_path)
        final_size = _size(sftp, final)
        if (
            existing is not None
            and existing.get("idempotency_key") == payload.manifest["idempotency_key"]
            and final_size == existing.get("bytes")
        ):
            log.info("%s: %s already published (manifest found): nothing to do", self.name, final)
            return
        for entry in sftp.listdir(folder):  # temporary files of a killed upload
            if entry.startswith(f".{payload.name}.") and entry.endswith(".part"):
                sftp.remove(posixpath.join(folder, entry))
        if final_size == len(payload.data) and _sha256(sftp, final) == payload.sha256:
            log.info("%s: %s published before, manifest missing: writing the manifest", self.name, final)
        else:
            temp = posixpath.join(folder, f".{payload.name}.{secrets.token_hex(6)}.part")
            _write(sftp, temp, payload.data)
            self._verify(sftp, temp, payload)
            sftp.posix_rename(temp, final)
        body = json.dumps(payload.manifest, ensure_ascii=False, indent=1).encode("utf-8")
        temp_manifest = posixpath.join(folder, f".{payload.name}{MANIFEST_SUFFIX}.{secrets.token_hex(6)}.part")
        _write(sftp, temp_manifest, body)
        if _size(sftp, temp_manifest) != len(body):
            raise TransientError(f"{self.name}: manifest upload incomplete")
        sftp.posix_rename(temp_manifest, manifest_path)
        log.info("%s: published %s (%d rows, %d bytes)", self.name, final, payload.rows, len(payload.data))

    def _verify(self, sftp: paramiko.SFTPClient, path: str, payload: Payload) -> None:
        size = _size(sftp, path)
        problem = None
        if size != len(payload.data):
            problem = f"size {size} != {len(payload.data)}"
        elif self.verify == "sha256" and (digest := _sha256(sftp, path)) != payload.sha256:
            problem = f"sha256 {digest} != {payload.sha256}"
        if problem:
            with contextlib.suppress(OSError):
                sftp.remove(path)
            raise TransientError(f"{self.name}: uploaded {path} does not match ({problem})")


def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    path = "/" if folder.startswith("/") else ""
    for part in [p for p in folder.split("/") if p]:
        path = posixpath.join(path, part) if path else part
        try:
            if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                raise DestinationError(f"{path} exists on the SFTP server and is not a folder")
        except FileNotFoundError:
            try:
                sftp.mkdir(path)
            except OSError:
                if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):  # created meanwhile by another run
                    raise


def _size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


def _read_json(sftp: paramiko.SFTPClient, path: str) -> dict[str, Any] | None:
    try:
        with sftp.open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def _write(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    view = memoryview(data)
    with sftp.open(path, "wb") as handle:
        handle.set_pipelined(True)
        for start in range(0, len(view), _WRITE_CHUNK):
            handle.write(view[start : start + _WRITE_CHUNK])


def _sha256(sftp: paramiko.SFTPClient, path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with sftp.open(path, "rb", bufsize=_READ_CHUNK) as handle:
            handle.prefetch(handle.stat().st_size)
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------

_S3_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
}


class S3FileDestination(_FileDestination):
    """An audience list as CSV (UTF-8) or Parquet on S3, with a manifest.

    :param name: the destination's name.
    :param bucket: the bucket; files go to ``<prefix>/<audience>/<interval>/``.
    :param prefix: the key prefix (no leading slash).
    :param file_format: ``csv`` or ``parquet``.
    :param conn_id: an Airflow AWS connection (``aws_conn_id`` is the same; preferred;
        ``endpoint_url`` in its extra for a local S3); otherwise ``endpoint_url``,
        ``region_name`` and the keys (or the default credential chain) build a boto3 client;
        ``client`` passes one in.
    :param key_field: the column holding the record key (``person_id`` by default).
    :param columns: the other columns, in order (default: the allow-list, sorted); ``person_id``
        and ``variant`` are written only when allowed.
    """

    def __init__(
        self,
        *,
        name: str = "s3_file",
        bucket: str,
        prefix: str = "activation",
        file_format: str = "csv",
        conn_id: str | None = None,
        aws_conn_id: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        client: Any = None,
        key_field: str = "person_id",
        columns: Sequence[str] | None = None,
        allowed_columns: Iterable[str] = (),
        channel: str = "s3",
        max_batch: int = FILE_MAX_BATCH,
        rate_per_second: float | None = None,
        file_name: str = "{audience}_{interval}_{batch}.{ext}",
    ) -> None:
        super().__init__()
        if file_format not in ("csv", "parquet"):
            raise ValueError(f"file_format must be csv or parquet, got {file_format!r}")
        self.name = name
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.file_format = file_format
        self.encoding = "utf-8" if file_format == "csv" else "binary"
        self.key_field = key_field
        self.allowed_columns = frozenset(allowed_columns)
        self.columns = [c for c in (columns if columns is not None else sorted(self.allowed_columns)) if c != key_field]
        outside = [c for c in self.columns if c not in self.allowed_columns]
        if outside:
            raise ValueError(f"columns {outside} are not in allowed_columns of destination {name}")
        self.channel = channel
        self.max_batch = max_batch
        self.rate_per_second = rate_per_second
        self.file_name = file_name
        self.aws_conn_id = aws_conn_id or conn_id
        self._client = client
        self._client_args = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
        }

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.aws_conn_id is not None:
                from airflow.providers.amazon.aws.hooks.s3 import S3Hook

                self._client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
            else:
                import boto3

                self._client = boto3.client("s3", **{k: v for k, v in self._client_args.items() if v})
        return self._client

    def _build(self, records: Sequence[Record]) -> tuple[bytes, int, list[str], dict[str, RowResult]]:
        names = [self.key_field, *self.columns]
        table = pa.table({n: _array(_values(records, n, self.key_field), as_text=False) for n in names})
        buffer = io.BytesIO()
        if self.file_format == "parquet":
            pq.write_table(table, buffer)
        else:
            pacsv.write_csv(
                table,
                buffer,
                write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed", quoting_header="none"),
            )
        return buffer.getvalue(), table.num_rows, names, {}

    def _file_name(self, context: RunContext, idempotency_key: str) -> str:
        return self.file_name.format(
            audience=_safe(context.audience),
            interval=_safe(context.interval),
            batch=idempotency_key.replace("-", "")[:12],
            ext=self.file_format,
        )

    def _publish(self, context: RunContext, payload: Payload) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._publish_s3(context, payload)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") in _S3_TRANSIENT_CODES or (status or 0) >= 500:
                raise TransientError(
                    f"{self.name}: S3 {error.get('Code')}: {error.get('Message')}", status=status
                ) from exc
            raise DestinationError(f"{self.name}: S3 refused: {error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:  # connection errors, timeouts
            raise TransientError(f"{self.name}: S3 unreachable: {exc}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _manifest_of(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            return None

    def location(self, context: RunContext, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(context, name)}"

    def _key(self, context: RunContext, name: str) -> str:
        return "/".join(p for p in (self.prefix, self.folder(context), name) if p)

    def _publish_s3(self, context: RunContext, payload: Payload) -> None:
        final = self._key(context, payload.name)
        manifest_key = final + MANIFEST_SUFFIX
        staging_folder = "/".join(p for p in (self.prefix, "_staging", self.folder(context)) if p)
        checksum = base64.b64encode(bytes.fromhex(payload.sha256)).decode("ascii")
        existing = self._manifest_of(manifest_key)
        head = self._head(final)
        if (
            existing is not None
            and existing.get("idempotency_key") == payload.manifest["idempotency_key"]
            and head is not None
            and head["ContentLength"] == existing.get("bytes")
            and head.get("Metadata", {}).get("sha256") == existing.get("sha256")
        ):
            log.info("%s: s3://%s/%s already published (manifest found): nothing to do", self.name, self.bucket, final)
            return
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{staging_folder}/{payload.name}.")
        for item in listing.get("Contents", []):  # staging objects of a killed upload
            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
        if head is not None and head["ContentLength"] == len(payload.data) and self._matches(head, payload, checksum):
            log.info("%s: s3://%s/%s published before, manifest missing", self.name, self.bucket, final)
        else:
            staging = f"{staging_folder}/{payload.name}.{secrets.token_hex(6)}.part"
            metadata = {"sha256": payload.sha256, "rows": str(payload.rows)}
            content_type = "text/csv; charset=utf-8" if self.file_format == "csv" else "application/vnd.apache.parquet"
            self.client.put_object(
                Bucket=self.bucket,
                Key=staging,
                Body=payload.data,
                ContentType=content_type,
                Metadata=metadata,
                ChecksumSHA256=checksum,
            )
            staged = self._head(staging)
            if (
                staged is None
                or staged["ContentLength"] != len(payload.data)
                or not self._matches(staged, payload, checksum)
            ):
                raise TransientError(f"{self.name}: staged object s3://{self.bucket}/{staging} does not match")
            copied = self.client.copy_object(
                Bucket=self.bucket,
                Key=final,
                CopySource={"Bucket": self.bucket, "Key": staging},
                MetadataDirective="COPY",
                ChecksumAlgorithm="SHA256",
            )
            server_checksum = copied.get("CopyObjectResult", {}).get("ChecksumSHA256")
            published = self._head(final)
            if (
                (server_checksum is not None and server_checksum != checksum)
                or published is None
                or published["ContentLength"] != len(payload.data)
                or not self._matches(published, payload, checksum)
            ):
                raise TransientError(f"{self.name}: s3://{self.bucket}/{final} does not match what was uploaded")
            self.client.delete_object(Bucket=self.bucket, Key=staging)
        body = json.dumps(payload.manifest, ensure_ascii=False, indent=1).encode("utf-8")
        self.client.put_object(
            Bucket=self.bucket,
            Key=manifest_key,
            Body=body,
            ContentType="application/json",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode("ascii"),
        )
        log.info("%s: published s3://%s/%s (%d rows)", self.name, self.bucket, final, payload.rows)

    @staticmethod
    def _matches(head: Mapping[str, Any], payload: Payload, checksum: str) -> bool:
        if head.get("Metadata", {}).get("sha256") != payload.sha256:
            return False
        server = head.get("ChecksumSHA256")
        return server is None or server == checksum


__all__ = [
    "LAYOUTS_FILE",
    "Layout",
    "LayoutColumn",
    "S3FileDestination",
    "SftpFileDestination",
    "build_layout_rows",
    "encode_csv",
    "load_layouts",
    "pinned_client",
]
