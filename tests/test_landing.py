"""Landing: batches upsert by primary key, reruns replace, failures leave nothing, watermarks
only move forward, and the same code writes the lake to S3 (moto's server on loopback)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import Table

ORDERS = Table(source="shop", name="orders", primary_key=("id",), watermark="updated_at", description="")
DAY = date(2026, 11, 1)


def at(hour: int) -> datetime:
    return datetime(2026, 11, 1, hour, tzinfo=UTC)


def part(ids: list[int], hours: list[int], value: str = "v") -> pa.Table:
    return pa.table({"id": ids, "value": [f"{value}{i}" for i in ids], "updated_at": [at(h) for h in hours]})


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


def rows(wh: Warehouse) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        return con.execute("select id, value, _batch_id from raw.shop__orders order by id").fetchall()
    finally:
        con.close()


def test_rerun_of_a_batch_replaces_its_rows_and_files(wh: Warehouse, tmp_path: Path) -> None:
    wh.land(ORDERS, [part([1, 2], [1, 2]), part([3], [3])], batch_id="run1", load_date=DAY, watermark="updated_at")
    wh.land(ORDERS, [part([1, 2, 3], [1, 2, 3])], batch_id="run1", load_date=DAY, watermark="updated_at")
    assert [r[0] for r in rows(wh)] == [1, 2, 3]
    files = list((tmp_path / "lake" / "raw" / "shop" / "orders" / "load_date=2026-11-01").glob("*.parquet"))
    assert len(files) == 1, "the rerun's files replace the first run's, they do not add to them"


def test_later_batch_updates_by_key_and_moves_the_watermark(wh: Warehouse) -> None:
    first = wh.land(ORDERS, [part([1, 2], [1, 2])], batch_id="run1", load_date=DAY, watermark="updated_at")
    second = wh.land(ORDERS, [part([2, 3], [5, 4], "new")], batch_id="run2", load_date=DAY, watermark="updated_at")
    assert rows(wh) == [(1, "v1", "run1"), (2, "new2", "run2"), (3, "new3", "run2")]
    assert datetime.fromisoformat(first.watermark) == at(2)
    assert datetime.fromisoformat(second.watermark) == at(5)
    older = wh.land(ORDERS, [part([4], [3])], batch_id="run3", load_date=DAY, watermark="updated_at")
    assert datetime.fromisoformat(older.watermark) == at(5), "a watermark never moves backwards"


def test_duplicate_keys_within_a_batch_keep_the_last(wh: Warehouse) -> None:
    wh.land(ORDERS, [part([1], [1], "old"), part([1], [2], "new")], batch_id="run1", load_date=DAY)
    assert rows(wh) == [(1, "new1", "run1")]


def test_a_failing_batch_lands_nothing(wh: Warehouse) -> None:
    wh.land(ORDERS, [part([1], [1])], batch_id="run1", load_date=DAY, watermark="updated_at")

    def broken():
        yield part([2], [2])
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        wh.land(ORDERS, broken(), batch_id="run2", load_date=DAY, watermark="updated_at")
    assert rows(wh) == [(1, "v1", "run1")]
    assert datetime.fromisoformat(wh.get_watermark(ORDERS)) == at(1)
    assert not list(wh.lake.folder("shop", "orders", DAY).glob("run2-*.parquet")), "no partial files left"


def test_a_new_source_column_is_kept(wh: Warehouse) -> None:
    wh.land(ORDERS, [part([1], [1])], batch_id="run1", load_date=DAY)
    wh.land(ORDERS, [part([2], [2]).append_column("channel", pa.array(["web"]))], batch_id="run2", load_date=DAY)
    con = wh.connect(read_only=True)
    assert con.execute("select id, channel from raw.shop__orders order by id").fetchall() == [(1, None), (2, "web")]
    con.close()


def test_rejects_of_a_rerun_replace_the_earlier_ones(wh: Warehouse) -> None:
    rejects = pa.table(
        {
            "batch_id": ["b"],
            "source": ["sftp"],
            "table_name": ["t"],
            "source_file": ["f.csv"],
            "line": [4],
            "reason": ["bad date"],
            "raw_line": ["x"],
        }
    )
    wh.add_rejects(rejects)
    wh.add_rejects(rejects)
    con = wh.connect(read_only=True)
    assert con.execute("select count(*), min(line) from raw._rejects").fetchone() == (1, 4)
    con.close()


def test_second_writer_waits_for_the_lock(wh: Warehouse) -> None:
    """Another process holds the DuckDB write lock for a moment: the writer retries, then lands."""
    wh.connect().close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(1.5)",
            str(wh.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        wh.land(ORDERS, [part([1], [1])], batch_id="run1", load_date=DAY)
    finally:
        holder.wait(timeout=30)
    assert len(rows(wh)) == 1


def test_s3_lake_on_moto(tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="ap-northeast-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
        wh = Warehouse(tmp_path / "w.duckdb", Lake("s3://lake/yorisoi", staging=tmp_path / "stage", s3_client=s3))
        wh.land(ORDERS, [part([1, 2], [1, 2])], batch_id="run1", load_date=DAY)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]]
        assert keys == ["yorisoi/raw/shop/orders/load_date=2026-11-01/run1-00000.parquet"]
        assert [r[0] for r in rows(wh)] == [1, 2]
    finally:
        server.stop()
