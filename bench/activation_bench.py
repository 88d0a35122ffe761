"""Seconds and rows/s of a 1 M-member audience synced to the file destinations through
``engine.sync`` (diff from an empty snapshot): a CP932 DM list over SFTP, and CSV and Parquet on S3.

    .venv/bin/python bench/activation_bench.py [--n 1000000] [--only sftp,s3_csv,s3_parquet] [--profile]

What one sync does, and so what is timed: check the records (keys unique, fields allowed), diff
against the snapshot, claim every recipient in the ledger (SQLite, one set-based statement), build
the file (Arrow columns, checks, CSV or Parquet, CP932), upload it to a temporary name, verify it
(SFTP: size and a re-read SHA-256; S3: HEAD and the server's checksum), publish it (rename / copy),
write the manifest, and settle: ledger rows sent, snapshot, changelog, in one transaction.

The servers (the project's asyncssh SFTP server, moto's S3) run in child processes, as a real
server would, so they do not share this process's GIL. The records are built before the clock
starts (the membership step builds them). ``--profile`` prints the top of a cProfile of each sync.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import multiprocessing as mp
import os
import platform
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from yorisoi.activation.delivery.destinations.base import Record
from yorisoi.activation.delivery.destinations.files import S3FileDestination, SftpFileDestination
from yorisoi.activation.delivery.engine import sync
from yorisoi.activation.delivery.store import ActivationStore

USER = "bench"
PASSWORD = "bench-only-password"  # noqa: S105 - a local benchmark credential, not a secret
REGION = "ap-northeast-1"
BUCKET = "yorisoi-bench"
FAMILY = "佐藤鈴木高橋田中伊藤渡辺山本中村小林加藤吉田山田佐々木山口松本井上木村林斎藤清水髙橋﨑山"
GIVEN = ["太郎", "花子", "一郎", "美咲", "翔太", "陽菜", "蓮", "結衣", "湊", "葵"]
CITIES = ["渋谷区神宮前", "横浜市中区山下町", "大阪市北区梅田", "札幌市中央区北一条西", "福岡市博多区博多駅前"]
PREFECTURES = ["東京都", "神奈川県", "大阪府", "北海道", "福岡県"]


def members(n: int) -> list[Record]:
    """n members as the membership step hands them over (person ID keys, the DM fields)."""
    out = []
    for i in range(n):
        city = i % 5
        out.append(
            Record(
                key=f"P{i:019x}",
                person_id=f"P{i:019x}",
                fields={
                    "full_name": FAMILY[i % 24 * 2 : i % 24 * 2 + 2] + GIVEN[i % 10],
                    "name_kana": "ヤマダ タロウ",
                    "postal_code": f"{100 + i % 900:03d}{i % 10000:04d}",
                    "prefecture": PREFECTURES[city],
                    "address": f"{CITIES[city]}{i % 9 + 1}丁目{i % 30 + 1}-{i % 20 + 1}",
                    "phone": f"+8190{i % 100_000_000:08d}",
                },
                variant="AB"[i % 2],
            )
        )
    return out


def _sftp_server(root: str, key: str, queue: mp.Queue, stop: mp.Event) -> None:
    from yorisoi_kit.servers.sftp import serve_in_thread

    with serve_in_thread(root, username=USER, password=PASSWORD, host_key_path=key) as server:
        queue.put((server.host, server.port, server.host_key_public))
        stop.wait()


def _s3_server(queue: mp.Queue, stop: mp.Event) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    queue.put(server.get_host_and_port())
    stop.wait()
    server.stop()


def timed(label: str, store: ActivationStore, destination, records: list[Record], profile: bool) -> None:
    # warm up: first-use imports and compiled statements are not what is measured
    sync(store, destination, "bench_warm_up", records[:1000], interval="2026-10-31")
    gc.collect()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    summary = sync(store, destination, "bench_audience", records, interval="2026-11-01")
    if profiler:
        profiler.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    manifest = destination.published[-1]
    print(
        f"{label:<12} {summary.delivered:>9,} rows {seconds:8.2f} s {summary.delivered / seconds:>10,.0f} rows/s"
        f"   file {manifest['bytes'] / 1e6:7.1f} MB   client CPU {cpu:6.2f} s",
        flush=True,
    )
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(30)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="audience members")
    parser.add_argument("--only", default="sftp,s3_csv,s3_parquet", help="comma-separated destinations")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each sync")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, SQLite store)")
    args = parser.parse_args()
    wanted = args.only.split(",")

    work = Path(tempfile.mkdtemp(prefix="yorisoi-activation-bench-"))
    (work / "sftp").mkdir()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f}; work folder {work}",
        flush=True,
    )
    t0 = time.perf_counter()
    records = members(args.n)
    gc.freeze()  # a million long-lived records: keep the collector from rescanning them
    print(f"built {len(records):,} records in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)

    ctx = mp.get_context("fork")
    stop = ctx.Event()
    queue: mp.Queue = ctx.Queue()
    servers = [
        ctx.Process(target=_sftp_server, args=(str(work / "sftp"), str(work / "host_key"), queue, stop), daemon=True),
        ctx.Process(target=_s3_server, args=(queue, stop), daemon=True),
    ]
    for server in servers:
        server.start()
    started = [queue.get(timeout=60), queue.get(timeout=60)]
    sftp = next(s for s in started if len(s) == 3)
    s3_host, s3_port = next(s for s in started if len(s) == 2)
    endpoint = f"http://{s3_host}:{s3_port}"

    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - moto on loopback takes any key
        region_name=REGION,
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    columns = ["full_name", "name_kana", "postal_code", "prefecture", "address", "phone", "variant"]
    try:
        with ActivationStore(f"sqlite:///{work / 'activation.sqlite'}") as store:
            if "sftp" in wanted:
                destination = SftpFileDestination(
                    name="sftp_dm_list",
                    host=sftp[0],
                    port=sftp[1],
                    username=USER,
                    password=PASSWORD,
                    host_key=sftp[2],
                    remote_dir="/outbound/dm",
                )
                timed("sftp cp932", store, destination, records, args.profile)
            for file_format in ("csv", "parquet"):
                if f"s3_{file_format}" in wanted:
                    destination = S3FileDestination(
                        name=f"s3_{file_format}",
                        bucket=BUCKET,
                        client=client,
                        file_format=file_format,
                        columns=columns,
                        allowed_columns=columns,
                    )
                    timed(f"s3 {file_format}", store, destination, records, args.profile)
    finally:
        stop.set()
        for server in servers:
            server.join(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
