"""The consent rules of docs/reliability.md #1, one worked example each, on the same harness
as the state machine (the dbt models replayed on hand-written source rows)."""

from __future__ import annotations

from datetime import date

import pytest
from consent_harness import CHANNELS, CompiledProject, Person, Warehouse, World


def _deliverable(world: World, person: Person) -> set[str]:
    return world.deliverable_channels(person)


def _ledger(world: World, person: Person, channel: str) -> tuple[str, str, str]:
    pid = world.person_id(person)
    (row,) = world.wh.query(
        "select consent_status, source, evidence from marts.consent_ledger where person_id = ? and channel = ?",
        [pid, channel],
    )
    return row


def _reasons(world: World, person: Person, channel: str) -> set[str]:
    pid = world.person_id(person)
    rows = world.wh.query(
        "select reason_code from marts.deliverable_exclusions where person_id = ? and channel = ?", [pid, channel]
    )
    return {r for (r,) in rows}


def test_esp_unsubscribe_beats_an_older_shop_subscribed(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed")
    assert _deliverable(world, p) == {"email"}

    world.esp_unsubscribe(p)  # the shop account still says 'subscribed'
    assert world.wh.query("select email_marketing_state from raw.ecommerce__customers") == [("subscribed",)]
    assert "email" not in _deliverable(world, p)
    assert _ledger(world, p, "email")[:2] == ("opted_out", "esp")
    assert _reasons(world, p, "email") == {"opted_out"}

    world.shop_marketing(p, "email", "subscribed")  # a later opt-in wins again
    assert _deliverable(world, p) == {"email"}


def test_an_opt_out_wins_a_tie(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, sms_state="subscribed")
    world.add_shop_account(p)  # a second account of the same person
    at = world.now()
    world.shop_marketing(p, "email", "subscribed", account=0, at=at)
    world.esp_unsubscribe(p, account=1, at=at)  # the same second, through the other account
    # The call centre writes Japan time without zone: 09:00 JST is 00:00 UTC, the same instant.
    world.callcenter_request(p, "配信停止", "sms", by="phone", at=at)
    assert world.wh.query("select received_at from raw.sftp__callcenter_requests") == [(world.jst(at),)]
    assert _deliverable(world, p) == set()
    assert _ledger(world, p, "email")[:2] == ("opted_out", "esp")
    assert _ledger(world, p, "sms")[:2] == ("opted_out", "callcenter")


def test_callcenter_stop_found_by_email_suppresses_a_subscribed_shop_account(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed")
    world.add_oms_customer(p, dm_permission=True)
    assert _deliverable(world, p) == {"email", "dm"}

    # The caller gives only an email address: no customer code, no phone.
    world.callcenter_request(p, "配信停止", "email", by="email")
    assert world.wh.query("select customer_code, phone from raw.sftp__callcenter_requests") == [(None, None)]
    assert _deliverable(world, p) == {"dm"}  # the other channels are untouched
    status, source, evidence = _ledger(world, p, "email")
    assert (status, source) == ("opted_out", "callcenter")
    assert "matched by email" in evidence


def test_late_older_follow_does_not_revive_a_line_block(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p)
    world.add_line_user(p, follow=True)
    assert _deliverable(world, p) == {"line"}
    world.line_event(p, follow=False)  # blocked
    blocked_at = max(e.at for e in p.events["line"])
    assert _deliverable(world, p) == set()

    # Last month's export, delivered late, holds a follow from before the block.
    world.line_event(p, follow=True, at=blocked_at - (blocked_at - p.events["line"][0].at) / 2)
    assert world.wh.query("select count(*) from raw.sftp__line_friends") == [(3,)]
    assert _deliverable(world, p) == set()
    assert _ledger(world, p, "line")[:2] == ("opted_out", "line")

    world.line_event(p, follow=True)  # a new follow does
    assert _deliverable(world, p) == {"line"}


def test_erasure_removes_the_person_from_every_channel_and_empties_their_pii(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed", sms_state="subscribed")
    world.add_oms_customer(p, dm_permission=True, call_permission=True)
    world.add_line_user(p, follow=True)
    assert _deliverable(world, p) == set(CHANNELS)

    world.callcenter_request(p, "削除依頼", "all", by="code")  # identified by the OMS customer code only
    assert _deliverable(world, p) == set()
    pid = world.person_id(p)
    for channel in CHANNELS:
        assert "erased" in _reasons(world, p, channel)
    (row,) = world.wh.query(
        "select is_erased, full_name, name_kana, email, phone, postal_code, prefecture, address, birth_date, "
        "gender, line_user_id from marts.dim_customers where person_id = ?",
        [pid],
    )
    assert row[0] is True
    assert row[1:] == (None,) * 10

    # Consent given again after the erasure, on a re-delivered account and on a new one: still erased.
    world.shop_marketing(p, "email", "subscribed")
    world.add_shop_account(p, email_state="subscribed", sms_state="subscribed")
    world.line_event(p, follow=True)
    assert _deliverable(world, p) == set()


def test_an_erasure_matched_by_the_name_alone_stops_every_namesake_and_erases_nobody(world: World) -> None:
    caller = world.add_person()
    namesake = world.add_person()
    namesake.last_name, namesake.first_name = caller.last_name, caller.first_name  # nothing else shared
    # Their birthdays differ, so identity resolution keeps the two apart.
    world.add_oms_customer(caller, dm_permission=True, call_permission=True, birth_date=date(1980, 1, 1))
    world.add_oms_customer(namesake, dm_permission=True, call_permission=True, birth_date=date(1991, 2, 2))
    assert _deliverable(world, caller) == _deliverable(world, namesake) == {"dm", "call"}
    assert world.person_id(caller) != world.person_id(namesake)

    world.callcenter_request(caller, "削除依頼", "all", by="name")  # no code, phone or email
    for p in (caller, namesake):
        assert _deliverable(world, p) == set()
        assert _reasons(world, p, "dm") == {"opted_out"}
        (row,) = world.wh.query(
            "select is_erased, full_name from marts.dim_customers where person_id = ?", [world.person_id(p)]
        )
        assert row[0] is False and row[1] is not None  # not erased: the name is still there
    assert world.wh.query("select count(*) from marts.erasure_tombstones") == [(0,)]
    assert world.wh.query(
        "select matched_by, count(distinct person_id) from intermediate.int_callcenter_requests_resolved group by 1"
    ) == [("name_only", 2)]

    world.callcenter_request(caller, "削除依頼", "all", by="code")  # the caller, identified: erased
    assert _deliverable(world, caller) == set()
    assert world.wh.query("select count(*) from marts.erasure_tombstones") == [(1,)]
    assert "erased" in _reasons(world, caller, "dm")
    assert "erased" not in _reasons(world, namesake, "dm")


def test_an_opt_out_by_a_common_name_alone_stops_nobody_and_waits_for_the_steward(world: World) -> None:
    """A name held by more records than max_group_size (6) does not stand for the caller: the
    opt-out would stop every customer of that name. The request matches nobody (the data
    steward's queue, optout_requests_to_review, lists it)."""
    namesakes = [world.add_person() for _ in range(4)]
    for p in namesakes:
        p.last_name, p.first_name = namesakes[0].last_name, namesakes[0].first_name
        world.add_shop_account(p, email_state="subscribed")
        world.add_oms_customer(p, dm_permission=True)  # 8 records of the name
    world.callcenter_request(namesakes[0], "配信停止", "email", by="name")
    for p in namesakes:
        assert _deliverable(world, p) == {"email", "dm"}
    assert world.wh.query("select matched_by, person_id from intermediate.int_callcenter_requests_resolved") == [
        (None, None)
    ]


@pytest.mark.parametrize(("on_record", "typed"), [("髙橋", "髙橋"), ("髙橋", "高橋"), ("高橋", "髙橋")])
def test_a_name_alone_matches_whichever_form_of_a_variant_kanji(world: World, on_record: str, typed: str) -> None:
    """Identity folds variant kanji (髙橋 = 高橋) in its name keys; the requests' names fold
    the same way, or a 髙橋 could never be matched by name, however rare."""
    p = world.add_person()
    p.last_name, p.first_name = on_record, "澪奈"
    world.add_shop_account(p, email_state="subscribed")
    world.callcenter_request(p, "配信停止", "email", by="name", name=f"{typed} 澪奈")
    assert _deliverable(world, p) == set()
    assert world.wh.query("select matched_by from intermediate.int_callcenter_requests_resolved") == [("name_only",)]


def test_an_opt_out_on_a_merged_record_counts_for_the_person(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed")
    assert _deliverable(world, p) == {"email"}

    world.add_oms_customer(p)  # the same person phones in an order: an OMS record that merges
    world.callcenter_request(p, "配信停止", "email", by="code")  # matched by the OMS customer code only
    assert _deliverable(world, p) == set()
    assert world.wh.query("select matched_by from intermediate.int_callcenter_requests_resolved") == [
        ("customer_code",)
    ]

    world.shop_marketing(p, "email", "subscribed")
    assert _deliverable(world, p) == {"email"}
    world.oms_update(p, blacklisted=True)  # blacklisted on the OMS record: every channel of the person
    assert _deliverable(world, p) == set()
    assert _reasons(world, p, "email") == {"blacklisted"}


def test_the_harness_uses_the_landing_types_and_replays_every_model(
    compiled_project: CompiledProject, session_warehouse: Warehouse
) -> None:
    """The hand-made raw tables have the landing's types, and every model the consent marts need
    is replayed (int_identity_person_ids compiled against no previous version of itself)."""
    types = {
        (t, c): d
        for t, c, d in session_warehouse.query(
            "select table_name, column_name, data_type from duckdb_columns() where schema_name = 'raw'"
        )
    }
    expected = {
        ("ecommerce__customers", "id"): "VARCHAR",  # identifiers are text
        ("ecommerce__customers", "email_marketing_updated_at"): "TIMESTAMP WITH TIME ZONE",
        ("oms__customers", "registered_at"): "TIMESTAMP",
        ("oms__customers", "birth_date"): "DATE",
        ("oms__customers", "dm_permission"): "BOOLEAN",
        ("sftp__callcenter_requests", "received_at"): "TIMESTAMP",
        ("sftp__line_friends", "event_at"): "TIMESTAMP WITH TIME ZONE",
        ("sftp__line_id_links", "ec_customer_id"): "VARCHAR",
        ("sftp__esp_sends", "unsubscribed_at"): "TIMESTAMP WITH TIME ZONE",
        ("sftp__pos_members", "joined_on"): "DATE",
        ("sftp__esp_sends", "_loaded_at"): "TIMESTAMP WITH TIME ZONE",
        ("sftp__esp_sends", "_source_file"): "VARCHAR",
    }
    assert {k: types.get(k) for k in expected} == expected

    names = [m.name for m in compiled_project.models]
    for needed in ("int_consent_events", "consent_ledger", "deliverable_exclusions", "erasure_tombstones"):
        assert needed in names
    assert names.index("consent_ledger") < names.index("dim_customers") < names.index("deliverable_exclusions")
    person_ids = compiled_project.model("int_identity_person_ids")
    assert person_ids.relation not in person_ids.sql
    failed = [r for r in compiled_project.dbt_results if r["status"] not in ("success", "pass")]
    assert not failed


def _deliverable_each(world: World, people: list[Person]) -> list[set[str]]:
    """Rebuild once, then the channels each person is deliverable on."""
    world.wh.rebuild()
    deliverable = world.observed().deliverable
    return [{c for c in CHANNELS if world.person_id(p) in deliverable[c]} for p in people]


def _answers(world: World, request_no: str) -> dict[str | None, str]:
    """The data steward's pick list for a request in the queue (marts.optout_request_candidates,
    as last rebuilt): record key (None: "none of our customers") -> resolution code."""
    return dict(
        world.wh.query(
            "select record_key, resolution_code from marts.optout_request_candidates where request_no = ?",
            [request_no],
        )
    )


def _resolve(world: World, request_no: str, resolution_code: str) -> None:
    """The data steward's answer to a request in the queue (seed callcenter_request_resolutions):
    the request number and the resolution code copied from the pick list."""
    world.wh.con.execute(
        "insert into reference.callcenter_request_resolutions values (?, ?, 'steward', current_date, 'called back')",
        [request_no, resolution_code],
    )


def _unapplied_rows(world: World) -> list[tuple[str, str]]:
    """(request_no, resolution_code) of the seed rows the warning test assert_steward_resolutions_apply names."""
    return [row[:2] for row in world.wh.data_test_rows("assert_steward_resolutions_apply")]


def _namesakes(world: World, n: int, *, name: tuple[str, str] | None = None, born_from: int = 0) -> list[Person]:
    """`n` people of one name (`name`, else the first one's), nothing else shared; each with one
    OMS customer (DM and calls allowed) and a different birthday (the `born_from`-th onwards), so
    identity resolution keeps them apart."""
    people = [world.add_person() for _ in range(n)]
    for i, p in enumerate(people, start=born_from):
        p.last_name, p.first_name = name or (people[0].last_name, people[0].first_name)
        world.add_oms_customer(p, dm_permission=True, call_permission=True, birth_date=date(1970 + i, 1, 1 + i % 28))
    return people


def test_the_pick_list_lists_every_namesake_and_none_of_our_customers(world: World) -> None:
    caller, namesake = _namesakes(world, 2)
    other = world.add_person()
    world.add_oms_customer(other, dm_permission=True)
    world.callcenter_request(caller, "削除依頼", "all", by="name")
    world.callcenter_request(other, "配信停止", "dm", by="code")  # matched by the code: not in the queue
    world.wh.rebuild()
    rows = world.wh.query(
        "select request_no, answer, record_key, person_id, is_held_until_answered, length(resolution_code) "
        "from marts.optout_request_candidates order by record_key nulls last"
    )
    assert rows == [
        ("CC0000001", "caller_is_this_record", f"oms:{caller.oms_codes[0]}", world.person_id(caller), True, 12),
        ("CC0000001", "caller_is_this_record", f"oms:{namesake.oms_codes[0]}", world.person_id(namesake), True, 12),
        ("CC0000001", "none_of_our_customers", None, None, False, 12),
    ]
    assert len(set(_answers(world, "CC0000001").values())) == 3


def test_a_name_held_by_more_records_than_the_cap_lists_none_of_our_customers_alone(world: World) -> None:
    """vars.identity.max_review_candidates (30): a name held by more records lists no record (the
    steward records the opt-out in the source); one held by fewer, though too common for the name
    fallback (more than 6), lists them all."""
    common = [world.add_person() for _ in range(31)]
    rarer = [world.add_person() for _ in range(8)]
    for group in (common, rarer):
        for p in group:
            p.last_name, p.first_name = group[0].last_name, group[0].first_name
            world.add_shop_account(p, email_state="subscribed")
    world.callcenter_request(common[0], "配信停止", "email", by="name")
    world.callcenter_request(rarer[0], "配信停止", "email", by="name")
    world.wh.rebuild()
    assert list(_answers(world, "CC0000001")) == [None]
    assert set(_answers(world, "CC0000002")) == {None} | {f"ecommerce:{p.shop_ids[0]}" for p in rarer}
    assert world.wh.query("select distinct matched_by from marts.optout_request_candidates") == [("unmatched",)]


def test_a_name_typed_given_name_first_lists_the_shop_accounts_of_that_name(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed")
    world.callcenter_request(p, "配信停止", "email", by="name", name=f"{p.first_name} {p.last_name}")
    world.wh.rebuild()
    assert set(_answers(world, "CC0000001")) == {None, f"ecommerce:{p.shop_ids[0]}"}


def test_a_steward_picking_the_caller_of_a_name_only_erasure_erases_the_caller_alone(world: World) -> None:
    caller, namesake = _namesakes(world, 2)
    world.callcenter_request(caller, "削除依頼", "all", by="name")
    assert _deliverable_each(world, [caller, namesake]) == [set(), set()]

    _resolve(world, "CC0000001", _answers(world, "CC0000001")[f"oms:{caller.oms_codes[0]}"])
    assert _deliverable_each(world, [caller, namesake]) == [set(), {"dm", "call"}]
    assert "erased" in _reasons(world, caller, "dm")
    assert world.wh.query("select count(*) from marts.erasure_tombstones") == [(1,)]
    assert world.wh.query(
        "select matched_by, count(distinct person_id) from intermediate.int_callcenter_requests_resolved group by 1"
    ) == [("steward", 1)]
    assert world.wh.query("select count(*) from marts.optout_request_candidates") == [(0,)]
    assert _unapplied_rows(world) == []


def test_a_namesakes_code_picks_exactly_that_namesake(world: World) -> None:
    """Each namesake's record has its own code: the one copied is the one erased (here the steward
    found that the caller was the second namesake), and every other person of the name is released."""
    caller, picked, other = _namesakes(world, 3)
    world.callcenter_request(caller, "削除依頼", "all", by="name")
    assert _deliverable_each(world, [caller, picked, other]) == [set(), set(), set()]

    _resolve(world, "CC0000001", _answers(world, "CC0000001")[f"oms:{picked.oms_codes[0]}"])
    assert _deliverable_each(world, [picked, caller, other]) == [set(), {"dm", "call"}, {"dm", "call"}]
    assert "erased" in _reasons(world, picked, "dm")
    assert all("erased" not in _reasons(world, p, "dm") for p in (caller, other))
    assert world.wh.query("select distinct person_id from marts.erasure_tombstones") == [(world.person_id(picked),)]


def test_a_steward_finding_the_caller_is_no_customer_releases_every_namesake(world: World) -> None:
    namesakes = [world.add_person() for _ in range(2)]
    for p in namesakes:
        p.last_name, p.first_name = namesakes[0].last_name, namesakes[0].first_name
        world.add_shop_account(p, email_state="subscribed")
        world.add_oms_customer(p, dm_permission=True)  # 4 records of the name: rare enough
    world.callcenter_request(namesakes[0], "配信停止", "email", by="name")
    assert _deliverable_each(world, namesakes) == [{"dm"}, {"dm"}]

    _resolve(world, "CC0000001", _answers(world, "CC0000001")[None].upper())  # the case does not matter
    assert _deliverable_each(world, namesakes) == [{"email", "dm"}, {"email", "dm"}]
    assert world.wh.query("select matched_by, person_id from intermediate.int_callcenter_requests_resolved") == [
        (None, None)
    ]
    assert _unapplied_rows(world) == []


def test_a_steward_resolution_never_lifts_what_an_identifier_matched(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p, email_state="subscribed")
    world.add_oms_customer(p, dm_permission=True)
    world.callcenter_request(p, "配信停止", "email", by="email")
    world.wh.rebuild()
    assert _answers(world, "CC0000001") == {}  # not in the queue
    (code,) = world.wh.query(
        "select resolution_code from intermediate.int_callcenter_request_candidates "
        "where request_no = 'CC0000001' and record_key is null"
    )[0]
    _resolve(world, "CC0000001", code)
    assert _deliverable(world, p) == {"dm"}
    assert _unapplied_rows(world) == [("CC0000001", code)]


def test_a_none_row_with_a_mistyped_request_number_releases_nobody_and_warns(world: World) -> None:
    """The steward found that the caller of CC0000001 is none of our customers, copied its code,
    and typed CC0000002: another caller's opt-out must not be released, and the build says so."""
    first, second = _namesakes(world, 2), _namesakes(world, 2)
    world.callcenter_request(first[0], "配信停止", "all", by="name")
    world.callcenter_request(second[0], "配信停止", "all", by="name")
    assert _deliverable_each(world, first + second) == [set()] * 4

    code = _answers(world, "CC0000001")[None]
    _resolve(world, "CC0000002", code)
    assert _deliverable_each(world, first + second) == [set()] * 4
    assert world.wh.query(
        "select distinct matched_by, is_resolved_by_steward from intermediate.int_callcenter_requests_resolved"
    ) == [("name_only", False)]
    assert world.wh.query("select request_no from marts.optout_requests_to_review order by 1") == [
        ("CC0000001",),
        ("CC0000002",),
    ]
    assert _unapplied_rows(world) == [("CC0000002", code)]


def test_a_code_copied_from_another_requests_answer_is_ignored(world: World) -> None:
    """The steward copied CC0000001's number and, from the line below, a record of CC0000002: the
    stranger of the other request is neither stopped nor erased, and the caller's namesakes stay
    held."""
    caller, namesake = _namesakes(world, 2)
    stranger, strangers_namesake = _namesakes(world, 2)
    world.callcenter_request(caller, "削除依頼", "all", by="name")
    world.callcenter_request(stranger, "架電停止", "call", by="name")
    world.wh.rebuild()

    code = _answers(world, "CC0000002")[f"oms:{stranger.oms_codes[0]}"]
    _resolve(world, "CC0000001", code)
    assert _deliverable_each(world, [caller, namesake, stranger, strangers_namesake]) == [
        set(),
        set(),
        {"dm"},
        {"dm"},
    ]
    assert world.wh.query("select count(*) from marts.erasure_tombstones") == [(0,)]
    assert _unapplied_rows(world) == [("CC0000001", code)]


def test_a_mistyped_code_is_ignored(world: World) -> None:
    caller, namesake = _namesakes(world, 2)
    world.callcenter_request(caller, "削除依頼", "all", by="name")
    world.wh.rebuild()
    code = _answers(world, "CC0000001")[f"oms:{caller.oms_codes[0]}"]
    typo = code[:5] + ("0" if code[5] != "0" else "1") + code[6:]
    _resolve(world, "CC0000001", typo)
    assert _deliverable_each(world, [caller, namesake]) == [set(), set()]
    assert world.wh.query("select count(*) from marts.erasure_tombstones") == [(0,)]
    assert _unapplied_rows(world) == [("CC0000001", typo)]


def test_a_name_typed_in_kana_lists_the_records_of_that_kana_and_the_code_picks_the_caller(world: World) -> None:
    """Operators type what the caller said: a name in kana only is compared with each record's
    kana (a store card's) or its kanji name's likeliest reading (an OMS customer's)."""
    caller, namesake = world.add_person(), world.add_person()
    namesake.last_name, namesake.first_name = caller.last_name, caller.first_name
    # The card's birthday is the caller's (identity keeps the namesake, born another day, apart).
    world.add_oms_customer(caller, dm_permission=True, call_permission=True, birth_date=date(1980, 1, 1))
    world.add_pos_member(caller)  # the same phone, email and birthday: one person with the OMS customer
    world.add_oms_customer(namesake, dm_permission=True, call_permission=True, birth_date=date(1991, 2, 2))
    world.callcenter_request(caller, "削除依頼", "all", by="name", name=caller.name_kana)  # ｻﾄｳ ﾀﾛｳ
    assert _deliverable_each(world, [caller, namesake]) == [{"dm", "call"}, {"dm", "call"}]  # nobody matched
    assert world.person_id(caller) != world.person_id(namesake)
    answers = _answers(world, "CC0000001")
    assert set(answers) == {
        None,
        f"oms:{caller.oms_codes[0]}",
        f"pos:{caller.pos_cards[0]}",
        f"oms:{namesake.oms_codes[0]}",
    }

    _resolve(world, "CC0000001", answers[f"pos:{caller.pos_cards[0]}"])
    assert _deliverable_each(world, [caller, namesake]) == [set(), {"dm", "call"}]
    assert world.wh.query("select distinct person_id from marts.erasure_tombstones") == [(world.person_id(caller),)]
    assert _unapplied_rows(world) == []


def test_a_stewards_pick_still_applies_when_more_records_come_to_hold_the_name(world: World) -> None:
    """The pick list shows the records of a name only while at most max_review_candidates (30)
    hold it, but a seed row's code is checked against every holder: a pick made when 25 records
    held 田中 美咲 still stops the caller after six more namesakes land (31)."""
    name = ("田中", "美咲")
    namesakes = _namesakes(world, 25, name=name)
    caller = namesakes[3]
    world.callcenter_request(caller, "架電停止", "call", by="name")
    world.wh.rebuild()
    answers = _answers(world, "CC0000001")
    assert len(answers) == 26
    _resolve(world, "CC0000001", answers[f"oms:{caller.oms_codes[0]}"])
    assert _deliverable_each(world, namesakes[2:5]) == [{"dm", "call"}, {"dm"}, {"dm", "call"}]

    _namesakes(world, 6, name=name, born_from=25)
    assert _deliverable_each(world, namesakes[2:5]) == [{"dm", "call"}, {"dm"}, {"dm", "call"}]
    assert world.wh.query("select matched_by, person_id from intermediate.int_callcenter_requests_resolved") == [
        ("steward", world.person_id(caller))
    ]
    assert _unapplied_rows(world) == []
