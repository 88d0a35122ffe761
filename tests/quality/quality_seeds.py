"""Bad data seeded into a test's own copy of the warehouse: what the gates must stop."""

from __future__ import annotations

from pathlib import Path

import duckdb


def seed_bad_raw_batch(warehouse: Path) -> None:
    """A new batch of shop accounts with a null key and an unknown consent state, landed now."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            """
            insert into raw.ecommerce__customers by name
            select * replace (null::bigint as id, 'bogus' as email_marketing_state),
                   now() as _loaded_at, 'bad-batch' as _batch_id
            from (select * exclude (_loaded_at, _batch_id) from raw.ecommerce__customers order by id limit 1)
            """
        )
    finally:
        con.close()


def seed_opted_out_deliverable(warehouse: Path) -> tuple[str, str]:
    """An opted-out person put into deliverable_customers (what a broken model could do)."""
    con = duckdb.connect(str(warehouse))
    try:
        person, channel = con.execute(
            "select person_id, channel from marts.consent_ledger where consent_status = 'opted_out' "
            "order by person_id, channel limit 1"
        ).fetchone()
        con.execute(
            """
            insert into marts.deliverable_customers by name
            select 'seeded' as deliverable_id, ? as person_id, ? as channel, now() as consented_at,
                   'oms' as consent_source, 'oms:seeded' as consent_record, 'seeded' as consent_evidence
            """,
            [person, channel],
        )
    finally:
        con.close()
    return person, channel
