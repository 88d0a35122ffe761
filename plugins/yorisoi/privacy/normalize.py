"""Normalisation of Japanese D2C contact fields: scalar functions and their Arrow-vectorised twins.

Every `norm_x(value: str | None) -> str | None` has a `norm_x_arrow(values) -> pa.Array` built on
pyarrow.compute that returns the same value for every input (tests/privacy/test_normalize.py checks
both against each other and against golden vectors). All functions map None to None, return None
when nothing usable is left, and are idempotent.

Unicode versions: Python 3.11's `unicodedata` implements Unicode 14.0; Arrow's utf8proc is newer.
The two agree on every code point assigned in Unicode 14.0 (checked exhaustively in the tests) and
can differ only on characters assigned later, e.g. U+1E030 modifier letters that have an NFKC
mapping in Arrow only. Bulk normalisation runs in DuckDB, so the Arrow functions are the reference.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

ArrowStrings: TypeAlias = pa.Array | pa.ChunkedArray

__all__ = [
    "SPACE_CODEPOINTS",
    "ArrowStrings",
    "fold_kana",
    "fold_kana_arrow",
    "norm_email",
    "norm_email_arrow",
    "norm_kana",
    "norm_kana_arrow",
    "norm_name",
    "norm_name_arrow",
    "norm_phone",
    "norm_phone_arrow",
    "norm_postal",
    "norm_postal_arrow",
]

# Whitespace: every code point for which Python's str.isspace() is true (U+3000 ideographic space
# included), plus zero-width space and BOM, which copy-paste from web forms and Excel leaves behind.
# One list feeds both implementations: Python's `re` and Arrow's RE2 disagree on what `\s` means.
SPACE_CODEPOINTS: tuple[int, ...] = (
    *range(0x09, 0x0E),
    *range(0x1C, 0x21),
    0x85,
    0xA0,
    0x1680,
    *range(0x2000, 0x200C),  # U+2000–U+200A spaces, U+200B zero-width space
    0x2028,
    0x2029,
    0x202F,
    0x205F,
    0x3000,
    0xFEFF,
)
_SPACES = "".join(map(chr, SPACE_CODEPOINTS))
_SPACE_RE2 = "[" + "".join(f"\\x{{{cp:04X}}}" for cp in SPACE_CODEPOINTS) + "]"
_DELETE_SPACES = dict.fromkeys(SPACE_CODEPOINTS)

# Arrow's utf8_lower maps code point by code point (simple case mapping); Python's str.lower() uses
# full mappings and context (final sigma). Per code point they differ only for U+0130.
_LOWER_EXCEPTIONS = {"\u0130": "i"}

_EMAIL = "[^@]+@[^@]+"
_EMAIL_RE = re.compile(_EMAIL)

_NOT_PHONE_CHAR = "[^0-9+]"
_NOT_PHONE_CHAR_RE = re.compile(_NOT_PHONE_CHAR)
_NOT_DIGIT = "[^0-9]"
_NOT_DIGIT_RE = re.compile(_NOT_DIGIT)

# Phone fast path. phonenumbers.parse runs at about 45k values/s here (pure Python), far too slow for
# a column of millions; nearly every value in Japanese D2C data is a national number, for which the
# E.164 form is simply +81 and the digits without the trunk 0. The two patterns below accept only
# numbers for which that gives exactly phonenumbers' answer (tests/privacy/test_normalize.py proves
# it with hypothesis): 0 + 9 or 10 digits, except 00… (carrier prefixes phonenumbers rewrites) and
# 010… (Japan's international call prefix: 010 1 … is a North American number); and +81 followed
# by a national number without its trunk 0. Everything else goes through phonenumbers, per distinct
# value.
_JP_NATIONAL = "0(?:1[1-9]|[2-9][0-9])[0-9]{7,8}"
_JP_NATIONAL_RE = re.compile(_JP_NATIONAL)
_JP_E164 = r"\+81[1-9][0-9]{8,9}"
_JP_E164_RE = re.compile(_JP_E164)

_HIRAGANA_TO_KATAKANA = {cp: cp + 0x60 for cp in range(0x3041, 0x3097)}
_SMALL_TO_LARGE = {ord(s): ord(b) for s, b in zip("ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ", strict=True)}
# fold_kana in one pass: hiragana to katakana, then small to large.
_FOLD = {**{h: _SMALL_TO_LARGE.get(k, k) for h, k in _HIRAGANA_TO_KATAKANA.items()}, **_SMALL_TO_LARGE}


# --- scalar -------------------------------------------------------------------------------------


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _lower(value: str) -> str:
    if value.isascii():
        return value.lower()
    return "".join(_LOWER_EXCEPTIONS.get(c) or c.lower() for c in value)


def norm_email(value: str | None) -> str | None:
    """NFKC, trimmed, lowercased; None unless exactly one "@" with text on both sides."""
    if value is None:
        return None
    email = _lower(_nfkc(value).strip(_SPACES))
    return email if _EMAIL_RE.fullmatch(email) else None


def _phonenumbers_e164(cleaned: str) -> str | None:
    """E.164 by phonenumbers with Japan as the default region; None if unparseable or impossible."""
    try:
        number = phonenumbers.parse(cleaned, "JP")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def norm_phone(value: str | None) -> str | None:
    """E.164 (Japan as default region): NFKC, digits and a leading "+" kept; None if not a possible number."""
    if value is None:
        return None
    kept = _NOT_PHONE_CHAR_RE.sub("", _nfkc(value))
    digits = kept.replace("+", "")
    if not digits:
        return None
    cleaned = "+" + digits if kept.startswith("+") else digits
    if _JP_NATIONAL_RE.fullmatch(cleaned):
        return "+81" + cleaned[1:]
    if _JP_E164_RE.fullmatch(cleaned):
        return cleaned
    return _phonenumbers_e164(cleaned)


def _kana(value: str | None, table: dict[int, int]) -> str | None:
    if value is None:
        return None
    # NFC at the end re-composes what deletion and translation bring together: "か゛" is NFKC
    # "か ゙", and without the space "が" must become "が"; "わ゙" has no composed form but "ヷ" has.
    kana = unicodedata.normalize("NFC", _nfkc(value).translate(_DELETE_SPACES).translate(table))
    return kana or None


def norm_kana(value: str | None) -> str | None:
    """Furigana as full-width katakana: NFKC (half-width ｶﾞ -> ガ), hiragana -> katakana, no whitespace."""
    return _kana(value, _HIRAGANA_TO_KATAKANA)


def fold_kana(value: str | None) -> str | None:
    """norm_kana with small kana folded to large (ショウ, シヨウ -> シヨウ): for matching, never display."""
    return _kana(value, _FOLD)


def norm_postal(value: str | None) -> str | None:
    """Japanese postal code as 7 ASCII digits ("〒１２３－４５６７" -> "1234567"); None otherwise."""
    if value is None:
        return None
    digits = _NOT_DIGIT_RE.sub("", _nfkc(value))
    return digits if len(digits) == 7 else None


def norm_name(value: str | None) -> str | None:
    """NFKC with all whitespace removed ("山田　太郎" -> "山田太郎"); None if empty."""
    if value is None:
        return None
    name = unicodedata.normalize("NFC", _nfkc(value).translate(_DELETE_SPACES))
    return name or None


# --- Arrow --------------------------------------------------------------------------------------


def _strings(values: ArrowStrings) -> ArrowStrings:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    return values.cast(pa.string())


def _null_like(values: ArrowStrings) -> pa.Scalar:
    return pa.scalar(None, values.type)


def _per_chunk(fn: Callable[[pa.Array], pa.Array], values: ArrowStrings) -> ArrowStrings:
    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([fn(chunk) for chunk in values.chunks], type=values.type)
    return fn(values)


def _translate_u30xx(values: pa.Array, table: np.ndarray) -> pa.Array:
    """Map code points U+3000–U+30FF through `table` (index and value: code point - 0x3000).

    Arrow has no per-character translate kernel (86 replace_substring passes cost as much as a Python
    loop), so this rewrites the UTF-8 bytes directly: U+3000–U+30FF are exactly the sequences
    E3 80..83 xx, 0xE3 can only be a lead byte, and the mapping keeps every byte length.
    """
    validity, offsets, data = values.buffers()
    if data is None or data.size < 3:
        return values
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    lead = np.flatnonzero(buf[:-2] == 0xE3)
    lead = lead[buf[lead + 1] <= 0x83]  # continuation bytes are >= 0x80
    index = ((buf[lead + 1].astype(np.intp) & 0x3F) << 6) | (buf[lead + 2] & 0x3F)
    mapped = table[index]
    buf[lead + 1] = 0x80 | (mapped >> 6)
    buf[lead + 2] = 0x80 | (mapped & 0x3F)
    return pa.Array.from_buffers(
        values.type, len(values), [validity, offsets, pa.py_buffer(buf)], values.null_count, values.offset
    )


def _u30xx_table(mapping: dict[int, int]) -> np.ndarray:
    table = np.arange(0x100, dtype=np.uint16)
    for src, dst in mapping.items():
        table[src - 0x3000] = dst - 0x3000
    return table.astype(np.uint8)


_HIRAGANA_TO_KATAKANA_TABLE = _u30xx_table(_HIRAGANA_TO_KATAKANA)
_FOLD_TABLE = _u30xx_table(_FOLD)


def norm_email_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised norm_email."""
    values = _strings(values)
    email = pc.utf8_lower(pc.utf8_trim(pc.utf8_normalize(values, "NFKC"), _SPACES))
    return pc.if_else(pc.match_substring_regex(email, f"^{_EMAIL}$"), email, _null_like(values))


def norm_phone_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised norm_phone: JP fast path in Arrow, phonenumbers once per distinct remaining value."""
    values = _strings(values)
    null = _null_like(values)
    kept = pc.replace_substring_regex(pc.utf8_normalize(values, "NFKC"), _NOT_PHONE_CHAR, "")
    digits = pc.replace_substring(kept, "+", "")
    cleaned = pc.if_else(pc.starts_with(kept, "+"), pc.utf8_replace_slice(digits, 0, 0, "+"), digits)
    national = pc.match_substring_regex(cleaned, f"^{_JP_NATIONAL}$")
    e164 = pc.match_substring_regex(cleaned, f"^{_JP_E164}$")
    fast = pc.if_else(national, pc.utf8_replace_slice(cleaned, 0, 1, "+81"), pc.if_else(e164, cleaned, null))
    slow = pc.and_(pc.invert(pc.or_(national, e164)), pc.not_equal(digits, ""))
    misses = pc.unique(pc.filter(cleaned, pc.fill_null(slow, False)))
    if len(misses) == 0:
        return fast
    answers = pa.array([_phonenumbers_e164(v) for v in misses.to_pylist()], type=values.type)
    # A value's path depends on the value alone, so fast-path rows are never in `misses`.
    return pc.coalesce(fast, pc.take(answers, pc.index_in(cleaned, value_set=misses)))


def _kana_arrow(values: ArrowStrings, table: np.ndarray) -> ArrowStrings:
    values = _strings(values)
    squeezed = pc.replace_substring_regex(pc.utf8_normalize(values, "NFKC"), _SPACE_RE2, "")
    kana = pc.utf8_normalize(_per_chunk(lambda chunk: _translate_u30xx(chunk, table), squeezed), "NFC")
    return pc.if_else(pc.not_equal(kana, ""), kana, _null_like(values))


def norm_kana_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised norm_kana."""
    return _kana_arrow(values, _HIRAGANA_TO_KATAKANA_TABLE)


def fold_kana_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised fold_kana."""
    return _kana_arrow(values, _FOLD_TABLE)


def norm_postal_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised norm_postal."""
    values = _strings(values)
    digits = pc.replace_substring_regex(pc.utf8_normalize(values, "NFKC"), _NOT_DIGIT, "")
    return pc.if_else(pc.equal(pc.utf8_length(digits), 7), digits, _null_like(values))


def norm_name_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised norm_name."""
    values = _strings(values)
    squeezed = pc.replace_substring_regex(pc.utf8_normalize(values, "NFKC"), _SPACE_RE2, "")
    name = pc.utf8_normalize(squeezed, "NFC")
    return pc.if_else(pc.not_equal(name, ""), name, _null_like(values))
