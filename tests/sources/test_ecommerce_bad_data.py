"""Bad data from the shop API cannot wedge ingestion, move a watermark into the future or send the
token elsewhere (docs/reliability.md #17, #18), over real HTTP on loopback.

The shop here is a scripted Shopify-like server (pages and `Link` headers as the test writes them),
because the misbehaviours under test (a Link to another host, a cursor that loops while changing,
a body trickling a byte at a time, a price of "abc") are what the brand's real API must never do.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from yorisoi.sources.ecommerce import ShopApiError, ShopClient, ingest_ecommerce
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import Source, load_registry
from yorisoi_kit.servers._loopback import RunningApi, serve_app_in_thread

TOKEN = "shpat_bad_data_test"
UNTIL = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def _app() -> FastAPI:
    """Serves `app.state.pages[resource]`: a list of (records, next page_info or None, next host)."""
    app = FastAPI()
    app.state.pages = {}
    app.state.calls = []
    app.state.trickle = None
    app.state.honour_max = False  # like an API that ignores updated_at_max

    @app.get("/admin/api/{version}/{resource}.json")
    async def listing(resource: str, request: Request) -> Any:
        app.state.calls.append((request.headers.get("X-Shopify-Access-Token"), str(request.url)))
        if app.state.trickle is not None:

            async def drip() -> Any:
                for byte in json.dumps({resource: []}).encode() + b" " * app.state.trickle:
                    yield bytes([byte])
                    await asyncio.sleep(0.02)

            return StreamingResponse(drip(), media_type="application/json")
        script = app.state.pages.get(resource, [])
        index = int(request.query_params.get("page_info", "0"))
        if index >= len(script):
            return JSONResponse({resource: []})
        records, next_info, host = script[index]
        if "updated_at_min" in request.query_params:  # honoured, as Shopify does; updated_at_max is not
            low = datetime.fromisoformat(request.query_params["updated_at_min"])
            records = [r for r in records if datetime.fromisoformat(r["updated_at"]) >= low]
        if app.state.honour_max and "updated_at_max" in request.query_params:
            high = datetime.fromisoformat(request.query_params["updated_at_max"])
            records = [r for r in records if datetime.fromisoformat(r["updated_at"]) <= high]
        headers = {}
        if next_info is not None:
            base = host or str(request.base_url).rstrip("/")
            headers["Link"] = f'<{base}/admin/api/2025-01/{resource}.json?limit=250&page_info={next_info}>; rel="next"'
        return JSONResponse({resource: records}, headers=headers)

    return app


@pytest.fixture
def shop() -> Iterator[RunningApi]:
    with serve_app_in_thread(_app(), name="scripted-shop") as running:
        yield running


@pytest.fixture
def elsewhere() -> Iterator[RunningApi]:
    with serve_app_in_thread(_app(), name="another-host") as running:
        yield running


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


@pytest.fixture(scope="module")
def source() -> Source:
    return load_registry().source("ecommerce")


def client(shop: RunningApi, **kwargs: Any) -> ShopClient:
    options = {"sleep": lambda s: None, "jitter": lambda: 0.0, "timeout": 5.0, "max_attempts": 2, **kwargs}
    return ShopClient(shop.base_url, TOKEN, **options)


def customer(cid: int | None, updated_at: str = "2026-10-30T10:00:00+09:00", **extra: Any) -> dict:
    return {"id": cid, "email": f"c{cid}@example.jp", "updated_at": updated_at, "created_at": updated_at, **extra}


def order(oid: int, price: Any = "3300") -> dict:
    return {
        "id": oid,
        "name": f"#{oid}",
        "updated_at": "2026-10-30T10:00:00+09:00",
        "created_at": "2026-10-30T10:00:00+09:00",
        "total_price": "3300",
        "subtotal_price": "3300",
        "line_items": [{"id": oid * 10, "sku": "X-1", "quantity": 1, "price": price}],
    }


def q(wh: Warehouse, sql: str) -> list[tuple]:
    con = wh.connect(read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_null_keys_duplicates_and_future_rows_on_one_page(
    shop: RunningApi, warehouse: Warehouse, source: Source
) -> None:
    shop.app.state.pages["customers"] = [
        ([customer(1), customer(None), customer(2, email="old@example.jp")], "1", None),  # records 1-3
        # records 4-6: id 4 twice on one page; id 3 stamped 2099 (this API ignored updated_at_max)
        ([customer(4, email="first@example.jp"), customer(3, "2099-12-31T00:00:00+09:00"), customer(4)], None, None),
    ]
    with client(shop) as c:
        ingest_ecommerce(
            warehouse,
            source,
            c,
            run_id="r1",
            load_date=date(2026, 11, 1),
            tables=["customers"],
            until=UNTIL,
            read="rest",
        )

    assert q(warehouse, "select id, email from raw.ecommerce__customers order by id") == [
        ("1", "c1@example.jp"), ("2", "old@example.jp"), ("3", "c3@example.jp"), ("4", "c4@example.jp"),
    ]  # fmt: skip
    rejects = q(warehouse, "select line, reason from raw._rejects order by line")
    assert rejects[0] == (2, "no primary key: id is empty (page 1)")
    assert rejects[1][0] == 4 and rejects[1][1] == "duplicate key id='4': line 6 has the same key and is kept (page 2)"
    assert len(rejects) == 2
    # The 2099 row landed and was flagged; the watermark stays at the run's bound at most.
    assert datetime.fromisoformat(warehouse.get_watermark(source.tables["customers"])) <= UNTIL
    assert q(warehouse, "select key, column_name from raw._flags") == [("id='3'", "updated_at")]


def test_a_non_numeric_price_rejects_that_record_only(shop: RunningApi, warehouse: Warehouse, source: Source) -> None:
    shop.app.state.pages["orders"] = [([order(1), order(2, price="abc"), order(3)], None, None)]
    with client(shop) as c:
        ingest_ecommerce(
            warehouse, source, c, run_id="r1", load_date=date(2026, 11, 1), tables=["orders"], until=UNTIL, read="rest"
        )
    assert q(warehouse, "select id from raw.ecommerce__orders order by id") == [("1",), ("3",)]  # ids are text
    assert q(warehouse, "select order_id from raw.ecommerce__order_lines order by 1") == [("1",), ("3",)]
    [(line, reason, raw)] = q(warehouse, "select line, reason, raw_line from raw._rejects")
    assert line == 2 and reason.startswith("record id=2 (page 1): line_items.0.price = 'abc': ")
    assert json.loads(raw)["line_items"][0]["price"] == "abc"


def test_link_to_another_host_is_not_followed(shop: RunningApi, elsewhere: RunningApi) -> None:
    shop.app.state.pages["customers"] = [([customer(1)], "1", elsewhere.base_url)]
    with client(shop) as c, pytest.raises(ShopApiError, match=r"Link header points to another origin .*not followed"):
        list(c.pages("customers", {"limit": 250}))
    assert elsewhere.app.state.calls == []  # the token never left the shop


def test_a_changing_cursor_that_loops_and_the_page_cap(shop: RunningApi) -> None:
    shop.app.state.pages["customers"] = [([customer(1), customer(2)], str(i + 1), None) for i in range(50)]
    with client(shop) as c, pytest.raises(ShopApiError, match=r"page 2 .* repeats the records of an earlier page"):
        list(c.pages("customers", {"limit": 250}))
    shop.app.state.pages["customers"] = [([customer(i)], str(i + 1), None) for i in range(50)]
    with client(shop, max_pages=5) as c, pytest.raises(ShopApiError, match=r"more than 5 pages in one walk"):
        list(c.pages("customers", {"limit": 250}))
    assert len(shop.app.state.calls) == 2 + 5


def test_a_trickling_response_hits_the_whole_request_deadline(shop: RunningApi) -> None:
    shop.app.state.trickle = 10_000  # ~200 s at a byte per 20 ms; each read is quick, so `timeout` never fires
    started = time.monotonic()
    with client(shop, deadline=0.5) as c, pytest.raises(ShopApiError, match=r"whole request took over 0.5 s"):
        c.get(c.resource_url("customers"))
    assert time.monotonic() - started < 5  # two attempts of half a second, not minutes


def test_reconciliation_lands_a_correction_older_than_the_watermark(
    shop: RunningApi, warehouse: Warehouse, source: Source, tmp_path: Path
) -> None:
    from yorisoi.sources.reconcile import reconcile_ecommerce

    old = "2026-10-01T10:00:00+09:00"  # order() stamps 2026-10-30: order 3 sets the watermark
    shop.app.state.honour_max = True  # as Shopify: order 4, stamped 2099, is never read incrementally
    shop.app.state.pages["orders"] = [([order(1), order(2)], None, None)]
    for o in shop.app.state.pages["orders"][0][0]:
        o["updated_at"] = old
    shop.app.state.pages["orders"][0][0].extend([order(3), order(4) | {"updated_at": "2099-12-31T00:00:00+09:00"}])
    with client(shop) as c:
        ingest_ecommerce(
            warehouse, source, c, run_id="r1", load_date=date(2026, 11, 1), tables=["orders"], until=UNTIL, read="rest"
        )
        mark = warehouse.get_watermark(source.tables["orders"])
        # Order 2 corrected (a new line price) but still stamped `old`: incremental reads skip it.
        shop.app.state.pages["orders"][0][0][1]["line_items"][0]["price"] = "2900"
        shop.app.state.pages["orders"][0][0][1]["total_price"] = "2900"
        ingest_ecommerce(
            warehouse, source, c, run_id="r2", load_date=date(2026, 11, 1), tables=["orders"], until=UNTIL, read="rest"
        )
        assert q(warehouse, "select total_price from raw.ecommerce__orders where id = '2'") == [(3300,)]
        result = reconcile_ecommerce(
            warehouse, source, c, run_id="w1", load_date=date(2026, 11, 1), tables=["orders"], until=UNTIL,
            workdir=tmp_path, read="rest",
        )  # fmt: skip
    assert (result["orders"].changed, result["orders"].missing, result["orders"].landed) == (1, 1, 2)
    assert result["order_lines"].landed == 2
    assert q(warehouse, "select key, column_name from raw._flags") == [("id='4'", "updated_at")]
    assert q(warehouse, "select total_price from raw.ecommerce__orders where id = '2'") == [(2900,)]
    assert q(warehouse, "select price from raw.ecommerce__order_lines where order_id = '2'") == [(2900,)]
    assert warehouse.get_watermark(source.tables["orders"]) == mark
