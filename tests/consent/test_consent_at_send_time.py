"""docs/reliability.md #16, first half: an opt-out landed in raw before the export starts is
honoured even if the consent marts were built earlier; when that cannot be shown, the breaker
refuses the export with the reason.

The models are replayed on raw rows (consent_harness); then an opt-out lands in raw WITHOUT a
rebuild, from each system that records one, and the export's own checks run on that warehouse:
the circuit breaker's consent check, the engine's suppression check (before every send and
retry) and the records an audience sends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import yaml
from consent_harness import TEST_MATCH_KEY, Person, World

from yorisoi.activation.selection import breaker, sendtime
from yorisoi.activation.selection.definitions import load_audience, load_destinations
from yorisoi.activation.selection.membership import build_records, suppression_check

SECRET = TEST_MATCH_KEY.encode()


def connector(world: World) -> Callable[..., duckdb.DuckDBPyConnection]:
    """What connect_warehouse gives the export: a connection on the test's warehouse."""

    def connect(*_args, **_kwargs) -> duckdb.DuckDBPyConnection:
        cursor = world.wh.con.cursor()
        cursor.execute(f'use "{world.wh.catalog}"')
        return cursor

    return connect


def deliverable_now(world: World, channel: str, person_ids: set[str]) -> set[str]:
    """Who of `person_ids` the engine would still send to on `channel` now."""
    return person_ids - suppression_check(channel, connect=connector(world), secret=SECRET)(person_ids)


def _customer(world: World) -> Person:
    """Deliverable on every channel: shop email and SMS, LINE friend, OMS DM and calls."""
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed", sms_state="subscribed")
    world.add_oms_customer(p, dm_permission=True, call_permission=True)
    world.add_line_user(p, follow=True)
    return p


# name -> (channel it stops, how it lands)
OPT_OUTS: dict[str, tuple[str, Callable[[World, Person], None]]] = {
    "shop unsubscribe": ("email", lambda w, p: w.shop_marketing(p, "email", "unsubscribed")),
    "shop SMS unsubscribe": ("sms", lambda w, p: w.shop_marketing(p, "sms", "unsubscribed")),
    "OMS DM permission off": ("dm", lambda w, p: w.oms_update(p, dm_permission=False)),
    "OMS call permission off": ("call", lambda w, p: w.oms_update(p, call_permission=False)),
    "OMS blacklisting": ("email", lambda w, p: w.oms_update(p, blacklisted=True)),
    "call-centre 配信停止 by phone": ("sms", lambda w, p: w.callcenter_request(p, "配信停止", "sms", by="phone")),
    "call-centre 発送停止 by code": ("dm", lambda w, p: w.callcenter_request(p, "発送停止", "dm", by="code")),
    "call-centre 削除依頼 by email": ("line", lambda w, p: w.callcenter_request(p, "削除依頼", "all", by="email")),
    "email-provider unsubscribe": ("email", lambda w, p: w.esp_unsubscribe(p)),
    "email-provider unsubscribe naming only the address": (
        "email",
        lambda w, p: w.esp_unsubscribe(p, by_email_only=True),
    ),
    "LINE block": ("line", lambda w, p: w.line_event(p, follow=False)),
}


@pytest.mark.parametrize("opt_out", list(OPT_OUTS))
def test_an_opt_out_landed_after_the_build_is_honoured_by_the_next_send(world: World, opt_out: str) -> None:
    channel, land = OPT_OUTS[opt_out]
    p, bystander = _customer(world), _customer(world)
    world.wh.rebuild()  # the marts are built...
    pid, other = world.person_id(p), world.person_id(bystander)
    assert deliverable_now(world, channel, {pid, other}) == {pid, other}
    land(world, p)  # ...then the opt-out lands in raw, and nothing is rebuilt
    assert (pid, channel) in set(world.wh.query("select person_id, channel from marts.deliverable_customers"))
    assert deliverable_now(world, channel, {pid, other}) == {other}, f"{opt_out} landed after the build was sent to"
    con = connector(world)()
    try:
        check, late = breaker.check_consent(con, SECRET)
    finally:
        con.close()
    assert check.passed and pid in late.people_on(channel), check.reason
    assert other not in late.people_on(channel)


def test_the_records_an_audience_sends_leave_out_a_late_unsubscribe_and_say_so(world: World, tmp_path: Path) -> None:
    p, bystander = _customer(world), _customer(world)
    world.wh.rebuild()
    world.shop_marketing(p, "email", "unsubscribed")
    spec = {
        "name": "newsletter",
        "owner": "tests",
        "description": "newsletter",
        "selection": {"mart": "dim_customers"},
        "channels": ["email"],
        "destinations": [{"name": "esp_list", "columns": ["full_name"]}],
        "priority": 1,
        "holdout_percent": 0,
        "columns": ["full_name"],
    }
    (tmp_path / "newsletter.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    destinations = load_destinations()
    audience = load_audience(tmp_path / "newsletter.yml", destinations)
    con = connector(world)()
    try:
        check, late = breaker.check_consent(con, SECRET)
        result = build_records(
            audience,
            destinations["esp_list"],
            [world.person_id(p), world.person_id(bystander)],
            con,
            secret=SECRET,
            withdrawn=(late.people_on("email"), late.keys_on("email")),
        )
    finally:
        con.close()
    assert [r.person_id for r in result.records] == [world.person_id(bystander)]
    assert result.dropped == {"opted_out_since_build": 1}
    assert check.details["late_rows"]["ecommerce__customers"] == 1


def _refusal(world: World) -> str:
    con = connector(world)()
    try:
        check, late = breaker.check_consent(con, SECRET)
    finally:
        con.close()
    assert not check.passed and late is None
    everyone = {world.person_id(p) for p in world.people}
    assert deliverable_now(world, "email", everyone) == set(), "the engine's check holds everyone back too"
    return check.reason


def test_without_build_marks_the_export_is_refused(world: World) -> None:
    _customer(world)
    world.wh.rebuild()
    world.wh.con.execute("drop table marts.consent_build_marks")
    assert "no consent build marks" in _refusal(world)


def test_an_unreadable_consent_table_refuses_the_export(world: World) -> None:
    p = _customer(world)
    world.esp_unsubscribe(p)
    world.wh.rebuild()
    world.wh.con.execute("alter table raw.sftp__esp_sends rename to sftp__esp_sends_moved")
    try:
        assert "raw.sftp__esp_sends cannot be read" in _refusal(world)
    finally:
        world.wh.con.execute("alter table raw.sftp__esp_sends_moved rename to sftp__esp_sends")


def test_a_consent_table_newer_than_its_mark_that_cannot_be_checked_refuses_the_export(world: World) -> None:
    p = _customer(world)
    world.wh.rebuild()
    world.shop_marketing(p, "email", "unsubscribed")
    world.wh.con.execute("alter table raw.ecommerce__customers rename column email_marketing_state to email_state")
    try:
        assert "cannot check the consent rows landed in raw.ecommerce__customers" in _refusal(world)
    finally:
        world.wh.con.execute("alter table raw.ecommerce__customers rename column email_state to email_marketing_state")


def test_a_consent_table_with_rows_but_no_mark_refuses_the_export(world: World) -> None:
    p = _customer(world)
    world.wh.rebuild()
    world.wh.con.execute(
        "create or replace table marts.consent_build_marks as "
        "select * from marts.consent_build_marks where source_table <> 'sftp__line_friends'"
    )
    world.line_event(p, follow=False)
    assert "raw.sftp__line_friends holds consent rows but the build recorded no mark" in _refusal(world)


def test_a_late_request_by_name_alone_reaches_a_rare_names_holders_not_a_common_names(world: World) -> None:
    """As the models match it: the name alone stands for the caller only when no more than
    max_group_size (6) records hold it."""

    def namesakes(n: int) -> list[Person]:
        people = [world.add_person() for _ in range(n)]
        for p in people:
            p.last_name, p.first_name = people[0].last_name, people[0].first_name
            world.add_shop_account(p, email_state="subscribed")
            world.add_oms_customer(p, dm_permission=True)
        return people

    rare, common = namesakes(2), namesakes(4)  # 4 and 8 records of the name
    world.wh.rebuild()
    rare_ids = {world.person_id(p) for p in rare}
    common_ids = {world.person_id(p) for p in common}
    world.callcenter_request(rare[0], "配信停止", "email", by="name")
    world.callcenter_request(common[0], "配信停止", "email", by="name")
    assert deliverable_now(world, "email", rare_ids | common_ids) == common_ids


def test_a_late_request_by_name_alone_folds_variant_kanji_as_the_models_do(world: World) -> None:
    p = world.add_person()
    p.last_name, p.first_name = "高橋", "澪奈"
    world.add_shop_account(p, email_state="subscribed")
    world.wh.rebuild()
    pid = world.person_id(p)
    assert deliverable_now(world, "email", {pid}) == {pid}
    world.callcenter_request(p, "配信停止", "email", by="name", name="髙橋 澪奈")
    assert deliverable_now(world, "email", {pid}) == set()


def test_rows_the_build_read_are_not_checked_again(world: World) -> None:
    p = _customer(world)
    world.shop_marketing(p, "sms", "unsubscribed")
    world.wh.rebuild()
    con = connector(world)()
    try:
        late = sendtime.check(con, SECRET)
    finally:
        con.close()
    assert sum(late.late_rows.values()) == 0 and late.withdrawals == 0
