"""Erasure tombstones: keyed hashes of an erased person's keys, and the rows they mark.

An erasure (削除依頼, docs/privacy.md, docs/reliability.md #19) leaves one thing behind: a tombstone
per key the person held, in ``raw._erasure_tombstones``. A tombstone is HMAC-SHA256 (the match-key
secret of :mod:`.keys`) of ``erased|<normalised value>``, with the key's kind; the value itself is
never stored. Everything after the request is driven by the tombstones alone, so each step can run
again and a crash half-way loses nothing:

- the landing drops (or unlinks) incoming rows whose person link is tombstoned, before the lake
  file is written (:meth:`Tombstones.apply`, called by :class:`yorisoi.sources.landing.BatchWriter`);
- the purge finds the rows to remove in raw tables, lake files and kept drop files the same way;
- the verification hashes every value of every store and looks it up.

:data:`RULES` says, per raw table, which columns link a row to a person and what erasure does to
the row: ``delete`` it (records about the person: accounts, member cards, requests, LINE and
web events, email sends) or ``unlink`` it (orders, receipts, subscriptions: the person's link and
contact columns are emptied, the amounts stay, so sales totals and item counts stay right).
Only identifiers that are never reused link rows (account IDs, card numbers, LINE user IDs,
request numbers). An email address or a phone number does not: a person who signs up again after
erasure with the same address starts a new relationship, and another household member sharing a
landline keeps their records and, above all, their opt-outs.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .. import paths
from .keys import ENV_KEY, ENV_KEY_FILE, MIN_SECRET_BYTES, match_key_secret
from .normalize import ArrowStrings, fold_kana_arrow, norm_email_arrow, norm_name_arrow, norm_phone_arrow

__all__ = [
    "KINDS",
    "RULES",
    "STRONG_KINDS",
    "TOMBSTONES_DDL",
    "Link",
    "TableRule",
    "Tombstones",
    "erased_hash",
    "resolve_secret",
]

TOMBSTONES_DDL = """
create schema if not exists raw;
create table if not exists raw._erasure_tombstones (
    key_hash varchar, kind varchar, request_hash varchar, recorded_at timestamptz,
    primary key (key_hash, kind));
create table if not exists raw._erasures (
    request_no varchar primary key, requested_at timestamptz, keys bigint, status varchar,
    tombstoned_at timestamptz, purged_at timestamptz, details varchar);
"""

_PREFIX = "erased|"


def _text(values: ArrowStrings) -> ArrowStrings:
    """Values as trimmed text ('' counts as missing): IDs arrive as integers or strings."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _upper_id(values: ArrowStrings) -> ArrowStrings:
    return pc.utf8_upper(_text(values))


# Kind -> the normalisation applied before hashing (the same one on both sides of every lookup).
KINDS: dict[str, Callable[[ArrowStrings], ArrowStrings]] = {
    "person": _text,  # person_id (marts, snapshots, activation store)
    "record": _text,  # record_key, `<source>:<source id>` (identity tables)
    "ecommerce_customer": _text,
    "oms_customer": _upper_id,
    "member_card": _text,
    "line_user": _text,
    "callcenter_request": _text,
    "email": lambda v: norm_email_arrow(_text(v)),
    "phone": lambda v: norm_phone_arrow(_text(v)),
    "name": lambda v: norm_name_arrow(_text(v)),
    "kana": lambda v: fold_kana_arrow(norm_name_arrow(_text(v))),
}
# What a phone number can look like before normalisation: a leading 0 (national) or + (E.164),
# then digits (half or full width), dashes, brackets, dots and spaces, at least 9 digits in all.
_SEPARATORS = r"[\s\x{3000}+＋()（）.\-－‐―ー]*"
_PHONE_LIKE = rf"^[\s\x{{3000}}()（）]*[0０+＋]{_SEPARATORS}([0-9０-９]{_SEPARATORS}){{8,}}$"
# A hit on one of these is the erased person's data; a name alone may be a namesake.
STRONG_KINDS = frozenset(KINDS) - {"name", "kana"}


@dataclass(frozen=True)
class Link:
    """A column that ties a row to a person, and the kind of key it holds."""

    column: str
    kind: str


@dataclass(frozen=True)
class TableRule:
    """What erasure does to a raw table's rows that belong to an erased person.

    :param action: ``delete`` the row, or ``unlink`` it (empty the ``unlink`` columns).
    :param links: columns whose tombstoned value makes the row the person's.
    :param personal: column (or SQL expression) -> kind: values recorded as tombstones when the
        person is erased, so the verification can look for them (email, phone, names).
    :param unlink: columns emptied by ``unlink`` (the links and any contact column).
    """

    action: str
    links: tuple[Link, ...]
    personal: dict[str, str] = field(default_factory=dict)
    unlink: tuple[str, ...] = ()


def _links(**columns: str) -> tuple[Link, ...]:
    return tuple(Link(c, k) for c, k in columns.items())


# Raw table (raw.<source>__<table>) -> rule. Tables not listed hold no personal data (products,
# items, campaigns, order lines: an order line reaches a person only through its order).
RULES: dict[str, TableRule] = {
    "ecommerce__customers": TableRule(
        "delete",
        _links(id="ecommerce_customer"),
        {
            "email": "email",
            "phone": "phone",
            "concat_ws(' ', last_name, first_name)": "name",
            "concat_ws(' ', last_name_kana, first_name_kana)": "kana",
        },
    ),
    "ecommerce__orders": TableRule("unlink", _links(customer_id="ecommerce_customer"), unlink=("customer_id", "email")),
    "oms__customers": TableRule(
        "delete",
        _links(customer_id="oms_customer"),
        {"email": "email", "phone": "phone", "name": "name", "name_kana": "kana"},
    ),
    "oms__orders": TableRule("unlink", _links(customer_id="oms_customer"), unlink=("customer_id",)),
    "oms__subscriptions": TableRule("unlink", _links(customer_id="oms_customer"), unlink=("customer_id",)),
    "sftp__pos_members": TableRule(
        "delete", _links(card_no="member_card"), {"email": "email", "phone": "phone", "name_kana": "kana"}
    ),
    "sftp__pos_sales": TableRule("unlink", _links(card_no="member_card"), unlink=("card_no",)),
    "sftp__callcenter_requests": TableRule(
        "delete",
        _links(customer_code="oms_customer", request_no="callcenter_request"),
        {"email": "email", "phone": "phone", "name": "name"},
    ),
    "sftp__line_friends": TableRule("delete", _links(line_user_id="line_user")),
    "sftp__line_id_links": TableRule("delete", _links(line_user_id="line_user", ec_customer_id="ecommerce_customer")),
    "sftp__web_events": TableRule("delete", _links(ec_customer_id="ecommerce_customer")),
    "sftp__esp_sends": TableRule("delete", _links(ec_customer_id="ecommerce_customer"), {"email": "email"}),
    # SMS delivery receipts carry only the number they were sent to ("to" is an SQL keyword: the
    # `personal` keys are SQL expressions, so it is quoted there).
    "sms__messages": TableRule("delete", _links(to="phone"), {'"to"': "phone"}),
}


def resolve_secret() -> bytes:
    """The match-key secret (:func:`.keys.match_key_secret`); when none is configured, the
    embedded default's key file under var/keys/ if it exists (what `yorisoi dbt` and the demo use)."""
    configured = os.environ.get(ENV_KEY, "").strip() or os.environ.get(ENV_KEY_FILE, "").strip()
    demo = paths.match_key_file()
    if not configured and demo.exists():
        secret = demo.read_bytes().strip()
        if len(secret) >= MIN_SECRET_BYTES:
            return secret
    return match_key_secret()


def erased_hash(values: ArrowStrings, secret: bytes) -> ArrowStrings:
    """Tombstone hash of already-normalised values: hex HMAC-SHA256 of ``erased|<value>``, one
    HMAC per distinct value (Arrow has no HMAC kernel)."""
    distinct = pc.unique(values).drop_null()
    digests = pa.array(
        [hmac.digest(secret, (_PREFIX + v).encode("utf-8"), "sha256").hex() for v in distinct.to_pylist()],
        type=pa.string(),
    )
    return pc.take(digests, pc.index_in(values, value_set=distinct))


class Tombstones:
    """The tombstone hashes by kind, loaded once per batch or purge."""

    def __init__(self, hashes: dict[str, set[str]], secret: bytes | None):
        self.by_kind = {k: pa.array(sorted(v), type=pa.string()) for k, v in hashes.items() if v}
        self.secret = secret

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, secret: bytes | None) -> Tombstones:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = '_erasure_tombstones'"
        ).fetchone()[0]
        hashes: dict[str, set[str]] = {}
        if exists:
            for key_hash, kind in con.execute("select key_hash, kind from raw._erasure_tombstones").fetchall():
                hashes.setdefault(kind, set()).add(key_hash)
        return cls(hashes, secret)

    def __bool__(self) -> bool:
        return bool(self.by_kind)

    def kinds(self) -> set[str]:
        return set(self.by_kind)

    def hits(self, values: ArrowStrings, kind: str) -> pa.Array:
        """Boolean mask: the value, normalised for `kind`, is tombstoned (null -> False)."""
        wanted = self.by_kind.get(kind)
        if wanted is None or self.secret is None:
            return pa.array([False] * len(values), type=pa.bool_())
        mask = pc.fill_null(pc.is_in(erased_hash(KINDS[kind](values), self.secret), value_set=wanted), False)
        return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask

    def matches(self, rule: TableRule, table: pa.Table | pa.RecordBatch) -> pa.Array:
        """Rows of `table` linked by `rule` to an erased person."""
        mask = pa.array([False] * table.num_rows, type=pa.bool_())
        for link in rule.links:
            if link.column in table.column_names and link.kind in self.by_kind:
                mask = pc.or_(mask, self.hits(table[link.column], link.kind))
        return mask

    def apply(self, rule: TableRule, table: pa.Table) -> tuple[pa.Table, int]:
        """`table` without the erased person's rows (``delete``) or with their links emptied
        (``unlink``); also the number of rows affected."""
        if not self or table.num_rows == 0:
            return table, 0
        mask = self.matches(rule, table)
        n = pc.sum(mask).as_py() or 0
        if n == 0:
            return table, 0
        if rule.action == "delete":
            return table.filter(pc.invert(mask)), n
        for column in rule.unlink:
            if column in table.column_names:
                i = table.column_names.index(column)
                col = table[column]
                table = table.set_column(i, column, pc.if_else(mask, pa.scalar(None, col.type), col))
        return table, n

    def hit_values(self, values: Iterable[object], kinds: Iterable[str]) -> dict[str, set[str]]:
        """Of `values` (any type, e.g. every distinct value a scan found), those tombstoned under
        any of `kinds`, by kind: what the verification reports. Each normalisation is computed
        and hashed once, whatever the number of kinds sharing it; only values that could be a
        phone number go through phone parsing, only values with an @ through email's."""
        text = pc.unique(_text(pa.array([None if v is None else str(v) for v in values], type=pa.string())))
        text = text.drop_null()
        groups: dict[Callable[[ArrowStrings], ArrowStrings], list[str]] = {}
        for kind in kinds:
            if kind in self.by_kind and self.secret is not None:
                groups.setdefault(KINDS[kind], []).append(kind)
        found: dict[str, set[str]] = {}
        for normalise, group in groups.items():
            candidates = text
            if "phone" in group:
                candidates = pc.filter(text, pc.match_substring_regex(text, _PHONE_LIKE))
            elif "email" in group:
                candidates = pc.filter(text, pc.match_substring(text, "@"))
            if len(candidates) == 0:
                continue
            hashed = erased_hash(normalise(candidates), self.secret)
            for kind in group:
                hit = pc.filter(candidates, pc.fill_null(pc.is_in(hashed, value_set=self.by_kind[kind]), False))
                if len(hit):
                    found[kind] = set(hit.to_pylist())
        return found
