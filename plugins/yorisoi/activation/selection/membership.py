# ruff: noqa: S608 - SQL is assembled from validated identifiers (mart and column names checked against the marts' YAML, channel names from a fixed list) and this module's table names; values are bound parameters
"""Who is in an audience, in which group and variant, and the records each destination receives.

- **Group and variant** come from a keyed hash, HMAC-SHA256 under the project's match-key secret
  (yorisoi.privacy.keys) of the audience and the person ID: a person keeps their group (control or
  treatment) and variant from run to run, whoever else joins or leaves, and nobody without the
  secret can predict or recompute the split (docs/reliability.md #14: never a plain hash). The first 8
  bytes decide the group (control when below holdout_percent), the next 8 the variant (by the
  cumulative weights), so the variants' shares hold inside the treatment group.
- **Eligibility is computed when the export runs**, from the warehouse opened read-only: the
  selection ∩ the golden record (test accounts, blacklisted and erased people out, whatever the
  consent tables say) ∩ marts.deliverable_customers for the channel (docs/reliability.md #1: no consent,
  no send). A recipient key (email, phone, LINE ID) that any non-deliverable person also holds is
  left out too: a shared address whose other owner opted out is not written to.
- **A contact key any suppressed record holds is never sent to** (docs/reliability.md #16): the
  outgoing contact value of the channel (email, E.164 phone, LINE user ID, postal code with the
  address for paper mail), normalised and keyed like the warehouse's match keys, must not be in
  marts.suppressed_contact_keys, which holds the keys of every source record of every person
  who may not be contacted on the channel, not only their golden values.
- **Records** carry only the audience's columns for that destination, which validation already
  restricted to the destination's allow-list; the key goes in Record.key. A file export without
  raw contact data in its allow-list is scanned for anything that looks like an email address or
  phone number before it leaves (docs/reliability.md #14).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import paths
from ...privacy.duckdb_udfs import register as register_udfs
from ..delivery.destinations.base import Record
from .definitions import (
    CONTACT_FIELDS,
    FILE_KINDS,
    ORDER_FIELDS,
    RAW_CONTACT_FIELDS,
    Audience,
    DestinationConfig,
)

log = logging.getLogger(__name__)

ASSIGNMENT_DOMAIN = b"yorisoi.activation.assignment.v1"  # separates these hashes from match keys
CONTROL, TREATMENT = "control", "treatment"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
# A Japanese number has 10 or 11 digits from its leading 0, written solid or in three hyphenated
# groups; a postcode (7 digits, one hyphen: 060-0001 in Hokkaido starts with 0) is neither.
PHONE_RE = re.compile(r"(?:\+\d{9,15}\b|\b0\d{9,10}\b|\b0\d{1,4}-\d{1,4}-\d{3,4}\b)")
_LOCKED = ("Could not set lock", "Conflicting lock", "database is locked")
DELIVERABLE = "marts.deliverable_customers"  # 配信可能顧客: who may be contacted, per channel
SUPPRESSED_KEYS = "marts.suppressed_contact_keys"  # keys held by any suppressed source record
# channel -> (key type, the normalised value the channel reaches a person by, from a golden-record
# row `{t}`): keyed as match_key('<key type>', value), the same as the dbt model
# suppressed_contact_keys keys every source record.
CONTACT_KEYS: dict[str, tuple[str, str]] = {
    "email": ("email", "yorisoi_norm_email({t}.email)"),
    "sms": ("phone", "yorisoi_norm_phone({t}.phone)"),
    "call": ("phone", "yorisoi_norm_phone({t}.phone)"),
    "line": ("line_user_id", "{t}.line_user_id"),
    "dm": ("postal_address", "yorisoi_norm_postal({t}.postal_code) || '|' || yorisoi_norm_name({t}.address)"),
}


class MembershipError(RuntimeError):
    """The audience cannot be built (its SQL lacks a column, a record would leak contact data...)."""


# ---- the warehouse -------------------------------------------------------------------------------


def connect_warehouse(
    path: str | Path | None = None,
    *,
    attempts: int = 20,
    wait: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> duckdb.DuckDBPyConnection:
    """The warehouse, read-only, with file access switched off (an audience's SQL cannot read
    files). A writer (dbt) holds DuckDB's lock for a while: retry, then give up with the reason."""
    path = Path(path or paths.warehouse_path())
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: build it first (`yorisoi dbt build`)")
    for attempt in range(1, attempts + 1):
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as e:
            if not any(s in str(e) for s in _LOCKED) or attempt == attempts:
                raise
            sleep(min(wait * 2 ** (attempt - 1), 10.0))
            continue
        # the staging views call the normalisation UDFs dbt's plugin registers on its own
        # connections (stg_esp__sends, read for exit conditions): register them here too
        register_udfs(con)
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
        return con
    raise AssertionError("unreachable")


def contact_key_sql(channel: str, table: str) -> str:
    """SQL of the keyed contact value of golden-record row `table` on `channel` (NULL without one).
    Needs the yorisoi_* UDFs registered with the match-key secret (register_udfs(con, secret))."""
    key_type, value = CONTACT_KEYS[channel]
    return f"yorisoi_match_key('{key_type}|' || {value.format(t=table)})"


def use_match_key(con: duckdb.DuckDBPyConnection, secret: bytes | None) -> None:
    """The yorisoi_* UDFs on `con`, hashing with `secret` (None: the project's, read when first
    used). A cursor on a database whose catalog already has them (another cursor of the same
    in-memory database registered them) keeps those."""
    try:
        register_udfs(con, secret)
    except duckdb.CatalogException as e:
        if "already exists" not in str(e):
            raise


def held_keys_sql(con: duckdb.DuckDBPyConnection, channel: str) -> str:
    """SQL selecting the contact keys suppressed records hold on `channel` (a literal channel from
    CONTACT_KEYS); refuses when the mart is missing: without it no key can be proven clear."""
    if channel not in CONTACT_KEYS:
        raise MembershipError(f"unknown channel {channel!r}")
    if not table_exists(con, "marts", "suppressed_contact_keys"):
        raise MembershipError(
            f"{SUPPRESSED_KEYS} is missing: rebuild the customer layer before exporting (docs/reliability.md #16)"
        )
    return f"select contact_key from {SUPPRESSED_KEYS} where channel = '{channel}'"


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether `schema.table` (a table or a view) is in the connected database."""
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?", [schema, table]
        ).fetchall()[0][0]
        + con.execute(
            "select count(*) from duckdb_views() where schema_name = ? and view_name = ?", [schema, table]
        ).fetchall()[0][0]
    )


# ---- group and variant ---------------------------------------------------------------------------


def assign(person_ids: Sequence[str], audience: Audience, secret: bytes) -> pd.DataFrame:
    """`person_id, grp, variant` for each person (variant None in the control group): a pure
    function of (secret, audience name, person ID, holdout, variants)."""
    ids = pd.Series(pd.unique(pd.Series(person_ids, dtype="string").dropna()), dtype="string")
    if ids.empty:
        return pd.DataFrame(
            {
                "person_id": pd.Series(dtype="string"),
                "grp": pd.Series(dtype="string"),
                "variant": pd.Series(dtype="string"),
            }
        )
    prefix = ASSIGNMENT_DOMAIN + b"\x1f" + audience.name.encode("utf-8") + b"\x1f"
    digests = b"".join(hmac.digest(secret, prefix + p.encode("utf-8"), "sha256") for p in ids.tolist())
    words = np.frombuffer(digests, dtype=">u8").reshape(len(ids), 4)
    scale = float(2**64)
    u_group = words[:, 0].astype(np.float64) / scale
    u_variant = words[:, 1].astype(np.float64) / scale
    control = u_group < audience.holdout_share
    cumulative = np.cumsum([v.weight for v in audience.variants]) / 100.0
    idx = np.minimum(np.searchsorted(cumulative, u_variant, side="right"), len(audience.variants) - 1)
    names = np.array([v.name for v in audience.variants], dtype=object)
    variant = np.where(control, None, names[idx])
    return pd.DataFrame(
        {
            "person_id": ids.to_numpy(dtype=object),
            "grp": np.where(control, CONTROL, TREATMENT),
            "variant": variant,
        }
    )


# ---- the members ---------------------------------------------------------------------------------


@dataclass
class Members:
    """An audience's members for one run, before arbitration: `frame` has person_id, grp,
    variant and one boolean column per channel (`deliverable_<channel>`)."""

    audience: str
    frame: pd.DataFrame
    selected: int  # distinct people in the selection
    not_contactable: int  # selected but deliverable on none of the audience's channels (or no longer a person)
    duplicate_rows: int = 0  # selection rows beyond one per person (the first by all columns kept)
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def treatment(self, channel: str | None = None) -> pd.DataFrame:
        f = self.frame[self.frame["grp"] == TREATMENT]
        return f if channel is None else f[f[f"deliverable_{channel}"]]


def _selection_sql(audience: Audience) -> tuple[str, list[Any]]:
    sql, params = audience.selection.query()
    return f"select * from ({sql}) as selection", params


def eligible_members(audience: Audience, con: duckdb.DuckDBPyConnection, secret: bytes) -> Members:
    """The selection ∩ contactable people ∩ deliverable_customers on at least one of the
    audience's channels, each with a group and variant. Read when called (export time)."""
    sql, params = _selection_sql(audience)
    try:
        probe = con.execute(f"select * from ({sql}) limit 0", params)
        out_cols = [d[0] for d in probe.description]
        probe.fetchall()
    except duckdb.Error as e:
        raise MembershipError(f"audience {audience.name}: its selection failed: {str(e).splitlines()[0]}") from e
    if "person_id" not in out_cols:
        raise MembershipError(
            f"audience {audience.name}: its selection returns no person_id column (it has {out_cols})"
        )
    missing = [c for c in audience.selection_columns() if c not in out_cols]
    if missing:
        raise MembershipError(
            f"audience {audience.name}: columns {missing} are asked for but the selection returns only {out_cols}"
        )
    flags = ", ".join(
        f"coalesce(bool_or(deliverable.channel = '{ch}'), false) as deliverable_{ch}" for ch in audience.channels
    )
    channels = ", ".join(f"'{ch}'" for ch in audience.channels)
    query = f"""
        with selection as ({sql}),
        selected as (
            select distinct cast(person_id as varchar) as person_id from selection where person_id is not null
        ),
        people as (
            select person_id from marts.dim_customers
            where not coalesce(is_test_account, false)
              and not coalesce(is_blacklisted, false)
              and not coalesce(is_erased, false)
        ),
        deliverable as (
            select distinct person_id, channel from {DELIVERABLE} where channel in ({channels})
        )
        select selected.person_id, {flags}
        from selected
        join people using (person_id)
        join deliverable using (person_id)
        group by selected.person_id
        order by selected.person_id
    """
    frame = con.execute(query, params).df()
    counts = con.execute(
        f"select count(*), count(distinct person_id) from ({sql}) as s where person_id is not null", params
    ).fetchall()[0]
    rows, selected = int(counts[0]), int(counts[1])
    groups = assign(frame["person_id"].tolist(), audience, secret)
    frame = groups.merge(frame, on="person_id", how="left")
    frame["variant"] = frame["variant"].astype(object).where(frame["variant"].notna(), None)
    for ch in audience.channels:
        frame[f"deliverable_{ch}"] = frame[f"deliverable_{ch}"].astype(bool)
    return Members(
        audience=audience.name,
        frame=frame.reset_index(drop=True),
        selected=selected,
        not_contactable=selected - len(frame),
        duplicate_rows=rows - selected,
    )


# ---- records for a destination -------------------------------------------------------------------


@dataclass
class RecordSet:
    """The records for one destination, and why members were left out (counts by reason)."""

    audience: str
    destination: str
    channel: str
    records: list[Record]
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def person_ids(self) -> list[str]:
        return [r.person_id for r in self.records]


def scan_for_contact_data(records: Iterable[Record], destination: str, allowed: Iterable[str]) -> None:
    """Refuse records whose fields (not the key) hold something that looks like an email address
    or a phone number, unless the destination allows that column (docs/reliability.md #14)."""
    allowed = set(allowed)
    for r in records:
        for column, value in r.fields.items():
            if not isinstance(value, str) or column in allowed & RAW_CONTACT_FIELDS:
                continue
            if EMAIL_RE.search(value) or PHONE_RE.search(value):
                _refuse(
                    destination, column, r.person_id, "an email address" if EMAIL_RE.search(value) else "a phone number"
                )


def _refuse(destination: str, column: str, person_id: str, what: str) -> None:
    raise MembershipError(
        f"{destination}: column {column!r} of person {person_id} holds {what}, which this destination "
        "may not receive; export refused (docs/reliability.md #14)"
    )


def _scan_table(table: pa.Table, columns: Sequence[str], destination: str, allowed: set[str]) -> None:
    """scan_for_contact_data over Arrow columns at once (RE2, the same patterns)."""
    for column in columns:
        values = table.column(column)
        if column in allowed & RAW_CONTACT_FIELDS or not pa.types.is_string(values.type):
            continue
        for pattern, what in ((EMAIL_RE.pattern, "an email address"), (PHONE_RE.pattern, "a phone number")):
            hits = pc.fill_null(pc.match_substring_regex(values, pattern), False)
            if pc.any(hits).as_py():
                first = pc.index(hits, True).as_py()
                _refuse(destination, column, table.column("person_id")[first].as_py(), what)


def _plain_column(values: pa.ChunkedArray) -> list[Any]:
    """A column as plain JSON types: dates and times as ISO text, decimals as int or float."""
    t = values.type
    if pa.types.is_decimal(t):
        return pc.cast(values, pa.int64() if t.scale == 0 else pa.float64()).to_pylist()
    if pa.types.is_temporal(t):
        return [None if v is None else v.isoformat() for v in values.to_pylist()]
    return values.to_pylist()


def build_records(
    audience: Audience,
    destination: DestinationConfig,
    person_ids: Iterable[str],
    con: duckdb.DuckDBPyConnection,
    *,
    variants: Mapping[str, str | None] | None = None,
    key_field: str | None = None,
    secret: bytes | None = None,
    withdrawn: tuple[Collection[str], Collection[str]] = ((), ()),
) -> RecordSet:
    """Records for `destination` of the people in `person_ids` (the treatment members arbitration
    let through), re-checked now against deliverable_customers for the destination's channel.
    Only the audience's columns for this destination leave; the key is `key_field` (default the
    destination's). People without a key (no unshipped order for a 同梱物 list), keys that a
    non-deliverable person also holds, people whose contact value on the channel a suppressed
    record holds (marts.suppressed_contact_keys, keyed with `secret`, default the project's),
    `withdrawn` (people, contact keys) by an opt-out landed since the consent build (the
    send-time check, sendtime.check), and second holders of a key (the first person ID keeps it)
    are left out and counted in `dropped`. Set-based in DuckDB; one Record per row at the end."""
    channel = destination.channel
    key_field = key_field or destination.key_field
    columns = audience.destination_columns(destination.name)
    not_allowed = [c for c in columns if c not in destination.allowed_columns and c != key_field]
    if not_allowed:  # validation already refuses this; never send on if it was bypassed
        raise MembershipError(f"{audience.name} → {destination.name}: columns {not_allowed} are not allowed")
    asked = list(dict.fromkeys(str(p) for p in person_ids))
    gone = {str(p) for p in withdrawn[0]}
    ids = [p for p in asked if p not in gone]
    withdrawn_now = len(asked) - len(ids)
    if not ids:
        return RecordSet(
            audience.name,
            destination.name,
            channel,
            [],
            {"opted_out_since_build": withdrawn_now} if withdrawn_now else {},
        )
    variants = variants or {}
    wanted = pa.table(
        {"person_id": pa.array(ids, pa.string()), "variant": pa.array([variants.get(p) for p in ids], pa.string())}
    )
    need = list(dict.fromkeys([key_field, *columns]))
    contact = [c for c in need if c in CONTACT_FIELDS]
    order = [c for c in need if c in ORDER_FIELDS]
    from_selection = [c for c in need if c not in (*CONTACT_FIELDS, *ORDER_FIELDS, "person_id", "variant")]
    source = {c: f"customers.{c}" for c in contact} | {c: f"orders.{c}" for c in order}
    source |= {c: f"sel.{c}" for c in from_selection} | {"person_id": "wanted.person_id", "variant": "wanted.variant"}
    order_map = {"order_id": "order_id", "order_source": "source", "ordered_at": "ordered_at"}
    sel_sql, params = _selection_sql(audience)
    sel_cols = ", ".join(from_selection)
    ctes = [f"selection as ({sel_sql})"] if from_selection else []
    if from_selection:
        ctes.append(
            f"""sel as (
                select cast(person_id as varchar) as person_id, {sel_cols}
                from selection where person_id is not null
                qualify row_number() over (partition by person_id order by {sel_cols}) = 1
            )"""
        )
    if order:
        ctes.append(
            f"""orders as (
                select person_id, {", ".join(f"arg_max({order_map[c]}, ordered_at) as {c}" for c in order)}
                from marts.fct_orders where status = 'pending' and person_id is not null group by person_id
            )"""
        )
    ctes.append(f"deliverable as (select distinct person_id from {DELIVERABLE} where channel = ?)")
    ctes.append(
        """people as (
            select * from marts.dim_customers
            where not coalesce(is_test_account, false) and not coalesce(is_blacklisted, false)
              and not coalesce(is_erased, false)
        )"""
    )
    fields_sql = ", ".join(f"{source[c]} as {c}" for c in dict.fromkeys(["person_id", "variant", *need]))
    use_match_key(con, secret)
    held_sql = held_keys_sql(con, channel)
    base_sql = f"""
        with {", ".join(ctes)}
        select {fields_sql}, trim(cast({source[key_field]} as varchar)) as _key,
            {contact_key_sql(channel, "customers")} as _contact_key
        from wanted as wanted
        join deliverable on deliverable.person_id = wanted.person_id
        join people as customers on customers.person_id = wanted.person_id
        {"left join orders on orders.person_id = wanted.person_id" if order else ""}
        {"left join sel on sel.person_id = wanted.person_id" if from_selection else ""}
    """
    blocked_sql = (
        f"""select distinct trim(cast(c.{key_field} as varchar)) as _key
            from marts.dim_customers as c
            join keyed on keyed._key = trim(cast(c.{key_field} as varchar))
            where c.person_id not in (select person_id from {DELIVERABLE} where channel = ?)
               or coalesce(c.is_blacklisted, false) or coalesce(c.is_erased, false)"""
        if key_field in CONTACT_FIELDS
        else "select null::varchar as _key where false"
    )
    final_sql = f"""
        with keyed as (select * from _export_rows where _key is not null and _key <> ''),
        blocked as ({blocked_sql}),
        unblocked as (
            select * from keyed
            where _key not in (select _key from blocked where _key is not null)
              and (_contact_key is null or _contact_key not in (select contact_key from _held_keys))
        ),
        ranked as (select *, row_number() over (partition by _key order by person_id) as _rank from unblocked)
        select *,
            (select count(*) from _export_rows) as _n_base,
            (select count(*) from keyed) as _n_keyed,
            (select count(*) from unblocked) as _n_unblocked
        from ranked where _rank = 1
        order by person_id
    """
    con.register("wanted", wanted)
    try:
        # the selection's parameters only when its CTE is in the query (a column comes from it)
        selection_params = params if from_selection else []
        con.execute(f"create or replace temp table _export_rows as {base_sql}", [*selection_params, channel])
        con.execute(f"create or replace temp table _held_keys as {held_sql}")
        if withdrawn[1]:
            con.register("late_keys", pa.table({"contact_key": pa.array(sorted(withdrawn[1]), pa.string())}))
            con.execute("insert into _held_keys select contact_key from late_keys")
            con.unregister("late_keys")
        table = con.sql(final_sql, params=[channel] if key_field in CONTACT_FIELDS else None).to_arrow_table()
        if table.num_rows:
            n_base, n_keyed, n_unblocked = (table.column(c)[0].as_py() for c in ("_n_base", "_n_keyed", "_n_unblocked"))
        else:
            n_base, n_keyed, n_unblocked = con.execute(
                f"with keyed as (select * from _export_rows where _key is not null and _key <> ''), "
                f"blocked as ({blocked_sql}) "
                "select (select count(*) from _export_rows), (select count(*) from keyed), "
                "(select count(*) from keyed where _key not in (select _key from blocked where _key is not null) "
                "and (_contact_key is null or _contact_key not in (select contact_key from _held_keys)))",
                [channel] if key_field in CONTACT_FIELDS else [],
            ).fetchall()[0]
    finally:
        con.unregister("wanted")
        con.execute("drop table if exists _export_rows")
        con.execute("drop table if exists _held_keys")
    dropped = {
        "opted_out_since_build": withdrawn_now,
        "not_deliverable_now": len(ids) - n_base,
        "no_key": n_base - n_keyed,
        "key_shared_with_suppressed": n_keyed - n_unblocked,
        "duplicate_key": n_unblocked - table.num_rows,
    }
    field_cols = [c for c in columns if c != key_field]
    if destination.kind in FILE_KINDS or not (RAW_CONTACT_FIELDS & set(destination.allowed_columns)):
        allowed = set(destination.allowed_columns) if destination.raw_contact_allowed else set()
        _scan_table(table, [c for c in field_cols if c != "variant"], destination.name, allowed)
    values = {c: _plain_column(table.column(c)) for c in field_cols}
    keys = table.column("_key").to_pylist()
    pids = table.column("person_id").to_pylist()
    vs = table.column("variant").to_pylist()
    records = [
        Record(key=k, person_id=p, fields={c: values[c][i] for c in field_cols}, variant=v)
        for i, (k, p, v) in enumerate(zip(keys, pids, vs, strict=True))
    ]
    return RecordSet(audience.name, destination.name, channel, records, {k: v for k, v in dropped.items() if v})


def suppressed_now(
    con: duckdb.DuckDBPyConnection,
    channel: str,
    person_ids: set[str],
    withdrawn_people: Collection[str] = (),
    withdrawn_keys: Collection[str] = (),
) -> set[str]:
    """Which of `person_ids` may not be contacted on `channel`: withdrawn since the consent build
    (`withdrawn_people`, or a contact value in `withdrawn_keys`), not in deliverable_customers,
    no longer a contactable person, or reached by a contact value a suppressed record holds.
    The match-key UDFs must be registered on `con` (sendtime.check does)."""
    ids = {str(p) for p in person_ids}
    con.register("asked", pd.DataFrame({"person_id": sorted(ids - set(withdrawn_people))}, dtype="string"))
    con.register("late_keys", pa.table({"contact_key": pa.array(sorted(withdrawn_keys), pa.string())}))
    key = contact_key_sql(channel, "c")
    try:
        ok = con.execute(
            f"""
            select asked.person_id from asked
            join {DELIVERABLE} as d on d.person_id = asked.person_id and d.channel = ?
            join marts.dim_customers as c on c.person_id = asked.person_id
            where not coalesce(c.is_test_account, false) and not coalesce(c.is_blacklisted, false)
              and not coalesce(c.is_erased, false)
              and ({key} is null or {key} not in (
                  {held_keys_sql(con, channel)} union all select contact_key from late_keys))
            """,
            [channel],
        ).fetchall()
    finally:
        con.unregister("asked")
        con.unregister("late_keys")
    return ids - {r[0] for r in ok}


def suppression_check(
    channel: str,
    warehouse: str | Path | None = None,
    *,
    connect: Callable[..., duckdb.DuckDBPyConnection] | None = None,
    secret: bytes | None = None,
) -> Callable[[set[str]], set[str]]:
    """For engine.sync's `suppressed`: which of these people may NOT be contacted on `channel`
    now (not in deliverable_customers, no longer a contactable person, reached on the channel by
    a contact value a suppressed record holds: marts.suppressed_contact_keys, keyed with
    `secret`, or withdrawn by an opt-out landed since the consent build: sendtime.check).
    Re-read from the warehouse on every call; when it cannot be read, or consent cannot be shown
    current, everyone asked about counts as suppressed (fail closed)."""
    from . import sendtime

    def suppressed(person_ids: set[str]) -> set[str]:
        ids = {str(p) for p in person_ids}
        if not ids:
            return set()
        try:
            con = (connect or connect_warehouse)(warehouse, attempts=3)
        except Exception as e:
            log.warning(
                "suppression check on %s could not read the warehouse (%s): holding back %d people",
                channel,
                e,
                len(ids),
            )
            return ids
        try:
            late = sendtime.check(con, secret)
            return suppressed_now(con, channel, ids, late.people_on(channel), late.keys_on(channel))
        except Exception as e:
            log.warning(
                "suppression check on %s failed (%s): holding back %d people", channel, str(e).splitlines()[0], len(ids)
            )
            return ids
        finally:
            con.close()

    return suppressed


def member_rows(run_id: str, members: Members, computed_at: datetime) -> list[dict[str, Any]]:
    """Rows for the store's audience_members table."""
    f = members.frame
    return [
        {
            "run_id": run_id,
            "audience": members.audience,
            "person_id": pid,
            "grp": grp,
            "variant": variant,
            "computed_at": computed_at,
        }
        for pid, grp, variant in zip(f["person_id"], f["grp"], f["variant"], strict=True)
    ]
