"""Erasure purges (docs/reliability.md #19): after `erase`, no erased key is left in any store
(warehouse, analysts' database, lake files, kept drop files on the SFTP server, activation store),
and ingesting the same sources again brings nothing back."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from yorisoi.privacy.erasure import Stores, erase, tombstone_requests
from yorisoi.privacy.keys import MissingMatchKey
from yorisoi.privacy.tombstones import KINDS, Tombstones, erased_hash
from yorisoi.privacy.verify import verify
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import load_registry
from yorisoi.transform import brand_as_of

SECRET = b"erasure-tests-match-key-0123456789"  # a test secret, not a credential


# ---- the landing, on a tiny warehouse -----------------------------------------------------------


def _tombstone(wh: Warehouse, kind: str, values: list[str]) -> None:
    con = wh.connect()
    try:
        hashes = erased_hash(pa.array(values), SECRET).to_pylist()
        con.execute("insert into raw._erasure_tombstones select unnest(?), ?, 'CC1', now()", [hashes, kind])
    finally:
        con.close()


def test_landing_drops_erased_rows_before_the_lake_and_unlinks_orders(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("YORISOI_MATCH_KEY", SECRET.decode())
    wh = Warehouse(tmp_path / "wh.duckdb", Lake(tmp_path / "lake"))
    shop = load_registry().source("ecommerce")
    day = date(2026, 11, 1)
    wh.land(shop.tables["customers"], [pa.table({"id": [1], "email": ["x@example.jp"]})], batch_id="b0", load_date=day)
    _tombstone(wh, "ecommerce_customer", ["7"])

    with caplog.at_level(logging.WARNING, logger="yorisoi.sources.landing"):
        customers = wh.land(
            shop.tables["customers"],
            [pa.table({"id": [7, 8], "email": ["erased@example.jp", "kept@example.jp"]})],
            batch_id="b1",
            load_date=day,
        )
        orders = wh.land(
            shop.tables["orders"],
            [pa.table({"id": [100, 101], "customer_id": [7, 8], "email": ["erased@example.jp", "kept@example.jp"]})],
            batch_id="b2",
            load_date=day,
        )

    assert (customers.rows, customers.erased, orders.rows, orders.erased) == (1, 1, 2, 1)
    con = wh.connect(read_only=True)
    assert con.execute("select id from raw.ecommerce__customers order by id").fetchall() == [(1,), (8,)]
    assert con.execute("select id, customer_id, email from raw.ecommerce__orders order by id").fetchall() == [
        (100, None, None),
        (101, 8, "kept@example.jp"),
    ]
    con.close()
    lake = pa.concat_tables(
        pq.read_table(p) for p in sorted((tmp_path / "lake").glob("raw/ecommerce/customers/**/b1*"))
    )
    assert lake["id"].to_pylist() == [8]  # never written to the lake either
    assert "erasure: 1 row(s) of erased people dropped before landing raw.ecommerce__customers" in caplog.text

    monkeypatch.delenv("YORISOI_MATCH_KEY")
    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))  # no demo key file there either
    with pytest.raises(MissingMatchKey):  # tombstones it cannot read: no landing at all
        wh.land(shop.tables["customers"], [pa.table({"id": [9]})], batch_id="b3", load_date=day)


def test_an_erased_phone_number_never_lands_in_the_sms_receipts(tmp_path: Path, monkeypatch) -> None:
    """The SMS provider's receipts name a person only by the number texted: an erased person's
    receipts are dropped at landing, the number written nationally or in E.164 alike."""
    from yorisoi.privacy.normalize import norm_phone_arrow

    monkeypatch.setenv("YORISOI_MATCH_KEY", SECRET.decode())
    wh = Warehouse(tmp_path / "wh.duckdb", Lake(tmp_path / "lake"))
    messages = load_registry().source("sms").tables["messages"]
    wh.land(messages, [pa.table({"sid": ["SM0"], "to": ["+819000000000"]})], batch_id="b0", load_date=date(2026, 11, 1))
    _tombstone(wh, "phone", norm_phone_arrow(pa.array(["090-1234-5678"])).to_pylist())

    landed = wh.land(
        messages,
        [pa.table({"sid": ["SM1", "SM2"], "to": ["+819012345678", "+819087654321"], "status": ["delivered"] * 2})],
        batch_id="b1",
        load_date=date(2026, 11, 1),
    )
    assert (landed.rows, landed.erased) == (1, 1)
    con = wh.connect(read_only=True)
    assert con.execute("select sid from raw.sms__messages order by sid").fetchall() == [("SM0",), ("SM2",)]
    con.close()


# ---- the whole path, on the XS brand ------------------------------------------------------------


@pytest.fixture
def brand(xs, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the built XS brand (warehouse, analysts' database, lake, source systems
    with the SFTP folders), with its match key, an operation log and an activation store."""
    work = tmp_path / "brand"
    work.mkdir()
    for name in ("warehouse.duckdb", "analytics.duckdb", "host_key", "host_key.pub"):
        shutil.copy2(xs.work / name, work / name)
    for name in ("lake", "sources", "keys"):
        shutil.copytree(xs.work / name, work / name)
    monkeypatch.setenv("YORISOI_MATCH_KEY_FILE", str(work / "keys" / "match_key"))
    monkeypatch.setenv("YORISOI_AS_OF", brand_as_of(work / "sources"))  # the day the marts describe
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("YORISOI_ACTIVATION_URL", f"sqlite:///{tmp_path / 'activation.sqlite'}")
    return work


@pytest.fixture
def drop_server(brand: Path) -> Iterator:
    from yorisoi_kit.demo import DEMO_SFTP_PASSWORD, DEMO_SFTP_USER, pinned_sftp
    from yorisoi_kit.servers import sftp

    with sftp.serve_in_thread(
        brand / "sources" / "sftp",
        username=DEMO_SFTP_USER,
        password=DEMO_SFTP_PASSWORD,
        host_key_path=brand / "host_key",
    ) as server:
        client = pinned_sftp(server.host, server.port, server.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD)
        yield client
        client.close()


def _sent_to(person_id: str, email: str, audience: str) -> None:
    """The activation store as a sync run leaves it: membership, the changelog and ledger of a
    send (the record of provision), and the destination's snapshot (the list still holds them)."""
    from yorisoi.activation.delivery import store as s

    now = datetime(2026, 11, 2, tzinfo=UTC)
    with s.ActivationStore() as store, store.engine.begin() as conn:
        conn.execute(
            sa.insert(s.audience_members),
            [
                {
                    "run_id": "r1",
                    "audience": audience,
                    "person_id": person_id,
                    "grp": "treatment",
                    "variant": "a",
                    "computed_at": now,
                }
            ],
        )
        conn.execute(
            sa.insert(s.sync_changelog),
            [
                {
                    "run_id": "r1",
                    "audience": audience,
                    "destination": "esp",
                    "key": email,
                    "person_id": person_id,
                    "operation": "add",
                    "status": "succeeded",
                    "reason": f"accepted {email}",
                    "at": now,
                }
            ],
        )
        conn.execute(
            sa.insert(s.send_ledger),
            [
                {
                    "audience": audience,
                    "destination": "esp",
                    "interval": "2026-11-02",
                    "key": email,
                    "channel": "email",
                    "person_id": person_id,
                    "status": "sent",
                    "claim_id": "c1",
                    "claimed_at": now,
                }
            ],
        )
        conn.execute(
            sa.insert(s.sync_snapshots),
            [{"audience": audience, "destination": "esp", "key": email, "person_id": person_id, "confirmed_at": now}],
        )


def _strong(report) -> set[str]:
    return {r.store for r in report.residuals}


def test_erasure_leaves_no_residual_and_a_reingest_brings_nothing_back(brand: Path, drop_server, caplog) -> None:
    from yorisoi.activation.delivery.store import ActivationStore
    from yorisoi.audit.log import iter_entries
    from yorisoi_kit.scale_run import ingest_back_office, ingest_drop_folder, ingest_shop

    wh = Warehouse(brand / "warehouse.duckdb", Lake(brand / "lake"))
    stores = Stores(
        wh, databases=[brand / "analytics.duckdb"], sftp=drop_server, sftp_source=load_registry().source("sftp")
    )
    con = wh.connect()
    erased_person, ec_id = con.execute(
        "select t.person_id, b.source_id from marts.erasure_tombstones t join marts.bridge_customer_identities b "
        "on b.person_id = t.person_id and b.source = 'ecommerce' limit 1"
    ).fetchone()
    email = con.execute("select email from raw.ecommerce__customers where id = ?", [int(ec_id)]).fetchone()[0]
    other = con.execute("select person_id from marts.dim_customers where not is_erased limit 1").fetchone()[0]
    people_before = con.execute("select count(*) from marts.dim_customers").fetchone()[0]
    revenue_before = con.execute("select sum(total_price) from raw.ecommerce__orders").fetchone()[0]
    # The partner's files as first delivered, to deliver them again after the erasure.
    redelivery = brand / "redelivery"
    shutil.copytree(brand / "sources" / "sftp" / "processed", redelivery)
    _sent_to(erased_person, email, "welcome")
    _sent_to(other, "someone.else@example.jp", "welcome")

    # Before the purge the scan finds the person everywhere (so the check can fail).
    tombstone_requests(con, _secret_of(brand))
    stones = Tombstones.load(con, _secret_of(brand))
    con.close()
    before = verify(stores, stones)
    assert {"warehouse", "analytics.duckdb", "lake", "sftp", "activation"} <= _strong(before), before.to_dict()

    result = erase(stores)
    assert result.purge.raw["ecommerce__customers"] >= 1 and result.purge.lake_files and result.purge.drop_files
    assert result.purge.awaiting_destinations == 1  # the list still holds them: the sync removes them first
    after = verify(stores, stones)
    assert {(r.store, r.location) for r in after.residuals} == {("activation", "sync_snapshots")}

    # The sync engine confirms the removal at the destination, then the next erase finishes.
    with ActivationStore() as store:
        store.drop_from_snapshot("welcome", "esp", [email])
    erase(stores)
    after = verify(stores, stones)
    assert after.ok, [str(r) for r in after.residuals]

    con = wh.connect(read_only=True)
    assert con.execute("select count(*) from marts.dim_customers").fetchone()[0] == people_before - 1
    assert con.execute("select sum(total_price) from raw.ecommerce__orders").fetchone()[0] == revenue_before
    assert con.execute("select status from raw._erasures").fetchall() == [("purged",)]
    con.close()
    with ActivationStore() as store, store.engine.connect() as conn:
        provision = conn.execute(sa.text("select key, person_id, reason from sync_changelog order by key")).all()
        members = conn.execute(sa.text("select person_id from audience_members")).scalars().all()
    hashed = erased_hash(pa.array([email.strip()]), _secret_of(brand))[0].as_py()
    assert provision[0] == (f"erased:{hashed}", provision[0][1], None)  # kept, hashed, no address in the reason
    assert provision[0][1].startswith("erased:") and provision[1][1] == other
    assert members == [other]
    assert [e["action"] for e in iter_entries()] == ["erase", "erase"]

    # The same sources delivered again: the shop API, the OMS, every drop file under new hashes.
    con = wh.connect()
    con.execute("delete from raw._watermarks; delete from raw._files")
    con.close()
    inbox = brand / "sources" / "sftp" / "inbox"
    shutil.rmtree(inbox)
    shutil.copytree(redelivery, inbox)
    with caplog.at_level(logging.WARNING, logger="yorisoi.sources.landing"):
        ingest_shop(brand / "sources", wh, "again")
        ingest_back_office(brand / "sources", wh, "again")
        ingest_drop_folder(brand / "sources", wh, brand, "again")
    assert "row(s) of erased people dropped before landing raw.ecommerce__customers" in caplog.text
    assert "row(s) of erased people unlinked before landing raw.ecommerce__orders" in caplog.text
    again = verify(stores, stones)
    assert again.ok, [str(r) for r in again.residuals]
    con = wh.connect(read_only=True)
    assert con.execute("select count(*) from raw.ecommerce__customers where id = ?", [int(ec_id)]).fetchone()[0] == 0
    con.close()


def _secret_of(brand: Path) -> bytes:
    return (brand / "keys" / "match_key").read_bytes().strip()


def test_a_namesakes_request_matched_by_name_alone_is_not_tombstoned(tmp_path: Path) -> None:
    """Erasing a person tombstones the call-centre requests resolved to them, but not another
    caller's request that reached them only through the name: purging it would end that
    caller's opt-out."""
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute("create schema marts")
    con.execute("create schema intermediate")
    con.execute(
        "create table marts.erasure_tombstones as select 'oms:C1|CC1' as tombstone_id, 'oms:C1' as record_key, "
        "'P1' as person_id, 'CC1' as request_no, timestamp '2026-12-01 10:00' as requested_at, now() as recorded_at"
    )
    con.execute(
        "create table intermediate.int_callcenter_requests_resolved as "
        "select * from (values ('CC1', 'P1', 'customer_code'), ('CC2', 'P1', 'name_only'), ('CC2', 'P2', 'name_only')) "
        "as t(request_no, person_id, matched_by)"
    )
    assert tombstone_requests(con, SECRET)[0] == ["CC1"]
    stored = {
        r
        for (r,) in con.execute(
            "select key_hash from raw._erasure_tombstones where kind = 'callcenter_request'"
        ).fetchall()
    }
    cc1, cc2 = erased_hash(KINDS["callcenter_request"](pa.array(["CC1", "CC2"])), SECRET).to_pylist()
    assert cc1 in stored
    assert cc2 not in stored
    con.close()


def test_verify_names_a_namesake_without_failing(tmp_path: Path) -> None:
    """A name alone may be another customer's: reported, not a residual."""
    wh = Warehouse(tmp_path / "wh.duckdb", Lake(tmp_path / "lake"))
    con = wh.connect()
    con.execute("create table raw.sftp__pos_members as select 'C1' as card_no, '佐藤　知実' as name_kana")
    con.execute(
        "insert into raw._erasure_tombstones select unnest(?), unnest(?), 'CC1', now()",
        [
            erased_hash(KINDS["kana"](pa.array(["佐藤 知実"])), SECRET).to_pylist()
            + erased_hash(pa.array(["C1"]), SECRET).to_pylist(),
            ["kana", "member_card"],
        ],
    )
    stones = Tombstones.load(con, SECRET)
    con.close()
    report = verify(Stores(wh, use_activation_store=False), stones)
    assert [(r.column, r.kind) for r in report.residuals] == [("card_no", "member_card")]
    assert not report.ok
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute("delete from raw.sftp__pos_members")
    con.execute("insert into raw.sftp__pos_members values ('C2', '佐藤 知実')")
    con.close()
    report = verify(Stores(wh, use_activation_store=False), stones)
    assert report.ok and [(r.column, r.kind) for r in report.namesakes] == [("name_kana", "kana")]


def test_the_commands_exit_1_while_an_erased_key_remains_and_log_the_erasure(tmp_path: Path, monkeypatch) -> None:
    """`yorisoi privacy verify-erasure` fails on a residual and passes once `erase` removed it."""
    from typer.testing import CliRunner

    from yorisoi.audit.log import iter_entries
    from yorisoi.cli import app

    monkeypatch.setenv("YORISOI_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("YORISOI_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("YORISOI_MATCH_KEY", SECRET.decode())
    monkeypatch.delenv("YORISOI_LAKE_URL", raising=False)
    monkeypatch.delenv("YORISOI_ACTIVATION_URL", raising=False)
    from yorisoi.orchestration.ingest import warehouse

    wh = warehouse()
    pos = load_registry().source("sftp").tables["pos_members"]
    wh.land(
        pos,
        [pa.table({"card_no": ["C1", "C2"], "phone": ["090-1111-2222", None]})],
        batch_id="b",
        load_date=date(2026, 11, 1),
    )
    _tombstone(wh, "member_card", ["C1"])
    runner = CliRunner()

    failed = runner.invoke(app, ["privacy", "verify-erasure", "--no-drop-files", "--json"])
    assert failed.exit_code == 1, failed.output
    assert '"column": "card_no"' in failed.output and '"store": "lake"' in failed.output

    erased = runner.invoke(app, ["privacy", "erase", "--no-drop-files"])
    assert erased.exit_code == 0, erased.output
    passed = runner.invoke(app, ["privacy", "verify-erasure", "--no-drop-files"])
    assert passed.exit_code == 0, passed.output
    con = wh.connect(read_only=True)
    assert con.execute("select card_no from raw.sftp__pos_members").fetchall() == [("C2",)]
    con.close()
    entry = next(e for e in iter_entries() if e["action"] == "erase")
    assert entry["rows"] >= 2 and entry["details"]["raw"] == {"sftp__pos_members": 1}
