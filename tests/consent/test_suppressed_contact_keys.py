"""docs/reliability.md #16, second half: a contact key held by any suppressed source record is
never sent to, not only keys of golden records.

The case from the field: a VIP subscribed to email in the shop; another customer, blacklisted in
the OMS, has the VIP's address typed into the OMS record (full width, padded, upper case). The
names differ, so identity resolution keeps them apart, and the blacklisted person's golden email
is their own shop address. Comparing golden values, the VIP's address looks clean and is sent
to. The same for a phone number (SMS) and a postal address (DM).

The models are replayed on the raw rows (consent_harness), then the export's own checks run on
that warehouse: the engine's suppression check (before every send and retry) and the records an
audience sends (build_records).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import yaml
from consent_harness import TEST_MATCH_KEY, Person, World

from yorisoi.activation.selection.definitions import load_audience, load_destinations
from yorisoi.activation.selection.membership import build_records, suppression_check

SECRET = TEST_MATCH_KEY.encode()
DESTINATION = {"email": "esp_list", "sms": "sms", "dm": "sftp_dm_list"}


def _full_width(text: str) -> str:
    """ASCII letters, digits and symbols as their full-width forms (ＶＩＰ＠…)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# channel -> the field of the blacklisted OMS record that carries the VIP's contact value, and how
# an operator typed it
VARIANTS: dict[str, tuple[str, Callable[[Person], str]]] = {
    "email full width, padded": ("email", lambda vip: "\u3000" + _full_width(vip.email.upper()) + "  "),
    "email padded, mixed case": ("email", lambda vip: "  " + vip.email.title() + " "),
    "email upper case": ("email", lambda vip: vip.email.upper()),
    "phone full width": ("phone", lambda vip: _full_width(vip.phone)),
    "phone padded, no hyphens": ("phone", lambda vip: " " + vip.phone.replace("-", "") + "\u3000"),
    "address full width": ("address", lambda vip: _full_width(f"渋谷区神南1-{vip.idx}-1")),
}
CHANNEL_OF = {"email": "email", "phone": "sms", "address": "dm"}


def _connect(world: World) -> Callable[..., duckdb.DuckDBPyConnection]:
    def connect(*_args, **_kwargs) -> duckdb.DuckDBPyConnection:
        cursor = world.wh.con.cursor()
        cursor.execute(f'use "{world.wh.catalog}"')
        return cursor

    return connect


def _vip_and_blacklisted(world: World, field: str, typed: Callable[[Person], str]) -> tuple[Person, Person]:
    """A VIP deliverable on email, SMS and DM, and a blacklisted customer (shop account and OMS
    record, one person) whose OMS record holds the VIP's contact value as typed."""
    vip = world.add_person()
    world.add_shop_account(vip, email_state="subscribed", sms_state="subscribed")
    world.add_oms_customer(vip, dm_permission=True)
    other = world.add_person()
    world.add_shop_account(other)
    world.add_oms_customer(other, blacklisted=True)
    if field == "address":  # the VIP's postal code too: a postal address is both
        world.oms_update(other, address=typed(vip), postal_code="〒" + vip.postal_code)
    else:
        world.oms_update(other, **{field: typed(vip)})
    world.wh.rebuild()
    return vip, other


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_contact_value_a_blacklisted_record_holds_is_never_sent_to(world: World, variant: str) -> None:
    field, typed = VARIANTS[variant]
    channel = CHANNEL_OF[field]
    vip, other = _vip_and_blacklisted(world, field, typed)
    vip_id, other_id = world.person_id(vip), world.person_id(other)
    assert vip_id != other_id, "the test needs the two kept apart (their names differ)"
    golden = dict(world.wh.query("select person_id, email from marts.dim_customers"))
    assert golden[other_id] == other.email, "the blacklisted person's golden email is their own"
    assert channel in world.deliverable_channels(vip), "the VIP is deliverable by the consent marts"

    held = world.wh.query("select example_record_key from marts.suppressed_contact_keys where channel = ?", [channel])
    assert (f"oms:{other.oms_codes[0]}",) in held, "the blacklisted OMS record's keys are held"

    suppressed = suppression_check(channel, connect=_connect(world), secret=SECRET)
    assert suppressed({vip_id}) == {vip_id}, f"{variant}: the VIP's {field} is held by a blacklisted record"


def test_the_records_an_audience_sends_leave_out_a_key_a_blacklisted_record_holds(world: World, tmp_path: Path) -> None:
    vip, _ = _vip_and_blacklisted(world, *VARIANTS["email full width, padded"])
    bystander = world.add_person()  # nothing shared: sent to
    world.add_shop_account(bystander, email_state="subscribed")
    world.wh.rebuild()
    destinations = load_destinations()
    spec = {
        "name": "vip_thanks",
        "owner": "tests",
        "description": "VIP thanks",
        "selection": {"mart": "dim_customers"},
        "channels": ["email"],
        "destinations": [{"name": "esp_list", "columns": ["full_name"]}],
        "priority": 1,
        "holdout_percent": 0,
        "columns": ["full_name"],
    }
    path = tmp_path / "vip_thanks.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    audience = load_audience(path, destinations)
    con = _connect(world)()
    try:
        people = [world.person_id(vip), world.person_id(bystander)]
        result = build_records(audience, destinations["esp_list"], people, con, secret=SECRET)
    finally:
        con.close()
    assert [r.person_id for r in result.records] == [world.person_id(bystander)]
    assert result.dropped.get("key_shared_with_suppressed") == 1
