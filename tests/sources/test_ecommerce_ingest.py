"""Incremental extraction from the e-commerce API into the raw layer, over real HTTP on loopback
(`ShopClient` against `serve_in_thread` over the XS brand), landing into a DuckDB warehouse in
tmp_path. Waits are recorded by an injected `sleep`, so nothing here actually sleeps."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yorisoi.sources.ecommerce import (
    ShopApiError,
    ShopClient,
    flatten_customers,
    flatten_orders,
    flatten_products,
    ingest_ecommerce,
    parse_retry_after,
)
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import Source, load_registry
from yorisoi_kit.servers.ecommerce import RunningServer, serve_in_thread

API_KEY = "shpat_ingest_test_key"
LOAD_DATE = date(2026, 11, 1)
TABLES = ("customers", "orders", "order_lines", "products")
RESOURCE_OF = {"customers": "customers", "orders": "orders", "order_lines": "orders", "products": "products"}


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(synth_xs: Path) -> Iterator[RunningServer]:
    """The API over the XS brand, with a rate limit too generous to matter (tested separately)."""
    with serve_in_thread(synth_xs, API_KEY, bucket_size=1_000_000, leak_per_second=1_000_000.0) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_server_state(server: RunningServer) -> None:
    server.app.state.faults.clear()
    server.app.state.calls.clear()
    server.app.state.rate_limiter.reset()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


@pytest.fixture(scope="module")
def source() -> Source:
    return load_registry().source("ecommerce")


class Sleeps(list):
    """An injected `sleep`: records each wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(server: RunningServer, sleeps: Sleeps, **kwargs: Any) -> ShopClient:
    options: dict[str, Any] = {"sleep": sleeps, "jitter": lambda: 0.0, "timeout": 10.0, **kwargs}
    return ShopClient(server.base_url, options.pop("token", API_KEY), **options)


def source_table(brand: Path, table: str) -> pa.Table:
    return pq.read_table(brand / "ecommerce" / f"{table}.parquet")


def query(wh: Warehouse, sql: str, params: list[Any] | None = None) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def raw_exists(wh: Warehouse, table: str) -> bool:
    if not wh.path.exists():
        return False
    sql = "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?"
    return query(wh, sql, [f"ecommerce__{table}"])[0][0] == 1


def raw_ids(wh: Warehouse, table: str) -> list[int]:
    """The raw table's ids (text) as the integers the synthetic shop issues, sorted."""
    return sorted(int(row[0]) for row in query(wh, f"select id from raw.ecommerce__{table}"))


def snapshot(wh: Warehouse) -> dict[str, Any]:
    """Row counts, batch ids and watermarks: what a failed run must leave as it was."""
    state: dict[str, Any] = {}
    for table in TABLES:
        if raw_exists(wh, table):
            state[table] = query(wh, f"select count(*), string_agg(distinct _batch_id) from raw.ecommerce__{table}")
    if wh.path.exists():
        state["_watermarks"] = query(wh, "select * exclude (updated_at) from raw._watermarks order by all")
    return state


def mismatches(wh: Warehouse, brand: Path, table: str) -> int:
    """Rows in the source Parquet and the raw table that differ on any contract column (timestamps
    compared to the second, as the API sends them)."""
    schema = source_table(brand, table).schema
    src_cols = ", ".join(
        f"date_trunc('second', {f.name})::timestamptz" if pa.types.is_timestamp(f.type) else f.name for f in schema
    )
    raw_cols = ", ".join(f.name for f in schema)
    path = str(brand / "ecommerce" / f"{table}.parquet")
    src = f"select {src_cols} from read_parquet('{path}')"
    raw = f"select {raw_cols} from raw.ecommerce__{table}"
    return query(wh, f"select count(*) from (({src} except all {raw}) union all ({raw} except all {src}))")[0][0]


def statuses(server: RunningServer) -> list[int]:
    return [call.status for call in server.app.state.calls.all()]


# --------------------------------------------------------------------------------------------
# Landing: exact first run, idempotent reruns, boundary-only increments
# --------------------------------------------------------------------------------------------


def test_first_run_lands_exactly_the_source_rows(
    server: RunningServer, synth_xs: Path, warehouse: Warehouse, source: Source
) -> None:
    with make_client(server, Sleeps()) as client:
        results = ingest_ecommerce(warehouse, source, client, run_id="run1", load_date=LOAD_DATE)

    assert set(results) == set(TABLES)
    for table in TABLES:
        expected = source_table(synth_xs, table)
        assert results[table].rows == expected.num_rows, table
        assert raw_ids(warehouse, table) == sorted(expected["id"].to_pylist()), table
        assert mismatches(warehouse, synth_xs, table) == 0, table  # every contract column, every value

    lines = source_table(synth_xs, "order_lines")
    landed = query(warehouse, "select count(*), count(distinct order_id) from raw.ecommerce__order_lines")[0]
    assert landed == (lines.num_rows, len(set(lines["order_id"].to_pylist())))

    # the watermark is the latest updated_at as the API shows it (truncated to the second)
    for table in ("customers", "orders", "products"):
        latest = max(source_table(synth_xs, table)["updated_at"].to_pylist()).replace(microsecond=0, tzinfo=UTC)
        assert datetime.fromisoformat(warehouse.get_watermark(source.tables[table])) == latest
        assert results[table].watermark is not None
    assert warehouse.get_watermark(source.tables["order_lines"]) is None


def test_reruns_add_no_duplicates_and_later_runs_read_only_the_boundary(
    server: RunningServer, synth_xs: Path, warehouse: Warehouse, source: Source
) -> None:
    expected = {table: source_table(synth_xs, table).num_rows for table in TABLES}
    with make_client(server, Sleeps()) as client:
        ingest_ecommerce(warehouse, source, client, run_id="run1", load_date=LOAD_DATE)
        first_calls = len(server.app.state.calls)
        marks = {t: warehouse.get_watermark(source.tables[t]) for t in ("customers", "orders", "products")}

        # the same run again: same counts, same rows
        ingest_ecommerce(warehouse, source, client, run_id="run1", load_date=LOAD_DATE)
        counts = {t: query(warehouse, f"select count(*) from raw.ecommerce__{t}")[0][0] for t in TABLES}
        assert counts == expected

        # a later run: one request per resource (the boundary second), nothing new
        server.app.state.calls.clear()
        results = ingest_ecommerce(warehouse, source, client, run_id="run2", load_date=LOAD_DATE)

    calls = server.app.state.calls.all()
    assert len(calls) == 3 < first_calls
    for call in calls:
        params = parse_qs(call.query)
        resource = call.path.rsplit("/", 1)[-1].removesuffix(".json")
        assert params["updated_at_min"] == [marks[resource]]
    assert all(0 < results[t].rows <= 5 for t in ("customers", "orders", "products"))
    counts = {t: query(warehouse, f"select count(*) from raw.ecommerce__{t}")[0][0] for t in TABLES}
    assert counts == expected
    assert {t: warehouse.get_watermark(source.tables[t]) for t in marks} == marks
    boundary = query(warehouse, "select count(*) from raw.ecommerce__customers where _batch_id = 'run2:customers'")
    assert boundary[0][0] == results["customers"].rows


def test_link_pagination_walks_every_page_and_writes_bounded_parts(
    server: RunningServer, synth_xs: Path, warehouse: Warehouse, source: Source
) -> None:
    with make_client(server, Sleeps()) as client:
        results = ingest_ecommerce(
            warehouse,
            source,
            client,
            run_id="paged",
            load_date=LOAD_DATE,
            page_limit=50,
            rows_per_part=1000,
            read="rest",
        )

    calls = server.app.state.calls.all()
    assert all(call.status == 200 for call in calls)
    for resource in ("customers", "orders", "products"):
        rows = source_table(synth_xs, resource).num_rows
        mine = [c for c in calls if c.path.endswith(f"/{resource}.json")]
        assert len(mine) == math.ceil(rows / 50), resource
        # later pages carry only page_info and limit, as Shopify requires
        assert all(set(parse_qs(c.query)) == {"page_info", "limit"} for c in mine[1:])
    for table in TABLES:
        rows = source_table(synth_xs, table).num_rows
        assert results[table].rows == rows
        assert results[table].files == math.ceil(rows / 1000), table
        assert len(raw_ids(warehouse, table)) == rows


# --------------------------------------------------------------------------------------------
# Retries (docs/reliability.md #5)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.6])
def test_429_honours_retry_after(
    server: RunningServer, warehouse: Warehouse, source: Source, caplog: pytest.LogCaptureFixture, jitter: float
) -> None:
    sleeps = Sleeps()
    server.app.state.faults.inject(429, retry_after=2.0)
    with make_client(server, sleeps, jitter=lambda: jitter, backoff_base=0.5) as client:
        results = ingest_ecommerce(
            warehouse, source, client, run_id="r", load_date=LOAD_DATE, tables=["products"], read="rest"
        )

    # rule: wait = Retry-After + jitter() * backoff_base, never less than the server asked
    assert sleeps == [pytest.approx(2.0 + jitter * 0.5)]
    assert statuses(server) == [429, 200]
    assert results["products"].rows == 100
    assert any("HTTP 429" in r.getMessage() and "retrying in" in r.getMessage() for r in caplog.records)


def test_random_jitter_stays_within_its_rule(server: RunningServer) -> None:
    sleeps = Sleeps()
    server.app.state.faults.inject(429, 429, 429, retry_after=2.0)
    with ShopClient(server.base_url, API_KEY, sleep=sleeps, backoff_base=0.5) as client:  # random.random jitter
        assert len(next(client.pages("products", {"limit": 10}))) == 10
    assert len(sleeps) == 3
    assert all(2.0 <= wait < 2.5 for wait in sleeps)


def test_5xx_then_success_backs_off_exponentially(server: RunningServer, warehouse: Warehouse, source: Source) -> None:
    sleeps = Sleeps()
    server.app.state.faults.inject(500, 502, 503)
    with make_client(server, sleeps, backoff_base=0.5) as client:
        results = ingest_ecommerce(
            warehouse, source, client, run_id="r", load_date=LOAD_DATE, tables=["products"], read="rest"
        )
    assert sleeps == [0.5, 1.0, 2.0]  # backoff_base * 2**(n-1), jitter 0
    assert statuses(server) == [500, 502, 503, 200]
    assert results["products"].rows == 100


def test_timeouts_are_retried(server: RunningServer) -> None:
    sleeps = Sleeps()
    server.app.state.faults.set_delay(1.0, count=1)
    with make_client(server, sleeps, timeout=0.25) as client:
        page = next(client.pages("products", {"limit": 5}))
    assert len(page) == 5
    assert sleeps == [0.5]
    # the abandoned request still completes on the server about a second later; wait for it, so
    # its late 200 is not logged among the next test's calls
    deadline = time.monotonic() + 10
    while len(server.app.state.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [call.status for call in server.app.state.calls.all()] == [200, 200]


def test_backoff_is_capped() -> None:
    client = ShopClient("http://127.0.0.1:9", API_KEY, backoff_base=1.0, backoff_cap=5.0, jitter=lambda: 0.99)
    try:
        assert [client.backoff(n) for n in range(1, 6)] == pytest.approx([1.99, 2.99, 4.99, 5.0, 5.0])
        assert client.backoff(7, retry_after=60.0) == pytest.approx(60.99)  # the server's wish wins over the cap
    finally:
        client.close()


@pytest.mark.parametrize(("status", "phrase"), [(400, "Bad Request"), (401, "Unauthorized"), (404, "Not Found")])
def test_other_4xx_are_never_retried(server: RunningServer, status: int, phrase: str) -> None:
    sleeps = Sleeps()
    server.app.state.faults.inject(status)
    with make_client(server, sleeps) as client, pytest.raises(ShopApiError) as info:
        next(client.pages("customers", {"limit": 5}))
    assert statuses(server) == [status]  # exactly one call
    assert sleeps == []
    err = info.value
    assert (err.status, err.errors, err.attempts) == (status, phrase, 1)
    assert f"HTTP {status}" in str(err) and "/customers.json" in str(err) and phrase in str(err)


def test_a_wrong_token_fails_at_once_with_the_servers_message(server: RunningServer) -> None:
    sleeps = Sleeps()
    with make_client(server, sleeps, token="wrong") as client, pytest.raises(ShopApiError) as info:
        next(client.pages("orders", {"limit": 5}))
    assert info.value.status == 401
    assert "Invalid API key" in str(info.value)
    assert sleeps == []


def test_attempts_are_capped_and_a_failed_run_changes_nothing(
    server: RunningServer, synth_xs: Path, warehouse: Warehouse, source: Source
) -> None:
    faults = server.app.state.faults
    sleeps = Sleeps()
    with make_client(server, sleeps, max_attempts=4) as client:
        ingest_ecommerce(warehouse, source, client, run_id="ok", load_date=LOAD_DATE, tables=["customers"], read="rest")
        before = snapshot(warehouse)

        # orders fail mid-way: three pages in (parts already written to the lake), then only 500s
        real_pages = client.pages

        def failing_pages(resource: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
            for n, page in enumerate(real_pages(resource, params), start=1):
                yield page
                if n == 3:
                    faults.inject(*[500] * 10)

        client.pages = failing_pages  # type: ignore[method-assign]
        server.app.state.calls.clear()
        with pytest.raises(ShopApiError) as info:
            ingest_ecommerce(
                warehouse,
                source,
                client,
                run_id="bad",
                load_date=LOAD_DATE,
                tables=["orders"],
                page_limit=50,
                rows_per_part=60,
                read="rest",
            )
        assert info.value.status == 500 and info.value.attempts == 4
        assert "after 4 attempt(s)" in str(info.value)
        assert statuses(server) == [200, 200, 200, 500, 500, 500, 500]  # capped at max_attempts
        assert sleeps == [0.5, 1.0, 2.0]
        # parts were written before the failure, and the failed batch removed them again
        assert not list((warehouse.lake.local_root / "raw/ecommerce/orders").rglob("bad_orders-*.parquet"))
        assert snapshot(warehouse) == before  # no orders, no lines, no watermark; customers as they were
        assert not raw_exists(warehouse, "orders") and not raw_exists(warehouse, "order_lines")

        # a failure on an already landed warehouse changes nothing either
        faults.clear()
        client.pages = real_pages  # type: ignore[method-assign]
        ingest_ecommerce(warehouse, source, client, run_id="good", load_date=LOAD_DATE)
        before = snapshot(warehouse)
        faults.inject(*[500] * 4)
        with pytest.raises(ShopApiError):
            ingest_ecommerce(warehouse, source, client, run_id="bad2", load_date=LOAD_DATE)
        assert snapshot(warehouse) == before

        # the failed run, rerun: its stale parts are replaced, the rows land exactly once
        faults.clear()
        ingest_ecommerce(warehouse, source, client, run_id="bad", load_date=LOAD_DATE, page_limit=50, rows_per_part=60)
    for table in TABLES:
        assert raw_ids(warehouse, table) == sorted(source_table(synth_xs, table)["id"].to_pylist())


def test_order_lines_are_committed_before_the_orders_watermark(
    server: RunningServer, warehouse: Warehouse, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_upsert = Warehouse._upsert
    fail_lines = threading.Event()
    fail_lines.set()

    def recording_upsert(self: Warehouse, table: Any, *args: Any, **kwargs: Any) -> str | None:
        order.append(table.name)
        if table.name == "order_lines" and fail_lines.is_set():
            raise RuntimeError("the warehouse refused the lines")
        return real_upsert(self, table, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "_upsert", recording_upsert)
    with make_client(server, Sleeps()) as client:
        with pytest.raises(RuntimeError, match="refused the lines"):
            ingest_ecommerce(warehouse, source, client, run_id="r", load_date=LOAD_DATE, tables=["orders"])
        assert order == ["order_lines"]  # the orders batch saw the error and did nothing
        assert not raw_exists(warehouse, "orders")
        assert warehouse.get_watermark(source.tables["orders"]) is None

        fail_lines.clear()
        order.clear()
        ingest_ecommerce(warehouse, source, client, run_id="r", load_date=LOAD_DATE, tables=["order_lines"])
    assert order == ["order_lines", "orders"]
    assert warehouse.get_watermark(source.tables["orders"]) is not None


class FakeClock:
    """A monotonic clock shared by the server's rate limiter and the client's `sleep`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self.now += seconds


def test_the_leaky_bucket_is_honoured_without_losing_rows(synth_xs: Path, warehouse: Warehouse, source: Source) -> None:
    clock = FakeClock()
    with serve_in_thread(synth_xs, API_KEY, bucket_size=4, leak_per_second=2.0, clock=clock) as throttled:
        with ShopClient(throttled.base_url, API_KEY, sleep=clock.sleep, jitter=lambda: 0.0) as client:
            results = ingest_ecommerce(
                warehouse,
                source,
                client,
                run_id="r",
                load_date=LOAD_DATE,
                tables=["customers"],
                page_limit=50,
                read="rest",
            )
        calls = throttled.app.state.calls.all()
    throttled_calls = [c for c in calls if c.status == 429]
    assert throttled_calls and len(clock.waits) == len(throttled_calls)
    assert all(wait >= 0.5 for wait in clock.waits)  # one call's worth of leak at 2 calls/s
    assert sum(c.status == 200 for c in calls) == math.ceil(897 / 50)
    assert results["customers"].rows == 897


# --------------------------------------------------------------------------------------------
# Flattening and small rules
# --------------------------------------------------------------------------------------------


def test_flatteners_type_and_flatten_shopify_shapes() -> None:
    customers = flatten_customers(
        [
            {
                "id": 1,
                "email": "a@example.jp",
                "last_name": "山田",
                "last_name_kana": "ヤマダ",
                "first_name_kana": "はなこ",
                "created_at": "2025-03-01T09:30:00+09:00",
                "updated_at": "2025-03-02T00:00:00+09:00",
                "verified_email": True,
                "email_marketing_consent": {
                    "state": "subscribed",
                    "opt_in_level": "confirmed_opt_in",
                    "consent_updated_at": "2025-03-01T09:30:00+09:00",
                },
                "sms_marketing_consent": None,
                "default_address": {"zip": "150-0001", "province": "東京都", "city": "渋谷区", "address1": "神宮前1"},
            }
        ]
    )
    row = customers.to_pylist()[0]
    assert row["created_at"] == datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
    assert (row["last_name"], row["last_name_kana"], row["first_name_kana"]) == ("山田", "ヤマダ", "はなこ")
    assert customers.schema.names[2:6] == ["first_name", "last_name", "last_name_kana", "first_name_kana"]
    assert row["first_name"] is None  # absent keys land as null
    assert row["email_marketing_opt_in_level"] == "confirmed_opt_in"
    assert row["sms_marketing_state"] is None and row["sms_marketing_updated_at"] is None
    assert (row["zip"], row["province"], row["city"], row["address1"]) == ("150-0001", "東京都", "渋谷区", "神宮前1")

    orders, lines = flatten_orders(
        [
            {
                "id": 10,
                "customer": None,
                "updated_at": "2025-03-01T09:00:00+09:00",
                "subtotal_price": "1980.00",
                "total_shipping_price_set": {"shop_money": {"amount": "550", "currency_code": "JPY"}},
                "line_items": [{"id": 100, "price": "990", "compare_at_price": None, "quantity": 2}],
            }
        ]
    )
    assert orders.to_pylist()[0]["customer_id"] is None
    assert (orders["subtotal_price"][0].as_py(), orders["shipping_price"][0].as_py()) == (1980, 550)
    assert lines.to_pylist() == [
        {
            "id": "100",  # identifiers are text
            "order_id": "10",
            "product_id": None,
            "sku": None,
            "title": None,
            "quantity": 2,
            "price": 990,
            "compare_at_price": None,
        }
    ]
    with pytest.raises(ValueError, match=r"total_price: .*minor_unit"):
        flatten_orders([{"id": 1, "total_price": "10.5"}])  # yen have no subunit: the registry's money says so
    usd, usd_lines = flatten_orders(
        [{"id": "gid-7", "total_price": "10.5", "line_items": [{"id": 1, "price": "5.25"}]}], money_scale=2
    )
    assert usd["total_price"].type == pa.decimal128(18, 2) and usd["total_price"][0].as_py() == Decimal("10.50")
    assert usd_lines["price"][0].as_py() == Decimal("5.25") and usd["id"][0].as_py() == "gid-7"
    with pytest.raises(ValueError, match="total_price"):
        flatten_orders([{"id": 1, "total_price": "10.505"}], money_scale=2)

    # real Shopify: compare_at_price null when not on sale; "Default Title" when no options
    products = flatten_products(
        [
            {"id": 1, "variants": [{"title": "Default Title", "price": "3000", "compare_at_price": None}]},
            {"id": 2, "variants": [{"title": "柚子", "price": "2500", "compare_at_price": "3000"}]},
            {"id": 3, "variants": [{"title": "150mL", "price": "3000", "compare_at_price": "3000"}]},
        ]
    )
    got = [(r["variant_title"], r["price"], r["sale_price"]) for r in products.to_pylist()]
    assert got == [(None, 3000, None), ("柚子", 3000, 2500), ("150mL", 3000, None)]

    for empty in (flatten_customers([]), *flatten_orders([]), flatten_products([])):
        assert empty.num_rows == 0 and pa.types.is_string(empty.schema.field("id").type)
    assert customers.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")


def test_retry_after_parsing() -> None:
    now: Callable[[], datetime] = lambda: datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)  # noqa: E731
    assert parse_retry_after("2.0") == 2.0
    assert parse_retry_after("Sun, 01 Nov 2026 00:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_unknown_tables_are_refused(warehouse: Warehouse, source: Source) -> None:
    client = ShopClient("http://127.0.0.1:9", API_KEY)
    try:
        with pytest.raises(ValueError, match="not an API table"):
            ingest_ecommerce(warehouse, source, client, run_id="r", load_date=LOAD_DATE, tables=["refunds"])
    finally:
        client.close()
