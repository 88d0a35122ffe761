"""Source accounts: the same person under a different identifier in every system, with the
mess of real customer masters (duplicates, typos, changed emails, family members, odd formats)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import config as c
from . import text as t
from .orders import EC, OMS, POS, SEGMENT_NAMES, Presence


@dataclass
class Account:
    """One kind of source account: its rows (sorted by creation), and which rows each person owns."""

    person_idx: np.ndarray  # owner of each account row
    created_at: np.ndarray
    is_duplicate: np.ndarray
    ids: np.ndarray  # numeric part of the identifier, increasing with creation time


@dataclass
class Accounts:
    ec: Account
    oms: Account
    pos: Account
    line: Account
    order_account: np.ndarray  # row index into ec/oms/pos accounts, per order
    line_link: np.ndarray  # per LINE account: row index of the linked e-commerce account, or -1
    line_linked_at: np.ndarray
    test_person: np.ndarray  # bool per person: staff test accounts


def _first_order_time(person: np.ndarray, at: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Earliest order time per person among masked orders (orders are sorted by person, time)."""
    first = np.full(n, -1, dtype=np.int64)
    p = person[mask]
    uniq, idx = np.unique(p, return_index=True)
    first[uniq] = at[mask][idx]
    return first


def _make_accounts(
    rng: np.random.Generator,
    owners: np.ndarray,
    first_order: np.ndarray,
    p_duplicate: float,
    start: int,
    as_of: int,
    lead_days: int,
) -> Account:
    """Primary accounts for `owners` (created before their first order in that system, or at a
    random time), plus duplicates opened later by a share of them."""
    fo = first_order[owners]
    created = np.where(
        fo >= 0,
        np.maximum(fo - rng.integers(0, lead_days * c.DAY + 1, size=len(owners)), start),
        rng.integers(start, as_of - c.DAY, size=len(owners)),
    )
    created = np.where(fo >= 0, np.minimum(created, fo), created)
    dup = rng.random(len(owners)) < p_duplicate
    d_owner = owners[dup]
    d_created = created[dup] + (rng.random(dup.sum()) * (as_of - c.DAY - created[dup])).astype(np.int64)
    person = np.concatenate([owners, d_owner])
    at = np.concatenate([created, d_created])
    is_dup = np.r_[np.zeros(len(owners), bool), np.ones(len(d_owner), bool)]
    order = np.lexsort((person, at))
    return Account(person[order], at[order], is_dup[order], np.arange(1, len(order) + 1, dtype=np.int64))


def _row_lookup(acc: Account, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per person: row of the primary account, row of the duplicate (-1) and its creation time."""
    primary = np.full(n, -1, dtype=np.int64)
    dup = np.full(n, -1, dtype=np.int64)
    rows = np.arange(len(acc.person_idx))
    primary[acc.person_idx[~acc.is_duplicate]] = rows[~acc.is_duplicate]
    dup[acc.person_idx[acc.is_duplicate]] = rows[acc.is_duplicate]
    dup_at = np.where(dup >= 0, acc.created_at[np.maximum(dup, 0)], np.iinfo(np.int64).max)
    return primary, dup, dup_at


def build_accounts(rng: np.random.Generator, pres: Presence, orders: pa.Table, start: int, as_of: int) -> Accounts:
    n = len(pres.segment)
    person = orders["person_idx"].to_numpy()
    at = orders["ordered_at"].to_numpy()
    src = orders["source"].to_numpy(zero_copy_only=False)
    src_code = np.select([src == "ecommerce", src == "oms"], [EC, OMS], POS)

    accounts = {}
    for code, p_dup, lead in (
        (EC, c.P_EC_DUPLICATE_ACCOUNT, 20),
        (OMS, c.P_OMS_DUPLICATE_CUSTOMER, 2),
        (POS, c.P_POS_REISSUED_CARD, 0),
    ):
        owners = np.flatnonzero(pres.in_source[:, code])
        first = _first_order_time(person, at, src_code == code, n)
        accounts[code] = _make_accounts(rng, owners, first, p_dup, start, as_of, lead)

    # Each order belongs to the account of its system; after a duplicate was opened, some
    # orders go to it (all of them for a reissued POS card: the old card is gone).
    order_account = np.full(len(person), -1, dtype=np.int64)
    for code, p_use_dup in ((EC, 0.6), (OMS, 0.5), (POS, 1.0)):
        primary, dup, dup_at = _row_lookup(accounts[code], n)
        m = src_code == code
        use_dup = (at[m] >= dup_at[person[m]]) & (rng.random(m.sum()) < p_use_dup)
        order_account[m] = np.where(use_dup, dup[person[m]], primary[person[m]])

    # LINE friends; some linked their LINE ID to their e-commerce account (ID連携).
    friends = np.flatnonzero(pres.line_friend)
    followed = rng.integers(start, as_of - c.DAY, size=len(friends))
    order = np.argsort(followed, kind="stable")
    line = Account(friends[order], followed[order], np.zeros(len(friends), bool), np.arange(1, len(friends) + 1))
    ec_primary, _, _ = _row_lookup(accounts[EC], n)
    link_row = ec_primary[line.person_idx]
    linked = (link_row >= 0) & (rng.random(len(friends)) < c.P_LINE_LINKED)
    linked_at = np.maximum(line.created_at, accounts[EC].created_at[np.maximum(link_row, 0)])
    linked_at = linked_at + (rng.random(len(friends)) * (as_of - linked_at) * 0.5).astype(np.int64)

    # Staff test accounts (test@example.com): people who never bought, with an e-commerce account.
    candidates = np.flatnonzero((SEGMENT_NAMES[pres.segment] == "none") & pres.in_source[:, EC])
    n_test = min(len(candidates), max(c.N_TEST_ACCOUNTS_MIN, n // 2000))
    test_person = np.zeros(n, dtype=bool)
    test_person[rng.choice(candidates, size=n_test, replace=False)] = True

    return Accounts(
        ec=accounts[EC],
        oms=accounts[OMS],
        pos=accounts[POS],
        line=line,
        order_account=order_account,
        line_link=np.where(linked, link_row, -1),
        line_linked_at=linked_at,
        test_person=test_person,
    )


# ---- the fields each system shows, with its own formats and mistakes -------------------------


def _phone_formats(rng: np.random.Generator, phone: pa.Array, style: str) -> pa.Array:
    """Render 090-1234-5678 the way a system stores it."""
    n = len(phone)
    bare = pc.replace_substring(phone, "-", "")
    if style == "pos":
        return bare
    if style == "ecommerce":
        e164 = t.join("+81", pc.utf8_slice_codeunits(bare, 1))
        kind = rng.choice(3, size=n, p=[0.4, 0.45, 0.15])
        return pc.if_else(pa.array(kind == 0), e164, pc.if_else(pa.array(kind == 1), phone, bare))
    # OMS: typed by operators.
    kind = rng.choice(5, size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    first_hyphen = pc.find_substring(phone, "-").to_numpy(zero_copy_only=False)
    bracketed = phone
    for width in np.unique(first_hyphen):
        sel = pa.array(first_hyphen == width)
        area = pc.utf8_slice_codeunits(phone, 0, int(width))
        rest = pc.utf8_slice_codeunits(phone, int(width) + 1)
        bracketed = pc.if_else(sel, t.join("(", area, ")", rest), bracketed)
    spaced = pc.replace_substring(phone, "-", " ")
    out = pc.if_else(pa.array(kind == 1), bare, phone)
    out = pc.if_else(pa.array(kind == 2), t.fullwidth_digits(phone), out)
    out = pc.if_else(pa.array(kind == 3), bracketed, out)
    return pc.if_else(pa.array(kind == 4), spaced, out)


def _postal_formats(rng: np.random.Generator, postal: pa.Array) -> pa.Array:
    n = len(postal)
    hyph = t.join(pc.utf8_slice_codeunits(postal, 0, 3), "-", pc.utf8_slice_codeunits(postal, 3))
    kind = rng.choice(4, size=n, p=[0.6, 0.25, 0.1, 0.05])
    out = pc.if_else(pa.array(kind == 1), postal, hyph)
    out = pc.if_else(pa.array(kind == 2), t.join("〒", hyph), out)
    return pc.if_else(pa.array(kind == 3), t.fullwidth_digits(hyph), out)


def _mask(values: pa.Array, keep: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))


# Shop accounts' フリガナ: the rest (~85 %) is full-width katakana as the cart asks for it.
P_EC_KANA_HIRAGANA = 0.08  # typed in hiragana
P_EC_KANA_MISSING = 0.07  # left empty (an optional field)


def ec_fields(rng: np.random.Generator, people: pa.Table, acc: Account, test_person: np.ndarray) -> dict:
    """Email, names and their フリガナ, phone and address of each e-commerce account."""
    p = pa.array(acc.person_idx)
    n = len(acc.person_idx)
    email = people["email"].take(p)
    fallback = t.join(people["last_romaji"].take(p), t.digits(acc.person_idx, 1), "@gmail.com")
    email = pc.coalesce(email, fallback)
    # A duplicate account is a typo of the address, or an older address of the same person.
    dup = acc.is_duplicate
    typo = t.typo(rng, email)
    older = pc.coalesce(people["email_old"].take(p), t.join("2nd.", email))
    email = pc.if_else(pa.array(dup), pc.if_else(pa.array(rng.random(n) < 0.5), typo, older), email)
    upper = rng.random(n) < 0.03
    email = pc.if_else(pa.array(upper), pc.utf8_capitalize(email), email)
    email = pc.if_else(pa.array(test_person[acc.person_idx]), "test@example.com", email)
    phone = pc.coalesce(people["phone_mobile"].take(p), people["phone_home"].take(p))
    phone = _mask(
        _phone_formats(rng, pc.coalesce(phone, "090-0000-0000"), "ecommerce"),
        (rng.random(n) < 0.7) & pc.is_valid(phone).to_numpy(zero_copy_only=False),
    )
    postal = people["postal_code"].take(p)
    # フリガナ, as Japanese carts ask for it: mostly katakana, sometimes typed in hiragana, and
    # missing where the field was optional. Drawn last, so the columns above keep their values.
    style = rng.random(n)
    as_hiragana = pa.array(style < P_EC_KANA_HIRAGANA)
    given = ~((style >= P_EC_KANA_HIRAGANA) & (style < P_EC_KANA_HIRAGANA + P_EC_KANA_MISSING))
    kana = {}
    for field, column in (("last_name_kana", "last_kana"), ("first_name_kana", "first_kana")):
        katakana = people[column].take(p)
        kana[field] = _mask(pc.if_else(as_hiragana, t.hiragana(katakana), katakana), given)
    return {
        "email": email,
        "first_name": people["first_name"].take(p),
        "last_name": people["last_name"].take(p),
        **kana,
        "phone": phone,
        "zip": t.join(pc.utf8_slice_codeunits(postal, 0, 3), "-", pc.utf8_slice_codeunits(postal, 3)),
        "province": people["prefecture"].take(p),
        "city": people["city"].take(p),
        "address1": people["address"].take(p),
    }


def oms_fields(rng: np.random.Generator, people: pa.Table, acc: Account) -> dict:
    """Customer master of the OMS, as typed by call-centre operators."""
    p = pa.array(acc.person_idx)
    n = len(acc.person_idx)
    kana = t.join(people["last_kana"].take(p), "　", people["first_kana"].take(p))
    narrow = rng.random(n) < 0.15
    half = t.pool(t.halfwidth_kana(np.unique(kana.to_numpy(zero_copy_only=False)).tolist()))
    uniq = pa.array(np.unique(kana.to_numpy(zero_copy_only=False)))
    half_kana = half.take(pc.index_in(kana, value_set=uniq))
    kana = pc.if_else(pa.array(narrow), half_kana, kana)
    kana = pc.if_else(pa.array(rng.random(n) < 0.05), t.big_kana(kana), kana)
    name_sep = t.choose(rng, n, ["　", " ", ""], [0.6, 0.3, 0.1])
    # Family orders: a member gives the household head's email (a trap for email matching).
    hh = people["household_id"].to_numpy()
    head = np.flatnonzero(people["household_rank"].to_numpy() == 0)
    head_of = head[np.searchsorted(hh[head], hh)]
    hh_size = np.bincount(hh)[hh]
    shared = (hh_size > 1) & (people["household_rank"].to_numpy() > 0)
    shared &= rng.random(len(hh)) < c.P_FAMILY_SHARED_EMAIL
    own_email = pc.coalesce(people["email_old"], people["email"])
    family_email = pc.if_else(
        pa.array(shared), pc.coalesce(people["email"].take(pa.array(head_of)), own_email), own_email
    )
    email = family_email.take(p)
    email = _mask(email, rng.random(n) < 0.45)
    style = rng.random(n)
    email = pc.if_else(pa.array(style < 0.05), pc.utf8_upper(email), email)
    email = pc.if_else(pa.array((style >= 0.05) & (style < 0.08)), pc.replace_substring(email, "@", "＠"), email)
    use_home = pc.is_valid(people["phone_home"].take(p)).to_numpy(zero_copy_only=False) & (rng.random(n) < 0.5)
    phone = pc.if_else(
        pa.array(use_home),
        people["phone_home"].take(p),
        pc.coalesce(people["phone_mobile"].take(p), people["phone_home"].take(p)),
    )
    phone = _mask(
        _phone_formats(rng, pc.coalesce(phone, "090-0000-0000"), "oms"),
        pc.is_valid(phone).to_numpy(zero_copy_only=False),
    )
    birth = pc.strftime(people["birth_date"].take(p), format="%Y-%m-%d")
    return {
        "name_kanji": t.join(people["last_name"].take(p), name_sep, people["first_name"].take(p)),
        "name_kana": kana,
        "phone": phone,
        "email": email,
        "postal_code": _postal_formats(rng, people["postal_code"].take(p)),
        "prefecture": people["prefecture"].take(p),
        "address": t.join(people["city"].take(p), people["address"].take(p)),
        "birth_date": _mask(birth, rng.random(n) < 0.7),
        "gender": pc.if_else(pa.array(rng.random(n) < 0.1), "U", people["gender"].take(p)),
    }


def pos_fields(rng: np.random.Generator, people: pa.Table, acc: Account) -> dict:
    """Member cards at the stores' POS: half-width kana, bare digits, rarely an email."""
    p = pa.array(acc.person_idx)
    n = len(acc.person_idx)
    kana = t.join(people["last_kana"].take(p), " ", people["first_kana"].take(p))
    uniq = pa.array(np.unique(kana.to_numpy(zero_copy_only=False)))
    half = t.pool(t.halfwidth_kana(uniq.to_pylist()))
    use_home = pc.is_valid(people["phone_home"].take(p)).to_numpy(zero_copy_only=False) & (rng.random(n) < 0.4)
    phone = pc.if_else(
        pa.array(use_home),
        people["phone_home"].take(p),
        pc.coalesce(people["phone_mobile"].take(p), people["phone_home"].take(p)),
    )
    return {
        "kana": half.take(pc.index_in(kana, value_set=uniq)),
        "phone": _mask(
            pc.replace_substring(pc.coalesce(phone, ""), "-", ""),
            pc.is_valid(phone).to_numpy(zero_copy_only=False),
        ),
        "birth_date": _mask(pc.strftime(people["birth_date"].take(p), format="%Y/%m/%d"), rng.random(n) < 0.9),
        "postal_code": people["postal_code"].take(p),
        "email": _mask(people["email"].take(p), rng.random(n) < 0.15),
    }
