"""File destinations against real servers on loopback: the project's SFTP server (asyncssh) and
moto's S3 server (docs/reliability.md #9, and 3, 4, 8 for files).

The kill tests run the export in a child process and SIGKILL it in the middle of the upload (its
SFTP writes are slowed down, its S3 copy stalls), then look at what a consumer would see, then
rerun the export in this process.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from yorisoi.activation.delivery.destinations.base import Record
from yorisoi.activation.delivery.destinations.files import (
    S3FileDestination,
    SftpFileDestination,
    load_layouts,
)
from yorisoi.activation.delivery.engine import SyncError, sync
from yorisoi.activation.delivery.store import ActivationStore
from yorisoi_kit.servers.sftp import serve_in_thread

USER = "oms"
PASSWORD = "test-only-password"  # a test credential, not a secret
AUDIENCE = "vip_reached"
INTERVAL = "2026-11-01"
DM_HEADER = ["顧客コード", "氏名", "フリガナ", "郵便番号", "都道府県", "住所", "電話番号", "パターン"]
FIRST = ["髙橋", "﨑山", "山田", "佐藤", "渡邊", "斎藤", "鈴木", "田中"]
GIVEN = ["一郎", "花子", "翔太", "美咲", "蓮", "陽菜", "湊", "結衣"]
REGION = "ap-northeast-1"


def dm_records(n: int) -> list[Record]:
    """n deliverable people with DM fields; names use characters shift_jis cannot write but
    CP932 can (髙, 﨑, ①, ㈱)."""
    return [
        Record(
            key=f"P{i:08d}",
            person_id=f"P{i:08d}",
            fields={
                "full_name": f"{FIRST[i % 8]}{GIVEN[(i // 8) % 8]}",
                "name_kana": "ヤマダタロウ",
                "postal_code": f"{150 + i % 700:03d}{i % 10000:04d}",
                "prefecture": "東京都",
                "address": f"渋谷区神宮前{i % 6 + 1}丁目{i % 30 + 1}-{i % 9 + 1} ㈱ヨリソイ①号館",
                "phone": f"+8190{i % 100000000:08d}",
            },
            variant="A" if i % 2 else "B",
        )
        for i in range(n)
    ]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ActivationStore]:
    with ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}") as s:
        yield s


@pytest.fixture
def sftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "sftp"
    root.mkdir()
    return root


@pytest.fixture
def sftp_server(sftp_root: Path, tmp_path: Path):
    with serve_in_thread(sftp_root, username=USER, password=PASSWORD, host_key_path=tmp_path / "host_key") as server:
        yield server


def dm_destination(server, **kw) -> SftpFileDestination:
    return SftpFileDestination(
        name="sftp_dm_list",
        host=server.host,
        port=server.port,
        username=USER,
        password=PASSWORD,
        host_key=server.host_key_public,
        remote_dir="/outbound/dm",
        **kw,
    )


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "yorisoi-" + hashlib.md5(request.node.nodeid.encode()).hexdigest()[:12]  # noqa: S324 - a name
    s3(moto_endpoint).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def s3(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )


def objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = s3(endpoint)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


# --------------------------------------------------------------------------------------------
# DM and 同梱物 lists over SFTP
# --------------------------------------------------------------------------------------------


def test_dm_list_is_cp932_in_the_oms_layout_with_a_manifest(store, sftp_server, sftp_root) -> None:
    good = dm_records(5)
    bad = [
        Record("P90000001", "P90000001", {**good[0].fields, "full_name": "𠮷田太郎"}),  # not in CP932
        Record("P90000002", "P90000002", {**good[0].fields, "address": ""}),  # a DM needs an address
        Record("P90000003", "P90000003", {**good[0].fields, "postal_code": "15000"}),
        Record("P90000004", "P90000004", {**good[0].fields, "address": "渋谷区😀"}),
        Record("P90000005", "P90000005", {**good[0].fields, "address": "渋谷区\r\n神宮前"}),
    ]
    summary = sync(store, dm_destination(sftp_server), AUDIENCE, good + bad, interval=INTERVAL)
    assert (summary.delivered, summary.rejected) == (5, 5)

    published = files_under(sftp_root)
    assert [p.name for p in published] == [p.name for p in published if not p.name.startswith(".")]
    data_file, manifest_file = published
    assert data_file.parent == sftp_root / "outbound" / "dm" / AUDIENCE / INTERVAL
    assert manifest_file.name == data_file.name + ".manifest.json"
    data = data_file.read_bytes()
    text = data.decode("cp932")
    assert "\r\n" in text and "髙橋" in text and "﨑山" in text and "㈱ヨリソイ①号館" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == DM_HEADER
    assert [r[0] for r in rows[1:]] == [r.key for r in good]
    first = dict(zip(DM_HEADER, rows[1], strict=True))
    assert first["郵便番号"] == "150-0000" and first["電話番号"] == "09000000000" and first["パターン"] == "B"

    manifest = json.loads(manifest_file.read_text("utf-8"))
    assert {k: manifest[k] for k in ("file", "rows", "bytes", "sha256", "columns", "audience", "run_id")} == {
        "file": data_file.name,
        "rows": 5,
        "bytes": len(data),
        "sha256": sha256(data),
        "columns": DM_HEADER,
        "audience": AUDIENCE,
        "run_id": summary.run_id,
    }
    assert manifest["created_at"] and manifest["encoding"] == "cp932"

    reasons = {r["key"]: r["reason"] for r in store.rejects(summary.run_id)}
    assert reasons == {
        "P90000001": "氏名: '𠮷' (U+20BB7) cannot be written in CP932",
        "P90000002": "住所 is empty",
        "P90000003": "郵便番号 '15000' is not a 7-digit postal code",
        "P90000004": "住所: '😀' (U+1F600) cannot be written in CP932",
        "P90000005": "住所 contains a line break (the OMS reads one record per line)",
    }
    succeeded = [r["key"] for r in store.changelog(summary.run_id) if r["status"] == "succeeded"]
    assert sorted(succeeded) == [r[0] for r in rows[1:]]  # docs/reliability.md #8: the log is the file
    assert Counter(r["status"] for r in store.ledger(AUDIENCE, "sftp_dm_list", INTERVAL)) == {"sent": 5, "failed": 5}


def test_insert_list_by_unshipped_order_through_an_airflow_connection(
    store, sftp_server, sftp_root, monkeypatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_YORISOI_OMS_SFTP_TEST",
        json.dumps(
            {
                "conn_type": "sftp",
                "host": sftp_server.host,
                "port": sftp_server.port,
                "login": USER,
                "password": PASSWORD,
                "extra": {"host_key": sftp_server.host_key_public, "no_host_key_check": False},
            }
        ),
    )
    # configured as include/destinations.yml and the factory do: conn_id, key_field, encoding
    destination = SftpFileDestination(
        name="sftp_insert_list",
        conn_id="yorisoi_oms_sftp_test",
        key_field="order_id",
        remote_dir="/outbound/inserts",
        encoding="cp932",
        allowed_columns=["variant", "person_id"],
        insert_codes={"A": "INS-2611-A"},
    )
    assert destination.layout.name == "insert_list" and destination.channel == "dm"
    orders = [
        Record(key="SO-100231", person_id="P1", fields={"variant": "A"}, variant="A"),
        Record(key="SO-100245", person_id="P2", fields={"variant": "B"}, variant="B"),
    ]
    summary = sync(store, destination, "second_purchase_nudge", orders, interval=INTERVAL)
    assert summary.delivered == 2
    data_file = next(p for p in files_under(sftp_root) if p.suffix == ".csv")
    assert data_file.name.startswith("DOUKON_second_purchase_nudge_2026-11-01_")
    rows = list(csv.reader(io.StringIO(data_file.read_bytes().decode("cp932"), newline="")))
    assert rows == [
        ["受注番号", "顧客コード", "同梱物コード"],
        ["SO-100231", "P1", "INS-2611-A"],
        ["SO-100245", "P2", "B"],
    ]

    # without person_id in the allow-list, the customer code stays empty: the order names the customer
    narrow = SftpFileDestination(
        name="sftp_insert_list_narrow",
        conn_id="yorisoi_oms_sftp_test",
        key_field="order_id",
        allowed_columns=["variant"],
    )
    sync(store, narrow, "second_purchase_nudge", orders, interval=INTERVAL)
    narrow_file = next(p for p in files_under(sftp_root / "outbox") if p.suffix == ".csv")
    assert narrow_file.read_bytes().decode("cp932").splitlines()[1] == '"SO-100231",,"A"'


def test_a_server_with_another_host_key_is_refused(store, sftp_server, sftp_root, tmp_path, monkeypatch) -> None:
    with serve_in_thread(tmp_path, username=USER, password=PASSWORD, host_key_path=tmp_path / "other_key") as impostor:
        destination = SftpFileDestination(
            host=impostor.host,
            port=impostor.port,
            username=USER,
            password=PASSWORD,
            host_key=sftp_server.host_key_public,  # pinned: the real server's key
        )
        with pytest.raises(SyncError, match=r"not trusted|refused"):
            sync(store, destination, AUDIENCE, dm_records(3), interval=INTERVAL)
    assert not (tmp_path / "outbox").exists()

    monkeypatch.setenv(
        "AIRFLOW_CONN_YORISOI_UNPINNED",
        json.dumps(
            {
                "conn_type": "sftp",
                "host": sftp_server.host,
                "port": sftp_server.port,
                "login": USER,
                "password": PASSWORD,
                "extra": {"no_host_key_check": True},
            }
        ),
    )
    with pytest.raises(SyncError, match="does not verify the server's host key"):
        sync(store, SftpFileDestination(conn_id="yorisoi_unpinned"), AUDIENCE, dm_records(3), interval="2026-11-02")
    assert files_under(sftp_root) == []


def test_a_rerun_after_a_crash_publishes_the_same_file_once(store, sftp_server, sftp_root, monkeypatch) -> None:
    records = dm_records(40)

    class Killed(BaseException):
        pass

    def die(**_kw):
        raise Killed  # the process dies after the file was published, before the ledger says so

    with monkeypatch.context() as patch:
        patch.setattr(store, "settle", die)
        with pytest.raises(Killed):
            sync(store, dm_destination(sftp_server), AUDIENCE, records, interval=INTERVAL)
    first = {p.name: p.stat().st_mtime_ns for p in files_under(sftp_root)}
    assert len(first) == 2

    summary = sync(store, dm_destination(sftp_server), AUDIENCE, records, interval=INTERVAL, claim_lease=0)
    assert summary.delivered == 40
    assert {p.name: p.stat().st_mtime_ns for p in files_under(sftp_root)} == first  # not rewritten
    assert all(r["status"] == "sent" for r in store.ledger(AUDIENCE, "sftp_dm_list", INTERVAL))

    summary = sync(store, dm_destination(sftp_server), AUDIENCE, records, interval=INTERVAL, mode="full")
    assert (summary.delivered, summary.skipped) == (0, 40)  # everyone already has this interval's DM
    assert len(files_under(sftp_root)) == 2


def test_dry_run_writes_no_file(store, sftp_server, sftp_root) -> None:
    summary = sync(store, dm_destination(sftp_server), AUDIENCE, dm_records(10), interval=INTERVAL, mode="dry_run")
    assert files_under(sftp_root) == []
    assert [r["status"] for r in store.changelog(summary.run_id)] == ["planned"] * 10
    assert store.ledger(AUDIENCE, "sftp_dm_list") == []


def test_test_mode_writes_to_the_test_folder_only(store, sftp_server, sftp_root) -> None:
    seeds = [Record("P-seed-1", "test:P-seed-1", dm_records(1)[0].fields, variant="A")]
    sync(
        store,
        dm_destination(sftp_server),
        AUDIENCE,
        dm_records(10),
        interval=INTERVAL,
        mode="test",
        test_recipients=seeds,
    )
    published = files_under(sftp_root)
    assert len(published) == 2
    assert all("/outbound/dm/_test/" in p.as_posix() for p in published)
    assert store.load_snapshot(AUDIENCE, "sftp_dm_list") == {}


def test_layouts_are_checked_when_the_destination_is_built(tmp_path: Path, sftp_server) -> None:
    assert [c.header for c in load_layouts()["dm_list"].columns] == DM_HEADER
    with pytest.raises(ValueError, match="not shift_jis"):
        dm_destination(sftp_server, encoding="shift_jis")
    with pytest.raises(ValueError, match="住所"):
        dm_destination(sftp_server, allowed_columns=["full_name", "postal_code", "prefecture"])
    with pytest.raises(ValueError, match="host_key"):
        SftpFileDestination(host="127.0.0.1", username=USER, password=PASSWORD)


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_s3_file_through_the_airflow_connection(store, moto_endpoint, bucket, monkeypatch, file_format) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_YORISOI_S3_TEST",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "test",
                "password": "test",
                "extra": {"endpoint_url": moto_endpoint, "region_name": REGION},
            }
        ),
    )
    destination = S3FileDestination(
        name="s3_dm_vendor",
        conn_id="yorisoi_s3_test",
        bucket=bucket,
        prefix="dm-vendor/",
        file_format=file_format,
        allowed_columns=["full_name", "postal_code", "prefecture", "address", "variant"],
    )
    records = dm_records(25)
    summary = sync(
        store,
        destination,
        AUDIENCE,
        [
            Record(
                r.key, r.person_id, {k: v for k, v in r.fields.items() if k not in ("phone", "name_kana")}, r.variant
            )
            for r in records
        ],
        interval=INTERVAL,
    )
    assert summary.delivered == 25

    found = objects(moto_endpoint, bucket)
    data_key = next(k for k in found if k.endswith(f".{file_format}"))
    assert data_key.startswith(f"dm-vendor/{AUDIENCE}/{INTERVAL}/")
    assert set(found) == {data_key, data_key + ".manifest.json"}  # the staging object is gone
    data = found[data_key]
    manifest = json.loads(found[data_key + ".manifest.json"])
    assert (manifest["sha256"], manifest["bytes"], manifest["rows"]) == (sha256(data), len(data), 25)
    columns = ["person_id", "address", "full_name", "postal_code", "prefecture", "variant"]
    assert manifest["columns"] == columns
    if file_format == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.column_names == columns and table.column("person_id").to_pylist() == [r.key for r in records]
    else:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        assert rows[0] == columns and [r[0] for r in rows[1:]] == [r.key for r in records]


def test_s3_test_sends_go_to_the_test_prefix(store, moto_endpoint, bucket) -> None:
    destination = S3FileDestination(bucket=bucket, client=s3(moto_endpoint), allowed_columns=["full_name"])
    seeds = [Record("P-seed", "test:P-seed", {"full_name": "テスト"})]
    sync(store, destination, AUDIENCE, [], interval=INTERVAL, mode="test", test_recipients=seeds)
    assert all(k.startswith(f"activation/_test/{AUDIENCE}/") for k in objects(moto_endpoint, bucket))


# --------------------------------------------------------------------------------------------
# docs/reliability.md #9: kill the upload; the final name never holds a partial file; the rerun publishes
# --------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    cfg = json.loads(Path(sys.argv[1]).read_text())
    import paramiko
    from yorisoi.activation.delivery.destinations import files
    from yorisoi.activation.delivery.destinations.base import Record
    from yorisoi.activation.delivery.engine import sync
    from yorisoi.activation.delivery.store import ActivationStore

    records = [Record(r["key"], r["person_id"], r["fields"], r["variant"]) for r in cfg["records"]]
    if cfg["target"] == "sftp":
        files._WRITE_CHUNK = 65536
        write = paramiko.sftp_file.SFTPFile.write

        def slow_write(self, data):
            write(self, data)
            time.sleep(0.3)  # a slow link: the parent kills us mid-file

        paramiko.sftp_file.SFTPFile.write = slow_write
        destination = files.SftpFileDestination(remote_dir="/outbound/dm", **cfg["sftp"])
    else:
        import boto3

        client = boto3.client("s3", **cfg["s3"])

        class Stalling:
            def __getattr__(self, name):
                return getattr(client, name)

            def _stall(self):
                Path(cfg["marker"]).write_text("stalled")
                time.sleep(600)

            def copy_object(self, **kw):
                if cfg["stall"] == "copy":
                    self._stall()
                return client.copy_object(**kw)

            def put_object(self, **kw):
                if cfg["stall"] == "manifest" and kw["Key"].endswith(".manifest.json"):
                    self._stall()
                return client.put_object(**kw)

        destination = files.S3FileDestination(bucket=cfg["bucket"], client=Stalling(), allowed_columns=["full_name"])
    sync(ActivationStore(cfg["store"]), destination, cfg["audience"], records, interval=cfg["interval"])
    """
)


def start_child(tmp_path: Path, **cfg) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD, "utf-8")
    config = tmp_path / "child.json"
    config.write_text(json.dumps(cfg, ensure_ascii=False), "utf-8")
    return subprocess.Popen([sys.executable, str(script), str(config)], env={**os.environ}, stderr=subprocess.PIPE)


def kill_when(child: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if child.poll() is not None:
            raise AssertionError(f"the export ended before it could be killed: {child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("the export never reached the point to kill it at")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


def as_json(records: list[Record]) -> list[dict]:
    return [{"key": r.key, "person_id": r.person_id, "fields": dict(r.fields), "variant": r.variant} for r in records]


def test_sftp_upload_killed_mid_write_never_exposes_a_partial_file(store, sftp_server, sftp_root, tmp_path) -> None:
    records = dm_records(20_000)  # about 2 MB of CP932
    folder = sftp_root / "outbound" / "dm" / AUDIENCE / INTERVAL
    child = start_child(
        tmp_path,
        target="sftp",
        store=store.url,
        audience=AUDIENCE,
        interval=INTERVAL,
        records=as_json(records),
        sftp={
            "host": sftp_server.host,
            "port": sftp_server.port,
            "username": USER,
            "password": PASSWORD,
            "host_key": sftp_server.host_key_public,
        },
    )
    kill_when(
        child, lambda: any(p.name.endswith(".part") and p.stat().st_size >= 65536 for p in files_under(sftp_root))
    )

    left = files_under(sftp_root)
    assert [p.name for p in left if not p.name.endswith(".part")] == []  # no final name, no manifest
    assert len(left) == 1 and left[0].stat().st_size < 2_000_000  # only the partial temporary file
    assert Counter(r["status"] for r in store.ledger(AUDIENCE, "sftp_dm_list", INTERVAL)) == {"claimed": 20_000}

    summary = sync(store, dm_destination(sftp_server), AUDIENCE, records, interval=INTERVAL, claim_lease=0)
    assert summary.delivered == 20_000
    published = files_under(sftp_root)
    assert [p.parent for p in published] == [folder, folder] and not any(p.name.startswith(".") for p in published)
    data_file, manifest_file = published
    data = data_file.read_bytes()
    manifest = json.loads(manifest_file.read_text("utf-8"))
    assert manifest["sha256"] == sha256(data) and manifest["bytes"] == len(data) and manifest["rows"] == 20_000
    keys = [row[0] for row in csv.reader(io.StringIO(data.decode("cp932"), newline=""))][1:]
    assert keys == [r.key for r in records]  # everyone once, in order


@pytest.mark.parametrize("stall", ["copy", "manifest"])
def test_s3_upload_killed_midway_never_exposes_a_file_without_its_manifest(
    store, moto_endpoint, bucket, tmp_path, stall
) -> None:
    records = [Record(r.key, r.person_id, {"full_name": r.fields["full_name"]}) for r in dm_records(2_000)]
    marker = tmp_path / "stalled"
    child = start_child(
        tmp_path,
        target="s3",
        stall=stall,
        marker=str(marker),
        bucket=bucket,
        store=store.url,
        audience=AUDIENCE,
        interval=INTERVAL,
        records=as_json(records),
        s3={
            "endpoint_url": moto_endpoint,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "region_name": REGION,
        },
    )
    kill_when(child, marker.exists)

    found = objects(moto_endpoint, bucket)
    published = [k for k in found if k.startswith(f"activation/{AUDIENCE}/")]
    manifests = [k for k in published if k.endswith(".manifest.json")]
    assert manifests == []  # a consumer waiting for the manifest sees nothing
    if stall == "copy":
        assert published == [] and len([k for k in found if "/_staging/" in k]) == 1
    else:
        assert len(published) == 1  # complete (the server copy is atomic) but not announced

    summary = sync(
        store,
        S3FileDestination(bucket=bucket, client=s3(moto_endpoint), allowed_columns=["full_name"]),
        AUDIENCE,
        records,
        interval=INTERVAL,
        claim_lease=0,
    )
    assert summary.delivered == 2_000
    found = objects(moto_endpoint, bucket)
    assert not any("/_staging/" in k for k in found)
    (data_key,) = [k for k in found if k.endswith(".csv")]
    manifest = json.loads(found[data_key + ".manifest.json"])
    assert manifest["sha256"] == sha256(found[data_key]) and manifest["rows"] == 2_000
    keys = [row[0] for row in csv.reader(io.StringIO(found[data_key].decode("utf-8")))][1:]
    assert keys == [r.key for r in records]
