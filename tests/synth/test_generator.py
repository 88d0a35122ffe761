"""The synthetic brand: reproducible, internally consistent, messy where real data is messy, and
with ground truth that agrees with every source file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from yorisoi_kit.synth import generate
from yorisoi_kit.synth.stats import summarize


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(synth_xs: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", scale="XS", seed=1)
    assert _digest(synth_xs) == _digest(tmp_path / "again")


def test_another_seed_gives_other_data(synth_xs: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", scale="XS", seed=2)
    a, b = _digest(synth_xs), _digest(tmp_path / "other")
    assert a.keys() & b.keys()
    assert a["ecommerce/customers.parquet"] != b["ecommerce/customers.parquet"]


def test_unknown_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        generate(tmp_path, scale="XL")


def test_rerun_replaces_previous_output(tmp_path: Path) -> None:
    generate(tmp_path, scale="XS", seed=1, people=300)
    stale = tmp_path / "sftp" / "inbox" / "pos" / "sales_199001.csv"
    stale.write_text("old")
    generate(tmp_path, scale="XS", seed=1, people=300)
    assert not stale.exists()


@pytest.fixture(scope="module")
def con(synth_xs: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in ("people", "source_records", "orders", "consent_events", "campaign_assignments"):
        con.execute(f"create view truth_{name} as select * from read_parquet('{synth_xs / 'truth' / name}.parquet')")
    for name in ("customers", "orders", "order_lines", "products"):
        con.execute(f"create view ec_{name} as select * from read_parquet('{synth_xs / 'ecommerce' / name}.parquet')")
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchone()[0]


def test_every_source_record_has_a_true_person(con, synth_xs: Path) -> None:
    assert (
        one(
            con,
            "select count(*) from ec_customers c anti join truth_source_records r "
            "on r.source = 'ecommerce' and r.source_id = c.id::varchar",
        )
        == 0
    )
    with sqlite3.connect(synth_xs / "oms" / "oms.sqlite") as db:
        codes = {r[0] for r in db.execute("select customer_code from customers")}
    truth_codes = {
        r[0] for r in con.execute("select source_id from truth_source_records where source = 'oms'").fetchall()
    }
    assert codes == truth_codes
    members = next((synth_xs / "sftp" / "inbox" / "pos").glob("members_*.csv"))
    text = members.read_bytes().decode("cp932").splitlines()[1:]
    card_ids = {line.split(",")[0].strip('"') for line in text}
    truth_cards = {
        r[0] for r in con.execute("select source_id from truth_source_records where source = 'pos'").fetchall()
    }
    assert card_ids == truth_cards


def test_truth_orders_match_the_source_systems(con, synth_xs: Path) -> None:
    assert one(con, "select count(*) from ec_orders") == one(
        con, "select count(*) from truth_orders where source = 'ecommerce'"
    )
    assert one(con, "select count(*) from ec_orders o anti join truth_orders t on t.order_id = o.id::varchar") == 0
    with sqlite3.connect(synth_xs / "oms" / "oms.sqlite") as db:
        oms_orders = db.execute("select count(*), sum(total) from orders").fetchone()
    assert oms_orders == con.execute("select count(*), sum(total) from truth_orders where source = 'oms'").fetchone()
    # Every POS member sale in the drops is a truth order.
    receipts = set()
    for f in (synth_xs / "sftp" / "inbox" / "pos").glob("sales_*.csv"):
        for line in f.read_bytes().decode("cp932").splitlines()[1:]:
            cols = line.split(",")
            if cols[5].strip('"') == "売上" and cols[7].strip('"'):
                receipts.add(cols[0].strip('"'))
    truth_pos = {r[0] for r in con.execute("select order_id from truth_orders where source = 'pos'").fetchall()}
    assert receipts == truth_pos


def test_person_totals_agree_with_their_orders(con) -> None:
    mismatches = one(
        con,
        """
        with o as (select person_id, count(*) as n, sum(total) as spend
                   from truth_orders where counted group by all)
        select count(*) from truth_people p left join o using (person_id)
        where p.order_count <> coalesce(o.n, 0) or p.spend <> coalesce(o.spend, 0)""",
    )
    assert mismatches == 0


def test_ecommerce_lines_add_up_to_subtotals(con) -> None:
    assert (
        one(
            con,
            """
        select count(*) from ec_orders o join (
            select order_id, sum(quantity * price) as s from ec_order_lines group by all) l on l.order_id = o.id
        where l.s <> o.subtotal_price""",
        )
        == 0
    )
    assert (
        one(
            con,
            "select count(*) from ec_orders where total_price <> subtotal_price - total_discounts "
            "+ shipping_price - points_used",
        )
        == 0
    )


def test_real_world_mess_is_present(con, synth_xs: Path) -> None:
    # Duplicate accounts, and the same person in several systems.
    assert (
        one(
            con,
            "select count(*) from (select person_id from truth_source_records where source = 'ecommerce' "
            "group by all having count(*) > 1)",
        )
        > 0
    )
    assert (
        one(
            con,
            "select count(*) from (select person_id from truth_source_records "
            "group by all having count(distinct source) >= 3)",
        )
        > 0
    )
    # Staff test accounts share one address but are different people.
    assert (
        one(
            con,
            "select count(distinct r.person_id) from ec_customers c join truth_source_records r "
            "on r.source_id = c.id::varchar where c.email = 'test@example.com'",
        )
        >= 3
    )
    with sqlite3.connect(synth_xs / "oms" / "oms.sqlite") as db:
        phones = [r[0] for r in db.execute("select phone from customers where phone is not null")]
        kana = [r[0] for r in db.execute("select name_kana from customers")]
        emails = [r[0] for r in db.execute("select email from customers where email is not null")]
    assert any("０" in p or "１" in p for p in phones), "no full-width digits in OMS phones"
    assert any(p.startswith("(") for p in phones)
    assert any("ｱ" <= ch <= "ﾝ" for k in kana for ch in k), "no half-width katakana in OMS names"
    assert any("＠" in e for e in emails)
    # Family members give the same email to the OMS.
    assert len(emails) > len({e.lower() for e in emails})


def test_shop_accounts_carry_furigana(con) -> None:
    """Japanese carts ask for the name in kana (フリガナ): mostly katakana, sometimes typed in
    hiragana, sometimes left empty; folded to katakana it is the person's true kana."""
    rows = con.execute(
        """
        select c.last_name_kana, c.first_name_kana, p.last_kana, p.first_kana
        from ec_customers c
        join truth_source_records r on r.source = 'ecommerce' and r.source_id = c.id::varchar
        join truth_people p on p.person_id = r.person_id"""
    ).fetchall()
    n = one(con, "select count(*) from ec_customers")
    assert len(rows) == n
    assert all((last is None) == (first is None) for last, first, _, _ in rows), "both given, or neither"
    given = [r for r in rows if r[0] is not None]
    assert 0.9 * n <= len(given) < n, "kana for most accounts, but the field is optional"

    def is_hiragana(text: str) -> bool:
        return any("ぁ" <= ch <= "ゖ" for ch in text)

    hiragana = [r for r in given if is_hiragana(r[0] + r[1])]
    assert 0 < len(hiragana) < 0.2 * n
    assert not any("ァ" <= ch <= "ヶ" for r in hiragana for ch in r[0] + r[1]), "typed in one script"
    to_katakana = {cp: cp + 0x60 for cp in range(ord("ぁ"), ord("ゖ") + 1)}
    for last, first, true_last, true_first in given:
        assert (last.translate(to_katakana), first.translate(to_katakana)) == (true_last, true_first)


def test_cp932_drops_hold_characters_shift_jis_cannot_encode(synth_xs: Path) -> None:
    sales = b"".join(p.read_bytes() for p in (synth_xs / "sftp" / "inbox" / "pos").glob("sales_*.csv"))
    text = sales.decode("cp932")
    assert "㈱" in text and "髙" in text
    with pytest.raises(UnicodeDecodeError):
        sales.decode("shift_jis")
    links = next((synth_xs / "sftp" / "inbox" / "line").glob("id_links_*.csv")).read_bytes()
    assert links.startswith(b"\xef\xbb\xbf"), "LINE exports carry a UTF-8 BOM"


def test_manifests_match_their_files(synth_xs: Path) -> None:
    manifests = list((synth_xs / "sftp" / "inbox").rglob("*.manifest.json"))
    assert len(manifests) > 10
    for m in manifests:
        meta = json.loads(m.read_text("utf-8"))
        data = (m.parent / meta["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"]
        assert len(data) == meta["bytes"]
        text = data.decode("utf-8-sig" if meta["encoding"] == "utf-8-sig" else meta["encoding"])
        assert len(text.splitlines()) - 1 == meta["rows"]


def test_consent_truth_follows_the_rules(con) -> None:
    assert one(con, "select count(*) from truth_people where deliverable_email and not consent_email") == 0
    assert (
        one(
            con,
            "select count(*) from truth_people where blacklisted and (deliverable_email or deliverable_dm)",
        )
        == 0
    )
    assert (
        one(
            con,
            "select count(*) from truth_people where erased and (consent_email or consent_line or consent_dm)",
        )
        == 0
    )
    # The latest event wins: recompute it from the event log.
    assert (
        one(
            con,
            """
        with last as (select person_id, channel, arg_max(action, event_at) as action
                      from truth_consent_events group by all)
        select count(*) from truth_people p join last l on l.person_id = p.person_id and l.channel = 'email'
        where not p.erased and p.consent_email <> (l.action = 'opt_in')""",
        )
        == 0
    )
    # Campaigns hold out a control group of about 10 %.
    share = one(con, "select avg((\"group\" = 'control')::int) from truth_campaign_assignments")
    assert 0.05 < share < 0.15


def test_ecommerce_snapshot_misses_unsubscribes_made_elsewhere(con) -> None:
    """Shop records still say 'subscribed' for some people who unsubscribed at the email provider
    or the call centre: the reason a consent ledger must union every system."""
    stale = one(
        con,
        """
        select count(*) from ec_customers c join truth_source_records r on r.source_id = c.id::varchar
        join truth_people p on p.person_id = r.person_id
        where c.email_marketing_state = 'subscribed' and not p.consent_email""",
    )
    assert stale > 0


def test_behaviour_is_realistic_at_scale_s(tmp_path: Path) -> None:
    generate(tmp_path, scale="S", seed=7)
    s = summarize(tmp_path)
    ladder = {x["f"]: x["to_next"] for x in s["f_ladder"]}
    assert 0.30 <= ladder[1] <= 0.50, "F1→F2 retention"
    assert ladder[2] > ladder[1], "repeaters are more loyal than first-time buyers"
    assert 0.6 <= s["people_per_source"]["ecommerce"] / s["people"] <= 0.95
    assert 0.4 <= s["line_link_share"] <= 0.7
    assert 6 <= s["orders_per_person"] <= 12
    months = duckdb.sql(f"""select month(ordered_at + interval 9 hour) as m, count(*) as n
        from read_parquet('{tmp_path / "truth" / "orders.parquet"}') group by all""").fetchall()
    by_month = dict(months)
    assert by_month[12] > by_month[2] * 1.3, "December gift season beats February"
    sale_share = pq.read_table(tmp_path / "ecommerce" / "order_lines.parquet", columns=["price", "compare_at_price"])
    on_sale = sum(
        p < c for p, c in zip(sale_share["price"].to_pylist(), sale_share["compare_at_price"].to_pylist(), strict=True)
    )
    assert 0.05 < on_sale / sale_share.num_rows < 0.5, "full-price and sale purchases both occur"
