"""Statistics of a generated brand, computed by DuckDB from the files (for the demo and notes)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb


def summarize(out: Path | str) -> dict:
    """People, records per source, LINE link share, consent and opt-out rates, the F ladder."""
    out = Path(out)
    truth = out / "truth"
    con = duckdb.connect()
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    people = f"read_parquet('{truth / 'people.parquet'}')"
    records = f"read_parquet('{truth / 'source_records.parquet'}')"
    orders = f"read_parquet('{truth / 'orders.parquet'}')"
    consent = f"read_parquet('{truth / 'consent_events.parquet'}')"
    n_people = q(f"select count(*) from {people}")[0][0]
    per_source = dict(q(f"select source, count(*) from {records} group by all order by 1"))
    people_per_source = dict(q(f"select source, count(distinct person_id) from {records} group by all order by 1"))
    dup = dict(q(f"select source, round(avg(is_duplicate::int), 4) from {records} group by all order by 1"))
    links = next((out / "sftp" / "inbox" / "line").glob("id_links_*.csv"), None)
    linked = 0
    if links:
        linked = q(f"select count(*) from read_csv('{links}', header=true)")[0][0]
    line_friends = per_source.get("line", 0)
    orders_by = dict(q(f"select source, count(*) from {orders} group by all order by 1"))
    status = dict(q(f"select status, count(*) from {orders} group by all order by 1"))
    ladder = q(f"""
        with f as (select order_count from {people} where order_count > 0),
        k as (select unnest(range(1, 11)) as k)
        select k, count(*) filter (where order_count >= k) as reached,
               count(*) filter (where order_count >= k + 1) as next
        from k, f group by k order by k""")
    consent_rates = q(f"""
        select round(avg(consent_email::int), 4), round(avg(consent_line::int), 4), round(avg(consent_sms::int), 4),
               round(avg(consent_dm::int), 4), round(avg(consent_call::int), 4),
               round(avg(deliverable_email::int), 4), round(avg(blacklisted::int), 4), round(avg(erased::int), 4)
        from {people}""")[0]
    opt_outs = dict(
        q(f"""
        with given as (select channel, count(distinct person_id) filter (where action = 'opt_in') as opted_in,
                              count(distinct person_id) filter (where action = 'opt_out') as opted_out
                       from {consent} group by all)
        select channel, round(opted_out / nullif(opted_in, 0), 4) from given order by 1""")
    )
    spend = q(f"select round(avg(spend)), round(avg(order_count), 2), sum(order_count) from {people}")[0]
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    return {
        "scale": manifest["scale"],
        "seed": manifest["seed"],
        "as_of": manifest["as_of"],
        "people": n_people,
        "records_per_source": per_source,
        "people_per_source": people_per_source,
        "duplicate_record_share": dup,
        "line_friends": line_friends,
        "line_linked_to_ecommerce": linked,
        "line_link_share": round(linked / line_friends, 4) if line_friends else 0.0,
        "orders_per_source": orders_by,
        "orders_per_status": status,
        "orders_per_person": spend[1],
        "avg_spend_yen": spend[0],
        "f_ladder": [
            {"f": k, "customers": reached, "to_next": round(nxt / reached, 4) if reached else None}
            for k, reached, nxt in ladder
        ],
        "consent_share": dict(
            zip(
                ["email", "line", "sms", "dm", "call", "deliverable_email", "blacklisted", "erased"],
                consent_rates,
                strict=True,
            )
        ),
        "opt_out_rate_of_opted_in": opt_outs,
    }
