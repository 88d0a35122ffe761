"""The normalisation functions and match keys as vectorised DuckDB UDFs, and a dbt-duckdb plugin.

In a dbt-duckdb profile:

    plugins:
      - module: yorisoi.privacy.duckdb_udfs

registers, on every connection dbt opens, VARCHAR -> VARCHAR functions yorisoi_norm_email,
yorisoi_norm_phone, yorisoi_norm_kana, yorisoi_fold_kana, yorisoi_norm_postal, yorisoi_norm_name,
yorisoi_name_readings (privacy/readings.py) and yorisoi_match_key (lowercase hex HMAC-SHA256).
All map NULL to NULL. It also puts the HMAC key pads into each cursor's session variables, for
the native SQL HMAC that dbt's match_key macro uses on DuckDB (same result as
yorisoi_match_key, about 2.5 times faster).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin

from . import normalize, readings
from .keys import MatchKeyError, hmac_sha256_arrow, match_key_secret
from .normalize import ArrowStrings

__all__ = ["UDF_NAMES", "Plugin", "register", "set_match_key"]

_NORMALISERS: dict[str, Callable[[ArrowStrings], ArrowStrings]] = {
    "yorisoi_norm_email": normalize.norm_email_arrow,
    "yorisoi_norm_phone": normalize.norm_phone_arrow,
    "yorisoi_norm_kana": normalize.norm_kana_arrow,
    "yorisoi_fold_kana": normalize.fold_kana_arrow,
    "yorisoi_norm_postal": normalize.norm_postal_arrow,
    "yorisoi_norm_name": normalize.norm_name_arrow,
    "yorisoi_name_readings": readings.name_readings_arrow,
}
UDF_NAMES: tuple[str, ...] = (*_NORMALISERS, "yorisoi_match_key")


class _MatchKey:
    """yorisoi_match_key's body. Without a secret given, reads it at the first call, so that a dbt
    run that never hashes does not need the key."""

    def __init__(self, secret: bytes | None) -> None:
        self._secret = secret
        self._lock = threading.Lock()

    def __call__(self, values: ArrowStrings) -> ArrowStrings:
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = match_key_secret()
        return hmac_sha256_arrow(values, self._secret)

    def __repr__(self) -> str:  # never show the secret
        return f"<yorisoi_match_key secret={'set' if self._secret is not None else 'unread'}>"


def _create(conn: duckdb.DuckDBPyConnection, name: str, fn: Callable[[ArrowStrings], ArrowStrings]) -> None:
    # DuckDB refuses to create a function whose name is taken ("creating multiple functions with the
    # same name is not supported yet"): remove the earlier registration, so register() can run again.
    with contextlib.suppress(duckdb.InvalidInputException):  # raised when not registered yet
        conn.remove_function(name)
    conn.create_function(
        name,
        fn,
        ["VARCHAR"],
        "VARCHAR",
        type="arrow",
        null_handling="special",  # NULLs reach the function (which maps them to NULL) instead of short-circuiting
        side_effects=False,  # deterministic: DuckDB may fold constants and reuse results
    )


def register(conn: duckdb.DuckDBPyConnection, secret: bytes | None = None) -> None:
    """Register the yorisoi_* UDFs on `conn` (and so its cursors); a second call replaces them.

    Without `secret`, yorisoi_match_key reads it through match_key_secret() at its first call.
    """
    for name, fn in _NORMALISERS.items():
        _create(conn, name, fn)
    _create(conn, "yorisoi_match_key", _MatchKey(secret))


def set_match_key(conn: duckdb.DuckDBPyConnection, secret: bytes) -> None:
    """HMAC-SHA256 (RFC 2104) key pads as the session variables yorisoi_hmac_inner / _outer, so
    SQL computes sha256(outer || sha256(inner || value)) with DuckDB's native sha256. The pads
    live in this session's memory only: never in compiled SQL, logs or the database file."""
    key = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
    conn.execute("set variable yorisoi_hmac_inner = ?", [bytes(b ^ 0x36 for b in key)])
    conn.execute("set variable yorisoi_hmac_outer = ?", [bytes(b ^ 0x5C for b in key)])


class Plugin(BasePlugin):
    """dbt-duckdb plugin: registers the yorisoi_* UDFs on each connection dbt configures, and the
    match key's pads on each cursor (session variables do not carry over to cursors). Without a
    configured key, hashing SQL fails with a message saying how to set one."""

    _secret: bytes | None = None

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        register(conn)

    def configure_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        if self._secret is None:
            try:
                self._secret = match_key_secret()
            except MatchKeyError:
                return
        set_match_key(cursor, self._secret)
