"""Readings (読み) of Japanese personal names, for comparing a name written in kanji with one in kana.

A shop account may carry only the kanji name (田中 裕樹) and a store card only the kana (ﾀﾅｶ ﾕｳｷ).
`name_readings` gives the candidate readings of a name as folded katakana (fold_kana: matching
form, small kana large), most likely first: the reading SudachiPy's tokenizer chooses (core
dictionary, split mode C: 田中 / 裕樹), then the other dictionary readings of the family name
(first morpheme) and the given name (last morpheme), e.g. 河野 裕子 -> コウノユウコ, カワノユウコ,
コウノヒロコ, ... A name already in kana reads as itself.

Chosen over pykakasi on the measured accuracy and speed on names (docs/identity.md): on the
Faker ja_JP name lists, full names read exactly 90 % vs 86 %, about 30,000 vs 1,800 names/s.
No reading dictionary knows every given name (陽翔 is read ハルト, ヒナト, アキト...): a reading is
evidence, and a mismatch only vetoes a link, never creates one.

Readings are computed once per distinct name; the Arrow function is what the DuckDB and Spark
UDFs call (yorisoi_name_readings), returning the candidates joined by "|" (at most MAX_READINGS).
"""

from __future__ import annotations

import itertools
import re
import threading
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from .normalize import ArrowStrings, fold_kana

__all__ = ["COMMON_KANJI", "MAX_READINGS", "SEPARATOR", "VARIANT_KANJI", "name_readings", "name_readings_arrow"]

MAX_READINGS = 4
SEPARATOR = "|"
_KANA_ONLY = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fc\u30fd\u30fe\u3005]+")
_SPACE = re.compile(r"\s+")
# Variant kanji (異体字) NFKC keeps apart but the dictionary only knows in their common form (the
# same list as the dbt macro fold_kanji, which folds them for name matching; the send-time consent
# check folds a call-centre request's name with these).
VARIANT_KANJI = "髙﨑嵜邊邉澤嶋濱廣德國齊齋"
COMMON_KANJI = "高崎崎辺辺沢島浜広徳国斉斎"
_VARIANTS = str.maketrans(VARIANT_KANJI, COMMON_KANJI)


_local = threading.local()


def _dictionary():
    """This thread's dictionary: a SudachiPy tokenizer must not be used by two threads at once,
    and DuckDB calls a UDF from several."""
    if not hasattr(_local, "dictionary"):
        from sudachipy import Dictionary

        _local.dictionary = Dictionary(dict="core")
    return _local.dictionary


def _tokenizer():
    if not hasattr(_local, "tokenizer"):
        from sudachipy import SplitMode

        _local.tokenizer = _dictionary().create(SplitMode.C)
    return _local.tokenizer


def _alternatives(surface: str, chosen: str) -> list[str]:
    """`chosen` first, then the dictionary's other readings of `surface` as a proper noun."""
    out = [chosen]
    for m in _dictionary().lookup(surface):
        if m.part_of_speech()[1] == "固有名詞" and m.reading_form() not in out:
            out.append(m.reading_form())
    return out


def name_readings(name: str | None) -> list[str]:
    """Candidate readings of `name`, most likely first, as folded katakana (see module doc)."""
    if name is None:
        return []
    text = _SPACE.sub("", unicodedata.normalize("NFKC", name)).translate(_VARIANTS)
    if not text:
        return []
    if _KANA_ONLY.fullmatch(text):
        return [fold_kana(text)]
    morphemes = list(_tokenizer().tokenize(text))
    chosen = [m.reading_form() for m in morphemes]
    if len(morphemes) == 1:
        parts = [_alternatives(morphemes[0].surface(), chosen[0])]
    else:
        middle = [[r] for r in chosen[1:-1]]
        parts = [
            _alternatives(morphemes[0].surface(), chosen[0]),
            *middle,
            _alternatives(morphemes[-1].surface(), chosen[-1]),
        ]
    readings: list[str] = []
    for combo in itertools.product(*parts):
        reading = fold_kana("".join(combo))
        if reading and _KANA_ONLY.fullmatch(reading) and reading not in readings:
            readings.append(reading)
        if len(readings) == MAX_READINGS:
            break
    return readings


def name_readings_arrow(values: ArrowStrings) -> ArrowStrings:
    """Vectorised name_readings, the candidates joined by SEPARATOR (null when there are none):
    computed once per distinct value."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    distinct = pc.unique(values)
    answers = pa.array(
        [SEPARATOR.join(name_readings(v)) or None for v in distinct.to_pylist()],
        type=values.type,
    )
    return pc.take(answers, pc.index_in(values, value_set=distinct))
