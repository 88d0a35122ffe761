"""Keyed match keys: HMAC-SHA256 of normalised identifiers under a secret held outside the warehouse.

Why keyed (docs/reliability.md #14): a plain SHA-256 of an email or phone number is reversible by
dictionary attack, since the space of real addresses and Japanese phone numbers is small enough to
hash exhaustively or to test against a leaked list. With HMAC, the keys reveal nothing without the
secret, and rotating the secret unlinks every key computed before.

The secret is never logged, and error messages name where it is looked for, never its value.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .normalize import ArrowStrings

__all__ = [
    "AIRFLOW_CONN_ID",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "MIN_SECRET_BYTES",
    "MatchKeyError",
    "MissingMatchKey",
    "WeakMatchKey",
    "ensure_demo_key",
    "hmac_sha256",
    "hmac_sha256_arrow",
    "match_key_secret",
]

ENV_KEY = "YORISOI_MATCH_KEY"
ENV_KEY_FILE = "YORISOI_MATCH_KEY_FILE"
AIRFLOW_CONN_ID = "yorisoi_match_key"
MIN_SECRET_BYTES = 16

_HOW_TO_PROVIDE = (
    f"Provide the match-key secret (at least {MIN_SECRET_BYTES} bytes) in one of these ways: set {ENV_KEY} to "
    f"the secret; or set {ENV_KEY_FILE} to a file holding it (mode 0600); or, under Airflow, store it as "
    f"the password of the connection '{AIRFLOW_CONN_ID}', which the pipeline passes in as {ENV_KEY}. "
    "`make demo` creates a random demo key file."
)


class MatchKeyError(RuntimeError):
    """The match-key secret is unavailable or unusable."""


class MissingMatchKey(MatchKeyError):
    """No match-key secret is configured."""


class WeakMatchKey(MatchKeyError):
    """The configured match-key secret is too short."""


def match_key_secret() -> bytes:
    """The secret from $YORISOI_MATCH_KEY (UTF-8), else from the file named by $YORISOI_MATCH_KEY_FILE.

    Surrounding whitespace (a key file's trailing newline) is not part of the secret. An empty
    variable counts as unset: a templated connection password that resolved to nothing.
    """
    value = os.environ.get(ENV_KEY, "").strip()
    if value:
        secret, origin = value.encode("utf-8"), f"${ENV_KEY}"
    elif key_file := os.environ.get(ENV_KEY_FILE, "").strip():
        try:
            secret = Path(key_file).read_bytes().strip()
        except OSError as e:
            raise MissingMatchKey(
                f"Cannot read the match-key file {key_file} (${ENV_KEY_FILE}): {e.strerror}. {_HOW_TO_PROVIDE}"
            ) from None
        origin = f"the file {key_file}"
        if not secret:
            raise MissingMatchKey(f"The match-key file {key_file} (${ENV_KEY_FILE}) is empty. {_HOW_TO_PROVIDE}")
    else:
        raise MissingMatchKey(f"No match-key secret: neither ${ENV_KEY} nor ${ENV_KEY_FILE} is set. {_HOW_TO_PROVIDE}")
    if len(secret) < MIN_SECRET_BYTES:
        raise WeakMatchKey(
            f"The match-key secret from {origin} is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are required "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)."
        )
    return secret


def ensure_demo_key(path: str | os.PathLike[str]) -> Path:
    """Create `path` with a random 32-byte hex secret, mode 0600, unless it exists. For demos and tests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(secrets.token_hex(32) + "\n")
    return path


def hmac_sha256(value: str | None, secret: bytes) -> str | None:
    """Lowercase hex HMAC-SHA256 of the UTF-8 value; None for None."""
    if value is None:
        return None
    return hmac.digest(secret, value.encode("utf-8"), "sha256").hex()


def hmac_sha256_arrow(values: ArrowStrings, secret: bytes) -> ArrowStrings:
    """Vectorised hmac_sha256: one HMAC per distinct value (Arrow has no HMAC kernel)."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    distinct = pc.unique(values).drop_null()
    digests = pa.array([hmac_sha256(v, secret) for v in distinct.to_pylist()], type=pa.string())
    return pc.take(digests, pc.index_in(values, value_set=distinct))
