"""People and households: who the brand's customers really are (the ground truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from faker.providers.address.ja_JP import Provider as AddressProvider
from faker.providers.person.ja_JP import Provider as PersonProvider

from . import config as c
from . import text as t
from .geography import PREFECTURES

# Faker's ja_JP pools, plus the spellings with 髙 and 﨑 (異体字) that real customer masters hold
# and that Shift_JIS cannot encode.
LAST_NAMES = [
    *PersonProvider.last_name_pairs,
    ("髙橋", "タカハシ", "Takahashi"),
    ("山﨑", "ヤマザキ", "Yamazaki"),
]
FIRST_F = list(PersonProvider.first_name_female_pairs)
FIRST_M = [*list(PersonProvider.first_name_male_pairs), ("翔太", "ショウタ", "Shota"), ("勝", "マサル", "Masaru")]
EMAIL_DOMAINS = {
    "gmail.com": 0.34,
    "yahoo.co.jp": 0.2,
    "icloud.com": 0.12,
    "docomo.ne.jp": 0.08,
    "ezweb.ne.jp": 0.05,
    "softbank.ne.jp": 0.04,
    "outlook.jp": 0.06,
    "hotmail.co.jp": 0.05,
    "nifty.com": 0.06,
}


def _weights(n: int, power: float = 0.8) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** power
    return w / w.sum()


def _distinct_in_household(
    rng: np.random.Generator, household: np.ndarray, female: np.ndarray, first_f: np.ndarray, first_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parents do not give a child their own first name, nor siblings the same one: redraw the
    first name of a later household member who repeats an earlier member's."""
    first_f, first_m = first_f.copy(), first_m.copy()
    for _ in range(20):
        name = np.where(female, first_f, len(FIRST_F) + first_m)
        key = household * (len(FIRST_F) + len(FIRST_M)) + name
        _, first_seen = np.unique(key, return_index=True)
        repeat = np.ones(len(key), dtype=bool)
        repeat[first_seen] = False
        if not repeat.any():
            break
        first_f[repeat & female] = rng.integers(0, len(FIRST_F), size=int((repeat & female).sum()))
        first_m[repeat & ~female] = rng.integers(0, len(FIRST_M), size=int((repeat & ~female).sum()))
    return first_f, first_m


def build_people(rng: np.random.Generator, n: int, as_of: int) -> pa.Table:
    """`n` people in households of one to four, with names, birthdays, addresses and contacts."""
    sizes = rng.choice([1, 2, 3, 4], size=n, p=[0.55, 0.25, 0.12, 0.08])
    household = np.repeat(np.arange(len(sizes)), sizes)[:n]
    first_of_household = np.r_[True, household[1:] != household[:-1]]
    rank_in_household = np.arange(n) - np.maximum.accumulate(np.where(first_of_household, np.arange(n), 0))
    n_households = int(household[-1]) + 1

    # Household-level: surname, prefecture, postal code, street address, landline.
    last_idx = rng.choice(len(LAST_NAMES), size=n_households, p=_weights(len(LAST_NAMES)))[household]
    pref_pop = np.array([p[2] for p in PREFECTURES], dtype=float)
    pref_idx_h = rng.choice(len(PREFECTURES), size=n_households, p=pref_pop / pref_pop.sum())
    lo = np.array([p[3] for p in PREFECTURES])[pref_idx_h]
    hi = np.array([p[4] for p in PREFECTURES])[pref_idx_h]
    postal_h = rng.integers(lo, hi + 1) * 10_000 + rng.integers(0, 10_000, size=n_households)
    city_h = rng.integers(0, len(AddressProvider.cities), size=n_households)
    town_h = rng.integers(0, len(AddressProvider.towns), size=n_households)
    chome_h = rng.integers(1, 8, size=n_households)
    ban_h = rng.integers(1, 30, size=n_households)
    go_h = rng.integers(1, 20, size=n_households)
    has_landline_h = rng.random(n_households) < c.P_HOUSEHOLD_LANDLINE
    area_h = rng.choice([3, 6, 45, 52, 92, 11, 22, 75], size=n_households)
    landline_h = rng.integers(1_000_000, 9_999_999, size=n_households)
    pref_idx = pref_idx_h[household]

    # Person-level.
    female = rng.random(n) < 0.7
    first_f = rng.choice(len(FIRST_F), size=n, p=_weights(len(FIRST_F), 0.5))
    first_m = rng.choice(len(FIRST_M), size=n, p=_weights(len(FIRST_M), 0.5))
    first_f, first_m = _distinct_in_household(rng, household, female, first_f, first_m)
    age = np.clip(rng.normal(44, 13, size=n), 18, 85)
    age = np.where(rank_in_household >= 2, np.clip(age - 25, 18, 85), age)  # children
    birth = (as_of - (age * 365.25 * c.DAY).astype(np.int64)) // c.DAY * c.DAY
    birth = birth - rng.integers(0, 365, size=n) * c.DAY

    last = [x[0] for x in LAST_NAMES]
    last_kana = [x[1] for x in LAST_NAMES]
    last_romaji = [x[2].lower() for x in LAST_NAMES]
    first_kanji = t.where(
        female,
        t.take(t.pool([x[0] for x in FIRST_F]), first_f),
        t.take(t.pool([x[0] for x in FIRST_M]), first_m),
    )
    first_kana = t.where(
        female,
        t.take(t.pool([x[1] for x in FIRST_F]), first_f),
        t.take(t.pool([x[1] for x in FIRST_M]), first_m),
    )
    first_romaji = t.where(
        female,
        t.take(t.pool([x[2].lower() for x in FIRST_F]), first_f),
        t.take(t.pool([x[2].lower() for x in FIRST_M]), first_m),
    )
    last_romaji_p = t.take(t.pool(last_romaji), last_idx)

    # Email: romaji name, a separator and digits; duplicates made unique with the person number.
    has_email = rng.random(n) < c.P_HAS_EMAIL
    sep = t.choose(rng, n, [".", "_", "", "-"], [0.4, 0.2, 0.3, 0.1])
    num = t.where(rng.random(n) < 0.75, t.digits(rng.integers(0, 10_000, size=n), 2), "")
    domains = t.choose(rng, n, list(EMAIL_DOMAINS), list(EMAIL_DOMAINS.values()))
    flip = rng.random(n) < 0.5
    local = t.where(flip, t.join(first_romaji, sep, last_romaji_p, num), t.join(last_romaji_p, sep, first_romaji, num))
    email = t.join(local, "@", domains)
    email = _make_unique(email, np.arange(n))
    changed = has_email & (rng.random(n) < c.P_CHANGED_EMAIL)
    old_domain = t.choose(rng, n, ["docomo.ne.jp", "ezweb.ne.jp", "softbank.ne.jp", "yahoo.co.jp"], [4, 3, 2, 1])
    email_old = t.join(last_romaji_p, first_romaji, t.digits(rng.integers(0, 1000, size=n), 3), "@", old_domain)
    email_old = _make_unique(email_old, np.arange(n) + n)

    has_mobile = rng.random(n) < c.P_HAS_MOBILE
    mobile = t.join(
        t.choose(rng, n, ["090", "080", "070"], [5, 4, 1]),
        "-",
        t.digits(rng.integers(0, 10_000, size=n), 4),
        "-",
        t.digits(rng.integers(0, 10_000, size=n), 4),
    )
    mobile = _make_unique(mobile, None, rng)
    area = area_h[household]
    local_no = landline_h[household]
    landline = t.join(
        "0",
        pa.array(area.astype(str)),
        "-",
        t.digits(local_no // 10_000 % (10 ** np.maximum(1, 5 - len_digits(area))), 1),
        "-",
        t.digits(local_no % 10_000, 4),
    )
    has_landline = has_landline_h[household]

    cities = t.pool(AddressProvider.cities)
    towns = t.pool(AddressProvider.towns)
    address = t.join(
        t.take(towns, town_h[household]),
        t.digits(chome_h[household], 1),
        "丁目",
        t.digits(ban_h[household], 1),
        "-",
        t.digits(go_h[household], 1),
    )

    return pa.table(
        {
            "person_id": np.arange(1, n + 1, dtype=np.int64),
            "household_id": household.astype(np.int64) + 1,
            "household_rank": rank_in_household.astype(np.int8),
            "last_name": t.take(t.pool(last), last_idx),
            "first_name": first_kanji,
            "last_kana": t.take(t.pool(last_kana), last_idx),
            "first_kana": first_kana,
            "last_romaji": last_romaji_p,
            "first_romaji": first_romaji,
            "gender": t.where(female, "F", "M"),
            "birth_date": birth.astype("datetime64[s]").astype("datetime64[D]"),
            "prefecture": t.take(t.pool([p[0] for p in PREFECTURES]), pref_idx),
            "prefecture_idx": pref_idx.astype(np.int16),
            "city": t.take(cities, city_h[household]),
            "postal_code": t.digits(postal_h[household], 7),
            "address": address,
            "email": pa.array(email.to_numpy(zero_copy_only=False), mask=~has_email),
            "email_old": pa.array(email_old.to_numpy(zero_copy_only=False), mask=~changed),
            "phone_mobile": pa.array(mobile.to_numpy(zero_copy_only=False), mask=~has_mobile),
            "phone_home": pa.array(landline.to_numpy(zero_copy_only=False), mask=~has_landline),
        }
    )


def len_digits(x: np.ndarray) -> np.ndarray:
    return np.floor(np.log10(np.maximum(x, 1))).astype(np.int64) + 1


def _duplicated(values: np.ndarray) -> np.ndarray:
    """True for every repeat of an earlier value (a hash-based pass, not a sort of strings)."""
    return pd.Series(values).duplicated().to_numpy()


def _make_unique(values: pa.Array, salt: np.ndarray | None, rng: np.random.Generator | None = None) -> pa.Array:
    """Make repeated values unique: later repeats get a salt appended to the local part (emails)
    or fresh digits (phones), so two people never share a personal address by accident. Repeats
    are rare (well under 1 %), so fixing them row by row costs nothing."""
    arr = values.to_numpy(zero_copy_only=False).astype(object)
    dup = _duplicated(arr)
    if not dup.any():
        return values
    if salt is not None:
        rows = np.flatnonzero(dup)
        arr[rows] = [v.replace("@", f"{s}@", 1) for v, s in zip(arr[rows], salt[rows], strict=True)]
        return pa.array(arr, type=pa.string())
    if rng is None:
        raise ValueError("phones need a generator to draw new numbers from")
    while dup.any():
        rows = np.flatnonzero(dup)
        arr[rows] = [f"{v[:4]}{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}" for v in arr[rows]]
        dup = _duplicated(arr)
    return pa.array(arr, type=pa.string())
