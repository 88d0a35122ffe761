# ruff: noqa: S608 - the SQL is this script's own; the only value put in it is an integer
"""What the send-time consent check adds to an export (docs/consent.md, docs/reliability.md #16).

    .venv/bin/python bench/consent_sendtime_bench.py [--scale M] [--late 2000]

Generates and ingests the brand at `scale` (customer tables only, under var/eval/<scale>_customers;
reused when already there), builds the consent marts and what they read once (which writes the consent build marks),
then lands `--late` opt-outs in raw after the build, spread over every consent source (shop
unsubscribes, OMS blacklistings and DM stops, call-centre requests, email-provider unsubscribes,
LINE blocks), and times:

- check_nothing_landed: sendtime.check right after the build;
- check_after_landing: sendtime.check with the opt-outs landed;
- engine_guard_email: the engine's suppression check over every person deliverable on email
  (the largest set an export can ask about), which runs the send-time check as well;

each the median of three runs, printed in seconds with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb


def _median(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def land_opt_outs(warehouse: str, late: int) -> dict[str, int]:
    """Opt-outs landed after the build, as the landing writes them (rows replaced, `_loaded_at`
    now), spread over the consent sources."""
    share = max(late // 5, 1)
    con = duckdb.connect(warehouse)
    landed = {}
    try:
        statements = {
            "ecommerce__customers": (
                "update raw.ecommerce__customers set email_marketing_state = 'unsubscribed', _loaded_at = now() "
                f"where id in (select id from raw.ecommerce__customers where email_marketing_state = 'subscribed' "
                f"order by id limit {share})"
            ),
            "oms__customers": (
                "update raw.oms__customers set dm_permission = false, blacklisted = (hash(customer_id) % 10 = 0), "
                f"_loaded_at = now() where customer_id in (select customer_id from raw.oms__customers "
                f"where dm_permission order by customer_id limit {share})"
            ),
            "sftp__callcenter_requests": (
                "insert into raw.sftp__callcenter_requests by name select 'BENCH' || request_no as request_no, "
                "received_at, customer_code, name, phone, email, channel, request_type, now() as _loaded_at, "
                f"'bench' as _source_file, 'bench' as _batch_id from raw.sftp__callcenter_requests limit {share}"
            ),
            "sftp__esp_sends": (
                "update raw.sftp__esp_sends set unsubscribed_at = sent_at + interval 1 hour, _loaded_at = now() "
                f"where send_id in (select send_id from raw.sftp__esp_sends where unsubscribed_at is null "
                f"order by send_id limit {share})"
            ),
            "sftp__line_friends": (
                "insert into raw.sftp__line_friends by name select line_user_id, 'unfollow' as event, "
                "event_at + interval 1 day as event_at, now() as _loaded_at, 'bench' as _source_file, "
                "'bench' as _batch_id from raw.sftp__line_friends where event = 'follow' "
                f"order by line_user_id limit {share}"
            ),
        }
        for table, sql in statements.items():
            landed[table] = con.execute(sql).fetchall()[0][0]
    finally:
        con.close()
    return landed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="M")
    parser.add_argument("--late", type=int, default=2000, help="opt-outs landed after the build")
    args = parser.parse_args()

    from yorisoi.activation.selection import sendtime
    from yorisoi.activation.selection.membership import connect_warehouse, suppression_check
    from yorisoi.privacy.keys import match_key_secret
    from yorisoi_kit.scale_run import build, prepare, using_var

    t0 = time.perf_counter()
    run = prepare(args.scale, scope="customers")
    print(f"brand {args.scale} ready in {time.perf_counter() - t0:.0f} s: {run.warehouse}")
    built = build(run, "+consent_build_marks +bridge_customer_identities", quiet=True)
    print(f"customer layer built in {built['seconds']:.0f} s")
    with using_var(run.work):
        from yorisoi.transform import dbt_env

        os.environ.update({k: v for k, v in dbt_env(demo_key=True).items() if k.startswith("YORISOI_MATCH")})
        secret = match_key_secret()
        con = connect_warehouse(run.warehouse)
        try:
            records = con.execute("select count(*) from marts.bridge_customer_identities").fetchall()[0][0]
            seconds, late = _median(lambda: sendtime.check(con, secret))
        finally:
            con.close()
        figures = [("check_nothing_landed", seconds, late.summary())]
        landed = land_opt_outs(str(run.warehouse), args.late)
        con = connect_warehouse(run.warehouse)
        try:
            seconds, late = _median(lambda: sendtime.check(con, secret))
            email = {
                r[0]
                for r in con.execute(
                    "select person_id from marts.deliverable_customers where channel = 'email'"
                ).fetchall()
            }
        finally:
            con.close()
        figures.append(("check_after_landing", seconds, late.summary()))
        guard = suppression_check("email", run.warehouse, secret=secret)
        seconds, held = _median(lambda: guard(email))
        figures.append(("engine_guard_email", seconds, f"{len(held):,} of {len(email):,} email-deliverable held back"))
    load = os.getloadavg()
    print(f"scale {args.scale}: {records:,} source records; landed after the build: {landed}")
    for name, s, note in figures:
        print(f"{name}: {s:.2f} s ({note})")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
