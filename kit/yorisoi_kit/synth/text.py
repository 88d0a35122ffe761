"""Vectorised string building and the real-world mess applied to it.

Strings are built with pyarrow compute kernels over whole columns, never per row in Python.
Text is drawn from small pools (names, towns, domains) by index, so the few conversions that have
no kernel (katakana to half-width, via jaconv) run once per pool entry, not once per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import jaconv
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FULLWIDTH_DIGITS = "０１２３４５６７８９"


def pool(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return values.take(pa.array(idx))


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate columns and literals element-wise."""
    return pc.binary_join_element_wise(*parts, "")


def digits(values: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal text of non-negative integers."""
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width=width, padding="0")


def where(mask: np.ndarray, a: pa.Array | str, b: pa.Array | str) -> pa.Array:
    return pc.if_else(pa.array(mask), a, b)


def choose(rng: np.random.Generator, n: int, options: Sequence[str], p: Sequence[float]) -> pa.Array:
    return take(pool(options), rng.choice(len(options), size=n, p=np.asarray(p) / np.sum(p)))


def fullwidth_digits(values: pa.Array) -> pa.Array:
    """０９０－１２３４: digits and hyphens typed with a Japanese IME in full-width mode."""
    for i, ch in enumerate(FULLWIDTH_DIGITS):
        values = pc.replace_substring(values, str(i), ch)
    return pc.replace_substring(values, "-", "－")


def halfwidth_kana(values: Sequence[str]) -> list[str]:
    """ﾔﾏﾀﾞ ﾀﾛｳ: half-width katakana as old POS and back-office systems store it.

    No pyarrow kernel narrows katakana, so this runs on the (small) name pools only.
    """
    return [jaconv.z2h(v, kana=True, ascii=True, digit=True) for v in values]


def big_kana(values: pa.Array) -> pa.Array:
    """シヨウ for ショウ: legacy systems that cannot store small kana."""
    for small, big in zip("ャュョッァィゥェォ", "ヤユヨツアイウエオ", strict=True):
        values = pc.replace_substring(values, small, big)
    return values


def hiragana(values: pa.Array) -> pa.Array:
    """やまだ for ヤマダ: kana typed without converting to katakana (ー and other marks stay).

    Katakana ァ..ヶ (U+30A1–30F6) sit 0x60 above their hiragana, so the column becomes a
    (rows × width) UTF-32 code-point matrix and one masked subtraction converts every row.
    """
    valid = pc.is_valid(values)
    text = np.array(pc.fill_null(values, "").to_numpy(zero_copy_only=False), dtype=np.str_)
    points = text.view(np.uint32)  # shares memory with `text`
    points[(points >= 0x30A1) & (points <= 0x30F6)] -= 0x60
    return pc.if_else(valid, pa.array(text, type=pa.string()), pa.scalar(None, pa.string()))


def typo(rng: np.random.Generator, emails: pa.Array) -> pa.Array:
    """Drop or double one character of an email's local part: the typos of a sign-up form.

    Emails are ASCII, so the column becomes a (rows × width) byte matrix and every row's edit is
    one gather with a per-row index shift.
    """
    raw = np.array(emails.to_numpy(zero_copy_only=False), dtype=np.bytes_)
    width = raw.dtype.itemsize + 1
    mat = np.zeros((len(raw), width), dtype=np.uint8)
    mat[:, : width - 1] = raw.view(np.uint8).reshape(len(raw), width - 1)
    at = np.argmax(mat == ord("@"), axis=1)
    pos = (rng.random(len(raw)) * np.maximum(at - 1, 1)).astype(np.int64) + 1
    col = np.arange(width)[None, :]
    drop = rng.random(len(raw)) < 0.5
    shift = np.where(drop[:, None], col >= pos[:, None], -(col > pos[:, None]).astype(np.int64))
    src = np.clip(col + shift, 0, width - 1)
    out = np.take_along_axis(mat, src, axis=1)
    return pa.array(out.view(f"S{width}").ravel().astype(str))


def random_hex(rng: np.random.Generator, n: int, nbytes: int) -> pa.Array:
    """Lower-case hex strings from the seeded generator (LINE user IDs, anonymous IDs)."""
    big = rng.integers(0, 256, size=n * nbytes, dtype=np.uint8).tobytes().hex().encode("ascii")
    return pa.array(np.frombuffer(big, dtype=f"S{2 * nbytes}").astype(str))
