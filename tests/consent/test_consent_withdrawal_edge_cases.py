"""Withdrawals that arrive without a date, or from someone without a shop account.

Found while writing the state machine (they were ignored, leaving the person deliverable), and
fixed in int_consent_events since: a withdrawal without a date is dated when it was last seen,
and an email-provider unsubscribe reaches every record with the same address. Kept as
regression tests.
"""

from __future__ import annotations

from consent_harness import World


def test_an_undated_shop_unsubscribe_still_suppresses(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p)
    world.add_oms_customer(p, email_permission=True)  # mail permission on the order form
    row = world.shop_rows[p.shop_ids[0]]
    row.update(email_marketing_state="unsubscribed", email_marketing_updated_at=None, updated_at=world.now())
    world.wh.upsert("ecommerce__customers", [row])  # the shop says: unsubscribed (no consent date)
    assert "email" not in world.deliverable_channels(p)


def test_an_undated_oms_refusal_still_refuses(world: World) -> None:
    p = world.add_person()
    world.add_shop_account(p)
    world.add_oms_customer(p, dm_permission=True)
    world.add_oms_customer(p, dm_permission=False)  # a second record of the same person refuses DM
    assert "dm" not in world.deliverable_channels(p)
    row = world.oms_rows[p.oms_codes[1]]
    row["updated_at"] = None
    world.wh.upsert("oms__customers", [row])
    assert "dm" not in world.deliverable_channels(p)


def test_an_esp_unsubscribe_without_a_shop_account_suppresses(world: World) -> None:
    p = world.add_person()
    world.add_oms_customer(p, email_permission=True)  # no shop account: deliverable through the OMS flag
    assert world.deliverable_channels(p) == {"email"}
    at = world.now()
    world.wh.upsert(
        "sftp__esp_sends",
        [
            {
                "send_id": 1,
                "campaign_id": 1,
                "ec_customer_id": None,
                "email": p.email,
                "variant": "A",
                "sent_at": at,
                "delivered": True,
                "clicked_at": at,
                "unsubscribed_at": at,
            }
        ],
    )
    assert "email" not in world.deliverable_channels(p)
