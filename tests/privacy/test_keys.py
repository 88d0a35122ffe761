"""Keyed match keys (yorisoi.privacy.keys): HMAC values, where the secret comes from, the demo key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from yorisoi.privacy import keys
from yorisoi.privacy.keys import (
    MatchKeyError,
    MissingMatchKey,
    WeakMatchKey,
    ensure_demo_key,
    hmac_sha256,
    hmac_sha256_arrow,
    match_key_secret,
)

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"
VALUES = ["taro@example.com", "+819012345678", "ヤマダタロウ", "", "1234567"]


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("YORISOI_MATCH_KEY", raising=False)
    monkeypatch.delenv("YORISOI_MATCH_KEY_FILE", raising=False)
    return monkeypatch


def test_hmac_is_rfc_4231_hmac_sha256_in_lowercase_hex() -> None:
    # RFC 4231, test case 2.
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_sha256("what do ya want for nothing?", b"Jefe") == expected


def test_same_secret_same_keys_other_secret_other_keys() -> None:
    first = [hmac_sha256(v, SECRET) for v in VALUES]
    assert first == [hmac_sha256(v, SECRET) for v in VALUES]
    other = [hmac_sha256(v, OTHER) for v in VALUES]
    assert all(a != b for a, b in zip(first, other, strict=True))
    assert len(set(first)) == len(VALUES)
    assert all(len(k) == 64 and k == k.lower() for k in first)
    assert hmac_sha256(None, SECRET) is None


def test_arrow_equals_scalar_and_hashes_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [*VALUES, None, *VALUES, None]
    expected = [hmac_sha256(v, SECRET) for v in values]
    calls: list[str | None] = []
    real = keys.hmac_sha256

    def spy(value: str | None, secret: bytes) -> str | None:
        calls.append(value)
        return real(value, secret)

    monkeypatch.setattr(keys, "hmac_sha256", spy)
    assert hmac_sha256_arrow(pa.array(values), SECRET).to_pylist() == expected
    assert sorted(calls) == sorted(VALUES)
    chunked = pa.chunked_array([values[:3], values[3:]], pa.large_string())
    assert hmac_sha256_arrow(chunked, SECRET).to_pylist() == expected
    assert hmac_sha256_arrow(pa.array([None, None]), SECRET).to_pylist() == [None, None]


def test_secret_from_env(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_key_env.setenv("YORISOI_MATCH_KEY", "ＫＥＹ-0123456789abcdef")
    assert match_key_secret() == "ＫＥＹ-0123456789abcdef".encode()
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file-0123456789\n")
    no_key_env.setenv("YORISOI_MATCH_KEY_FILE", str(key_file))
    assert match_key_secret() == "ＫＥＹ-0123456789abcdef".encode()  # the variable wins


def test_secret_from_file_without_its_newline(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file-0123456789\n")
    no_key_env.setenv("YORISOI_MATCH_KEY_FILE", str(key_file))
    no_key_env.setenv("YORISOI_MATCH_KEY", "")  # an empty variable counts as unset
    assert match_key_secret() == b"from-the-file-0123456789"


def test_missing_secret_says_how_to_provide_it(no_key_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingMatchKey) as caught:
        match_key_secret()
    assert isinstance(caught.value, RuntimeError)
    message = str(caught.value)
    for hint in ("YORISOI_MATCH_KEY ", "YORISOI_MATCH_KEY_FILE", "'yorisoi_match_key'", "password"):
        assert hint in message


def test_unreadable_or_empty_key_file(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_key_env.setenv("YORISOI_MATCH_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(MissingMatchKey, match="absent"):
        match_key_secret()
    (tmp_path / "empty").write_text("\n")
    no_key_env.setenv("YORISOI_MATCH_KEY_FILE", str(tmp_path / "empty"))
    with pytest.raises(MissingMatchKey, match="empty"):
        match_key_secret()


@pytest.mark.parametrize("short", ["short-secret", "fifteen-bytes!!", "あいうえ"])  # 12, 15, 12 bytes
def test_short_secret_refused_without_showing_it(no_key_env: pytest.MonkeyPatch, short: str) -> None:
    no_key_env.setenv("YORISOI_MATCH_KEY", short)
    with pytest.raises(WeakMatchKey) as caught:
        match_key_secret()
    assert isinstance(caught.value, MatchKeyError)
    assert short not in str(caught.value)
    assert f"is {len(short.encode())} bytes" in str(caught.value)


def test_sixteen_bytes_accepted(no_key_env: pytest.MonkeyPatch) -> None:
    no_key_env.setenv("YORISOI_MATCH_KEY", "sixteen-bytes!!!")
    assert match_key_secret() == b"sixteen-bytes!!!"


def test_demo_key_file(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the file must be private whatever the umask
    try:
        path = ensure_demo_key(tmp_path / "keys" / "match_key")
    finally:
        os.umask(old_umask)
    assert path == tmp_path / "keys" / "match_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert len(content.strip()) == 64
    int(content, 16)  # hex
    assert ensure_demo_key(path) == path
    assert path.read_text() == content  # an existing key is kept
    no_key_env.setenv("YORISOI_MATCH_KEY_FILE", str(path))
    assert match_key_secret() == content.strip().encode()
    assert ensure_demo_key(tmp_path / "other").read_text() != content
