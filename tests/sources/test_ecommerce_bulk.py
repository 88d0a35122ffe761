"""The shop's bulk path (a first load and reconciliation by one bulk operation per endpoint, the
way Shopify's bulkOperationRunQuery exports), over real HTTP on loopback against the stand-in
shop over the XS brand: the same rows as the REST walk, failures that move nothing, bad JSONL
lines in the rejects, result URLs that are never fetched off-origin or with the token, and a
download that stalls."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from yorisoi.sources.ecommerce import BulkOperationError, ShopApiError, ShopClient, ingest_ecommerce
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.reconcile import reconcile_ecommerce
from yorisoi.sources.registry import RegistryError, Source, load_registry
from yorisoi_kit.servers.ecommerce import RunningServer, serve_in_thread

API_KEY = "shpat_bulk_test_key"
LOAD_DATE = date(2026, 11, 1)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
TABLES = ("customers", "orders", "order_lines", "products")


@pytest.fixture(scope="module")
def server(synth_xs: Path) -> Iterator[RunningServer]:
    with serve_in_thread(synth_xs, API_KEY, bucket_size=1_000_000, leak_per_second=1_000_000.0) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_server_state(server: RunningServer) -> None:
    server.app.state.faults.clear()
    server.app.state.calls.clear()
    server.app.state.bulk.clear()


@pytest.fixture(scope="module")
def source() -> Source:
    return load_registry().source("ecommerce")


def make_warehouse(folder: Path) -> Warehouse:
    return Warehouse(folder / "warehouse.duckdb", Lake(folder / "lake"))


def client_of(server: RunningServer, **options: Any) -> ShopClient:
    settings: dict[str, Any] = {"poll_interval": 0.02, "jitter": lambda: 0.0, "timeout": 10.0, **options}
    return ShopClient(server.base_url, API_KEY, **settings)


def query(wh: Warehouse, sql: str) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def raw_exists(wh: Warehouse, table: str) -> bool:
    sql = f"select count(*) from information_schema.tables where table_name = 'ecommerce__{table}'"
    return wh.path.exists() and query(wh, sql)[0][0] == 1


def graphql_calls(server: RunningServer) -> int:
    return sum(call.path.endswith("/graphql.json") for call in server.app.state.calls.all())


def test_a_bulk_first_load_lands_the_same_rows_as_the_rest_walk(
    server: RunningServer, source: Source, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    by_bulk, by_rest = make_warehouse(tmp_path / "bulk"), make_warehouse(tmp_path / "rest")
    with client_of(server) as client:
        bulk = ingest_ecommerce(by_bulk, source, client, run_id="r", load_date=LOAD_DATE, until=UNTIL, read="bulk")
        assert graphql_calls(server) >= 6  # three operations started and polled
        assert "line by line" not in caplog.text  # the orders were read by DuckDB
        server.app.state.calls.clear()
        rest = ingest_ecommerce(by_rest, source, client, run_id="r", load_date=LOAD_DATE, until=UNTIL, read="rest")
        assert graphql_calls(server) == 0

    con = by_bulk.connect()
    try:
        con.execute(f"attach '{by_rest.path}' as rest (read_only)")
        for table in TABLES:
            assert bulk[table].rows == rest[table].rows > 0, table
            assert bulk[table].watermark == rest[table].watermark, table
            columns = [r[0] for r in con.execute(f"describe raw.ecommerce__{table}").fetchall()]
            contract = ", ".join(c for c in columns if not c.startswith("_"))  # not the batch stamps
            differ = con.execute(
                f"select count(*) from ((select {contract} from raw.ecommerce__{table} except all "
                f"select {contract} from rest.raw.ecommerce__{table}) union all (select {contract} from "
                f"rest.raw.ecommerce__{table} except all select {contract} from raw.ecommerce__{table}))"
            ).fetchone()[0]
            assert differ == 0, table
    finally:
        con.close()


def test_auto_reads_a_first_load_by_bulk_and_increments_by_rest(
    server: RunningServer, source: Source, tmp_path: Path
) -> None:
    wh = make_warehouse(tmp_path)
    with client_of(server) as client:
        ingest_ecommerce(wh, source, client, run_id="r1", load_date=LOAD_DATE, tables=["products"], until=UNTIL)
        first = server.app.state.calls.all()
        server.app.state.calls.clear()
        again = ingest_ecommerce(wh, source, client, run_id="r2", load_date=LOAD_DATE, tables=["products"], until=UNTIL)
        second = server.app.state.calls.all()
    assert any(c.path.endswith("/graphql.json") for c in first)
    assert not any(c.path.endswith("/products.json") for c in first)
    assert [c.path.rsplit("/", 1)[1] for c in second] == ["products.json"]  # the watermark's boundary second
    assert again["products"].rows >= 1
    assert server.app.state.bulk.downloads and not any(token for _, token in server.app.state.bulk.downloads)


@pytest.mark.parametrize(
    ("status", "code"), [("FAILED", "INTERNAL_SERVER_ERROR"), ("EXPIRED", None), ("CANCELED", None)]
)
def test_an_operation_that_does_not_complete_moves_nothing(
    server: RunningServer, source: Source, tmp_path: Path, status: str, code: str | None
) -> None:
    wh = make_warehouse(tmp_path)
    server.app.state.bulk.end_next_as(status, code)
    with client_of(server) as client, pytest.raises(BulkOperationError) as info:
        ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, tables=["orders"], until=UNTIL)
    assert f"ended {status}" in str(info.value)
    if code:
        assert code in str(info.value)
    assert "watermark did not move" in str(info.value)
    assert not raw_exists(wh, "orders") or wh.get_watermark(source.tables["orders"]) is None
    assert not list((tmp_path / "lake").rglob("*.parquet"))  # nothing left in the lake either


def test_a_failed_bulk_read_leaves_an_existing_watermark_and_rows_as_they_were(
    server: RunningServer, source: Source, tmp_path: Path
) -> None:
    wh = make_warehouse(tmp_path)
    with client_of(server) as client:
        ingest_ecommerce(wh, source, client, run_id="r1", load_date=LOAD_DATE, tables=["orders"], read="rest")
        mark = wh.get_watermark(source.tables["orders"])
        before = query(wh, "select count(*), max(_batch_id) from raw.ecommerce__orders")
        server.app.state.bulk.end_next_as("FAILED", "TIMEOUT")
        with pytest.raises(BulkOperationError, match=r"ended FAILED \(TIMEOUT\)"):
            ingest_ecommerce(wh, source, client, run_id="r2", load_date=LOAD_DATE, tables=["orders"], read="bulk")
    assert wh.get_watermark(source.tables["orders"]) == mark
    assert query(wh, "select count(*), max(_batch_id) from raw.ecommerce__orders") == before


def test_an_expired_result_url_is_a_clear_error_and_moves_nothing(
    server: RunningServer, source: Source, tmp_path: Path
) -> None:
    wh = make_warehouse(tmp_path)
    server.app.state.bulk.url_ttl = -1.0  # the signed URL is already out of date when read
    with client_of(server, max_attempts=2) as client, pytest.raises(BulkOperationError) as info:
        ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, tables=["customers"], until=UNTIL)
    assert "expired" in str(info.value) and "watermark did not move" in str(info.value)
    assert not raw_exists(wh, "customers") or wh.get_watermark(source.tables["customers"]) is None


def test_bad_jsonl_lines_go_to_the_rejects_with_their_line(
    server: RunningServer, source: Source, synth_xs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wh = make_warehouse(tmp_path)
    n_lines: list[int] = []

    def spoil(lines: list[bytes]) -> list[bytes]:
        n_lines.append(len(lines))
        order = json.loads(lines[0])
        bad_price = {**order, "id": "gid://shopify/Order/999", "totalPriceSet": {"shopMoney": {"amount": "abc"}}}
        no_id = {k: v for k, v in order.items() if k != "id"}
        item = json.loads(next(line for line in lines if b"__parentId" in line))
        bad_quantity = {**item, "id": "gid://shopify/LineItem/999", "quantity": "several"}
        extra = [b"{not json", json.dumps(bad_price).encode(), json.dumps(no_id).encode()]
        return [*lines, *extra, json.dumps(bad_quantity).encode()]

    server.app.state.bulk.edit_next = spoil
    with client_of(server) as client:
        results = ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, tables=["orders"], until=UNTIL)
    assert "reading it line by line" in caplog.text  # DuckDB gave up on the file, the line reader did not
    n = n_lines[0]
    rejects = query(wh, "select table_name, line, reason from raw._rejects order by line")
    assert [(table, line) for table, line, _ in rejects] == [
        ("orders", n + 1),
        ("orders", n + 2),
        ("orders", n + 3),
        ("order_lines", n + 4),
    ]
    assert "not JSON" in rejects[0][2]
    assert "'999'" in rejects[1][2] and "total_price" in rejects[1][2]
    assert "KeyError" in rejects[2][2]
    assert "quantity" in rejects[3][2]
    import pyarrow.parquet as pq

    for table in ("orders", "order_lines"):  # every good row landed, and the watermark moved
        assert results[table].rows == pq.read_metadata(synth_xs / "ecommerce" / f"{table}.parquet").num_rows
    assert wh.get_watermark(source.tables["orders"]) is not None


def test_a_result_url_on_another_origin_is_never_fetched(server: RunningServer, source: Source, tmp_path: Path) -> None:
    wh = make_warehouse(tmp_path)
    bulk = server.app.state.bulk
    bulk.url_origin = f"http://localhost:{server.port}"  # the same server under another name: a foreign origin
    with client_of(server) as client, pytest.raises(BulkOperationError) as info:
        ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, tables=["products"], until=UNTIL)
    assert "another origin" in str(info.value) and "localhost" in str(info.value)
    assert bulk.downloads == []  # no request left for it, so the token went nowhere
    assert not raw_exists(wh, "products") or wh.get_watermark(source.tables["products"]) is None


def test_a_stalled_download_hits_the_deadline(server: RunningServer, source: Source, tmp_path: Path) -> None:
    wh = make_warehouse(tmp_path)
    server.app.state.bulk.trickle = (2048, 0.2)  # ~10 kB/s: the XS orders file would take minutes
    started = time.monotonic()
    with (
        client_of(server, max_attempts=1, download_deadline=1.0) as client,
        pytest.raises(ShopApiError) as info,
    ):
        ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, tables=["orders"], until=UNTIL)
    assert time.monotonic() - started < 15
    assert "took over 1 s" in str(info.value)
    assert not raw_exists(wh, "orders") or wh.get_watermark(source.tables["orders"]) is None


def test_reconciliation_by_bulk_finds_a_rest_load_complete(
    server: RunningServer, source: Source, tmp_path: Path
) -> None:
    wh = make_warehouse(tmp_path)
    with client_of(server) as client:
        ingest_ecommerce(wh, source, client, run_id="r", load_date=LOAD_DATE, until=UNTIL, read="rest")
        server.app.state.calls.clear()
        results = reconcile_ecommerce(wh, source, client, run_id="w", load_date=LOAD_DATE, workdir=tmp_path)
        assert graphql_calls(server) > 0
        for table in TABLES:
            assert results[table].source_rows == results[table].raw_rows > 0, table
            assert (results[table].missing, results[table].changed, results[table].landed) == (0, 0, 0), table

        con = wh.connect()  # an order and its lines lost from raw: the bulk reconciliation lands them again
        (order,) = con.execute("select min(id) from raw.ecommerce__orders").fetchone()
        lines = con.execute("select count(*) from raw.ecommerce__order_lines where order_id = ?", [order]).fetchone()[0]
        con.execute("delete from raw.ecommerce__orders where id = ?", [order])
        con.execute("delete from raw.ecommerce__order_lines where order_id = ?", [order])
        con.close()
        again = reconcile_ecommerce(wh, source, client, run_id="w2", load_date=LOAD_DATE, workdir=tmp_path)
    assert (again["orders"].missing, again["orders"].landed) == (1, 1)
    assert (again["order_lines"].missing, again["order_lines"].landed) == (lines, lines) and lines > 0
    assert query(wh, f"select count(*) from raw.ecommerce__orders where id = '{order}'") == [(1,)]


def test_auto_reads_customers_by_rest_when_their_furigana_are_metafields(
    server: RunningServer, source: Source, tmp_path: Path
) -> None:
    customers = source.tables["customers"]
    fields = {"last_name_kana": {"metafield": "custom.sei_kana"}}
    shop = dataclasses.replace(
        source,
        tables={
            **source.tables,
            "customers": dataclasses.replace(customers, options={**customers.options, "fields": fields}),
        },
    )
    wh = make_warehouse(tmp_path)
    with client_of(server) as client:
        results = ingest_ecommerce(wh, shop, client, run_id="r", load_date=LOAD_DATE, tables=["customers"], until=UNTIL)
        assert graphql_calls(server) == 0 and results["customers"].rows > 0
        with pytest.raises(RegistryError, match="metafields"):
            ingest_ecommerce(wh, shop, client, run_id="b", load_date=LOAD_DATE, tables=["customers"], read="bulk")
