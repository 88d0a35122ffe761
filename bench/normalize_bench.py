"""Values/s of each yorisoi_* function over synthetic values: scalar Python, Arrow-vectorised, and
the UDF inside DuckDB.

    .venv/bin/python bench/normalize_bench.py [--n 1000000]

Inputs look like Japanese D2C form data: mixed widths, hyphens, brackets, ideographic spaces,
hiragana and half-width kana; about 1 % of phone numbers are not Japanese national numbers and take
phonenumbers' slow path. Values are mostly distinct, so per-distinct-value work is not flattered.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa

from yorisoi.privacy import normalize
from yorisoi.privacy.duckdb_udfs import register
from yorisoi.privacy.keys import hmac_sha256, hmac_sha256_arrow

SECRET = b"bench-secret-0123456789abcdef"
FULL_WIDTH = str.maketrans(
    "0123456789-()@ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "０１２３４５６７８９－（）＠ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ",
)
HIRAGANA = [chr(c) for c in range(0x3042, 0x3094)]
HALF_KATAKANA = [chr(c) for c in range(0xFF66, 0xFF9E)]
KANJI = list("山田太郎花子佐藤鈴木高橋田中伊藤渡辺中村小林加藤吉田山本松本井上木村林清水斎藤")


def synthetic(n: int, seed: int = 7) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n)

    def pick(options: list[str], size: int) -> np.ndarray:
        return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]

    def word(alphabet: list[str], lo: int, hi: int) -> list[str]:
        lengths = rng.integers(lo, hi, n)
        chars = pick(alphabet, int(lengths.sum()))
        cuts = np.cumsum(lengths)[:-1]
        return ["".join(part) for part in np.split(chars, cuts)]

    wide = rng.random(n) < 0.3
    domains = pick(["example.com", "Mail.Example.JP", "shop.example.co.jp", "EXAMPLE.NE.JP"], n)
    emails = [
        (f" Taro.{i}@{d}".translate(FULL_WIDTH) if w else f"taro.{i}@{d} ")
        for i, d, w in zip(ids, domains, wide, strict=True)
    ]

    style = rng.integers(0, 5, n)
    phones = []
    for i, s, w in zip(ids, style, wide, strict=True):
        number = f"0{rng.integers(7, 10)}0{i % 100_000_000:08d}" if s != 1 else f"0{3 + i % 6}{i % 100_000_000:08d}"
        text = [
            f"{number[:3]}-{number[3:7]}-{number[7:]}",
            f"({number[:2]}){number[2:6]}-{number[6:]}",
            number,
            f"+81 {number[1:3]} {number[3:7]} {number[7:]}",
            f"{number[:3]} {number[3:7]} {number[7:]}",
        ][s]
        if i % 100 == 0:
            text = f"+1 650 {i % 1000:03d} {i % 10000:04d}"  # slow path
        phones.append(text.translate(FULL_WIDTH) if w else text)

    hira = word(HIRAGANA, 2, 6)
    half = word(HALF_KATAKANA, 2, 6)
    kana = [f"{h}　{k}" if w else f"{k} {h}" for h, k, w in zip(hira, half, wide, strict=True)]
    postal = [
        (f"〒{i % 1000:03d}-{i % 10000:04d}".translate(FULL_WIDTH) if w else f"{i % 10_000_000:07d}")
        for i, w in zip(ids, wide, strict=True)
    ]
    family, given = word(KANJI, 1, 3), word(KANJI, 1, 3)
    names = [
        f"{f}　{g}{i % 97}" if w else f"{f} {g}{i % 97}" for f, g, i, w in zip(family, given, ids, wide, strict=True)
    ]
    return {
        "norm_email": emails,
        "norm_phone": phones,
        "norm_kana": kana,
        "fold_kana": kana,
        "norm_postal": postal,
        "norm_name": names,
        "match_key": [normalize.norm_email(e) for e in emails],
    }


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    n = parser.parse_args().n

    print(f"generating {n:,} values per function ...", flush=True)
    data = synthetic(n)
    conn = duckdb.connect()
    register(conn, SECRET)
    normalize.norm_email_arrow(pa.array(["warm-up"]))  # Arrow's compute registry starts on first use (~1 s)

    print(f"{'function':<13} {'scalar Python':>15} {'Arrow':>15} {'DuckDB UDF':>15}  (values/s)")
    for name, values in data.items():
        if name == "match_key":
            scalar = lambda v: hmac_sha256(v, SECRET)  # noqa: E731
            vectorised = lambda a: hmac_sha256_arrow(a, SECRET)  # noqa: E731
        else:
            scalar, vectorised = getattr(normalize, name), getattr(normalize, f"{name}_arrow")
        array = pa.array(values, pa.string())
        t_scalar, expected = timed(lambda: [scalar(v) for v in values])  # noqa: B023
        t_arrow, got = timed(lambda: vectorised(array))  # noqa: B023
        if got.to_pylist() != expected:
            raise SystemExit(f"{name}: Arrow and scalar results differ")
        conn.register("t", pa.table({"v": array}))
        t_duckdb, _ = timed(lambda: conn.execute(f"select count(yorisoi_{name}(v)) from t").fetchall())  # noqa: B023, S608
        conn.unregister("t")
        print(f"{name:<13} {n / t_scalar:>15,.0f} {n / t_arrow:>15,.0f} {n / t_duckdb:>15,.0f}", flush=True)
    conn.close()


if __name__ == "__main__":
    main()
