# ruff: noqa: S608 - SQL is assembled from this module's table names, the fixed channel list and key kinds; the marks are bound parameters
"""Consent at the moment of sending (docs/reliability.md #16, docs/consent.md).

The consent marts (marts.deliverable_customers, marts.suppressed_contact_keys) are as current as
the last build of the customer layer; an opt-out can land in raw minutes later. The build
records, per raw table that carries consent, the latest `_loaded_at` among the rows it read
(marts.consent_build_marks). Before anything leaves, :func:`check` reads the rows landed in those
tables after their mark and turns every withdrawal among them into people and contact keys to
leave out, per channel:

- shop accounts (raw.ecommerce__customers): a row whose email or SMS marketing state is not
  `subscribed` (unsubscribed, or consent lost) for that channel; a staff test tag, every channel;
- the OMS customer master (raw.oms__customers): blacklisted, every channel; DM or call permission
  not 1, that channel (a mail permission switched off is not a withdrawal, as in the models);
- call-centre requests (raw.sftp__callcenter_requests): 配信停止 for the channel named (or all),
  発送停止 DM, 架電停止 calls, 削除依頼 and any unknown request type every channel; matched as
  the models match them (customer code, email, phone; the name alone when nothing else matches
  and no more than the identity's max_group_size records hold it);
- email-provider sends (raw.sftp__esp_sends): an unsubscribe, email, for the account it was sent
  to and every record with the same address (as the models do);
- LINE friend events (raw.sftp__line_friends): anything but a follow (an unfollow is a block), LINE.

Each withdrawal reaches the person its record belongs to (marts.bridge_customer_identities),
everyone holding a record with the same email or mobile number (intermediate.int_identity_records;
for a call-centre request, the models' matching) and its own contact values,
keyed like marts.suppressed_contact_keys, so a record that did not exist at the build is caught by
its email, phone, LINE ID or postal address. The check is conservative on purpose: a withdrawal
that a later opt-in in the same window overrides still holds until the next build.

When the check cannot prove consent is current it raises :class:`ConsentNotCurrent` with the
reason, and the circuit breaker refuses the export: no marks, a raw table that cannot be read, a
table with rows but no mark, or a column the check needs missing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from ...privacy.readings import COMMON_KANJI, VARIANT_KANJI
from ...transform import project_vars
from .membership import CONTACT_KEYS, table_exists, use_match_key

MARKS = "marts.consent_build_marks"
BRIDGE = "marts.bridge_customer_identities"
IDENTITY_RECORDS = "intermediate.int_identity_records"
SOURCES = (
    "ecommerce__customers",
    "oms__customers",
    "sftp__callcenter_requests",
    "sftp__esp_sends",
    "sftp__line_friends",
)
CHANNELS = tuple(CONTACT_KEYS)
_CHANNEL_ROWS = ", ".join(f"('{c}')" for c in CHANNELS)


class ConsentNotCurrent(RuntimeError):
    """The send-time check cannot prove that the consent the export uses is current."""


@dataclass
class LateOptOuts:
    """Withdrawals landed after the consent build: per channel, the people and contact keys
    to leave out, and what was read."""

    people: dict[str, frozenset[str]] = field(default_factory=dict)
    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    late_rows: dict[str, int] = field(default_factory=dict)
    marks: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0

    def people_on(self, channel: str) -> frozenset[str]:
        return self.people.get(channel, frozenset())

    def keys_on(self, channel: str) -> frozenset[str]:
        return self.keys.get(channel, frozenset())

    @property
    def withdrawals(self) -> int:
        return sum(len(v) for v in self.people.values())

    def summary(self) -> str:
        landed = sum(self.late_rows.values())
        return (
            f"{landed} consent rows landed since the build "
            f"({', '.join(f'{t} {n}' for t, n in self.late_rows.items() if n) or 'none'}): "
            f"{self.withdrawals} person-channel withdrawals left out, checked in {self.seconds:.2f} s"
        )

    def as_details(self) -> dict[str, Any]:
        return {
            "late_rows": self.late_rows,
            "marks": self.marks,
            "people": {c: len(p) for c, p in self.people.items()},
            "keys": {c: len(k) for c, k in self.keys.items()},
            "seconds": round(self.seconds, 3),
        }


def _key(kind: str, value: str) -> str:
    return f"yorisoi_match_key('{kind}|' || {value})"


def _key_case(*, email: str = "null", phone: str = "null", postal: str = "null", address: str = "null") -> str:
    """The keyed contact value of a raw row on channel `ch.channel`, as membership.CONTACT_KEYS
    keys a golden record's (NULL where the row has none)."""
    dm = f"yorisoi_norm_postal({postal}) || '|' || yorisoi_norm_name({address})"
    return (
        "case ch.channel "
        f"when 'email' then {_key('email', f'yorisoi_norm_email({email})')} "
        f"when 'sms' then {_key('phone', f'yorisoi_norm_phone({phone})')} "
        f"when 'call' then {_key('phone', f'yorisoi_norm_phone({phone})')} "
        f"when 'dm' then {_key('postal_address', dm)} "
        "end"
    )


def _late(alias: str, table: str) -> str:
    """Landed after the table's mark (every row when the build saw none)."""
    return f"{alias}._loaded_at > coalesce(cast($mark_{table} as timestamptz), '-infinity'::timestamptz)"


def _withdrawals(rows: str) -> str:
    """People and keys of withdrawal rows `rows` (channel, record_key, email, phone,
    contact_key; email and phone normalised): the person holding the record, and everyone
    holding a record with the same email or mobile number (the identity keys), as the models
    reach them (a record landed after the build belongs to nobody yet)."""
    return f"""
        with withdrawn as ({rows}),
        keyed as (
            select *, {_key("email", "email")} as email_key, {_key("phone", "phone")} as phone_key from withdrawn
        )
        select keyed.channel, b.person_id, keyed.contact_key
        from keyed left join {BRIDGE} as b on b.record_key = keyed.record_key
        union all
        select keyed.channel, b.person_id, null
        from keyed
        join {IDENTITY_RECORDS} as i on i.email_key = keyed.email_key
        join {BRIDGE} as b on b.record_key = i.record_key
        union all
        select keyed.channel, b.person_id, null
        from keyed
        join {IDENTITY_RECORDS} as i on i.mobile_key = keyed.phone_key
        join {BRIDGE} as b on b.record_key = i.record_key
    """


def _max_name_records() -> int:
    """The most records a name may be held by and still stand for a caller (the models'
    vars.identity.max_group_size in dbt_project.yml)."""
    return int(project_vars()["identity"]["max_group_size"])


def _queries() -> dict[str, str]:
    """Per raw table, the withdrawals among its late rows: channel, person_id, contact_key."""
    channels = f"(values {_CHANNEL_ROWS}) as ch(channel)"
    max_name_records = _max_name_records()
    oms_key = _key_case(email="r.email", phone="r.phone", postal="r.postal_code", address="r.address")
    return {
        "ecommerce__customers": _withdrawals(f"""
            select ch.channel, 'ecommerce:' || cast(r.id as varchar) as record_key,
                yorisoi_norm_email(r.email) as email, yorisoi_norm_phone(r.phone) as phone,
                {_key_case(email="r.email", phone="r.phone")} as contact_key
            from raw.ecommerce__customers as r
            cross join {channels}
            where {_late("r", "ecommerce__customers")}
              and ((ch.channel = 'email' and r.email_marketing_state is distinct from 'subscribed')
                or (ch.channel = 'sms' and r.sms_marketing_state is distinct from 'subscribed')
                or coalesce(lower(r.tags) like '%test%', false))
        """),
        "oms__customers": _withdrawals(f"""
            select ch.channel, 'oms:' || r.customer_id as record_key,
                yorisoi_norm_email(r.email) as email, yorisoi_norm_phone(r.phone) as phone,
                {oms_key} as contact_key
            from raw.oms__customers as r
            cross join {channels}
            where {_late("r", "oms__customers")}
              and (coalesce(r.blacklisted, false)
                or (ch.channel = 'dm' and r.dm_permission is distinct from true)
                or (ch.channel = 'call' and r.call_permission is distinct from true))
        """),
        "sftp__callcenter_requests": f"""
            with requests as (
                select
                    request_no,
                    nullif(upper(trim(customer_code)), '') as code,
                    yorisoi_norm_email(email) as email,
                    yorisoi_norm_phone(phone) as phone,
                    {_key("name", f"translate(yorisoi_norm_name(name), '{VARIANT_KANJI}', '{COMMON_KANJI}')")}
                        as name_key,
                    channel as requested,
                    request_type
                from raw.sftp__callcenter_requests as r
                where {_late("r", "sftp__callcenter_requests")}
            ),
            stopped as (
                select requests.*, ch.channel
                from requests
                cross join {channels}
                where (request_type = '配信停止' and (requested = ch.channel or requested = 'all'))
                   or (request_type = '発送停止' and ch.channel = 'dm')
                   or (request_type = '架電停止' and ch.channel = 'call')
                   or request_type is null
                   or request_type not in ('配信停止', '発送停止', '架電停止')
            ),
            matched as (
                select requests.request_no, i.record_key from requests
                join {IDENTITY_RECORDS} as i on i.record_key = 'oms:' || requests.code
                union
                select requests.request_no, i.record_key from requests
                join {IDENTITY_RECORDS} as i on i.email_key = {_key("email", "requests.email")}
                union
                select requests.request_no, i.record_key from requests
                join {IDENTITY_RECORDS} as i on i.mobile_key = {_key("phone", "requests.phone")}
                union
                select requests.request_no, i.record_key from requests
                join {IDENTITY_RECORDS} as i on i.landline_key = {_key("phone", "requests.phone")}
            ),
            identifying_names as (
                select name_key from {IDENTITY_RECORDS}
                where name_key is not null
                group by name_key
                having count(*) <= {max_name_records}
            ),
            by_name as (
                select requests.request_no, i.record_key from requests
                join identifying_names as n on n.name_key = requests.name_key
                join {IDENTITY_RECORDS} as i on i.name_key = requests.name_key
                where requests.request_no not in (select request_no from matched)
            ),
            people as (
                select m.request_no, b.person_id
                from (select * from matched union select * from by_name) as m
                join {BRIDGE} as b on b.record_key = m.record_key
            )
            select ch.channel, people.person_id, null::varchar as contact_key
            from stopped as ch join people on people.request_no = ch.request_no
            union all
            select ch.channel, null::varchar, {_key_case(email="ch.email", phone="ch.phone")}
            from stopped as ch
        """,
        "sftp__esp_sends": _withdrawals(f"""
            select 'email' as channel, 'ecommerce:' || cast(r.ec_customer_id as varchar) as record_key,
                yorisoi_norm_email(r.email) as email, null::varchar as phone,
                {_key("email", "yorisoi_norm_email(r.email)")} as contact_key
            from raw.sftp__esp_sends as r
            where {_late("r", "sftp__esp_sends")} and r.unsubscribed_at is not null
        """),
        "sftp__line_friends": _withdrawals(f"""
            select 'line' as channel, 'line:' || r.line_user_id as record_key,
                null::varchar as email, null::varchar as phone,
                {_key("line_user_id", "r.line_user_id")} as contact_key
            from raw.sftp__line_friends as r
            where {_late("r", "sftp__line_friends")} and r.event is distinct from 'follow'
        """),
    }


_QUERIES = _queries()


def read_marks(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[datetime | None, int]]:
    """marts.consent_build_marks as {raw table: (loaded_through, rows_seen)}."""
    if not table_exists(con, "marts", "consent_build_marks"):
        raise ConsentNotCurrent(
            f"no consent build marks ({MARKS}): the consent marts' build did not record what it read; "
            "rebuild the customer layer before exporting"
        )
    try:
        rows = con.execute(f"select source_table, loaded_through, rows_seen from {MARKS}").fetchall()
    except duckdb.Error as e:
        raise ConsentNotCurrent(f"cannot read {MARKS}: {str(e).splitlines()[0]}") from e
    return {str(t): (at, int(n or 0)) for t, at, n in rows}


def check(con: duckdb.DuckDBPyConnection, secret: bytes | None = None) -> LateOptOuts:
    """The withdrawals landed since the consent build (see the module's docstring). Raises
    ConsentNotCurrent when that cannot be shown."""
    started = time.perf_counter()
    marks = read_marks(con)
    use_match_key(con, secret)
    result = LateOptOuts(marks={t: (None if m[0] is None else str(m[0])) for t, m in marks.items()})
    todo = []
    for table in SOURCES:
        present = table_exists(con, "raw", table)
        if table not in marks:
            if present and con.execute(f"select count(*) > 0 from raw.{table}").fetchall()[0][0]:
                raise ConsentNotCurrent(
                    f"raw.{table} holds consent rows but the build recorded no mark for it ({MARKS}): "
                    "cannot tell which landed after the build; rebuild the customer layer"
                )
            continue
        if not present:
            if marks[table][1]:
                raise ConsentNotCurrent(
                    f"raw.{table} cannot be read, yet the build read {marks[table][1]} rows from it: "
                    "cannot tell whether an opt-out landed since"
                )
            continue
        todo.append(table)
    if todo:
        for needed in (BRIDGE, IDENTITY_RECORDS):
            schema, name = needed.split(".")
            if not table_exists(con, schema, name):
                raise ConsentNotCurrent(f"{needed} is missing: cannot tell whom a late opt-out belongs to")
    people: dict[str, set[str]] = {c: set() for c in CHANNELS}
    keys: dict[str, set[str]] = {c: set() for c in CHANNELS}
    for table in todo:
        mark = marks[table][0]
        try:
            late = con.execute(
                f"select count(*) from raw.{table} as r where {_late('r', table)}", {f"mark_{table}": mark}
            ).fetchall()[0][0]
            result.late_rows[table] = int(late)
            if not late:
                continue
            rows = con.execute(_QUERIES[table], {f"mark_{table}": mark}).fetchall()
        except duckdb.Error as e:
            raise ConsentNotCurrent(
                f"cannot check the consent rows landed in raw.{table} since the build: {str(e).splitlines()[0]}"
            ) from e
        for channel, person_id, contact_key in rows:
            if person_id is not None:
                people[channel].add(str(person_id))
            if contact_key is not None:
                keys[channel].add(str(contact_key))
    result.people = {c: frozenset(p) for c, p in people.items() if p}
    result.keys = {c: frozenset(k) for c, k in keys.items() if k}
    result.seconds = time.perf_counter() - started
    return result


def empty_marks(con: duckdb.DuckDBPyConnection, seen: Mapping[str, int] | None = None) -> None:
    """Write marts.consent_build_marks with no landing time for each consent table (a warehouse
    written by hand, as tests do: every raw row present counts as landed after the build)."""
    seen = seen or {}
    con.execute("create schema if not exists marts")
    values = ", ".join(f"('{t}', null::timestamptz, {int(seen.get(t, 0))}, now())" for t in SOURCES)
    con.execute(
        "create or replace table marts.consent_build_marks as select * from (values "
        f"{values}) as m(source_table, loaded_through, rows_seen, marked_at)"
    )
