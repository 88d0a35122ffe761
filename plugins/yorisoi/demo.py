"""`make demo`: the synthetic brand's source systems, up and answering on loopback.

Generates the brand into var/sources (skipped when the same scale and seed are already there),
starts the e-commerce API and the SFTP server, and reaches each source, the OMS database included,
through the client a pipeline would use."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import paramiko
from rich.console import Console
from rich.table import Table

from . import paths
from .synth.brand import GENERATOR_VERSION

DEMO_API_KEY = "demo-key"
DEMO_SFTP_USER = "yorisoi"
DEMO_SFTP_PASSWORD = "demo"  # noqa: S105 - a loopback demo server's password, not a credential


def _up_to_date(out: Path, scale: str, seed: int) -> bool:
    try:
        m = json.loads((out / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (m.get("scale"), m.get("seed"), m.get("generator_version")) == (scale, seed, GENERATOR_VERSION)


def pinned_sftp(host: str, port: int, host_key_line: str, username: str, password: str) -> paramiko.SFTPClient:
    """An SFTP client that accepts only the pinned server key (RejectPolicy for anything else)."""
    client = paramiko.SSHClient()
    key_type, key_b64 = host_key_line.split()[:2]
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{host}]:{port}", key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=port, username=username, password=password, look_for_keys=False, allow_agent=False)
    return client.open_sftp()


def run_demo(
    scale: str,
    seed: int,
    *,
    keep_serving: bool,
    generate: Callable[[str, int, Path], None],
    console: Console,
) -> None:
    from .servers import ecommerce, sftp
    from .synth.stats import summarize

    out = paths.sources_dir()
    if _up_to_date(out, scale, seed):
        console.print(f"[green]sources already generated[/] at {out} (scale {scale}, seed {seed})")
    else:
        generate(scale, seed, out)
    summary = summarize(out)

    with ExitStack() as stack:
        shop = stack.enter_context(ecommerce.serve_in_thread(out / "ecommerce", api_key=DEMO_API_KEY))
        drop = stack.enter_context(
            sftp.serve_in_thread(
                out / "sftp",
                username=DEMO_SFTP_USER,
                password=DEMO_SFTP_PASSWORD,
                host_key_path=paths.var_dir() / "keys" / "sftp_host_ed25519",
            )
        )

        table = Table("source", "served at", "checked with", "what it answered", title="Source systems on loopback")
        headers = {"X-Shopify-Access-Token": DEMO_API_KEY}
        with httpx.Client(base_url=shop.base_url, headers=headers, timeout=30) as http:
            t0 = time.perf_counter()
            counts = {
                r: http.get(f"/admin/api/2025-01/{r}/count.json").json()["count"]
                for r in ("customers", "orders", "products")
            }
            page = http.get("/admin/api/2025-01/orders.json", params={"limit": 250})
            page.raise_for_status()
            ms = (time.perf_counter() - t0) * 1000
        has_next = 'rel="next"' in page.headers.get("link", "")
        table.add_row(
            "e-commerce API",
            shop.base_url + "/admin/api/2025-01",
            "httpx",
            f"{counts['customers']:,} customers, {counts['orders']:,} orders, {counts['products']:,} "
            f"products; first page {len(page.json()['orders'])} orders, Link next={has_next} ({ms:.0f} ms)",
        )

        client = pinned_sftp(drop.host, drop.port, drop.host_key_public, DEMO_SFTP_USER, DEMO_SFTP_PASSWORD)
        feeds = {
            feed: len([f for f in client.listdir(f"/inbox/{feed}") if f.endswith(".csv")])
            for feed in sorted(client.listdir("/inbox"))
        }
        client.close()
        table.add_row(
            "SFTP drops",
            f"sftp://{drop.host}:{drop.port}/inbox",
            "paramiko, host key pinned",
            ", ".join(f"{k}: {v} files" for k, v in feeds.items()),
        )

        with sqlite3.connect(f"file:{out / 'oms' / 'oms.sqlite'}?mode=ro", uri=True) as con:
            oms = {
                t: con.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("customers", "orders", "order_lines", "subscriptions")
            }
        table.add_row(
            "OMS database",
            str(out / "oms" / "oms.sqlite"),
            "sqlite3 (yorisoi oms load → PG/MariaDB)",
            ", ".join(f"{k} {v:,}" for k, v in oms.items()),
        )
        console.print(table)

        ladder = " → ".join(f"F{x['f']} {x['to_next']:.0%}" for x in summary["f_ladder"][:4])
        console.print(
            f"[bold]{summary['people']:,} people[/] · records per source {summary['records_per_source']} · "
            f"LINE linked {summary['line_link_share']:.0%} · {summary['orders_per_person']} orders per person · "
            f"retention {ladder}"
        )
        console.print("Ground truth: " + str(out / "truth"))
        if keep_serving:
            console.print(
                f"Serving. API key header X-Shopify-Access-Token: {DEMO_API_KEY}; SFTP user "
                f"{DEMO_SFTP_USER}. Ctrl-C stops."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
