"""Audiences as code: the sample audiences load; a bad file fails with a message naming the file,
the field and what is wrong; a destination's column allow-list holds (docs/reliability.md #14)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from audiences_harness import audience_spec, destinations_yaml, write_destinations

from yorisoi.activation.delivery.destinations import KINDS
from yorisoi.activation.selection.definitions import (
    DEFAULT_AUDIENCES_DIR,
    KIND_CHANNELS,
    AudienceError,
    DestinationConfigError,
    load_audience,
    load_audiences,
    load_destinations,
    validate_select_sql,
)

SAMPLES = sorted(DEFAULT_AUDIENCES_DIR.glob("*.yml"))


def test_every_sample_audience_loads_and_every_destination_kind_is_used() -> None:
    audiences = load_audiences()
    assert len(audiences) >= 4
    assert {p.stem for p in SAMPLES} == set(audiences.by_name)
    destinations = load_destinations()
    kinds = {destinations[d].kind for a in audiences for d in a.destination_names}
    assert kinds == set(KINDS) == set(KIND_CHANNELS), f"kinds without a sample audience: {set(KINDS) - kinds}"
    for a in audiences:
        assert a.holdout_percent == 10, a.name
        assert 2 <= len(a.variants) <= 4 and sum(v.weight for v in a.variants) == 100, a.name
    assert [a.name for a in audiences] == sorted(audiences.by_name, key=lambda n: (audiences[n].priority, n))
    # A SQL selection reads only marts.
    assert load_audiences()["dormant_winback"].selection.marts() == ["trigger_dormant_winback"]


def _bad(tmp_path: Path, sample: str, change) -> str:
    spec = yaml.safe_load((DEFAULT_AUDIENCES_DIR / f"{sample}.yml").read_text("utf-8"))
    change(spec)
    path = tmp_path / f"{sample}.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    with pytest.raises(AudienceError) as caught:
        load_audience(path, load_destinations())
    message = str(caught.value)
    assert message.startswith(str(path)), message  # the file is named
    return message


BAD_FILES = {
    "unknown column": (
        "dormant_winback",
        lambda s: s["columns"].append("credit_card_no"),
        "columns: unknown column 'credit_card_no'",
    ),
    "unknown filter column": (
        "second_purchase_nudge",
        lambda s: s["selection"]["filters"].append({"column": "ltv_rank", "op": "=", "value": 1}),
        "selection.filters[1].column: unknown column 'ltv_rank' in marts.trigger_second_purchase_nudge",
    ),
    "weights not summing to 100": (
        "cart_abandonment",
        lambda s: s["variants"][1].update(weight=40),
        "variants: the weights sum to 90; they must sum to 100",
    ),
    "five variants": (
        "cart_abandonment",
        lambda s: s.update(variants=[{"name": n, "weight": 20} for n in "ABCDE"]),
        "variants: an A/B test has 2 to 4 variants, found 5",
    ),
    "a DELETE in sql": (
        "dormant_winback",
        lambda s: s["selection"].update(sql="delete from marts.dim_customers"),
        "selection.sql: must be a read-only SELECT; found a DELETE statement",
    ),
    "a SELECT then a DROP": (
        "dormant_winback",
        lambda s: s["selection"].update(sql="select person_id from marts.dim_customers; drop table marts.fct_orders"),
        "selection.sql: must be exactly one statement, found 2",
    ),
    "sql outside marts": (
        "dormant_winback",
        lambda s: s["selection"].update(sql="select customer_id as person_id from raw.oms__customers"),
        "selection.sql: reads raw.oms__customers; only tables of schema marts may be read",
    ),
    "sql reading a file": (
        "dormant_winback",
        lambda s: s["selection"].update(sql="select * from read_csv('/etc/passwd')"),
        "selection.sql: reads the table function read_csv()",
    ),
    "unknown destination": (
        "second_purchase_nudge",
        lambda s: s["destinations"].append("fax_blast"),
        "destinations[1]: unknown destination 'fax_blast'",
    ),
    "destination on another channel": (
        "second_purchase_nudge",
        lambda s: s["destinations"].append({"name": "sftp_dm_list", "columns": ["variant"]}),
        "destinations[1]: sftp_dm_list sends on channel 'dm', which is not in channels",
    ),
    "not a cron": (
        "cart_abandonment",
        lambda s: s.update(schedule="every morning"),
        "schedule: 'every morning' is not a cron expression",
    ),
    "template placeholder outside the columns": (
        "second_purchase_nudge",
        lambda s: s["destinations"][0]["templates"].update(A="こんにちは {full_name} さん"),
        "destinations[0].templates.A: uses ['full_name'], which are not among this destination's columns",
    ),
    "a typo in a field": (
        "cart_abandonment",
        lambda s: s.update(holdout_percnt=10),
        "holdout_percnt: unknown field",
    ),
    "a holdout of 80 %": (
        "cart_abandonment",
        lambda s: s.update(holdout_percent=80),
        "holdout_percent: Input should be less than or equal to 50",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda c: c.replace(" ", "_"))
def test_a_bad_audience_file_names_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    sample, change, expected = BAD_FILES[case]
    assert expected in _bad(tmp_path, sample, change)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    def change(s):
        s["variants"][0]["weight"] = 10
        s["destinations"].append("nowhere")

    message = _bad(tmp_path, "cart_abandonment", change)
    # pydantic stops at the model's own errors first; the weights are one of them
    assert "variants: the weights sum to 60" in message


# ---- docs/reliability.md #14: the export schema is within the destination's allow-list -------------------


def test_an_audience_asking_for_a_column_its_destination_forbids_fails_validation(tmp_path: Path) -> None:
    """docs/reliability.md #14: the DM print vendor's S3 drop may not receive phone numbers, nor the SMS
    destination names; both are refused at load, naming the destination and its allow-list."""
    message = _bad(
        tmp_path,
        "dormant_winback",
        lambda s: s["destinations"][1].update(columns=["full_name", "postal_code", "address", "variant", "phone"]),
    )
    assert "destinations[1].columns: 'phone' not allowed by destination s3_dm_vendor" in message
    assert "allowed: full_name, postal_code, prefecture, address, variant" in message
    message = _bad(tmp_path, "second_purchase_nudge", lambda s: s.update(columns=["variant", "full_name"]))
    assert "columns: 'full_name' not allowed by destination sms" in message


def test_every_sample_export_schema_is_within_its_destinations_allow_list() -> None:
    destinations = load_destinations()
    for audience in load_audiences():
        for name in audience.destination_names:
            cfg = destinations[name]
            columns = set(audience.destination_columns(name)) - {cfg.key_field}
            assert columns <= set(cfg.allowed_columns), (audience.name, name, columns - set(cfg.allowed_columns))
            if cfg.kind == "s3_file":
                assert not columns & {"email", "phone"}, (audience.name, name)


def test_a_file_destination_with_raw_contact_columns_needs_an_explicit_permission(tmp_path: Path) -> None:
    """docs/reliability.md #14: no raw email / phone in an S3 file unless the destination says so."""
    doc = destinations_yaml()
    s3 = next(d for d in doc["destinations"] if d["kind"] == "s3_file")
    s3["allowed_columns"] = [*s3["allowed_columns"], "email"]
    with pytest.raises(DestinationConfigError, match=r"destinations\[\d+\]: .*\['email'\] are raw contact data"):
        write_destinations(tmp_path, doc)
    s3["raw_contact_allowed"] = True
    assert "email" in write_destinations(tmp_path, doc)[s3["name"]].allowed_columns


def test_destinations_file_errors_name_the_entry(tmp_path: Path) -> None:
    doc = destinations_yaml()
    doc["destinations"][0]["channel"] = "email"  # a LINE destination on the email channel
    doc["destinations"][1]["kind"] = "carrier_pigeon"
    with pytest.raises(DestinationConfigError) as caught:
        write_destinations(tmp_path, doc)
    message = str(caught.value)
    assert "destinations[0]: Value error, channel 'email' does not fit kind 'line_multicast'" in message or (
        "destinations[0]: channel 'email' does not fit kind 'line_multicast'" in message
    )
    assert "destinations[1].kind: 'carrier_pigeon'" in message


def test_audience_names_match_their_files(tmp_path: Path) -> None:
    destinations = load_destinations()
    path = tmp_path / "renamed.yml"
    path.write_text(yaml.safe_dump(audience_spec("cart_test"), allow_unicode=True), "utf-8")
    with pytest.raises(AudienceError, match="name: 'cart_test' must equal the file name"):
        load_audience(path, destinations)


@pytest.mark.parametrize(
    "sql",
    [
        "update marts.dim_customers set email = null",
        "insert into marts.dim_customers select * from marts.dim_customers",
        "copy (select * from marts.dim_customers) to '/tmp/x.csv'",
        "attach '/tmp/other.duckdb' as other",
        "pragma database_list",
        "select getenv('HOME') as person_id",
        "select person_id from marts.dim_customers where person_id in (select person_id from read_parquet('/x'))",
        "with x as (select person_id from staging.stg_oms__customers) select * from x",
        "select person_id from information_schema.tables",
    ],
)
def test_only_read_only_selects_over_marts_pass(sql: str) -> None:
    assert validate_select_sql(sql), f"accepted: {sql}"


def test_a_select_over_marts_with_ctes_and_subqueries_passes() -> None:
    sql = """
        with vip as (select person_id from marts.customer_status where status = 'vip')
        select vip.person_id, o.order_id from vip
        join warehouse.marts.fct_orders as o using (person_id)
        where vip.person_id in (select person_id from marts.dim_customers)
    """
    assert validate_select_sql(sql) == []


def test_an_unknown_column_in_an_audiences_sql_is_found_before_it_runs(tmp_path: Path) -> None:
    message = _bad(
        tmp_path,
        "dormant_winback",
        lambda s: s["selection"].update(sql="select person_id, lifetime_value from marts.trigger_dormant_winback"),
    )
    assert "selection.sql: Binder Error: Referenced column" in message and "lifetime_value" in message


VIP = "marts.trigger_vip_reached as vip"
PII_DISGUISED = {
    "alias": f"select vip.person_id, c.phone as favourite_category, vip.vip_reached_by from {VIP} "
    "join marts.dim_customers as c using (person_id)",
    "function": f"select vip.person_id, substr(c.phone, 2) as favourite_category, vip.vip_reached_by from {VIP} "
    "join marts.dim_customers as c on c.person_id = vip.person_id",
    "concatenation": "select person_id, favourite_category, address || birth_date as vip_reached_by "
    "from marts.dim_customers join marts.trigger_vip_reached using (person_id)",
    "cast": f"select vip.person_id, cast(c.birth_date as varchar) as favourite_category, vip.vip_reached_by "
    f"from {VIP} join warehouse.marts.dim_customers as c using (person_id)",
    "case condition": f"select vip.person_id, vip.favourite_category, case when c.birth_date < date '1980-01-01' "
    f"then 'early' else 'late' end as vip_reached_by from {VIP} join marts.dim_customers as c using (person_id)",
    "scalar subquery": f"select vip.person_id, vip.vip_reached_by, (select c.email from marts.dim_customers as c "
    f"where c.person_id = vip.person_id) as favourite_category from {VIP}",
    "derived table": "select sub.person_id, sub.favourite_category, sub.vip_reached_by from ("
    "select person_id, birth_date as favourite_category, 'x' as vip_reached_by from marts.dim_customers) as sub",
    "cte": "with c as (select person_id, line_user_id as reached from marts.dim_customers) "
    f"select vip.person_id, vip.favourite_category, c.reached as vip_reached_by from {VIP} join c using (person_id)",
    "select star": "select * from (select person_id, name_kana as favourite_category, postal_code as vip_reached_by "
    "from marts.dim_customers)",
    "union": f"select person_id, favourite_category, vip_reached_by from {VIP} union all "
    "select person_id, email, prefecture from marts.dim_customers",
}


@pytest.mark.parametrize("case", sorted(PII_DISGUISED))
def test_a_pii_column_under_another_name_is_refused_by_lineage(tmp_path: Path, case: str) -> None:
    """docs/reliability.md #14: the allow-list checks where a column comes from, not its name."""
    message = _bad(tmp_path, "vip_thank_you", lambda s: s.update(selection={"sql": PII_DISGUISED[case]}))
    assert "tagged pii, which destination esp_list does not allow" in message, message
    assert "marts.dim_customers." in message


def test_lineage_lets_through_what_is_not_pii_or_what_the_destination_allows(tmp_path: Path) -> None:
    spec = yaml.safe_load((DEFAULT_AUDIENCES_DIR / "dormant_winback.yml").read_text("utf-8"))
    spec["selection"]["sql"] = (
        # prefecture is not pii; address is pii but the mailing house's list allows it; the
        # phone only filters, it does not leave.
        "select w.person_id, w.was_vip, c.prefecture || ' ' || c.address as favourite_category "
        "from marts.trigger_dormant_winback as w join marts.dim_customers as c using (person_id) "
        "where c.phone is not null"
    )
    spec["destinations"] = [spec["destinations"][0]]
    path = tmp_path / "dormant_winback.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    assert load_audience(path, load_destinations()).selection.sql
    # The same column to a destination whose allow-list lacks address is refused.
    spec["destinations"] = [{"name": "esp_list", "columns": ["favourite_category"]}]
    spec["channels"] = ["email"]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    with pytest.raises(AudienceError, match=r"'favourite_category' derives from marts.dim_customers.address"):
        load_audience(path, load_destinations())
