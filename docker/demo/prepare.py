"""Prepare the demo profile of docker-compose.yml: generate the synthetic brand, the SFTP stand-in's
host key and the demo match key on the shared var/ volume, create the S3 stand-in's buckets, and
write the Airflow connections that point every source and destination at its stand-in.

    python docker/demo/prepare.py [--scale S] [--seed 42] [--force]

Runs once as the `demo-setup` service (after airflow-init, before the source stand-ins start).
Safe to rerun: the brand is generated only when var/sources has none (or with --force), keys are
kept, buckets and connections are created or overwritten.

The connections go into Airflow's metadata database, not the environment: an `AIRFLOW_CONN_<ID>`
variable that is set (non-empty) in .env wins over them, which is how a real deployment points a
connection at the brand's real system. Their credentials are the fixed demo values of
yorisoi_kit.demo, the ones the stand-ins accept; none of them is a secret.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

LOCAL_TIME_ZONE = ZoneInfo("Asia/Tokyo")  # the brand's, as in the DAGs


def brand_as_of(now: datetime | None = None) -> datetime:
    """Today's start in Japan: the synthetic data runs up to yesterday, so segments built for
    today (the DAGs' default as-of day) and the freshness checks see current data. `make demo`
    uses the generator's fixed day instead and pins YORISOI_AS_OF to it."""
    local = (now or datetime.now(LOCAL_TIME_ZONE)).astimezone(LOCAL_TIME_ZONE)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def generate_brand(scale: str, seed: int, *, force: bool) -> Path:
    from yorisoi import paths
    from yorisoi_kit.synth import generate

    out = paths.sources_dir()
    if (out / "manifest.json").exists() and not force:
        print(f"sources already generated in {out} (--force regenerates them)")
        return out
    brand = generate(out, scale=scale, seed=seed, as_of=brand_as_of())
    print(f"generated the {scale} brand (seed {seed}): {brand.n:,} people in {out}")
    return out


def create_buckets(endpoint: str, region: str) -> list[str]:
    """The buckets of include/destinations.yml's s3_file destinations, on the S3 stand-in."""
    import boto3

    from yorisoi.activation.selection.definitions import load_destinations

    buckets = sorted({str(d.options()["bucket"]) for d in load_destinations() if d.kind == "s3_file"})
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - the S3 stand-in (moto) accepts any key
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    return buckets


def demo_connections(args: argparse.Namespace, *, sftp_host_key: str, match_key: str) -> dict[str, dict]:
    """Airflow connections (import-file format) for every connection id the DAGs and
    include/destinations.yml use, each pointing at its stand-in."""
    from yorisoi.activation.selection.definitions import load_destinations
    from yorisoi.quality.notify import SMTP_CONN_ID
    from yorisoi.sources.registry import load_registry
    from yorisoi.transform import MATCH_KEY_CONN_ID
    from yorisoi_kit import demo, paths

    sftp = {
        "conn_type": "sftp",
        "host": args.sftp_host,
        "port": args.sftp_port,
        "login": demo.DEMO_SFTP_USER,
        "password": demo.DEMO_SFTP_PASSWORD,
        "extra": {"host_key": sftp_host_key, "no_host_key_check": False},
    }
    smtp = {
        "conn_type": "smtp",
        "host": args.smtp_host,
        "port": args.smtp_port,
        "extra": {
            "from_email": "news@yorisoi-tea.example.jp",
            "disable_tls": True,
            "disable_ssl": True,
            "timeout": 10,
        },
    }
    by_source_kind = {
        "api": {
            "conn_type": "http",
            "host": args.ecommerce_host,
            "port": args.ecommerce_port,
            "schema": "http",
            "password": demo.DEMO_API_KEY,
        },
        "database": {"conn_type": "sqlite", "host": str(paths.sources_dir() / "oms" / "oms.sqlite")},
        "files": sftp,
        "store": {"conn_type": "sqlite", "host": str(paths.var_dir() / "activation" / "activation.sqlite")},
    }
    by_destination_kind = {
        "line_multicast": {"conn_type": "http", "host": args.line_url, "password": demo.DEMO_LINE_TOKEN},
        "line_audience": {"conn_type": "http", "host": args.line_url, "password": demo.DEMO_LINE_TOKEN},
        "esp_list": {"conn_type": "http", "host": args.esp_url, "password": demo.DEMO_ESP_KEY},
        "sms": {
            "conn_type": "http",
            "host": args.sms_url,
            "login": demo.DEMO_SMS_SID,
            "password": demo.DEMO_SMS_TOKEN,
            "extra": {"from_number": "+815012345678"},
        },
        "smtp_email": smtp,
        "sftp_dm_list": sftp,
        "sftp_insert_list": sftp,
        "s3_file": {
            "conn_type": "aws",
            "login": "demo",
            "password": "demo",
            "extra": {"endpoint_url": args.s3_endpoint, "region_name": args.s3_region},
        },
    }
    conns: dict[str, dict] = {}
    for source in load_registry().sources.values():
        conns[source.conn_id] = by_source_kind[source.kind]
    for destination in load_destinations():
        conns[destination.conn_id] = by_destination_kind[destination.kind]
    conns[SMTP_CONN_ID] = smtp  # failure and quality-gate alerts
    conns[MATCH_KEY_CONN_ID] = {"conn_type": "generic", "password": match_key}
    return conns


def import_connections(conns: dict[str, dict]) -> None:
    """`airflow connections import --overwrite` through a private temporary file."""
    for conn_id in sorted(conns):
        if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
            print(f"note: AIRFLOW_CONN_{conn_id.upper()} is set in the environment and wins over the demo's {conn_id}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "connections.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(conns, ensure_ascii=False))
        subprocess.run(  # noqa: S603 - Airflow's own CLI, fixed arguments
            [sys.executable, "-m", "airflow", "connections", "import", "--overwrite", str(path)], check=True
        )
    print(f"wrote {len(conns)} Airflow connections: {', '.join(sorted(conns))}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="S", choices=("XS", "S", "M", "L"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--force", action="store_true", help="regenerate the brand even if var/sources has one")
    parser.add_argument("--ecommerce-host", default="demo-ecommerce")
    parser.add_argument("--ecommerce-port", type=int, default=8765)
    parser.add_argument("--sftp-host", default="demo-sftp")
    parser.add_argument("--sftp-port", type=int, default=2222)
    parser.add_argument("--smtp-host", default="demo-smtp")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--line-url", default="http://demo-line:8080")
    parser.add_argument("--esp-url", default="http://demo-esp:8080")
    parser.add_argument("--sms-url", default="http://demo-sms:8080")
    parser.add_argument("--s3-endpoint", default="http://demo-s3:5000")
    parser.add_argument("--s3-region", default="ap-northeast-1")
    parser.add_argument("--skip-airflow", action="store_true", help="print the connections instead of importing them")
    args = parser.parse_args(argv)

    from yorisoi import paths
    from yorisoi.privacy.keys import ensure_demo_key
    from yorisoi_kit.servers import sftp

    out = generate_brand(args.scale.upper(), args.seed, force=args.force)
    # the path `yorisoi serve sftp` uses by default, so the server presents this key
    host_key = sftp.ensure_host_key(paths.var_dir() / "keys" / "sftp_host_ed25519")
    match_key = ensure_demo_key(paths.match_key_file()).read_text().strip()
    buckets = create_buckets(args.s3_endpoint, args.s3_region)
    print(f"S3 stand-in buckets: {', '.join(buckets) or '-'}")
    conns = demo_connections(args, sftp_host_key=host_key, match_key=match_key)
    if args.skip_airflow:
        print(json.dumps(sorted(conns)))
    else:
        import_connections(conns)
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    print(f"demo ready: the brand's data ends before {manifest['as_of']} (segments are built for that day)")


if __name__ == "__main__":
    main()
