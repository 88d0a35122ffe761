"""Normalisation (yorisoi.privacy.normalize): golden vectors, idempotence, scalar == Arrow, and the
phone fast path against phonenumbers."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yorisoi.privacy import normalize
from yorisoi.privacy.normalize import (
    fold_kana,
    fold_kana_arrow,
    norm_email,
    norm_email_arrow,
    norm_kana,
    norm_kana_arrow,
    norm_name,
    norm_name_arrow,
    norm_phone,
    norm_phone_arrow,
    norm_postal,
    norm_postal_arrow,
)

PAIRS: dict[str, tuple[Callable[[str | None], str | None], Callable]] = {
    "norm_email": (norm_email, norm_email_arrow),
    "norm_phone": (norm_phone, norm_phone_arrow),
    "norm_kana": (norm_kana, norm_kana_arrow),
    "fold_kana": (fold_kana, fold_kana_arrow),
    "norm_postal": (norm_postal, norm_postal_arrow),
    "norm_name": (norm_name, norm_name_arrow),
}

GOLDEN = [
    ("norm_email", "ＴＡＲＯ＠Example.COM ", "taro@example.com"),
    ("norm_email", "\u3000Hanako.Sato+shop@Mail.Example.JP\t", "hanako.sato+shop@mail.example.jp"),
    ("norm_email", "taro@example.com", "taro@example.com"),
    ("norm_email", "taro@@example.com", None),
    ("norm_email", "taro@example@com", None),
    ("norm_email", "taroexample.com", None),
    ("norm_email", "@example.com", None),
    ("norm_email", "taro@", None),
    ("norm_email", "　", None),
    ("norm_email", "", None),
    ("norm_email", None, None),
    ("norm_phone", "０９０－１２３４－５６７８", "+819012345678"),
    ("norm_phone", "(03)1234-5678", "+81312345678"),
    ("norm_phone", "（０３）１２３４－５６７８", "+81312345678"),
    ("norm_phone", "090 1234 5678", "+819012345678"),
    ("norm_phone", "+81 90-1234-5678", "+819012345678"),
    ("norm_phone", "09012345678", "+819012345678"),
    ("norm_phone", "tel: 090.1234.5678", "+819012345678"),
    ("norm_phone", "0120-123-456", "+81120123456"),
    ("norm_phone", "011-234-5678", "+81112345678"),
    ("norm_phone", "+81 (0)90-1234-5678", "+819012345678"),  # slow path: phonenumbers drops the trunk 0
    ("norm_phone", "+1 650-253-0000", "+16502530000"),  # slow path: not Japanese
    ("norm_phone", "010-1-650-253-0000", "+16502530000"),  # 010 is Japan's international prefix
    ("norm_phone", "12", None),  # too short to be possible
    ("norm_phone", "+", None),
    ("norm_phone", "abc", None),
    ("norm_phone", "", None),
    ("norm_phone", None, None),
    ("norm_kana", "ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダタロウ"),
    ("norm_kana", "やまだ　たろう", "ヤマダタロウ"),
    ("norm_kana", "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ", "パピプペポ"),
    ("norm_kana", "ｼｮｳ", "ショウ"),
    ("norm_kana", "ゔぁゕゖ", "ヴァヵヶ"),
    ("norm_kana", "か゛", "ガ"),  # spacing dakuten, NFKC " ゙", composed once the space is gone
    ("norm_kana", "わ\u3099", "ヷ"),  # no composed hiragana, but a composed katakana
    ("norm_kana", " \t\u3000", None),
    ("norm_kana", "", None),
    ("norm_kana", None, None),
    ("fold_kana", "ｼｮｳ", "シヨウ"),
    ("fold_kana", "シヨウ", "シヨウ"),
    ("fold_kana", "しょう", "シヨウ"),
    ("fold_kana", "ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ"),
    ("fold_kana", "ぁぃぅぇぉっゃゅょゎゕゖ", "アイウエオツヤユヨワカケ"),
    ("fold_kana", "ﾏｯｸ ｼﾞｮｰﾝｽﾞ", "マツクジヨーンズ"),
    ("fold_kana", "", None),
    ("fold_kana", None, None),
    ("norm_postal", "〒１２３－４５６７", "1234567"),
    ("norm_postal", "123-4567", "1234567"),
    ("norm_postal", "1234567", "1234567"),
    ("norm_postal", "123-456", None),
    ("norm_postal", "123-45678", None),
    ("norm_postal", "東京都", None),
    ("norm_postal", "", None),
    ("norm_postal", None, None),
    ("norm_name", "山田　太郎", "山田太郎"),
    ("norm_name", "山田 太郎", "山田太郎"),
    ("norm_name", "山田太郎", "山田太郎"),
    ("norm_name", " 山田\u200b太郎\n", "山田太郎"),
    ("norm_name", "ﾔﾏﾀﾞ　ﾀﾛｳ", "ヤマダタロウ"),
    ("norm_name", "Ｊｏｈｎ Ｓｍｉｔｈ", "JohnSmith"),
    ("norm_name", "\u3000", None),
    ("norm_name", "", None),
    ("norm_name", None, None),
]


@pytest.mark.parametrize(("name", "value", "expected"), GOLDEN)
def test_golden_vectors(name: str, value: str | None, expected: str | None) -> None:
    scalar, vectorised = PAIRS[name]
    assert scalar(value) == expected
    assert vectorised(pa.array([value], pa.string())).to_pylist() == [expected]


def test_golden_vectors_in_one_array() -> None:
    for name, (_, vectorised) in PAIRS.items():
        rows = [(value, expected) for n, value, expected in GOLDEN if n == name]
        values = [value for value, _ in rows]
        assert vectorised(pa.array(values, pa.string())).to_pylist() == [expected for _, expected in rows]


# Text a Japanese D2C form receives: kana in every width, full-width digits and punctuation, spaces.
JAPANESE_ALPHABET = "".join(
    [
        *map(chr, range(0x3041, 0x3097)),  # hiragana
        *map(chr, range(0x3099, 0x309F)),  # (semi-)voiced marks, iteration marks
        *map(chr, range(0x30A1, 0x30FF)),  # katakana
        *map(chr, range(0xFF61, 0xFFA0)),  # half-width katakana and punctuation
        *map(chr, range(0xFF10, 0xFF1A)),  # full-width digits
        "ＡＢＣａｂｃ＠＋－（）〒ー・　 \t\n\u200b山田太郎髙﨑",
        "abcXYZ0123456789@+-().",
    ]
)
japanese_text = st.text(alphabet=JAPANESE_ALPHABET, max_size=30)
# Code points assigned in Python's Unicode database (see the normalize module docstring).
assigned_text = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn")), max_size=30)


@pytest.mark.parametrize("name", PAIRS)
@given(value=st.one_of(st.text(), japanese_text))
@settings(max_examples=80)
def test_idempotent(name: str, value: str) -> None:
    scalar, vectorised = PAIRS[name]
    once = scalar(value)
    assert scalar(once) == once
    once_v = vectorised(pa.array([value], pa.string()))
    assert vectorised(once_v).to_pylist() == once_v.to_pylist()


@pytest.mark.parametrize("name", PAIRS)
@given(values=st.lists(st.one_of(st.none(), assigned_text, japanese_text), max_size=40))
@settings(max_examples=60)
def test_scalar_equals_vectorised(name: str, values: list[str | None]) -> None:
    scalar, vectorised = PAIRS[name]
    expected = [scalar(v) for v in values]
    assert vectorised(pa.array(values, pa.string())).to_pylist() == expected
    assert vectorised(pa.array(values, pa.large_string())).to_pylist() == expected
    chunked = pa.chunked_array([values[: len(values) // 2], values[len(values) // 2 :]], pa.string())
    assert vectorised(chunked).to_pylist() == expected


def test_building_blocks_agree_on_every_assigned_code_point() -> None:
    """NFKC, lowercase and the kana tables, code point by code point, Python against Arrow."""
    chars = [chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) not in ("Cs", "Cn")]
    array = pa.array(chars)
    assert pc.utf8_normalize(array, "NFKC").to_pylist() == [unicodedata.normalize("NFKC", c) for c in chars]
    assert pc.utf8_lower(array).to_pylist() == [normalize._lower(c) for c in chars]
    kana_block = [chr(cp) for cp in range(0x3000, 0x3100)]
    assert fold_kana_arrow(pa.array(kana_block)).to_pylist() == [fold_kana(c) for c in kana_block]
    assert norm_kana_arrow(pa.array(kana_block)).to_pylist() == [norm_kana(c) for c in kana_block]


def test_sliced_input_and_all_null_input() -> None:
    values = pa.array(["x", "ﾔﾏﾀﾞ", "やまだ", None, "ｼｮｳ"]).slice(1, 3)
    assert norm_kana_arrow(values).to_pylist() == ["ヤマダ", "ヤマダ", None]
    assert fold_kana_arrow(pa.array(["x", "ｼｮｳ"]).slice(1)).to_pylist() == ["シヨウ"]
    for _, vectorised in PAIRS.values():
        assert vectorised(pa.array([None, None])).to_pylist() == [None, None]
        assert vectorised(pa.array([], pa.string())).to_pylist() == []


def test_space_codepoints_are_pythons_whitespace_plus_zero_width() -> None:
    isspace = {cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()}
    assert set(normalize.SPACE_CODEPOINTS) == isspace | {0x200B, 0xFEFF}


# --- phone fast path against phonenumbers ---------------------------------------------------------


def phonenumbers_e164(text: str) -> str | None:
    """The reference: phonenumbers on the raw text, Japan as the default region."""
    try:
        number = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


digit = st.sampled_from("0123456789")
mobile = st.tuples(st.sampled_from(["070", "080", "090"]), st.text(digit, min_size=8, max_size=8)).map("".join)
# Landlines: area codes 01x (x ≠ 0: 010 is the international prefix) to 09x, then 9 digits in all.
AREA_PREFIXES = [f"0{a}{b}" for a in "123456789" for b in "0123456789" if a + b != "10"]
landline = st.tuples(st.sampled_from(AREA_PREFIXES), st.text(digit, min_size=7, max_size=7)).map("".join)
FULL_WIDTH = str.maketrans("0123456789-() +", "０１２３４５６７８９－（）　＋")


@st.composite
def rendered(draw: st.DrawFn, number: st.SearchStrategy[str]) -> str:
    """A national number as people type it: hyphens, brackets, spaces, full width, +81."""
    digits = draw(number)
    cut1 = draw(st.integers(2, 5))
    cut2 = draw(st.integers(cut1 + 1, len(digits) - 1))
    parts = [digits[:cut1], digits[cut1:cut2], digits[cut2:]]
    style = draw(st.sampled_from(["plain", "hyphen", "bracket", "space", "dot", "intl", "intl_hyphen"]))
    text = {
        "plain": digits,
        "hyphen": "-".join(parts),
        "bracket": f"({parts[0]}){parts[1]}-{parts[2]}",
        "space": " ".join(parts),
        "dot": ".".join(parts),
        "intl": "+81" + digits[1:],
        "intl_hyphen": "+81 " + "-".join([parts[0][1:], parts[1], parts[2]]),
    }[style]
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    return text


@given(text=st.one_of(rendered(mobile), rendered(landline)))
@settings(max_examples=100)
def test_fast_path_equals_phonenumbers_on_japanese_numbers(text: str) -> None:
    expected = phonenumbers_e164(text)
    assert expected is not None
    assert norm_phone(text) == expected
    assert norm_phone_arrow(pa.array([text])).to_pylist() == [expected]


@given(
    cleaned=st.one_of(
        st.from_regex(f"^{normalize._JP_NATIONAL}$", fullmatch=True),
        st.from_regex(f"^{normalize._JP_E164}$", fullmatch=True),
    )
)
@settings(max_examples=100)
def test_fast_path_equals_phonenumbers_on_its_whole_domain(cleaned: str) -> None:
    """Every value the fast path takes, not only realistic ones, gets phonenumbers' answer."""
    assert normalize._phonenumbers_e164(cleaned) == phonenumbers_e164(cleaned)
    assert norm_phone(cleaned) == phonenumbers_e164(cleaned)


def test_phonenumbers_runs_once_per_distinct_slow_value(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = normalize._phonenumbers_e164

    def spy(cleaned: str) -> str | None:
        seen.append(cleaned)
        return real(cleaned)

    monkeypatch.setattr(normalize, "_phonenumbers_e164", spy)
    values = [f"090-{i:04d}-5678" for i in range(1000)] + ["+1 650 253 0000"] * 3 + ["abc", None]
    result = norm_phone_arrow(pa.array(values)).to_pylist()
    assert result[:2] == ["+819000005678", "+819000015678"]
    assert result[1000:] == ["+16502530000"] * 3 + [None, None]
    assert seen == ["+16502530000"]
