"""What the messaging channels report back, landed like any source (yorisoi.sources.messaging):
SMS delivery receipts from the Twilio-like API and LINE's aggregate statistics per message from
the LINE fake, both on loopback, through the destinations that send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from yorisoi.activation.delivery.destinations.base import Operation, Record
from yorisoi.activation.delivery.destinations.line import LineMulticastDestination
from yorisoi.activation.delivery.destinations.sms import SmsDestination
from yorisoi.sources.catalog import init_raw_tables
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.messaging import ingest_messaging, twilio_messages
from yorisoi.sources.registry import DEFAULT_REGISTRY, RegistryError, load_registry
from yorisoi_kit.servers import line as line_fake
from yorisoi_kit.servers import sms as sms_fake
from yorisoi_kit.servers._loopback import RunningApi

SID, TOKEN = "AC" + "1" * 32, "sms-auth-token"
LINE_TOKEN = "line-channel-token-for-tests"
DAY = dt.date(2026, 11, 20)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


@pytest.fixture
def sms_api() -> Iterator[RunningApi]:
    with sms_fake.serve_in_thread(SID, TOKEN) as running:
        yield running


def _numbers(start: int, n: int) -> list[str]:
    return [f"+819012{start + i:06d}" for i in range(n)]


def _text(server: RunningApi, numbers: list[str], batch: str) -> None:
    sms = SmsDestination(
        templates={"default": "春の新作のお知らせ"}, account_sid=SID, auth_token=TOKEN,
        from_number="+815012345678", base_url=server.base_url, name="sms_api",
    )  # fmt: skip
    try:
        results = sms.deliver(
            Operation.ADD, [Record(n, f"P{n[-4:]}", {}, None) for n in numbers], idempotency_key=batch
        )
    finally:
        sms.close()
    assert all(r.ok for r in results)


def _rows(wh: Warehouse, sql: str) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_sms_receipts_land_with_each_message_status_and_a_rerun_replaces_them(
    sms_api: RunningApi, warehouse: Warehouse
) -> None:
    source = load_registry(DEFAULT_REGISTRY).source("sms")
    reached, unreachable = _numbers(0, 5), _numbers(100, 2)
    sms_api.state.sms.unreachable.update(unreachable)
    _text(sms_api, reached + unreachable, "run-1:0")

    with httpx.Client(base_url=sms_api.base_url, auth=(SID, TOKEN)) as client:
        first = ingest_messaging(warehouse, source, client, run_id="r1", load_date=DAY, account_sid=SID)
        assert first["messages"].rows == 7
        statuses = dict(_rows(warehouse, 'select "to", status from raw.sms__messages'))
        assert {n: statuses[n] for n in unreachable} == {n: "undelivered" for n in unreachable}
        assert {statuses[n] for n in reached} == {"delivered"}
        codes = _rows(warehouse, "select error_code, count(*) from raw.sms__messages group by 1 order by 1")
        assert codes == [(30003, 2), (None, 5)]

        # The next run reads again from the watermark's day less the overlap: the same messages
        # and the new ones, each once.
        _text(sms_api, _numbers(200, 3), "run-2:0")
        second = ingest_messaging(warehouse, source, client, run_id="r2", load_date=DAY, account_sid=SID)
    assert second["messages"].rows == 10
    assert _rows(warehouse, "select count(*), count(distinct sid) from raw.sms__messages") == [(10, 10)]


def test_sms_receipts_follow_the_apis_pages(sms_api: RunningApi) -> None:
    _text(sms_api, _numbers(0, 5), "run-1:0")
    with httpx.Client(base_url=sms_api.base_url, auth=(SID, TOKEN)) as client:
        pages = list(twilio_messages(client, SID, since=None, page_size=2))
        later = list(twilio_messages(client, SID, since=dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert len({m["sid"] for p in pages for m in p}) == 5
    assert later == [[]]  # DateSent> is on or after: nothing sent tomorrow yet


def test_the_sms_source_needs_the_account_sid(sms_api: RunningApi, warehouse: Warehouse) -> None:
    source = load_registry(DEFAULT_REGISTRY).source("sms")
    with httpx.Client(base_url=sms_api.base_url) as client, pytest.raises(RegistryError, match="account SID"):
        ingest_messaging(warehouse, source, client, run_id="r1", load_date=DAY)


@pytest.fixture
def line_api() -> Iterator[RunningApi]:
    with line_fake.serve_in_thread(LINE_TOKEN, today=lambda: DAY) as running:
        yield running


def _multicast(server: RunningApi, unit: str, users: list[str]) -> None:
    line = LineMulticastDestination(
        templates={"default": "春の新作 https://shop.example.jp/spring?utm_source=line"},
        channel_access_token=LINE_TOKEN, base_url=server.base_url, aggregation_unit=unit, name="line_multicast",
    )  # fmt: skip
    try:
        results = line.deliver(Operation.ADD, [Record(u, u, {}, None) for u in users], idempotency_key=unit)
    finally:
        line.close()
    assert all(r.ok for r in results)


def test_line_statistics_land_per_unit_and_day_and_counts_under_20_users_stay_null(
    line_api: RunningApi, warehouse: Warehouse
) -> None:
    source = load_registry(DEFAULT_REGISTRY).source("line_insight")
    big = [line_fake.make_user_id(i) for i in range(60)]
    small = [line_fake.make_user_id(100 + i) for i in range(10)]
    _multicast(line_api, "spring_push", big)
    _multicast(line_api, "vip_note", small)
    state = line_api.state.line
    for user in big[:30]:
        state.view("spring_push", user)
    for user in big[:24]:
        state.click("spring_push", user, "https://shop.example.jp/spring")
    for user in small[:8]:
        state.click("vip_note", user, "https://shop.example.jp/vip")

    now = dt.datetime(2026, 11, 21, 3, 0, tzinfo=dt.UTC)  # 12:00 JST the next day
    with httpx.Client(base_url=line_api.base_url, headers={"Authorization": f"Bearer {LINE_TOKEN}"}) as client:
        first = ingest_messaging(warehouse, source, client, run_id="r1", load_date=DAY, now=now)
        assert first["unit_insights"].rows == 2 * 15  # two units x (today and the 14 days before)
        sent_day = _rows(
            warehouse,
            "select unit, unique_impressions, unique_clicks from raw.line_insight__unit_insights "
            f"where sent_on = date '{DAY}' order by unit",
        )
        assert sent_day == [("spring_push", 30, 24), ("vip_note", None, None)]
        other_days = _rows(
            warehouse,
            "select count(*) from raw.line_insight__unit_insights where sent_on <> date "
            f"'{DAY}' and coalesce(unique_impressions, 0) > 0",
        )
        assert other_days == [(0,)]
        links = _rows(
            warehouse, "select unit, url, clicks, unique_clicks from raw.line_insight__unit_link_clicks order by unit"
        )
        assert links == [
            ("spring_push", "https://shop.example.jp/spring", 24, 24),
            ("vip_note", "https://shop.example.jp/vip", None, None),
        ]

        # LINE revises its counts: the next run replaces the day's row rather than adding one.
        for user in big[30:40]:
            state.view("spring_push", user)
        ingest_messaging(warehouse, source, client, run_id="r2", load_date=DAY, now=now)
    assert _rows(
        warehouse,
        f"select count(*), max(unique_impressions) from raw.line_insight__unit_insights "
        f"where unit = 'spring_push' and sent_on = date '{DAY}'",
    ) == [(1, 40)]


def test_a_brand_without_the_messaging_sources_gets_them_empty(tmp_path: Path, warehouse: Warehouse) -> None:
    registry_file = tmp_path / "registry.yml"
    text = DEFAULT_REGISTRY.read_text("utf-8")
    for name in ("sms", "line_insight"):
        text = text.replace(f"  {name}:\n    system:", f"  {name}:\n    enabled: false\n    system:")
    registry_file.write_text(text, "utf-8")
    registry = load_registry(registry_file)
    assert not registry.source("sms").enabled and not registry.source("line_insight").enabled
    made = init_raw_tables(warehouse, registry)
    assert {made[t] for t in ("sms__messages", "line_insight__unit_insights", "line_insight__unit_link_clicks")} == {
        "created"
    }
    assert _rows(warehouse, "select count(*) from raw.sms__messages") == [(0,)]


def test_a_line_multicast_is_tagged_with_its_audience_unless_the_audience_names_a_unit() -> None:
    """LINE's statistics come per custom aggregation unit: the audience's name is the unit that
    fct_campaign_line_insights joins on."""
    from yorisoi.activation.run import destination_config
    from yorisoi.activation.selection.definitions import load_audiences, load_destinations

    destinations = load_destinations()
    audience = load_audiences(destinations=destinations)["cart_abandonment"]
    assert destination_config(audience, destinations["line_multicast"])["aggregation_unit"] == "cart_abandonment"
    named = audience.model_copy(
        update={
            "destinations": [
                d.model_copy(update={"options": {"aggregation_unit": "spring_2026"}})
                if d.name == "line_multicast"
                else d
                for d in audience.destinations
            ]
        }
    )
    assert destination_config(named, destinations["line_multicast"])["aggregation_unit"] == "spring_2026"
    assert "aggregation_unit" not in destination_config(audience, destinations["smtp_email"])


def test_long_audience_names_get_distinct_stable_line_units_the_insights_model_joins_on() -> None:
    """Two audiences sharing their first 30 characters (LINE's limit) keep apart statistics: the
    unit is a 21-character prefix, "_" and a hash of the whole name, the same on every run; the
    units in fct_campaign_line_insights' unit test (which the model's SQL must derive from the
    audiences) are the ones the destination sends."""
    import re

    import yaml

    from yorisoi.activation.delivery.destinations.line import aggregation_unit
    from yorisoi.activation.run import destination_config
    from yorisoi.activation.selection.definitions import load_audiences, load_destinations

    a, b = "summer_sale_2026_returning_customers_a", "summer_sale_2026_returning_customers_b"
    assert a[:30] == b[:30] and aggregation_unit(a) != aggregation_unit(b)
    assert aggregation_unit(a) == aggregation_unit(a) == "summer_sale_2026_retu_b849d0fa"
    assert aggregation_unit("x" * 30) == "x" * 30 and aggregation_unit("cart_abandonment") == "cart_abandonment"
    for name in (a, b, "x" * 31, "y" * 200):
        assert re.fullmatch(r"[A-Za-z0-9_]{1,30}", aggregation_unit(name))

    destinations = load_destinations()
    audience = load_audiences(destinations=destinations)["cart_abandonment"]
    units = {
        destination_config(audience.model_copy(update={"name": n}), destinations["line_multicast"])["aggregation_unit"]
        for n in (a, b)
    }
    assert units == {aggregation_unit(a), aggregation_unit(b)}

    from yorisoi.sources.registry import PROJECT_ROOT

    unit_tests = PROJECT_ROOT / "dbt_project" / "models" / "marts" / "campaigns" / "_campaigns__unit_tests.yml"
    tests = yaml.safe_load(unit_tests.read_text("utf-8"))["unit_tests"]
    test = next(t for t in tests if t["model"] == "fct_campaign_line_insights")
    expected = {(r["audience"], r["aggregation_unit"]) for r in test["expect"]["rows"]}
    assert expected == {(name, aggregation_unit(name)) for name, _ in expected}
