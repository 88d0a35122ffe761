"""The customer layer (dbt) built on the XS brand after a real ingest: identity resolution meets
its goal against the ground truth, nobody the pipeline knows to be suppressed is deliverable,
the analysts' database holds no raw personal data, person IDs are stable across runs and every
merge and split is recorded, and erasure empties a person's data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from yorisoi_kit.identity_eval import evaluate
from yorisoi_kit.scale_run import ScaleRun, build

CHANNELS = ("email", "line", "sms", "dm", "call")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d{8,15}|\b0\d{1,4}[-\s]?\d{1,4}[-\s]?\d{3,4}\b")


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


def test_identity_resolution_meets_its_goal(xs: ScaleRun) -> None:
    result = evaluate(xs.warehouse, xs.truth)
    r = result["resolvable_records"]
    assert r["precision"] >= 0.999, result["over_merged_people"]
    assert r["f1"] >= 0.995, r
    assert all(rule["edge_precision"] >= 0.99 for rule in result["rules"].values() if rule["accepted_edges"])


def test_nobody_known_to_be_suppressed_is_deliverable(xs: ScaleRun) -> None:
    """Truth knows each person's consent on every system, blacklist and erasure. A person made of
    nothing but an unlinked LINE user is left out: nothing ties that user to the rest of them."""
    con = connect(xs.warehouse)
    con.execute(
        f"create temp table truth_records as select source || ':' || source_id as k, person_id as tp "
        f"from '{xs.truth / 'source_records.parquet'}'"
    )
    con.execute(f"create temp table people as select * from '{xs.truth / 'people.parquet'}'")
    checked = 0
    for ch in CHANNELS:
        rows = con.execute(
            f"""
            with identified as (
                select person_id from marts.bridge_customer_identities group by person_id
                having count(*) filter (where source <> 'line') > 0
            ),
            deliverable as (
                select distinct d.person_id, t.tp
                from marts.deliverable_customers d
                join identified using (person_id)
                join marts.bridge_customer_identities b using (person_id)
                join truth_records t on t.k = b.record_key
                where d.channel = '{ch}'
            )
            select deliverable.person_id, deliverable.tp, people.deliverable_{ch} as truth_says
            from deliverable join people on people.person_id = deliverable.tp
            """
        ).fetchall()
        checked += len(rows)
        assert [r for r in rows if not r[2]] == [], f"suppressed people deliverable on {ch}"
    assert checked > 100


def test_analysts_database_holds_no_raw_personal_data(xs: ScaleRun) -> None:
    con = connect(xs.work / "analytics.duckdb")
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables where table_catalog = current_database()"
    ).fetchall()
    assert {t for _, t in tables} >= {"customer_profiles", "orders"}
    scanned = 0
    for schema, table in tables:
        columns = con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "and data_type = 'VARCHAR'",
            [schema, table],
        ).fetchall()
        for (column,) in columns:
            values = [
                v for (v,) in con.execute(f'select distinct "{column}" from "{schema}"."{table}"').fetchall() if v
            ]
            scanned += len(values)
            assert not [v for v in values if EMAIL.search(v)], f"email in {table}.{column}"
            assert not [v for v in values if PHONE.search(v)], f"phone number in {table}.{column}"
    assert scanned > 1000


def test_the_scan_finds_personal_data_where_it_is(xs: ScaleRun) -> None:
    """The same scan over the golden record does find emails and phones (the scan can fail)."""
    con = connect(xs.warehouse)
    emails = [v for (v,) in con.execute("select email from marts.dim_customers where email is not null").fetchall()]
    phones = [v for (v,) in con.execute("select phone from marts.dim_customers where phone is not null").fetchall()]
    assert emails and all(EMAIL.search(v) for v in emails)
    assert phones and all(PHONE.search(v) for v in phones)


def test_erased_people_keep_a_row_but_no_personal_data(xs: ScaleRun) -> None:
    con = connect(xs.warehouse)
    erased = con.execute(
        "select person_id, full_name, email, phone, address, birth_date from marts.dim_customers where is_erased"
    ).fetchall()
    assert erased, "the XS brand has erasure requests"
    assert all(all(v is None for v in row[1:]) for row in erased)
    ids = [r[0] for r in erased]
    assert (
        con.execute(
            "select count(*) from marts.deliverable_customers where list_contains(?, person_id)", [ids]
        ).fetchall()[0][0]
        == 0
    )
    history = con.execute(
        "select count(*) from snapshots.customers_snapshot where list_contains(?, person_id) "
        "and (email is not null or phone is not null or full_name is not null)",
        [ids],
    ).fetchall()[0][0]
    assert history == 0
    analysts = connect(xs.work / "analytics.duckdb")
    assert (
        analysts.execute("select count(*) from customer_profiles where list_contains(?, person_id)", [ids]).fetchall()[
            0
        ][0]
        == 0
    )


def _bridge(path: Path) -> dict[str, str]:
    con = connect(path)
    try:
        return dict(con.execute("select record_key, person_id from marts.bridge_customer_identities").fetchall())
    finally:
        con.close()


@pytest.fixture
def copy_of_xs(xs: ScaleRun, tmp_path: Path) -> ScaleRun:
    """The built XS warehouse in a folder of its own (same match key), for tests that change it."""
    work = tmp_path / "xs"
    work.mkdir()
    for name in ("warehouse.duckdb", "analytics.duckdb"):
        shutil.copy(xs.work / name, work / name)
    shutil.copytree(xs.work / "keys", work / "keys")
    (work / "sources").symlink_to(xs.work / "sources")
    return ScaleRun("XS", work)


def test_person_ids_survive_a_rebuild_merge_and_split(copy_of_xs: ScaleRun) -> None:
    run = copy_of_xs
    before = _bridge(run.warehouse)
    build(run, select="+bridge_customer_identities identity_merges")
    assert _bridge(run.warehouse) == before

    # A person split in two: two OMS records with the same name that share nothing a rule accepts
    # (one gave a mobile number and one postcode, the other an email and another postcode) ...
    con = duckdb.connect(str(run.warehouse))
    insert = """
        insert into raw.oms__customers by name
        select ? as customer_id, '森川 詩織' as name, 'モリカワ シオリ' as name_kana, ? as phone, ? as email,
               ? as postal_code, false as blacklisted, timestamp '2026-10-01 10:00:00' as registered_at,
               timestamp '2026-10-01 10:00:00' as updated_at
    """
    con.execute(insert, ["C-SPLIT-A", "090-4821-7365", None, "2310062"])
    con.execute(insert, ["C-SPLIT-B", None, "s.morikawa1988@gmail.com", "1500001"])
    con.close()
    build(run, select="+bridge_customer_identities identity_merges")
    before = _bridge(run.warehouse)
    a, b = before["oms:C-SPLIT-A"], before["oms:C-SPLIT-B"]
    assert a != b
    # ... until a new record carries the first one's mobile number and the second one's email.
    con = duckdb.connect(str(run.warehouse))
    con.execute(insert, ["C-BRIDGE", "090-4821-7365", "s.morikawa1988@gmail.com", "2310062"])
    con.close()
    build(run, select="+bridge_customer_identities identity_merges")
    merged = _bridge(run.warehouse)
    survivor = merged["oms:C-SPLIT-A"]
    assert survivor == merged["oms:C-SPLIT-B"] == merged["oms:C-BRIDGE"]
    assert survivor in (a, b)
    con = connect(run.warehouse)
    created = dict(
        con.execute(
            "select person_id, min(person_created_at) from intermediate.int_identity_person_ids group by 1"
        ).fetchall()
    )
    changes = con.execute(
        "select record_key, from_person_id, to_person_id, change_type from marts.identity_merges"
    ).fetchall()
    con.close()
    absorbed = b if survivor == a else a
    assert {(c[1], c[2], c[3]) for c in changes} == {(absorbed, survivor, "merge")}
    assert absorbed not in created
    untouched = {k: v for k, v in before.items() if v not in (a, b)}
    assert {k: merged[k] for k in untouched} == untouched

    # The bridging record goes away again: the two parts split, the larger keeps the ID.
    con = duckdb.connect(str(run.warehouse))
    con.execute("delete from raw.oms__customers where customer_id = 'C-BRIDGE'")
    con.close()
    build(run, select="+bridge_customer_identities identity_merges")
    split = _bridge(run.warehouse)
    assert split["oms:C-SPLIT-A"] != split["oms:C-SPLIT-B"]
    assert survivor in (split["oms:C-SPLIT-A"], split["oms:C-SPLIT-B"])
    con = connect(run.warehouse)
    kinds = [r[0] for r in con.execute("select change_type from marts.identity_merges order by changed_at").fetchall()]
    con.close()
    assert kinds[0] == "merge" and "split" in kinds


def test_match_keys_are_keyed_hashes_of_normalised_values(xs: ScaleRun) -> None:
    """The SQL HMAC of the dbt macro equals Python's hmac with the configured secret; another
    secret gives other keys (docs/reliability.md #14)."""
    from yorisoi.privacy.keys import hmac_sha256

    secret = (xs.work / "keys" / "match_key").read_bytes().strip()
    con = connect(xs.warehouse)
    rows = con.execute(
        """
        select e.email, r.email_key
        from intermediate.int_identity_records r
        join staging.stg_ecommerce__customers e on r.record_key = 'ecommerce:' || e.customer_id
        where r.email_key is not null
        order by e.customer_id limit 50
        """
    ).fetchall()
    assert len(rows) == 50
    assert all(key == hmac_sha256(f"email|{email}", secret) for email, key in rows)
    assert all(key != hmac_sha256(f"email|{email}", secret + b"other") for email, key in rows)
