"""The Shopify-like e-commerce API, over real HTTP on loopback (httpx against `serve_in_thread`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yorisoi_kit.servers.ecommerce import (
    API_VERSION,
    CALL_LIMIT_HEADER,
    RunningServer,
    serve_in_process,
    serve_in_thread,
)

API_KEY = "shpat_test_0123456789"
HEADERS = {"X-Shopify-Access-Token": API_KEY}
JST = timedelta(hours=9)


# --------------------------------------------------------------------------------------------
# Data: a tiny brand written here with the documented columns (docs/synthetic-brand.md)
# --------------------------------------------------------------------------------------------

TS = pa.timestamp("us")


def _write(path: Path, columns: dict[str, tuple[pa.DataType, list[Any]]]) -> None:
    table = pa.table({name: pa.array(values, type=type_) for name, (type_, values) in columns.items()})
    pq.write_table(table, path)


def _ids(rng: random.Random, start: int, n: int) -> list[int]:
    ids, current = [], start
    for _ in range(n):
        current += rng.randint(1, 40)
        ids.append(current)
    return ids


def write_tiny_brand(out: Path, seed: int = 7) -> Path:
    """A small brand (150 customers, 420 orders) in `out/ecommerce/`, with microsecond timestamps,
    nulls, guests, cancelled orders, and ids with gaps."""
    rng = random.Random(seed)
    folder = out / "ecommerce"
    folder.mkdir(parents=True)
    start = datetime(2024, 11, 1)

    def when(lo_days: float = 0, hi_days: float = 730) -> datetime:
        return start + timedelta(seconds=rng.uniform(lo_days * 86400, hi_days * 86400))

    n_products = 12
    product_ids = _ids(rng, 8_000_000_000_000, n_products)
    list_prices = [rng.choice([1980, 2750, 3300, 4400]) for _ in product_ids]
    created = [when(0, 30) for _ in product_ids]
    _write(
        folder / "products.parquet",
        {
            "id": (pa.int64(), product_ids),
            "sku": (pa.string(), [f"YB-{i:03d}" for i in range(n_products)]),
            "title": (pa.string(), [f"ボタニカル化粧水 {i}" for i in range(n_products)]),
            "vendor": (pa.string(), ["Yorisoi Botanicals"] * n_products),
            "product_type": (pa.string(), ["cosmetics", "food"] * (n_products // 2)),
            "variant_title": (pa.string(), [rng.choice(["150ml", "柚子", None]) for _ in product_ids]),
            "price": (pa.int64(), list_prices),
            "sale_price": (pa.int64(), [rng.choice([None, p - 200]) for p in list_prices]),
            "created_at": (TS, created),
            "updated_at": (TS, [c + timedelta(days=rng.randint(0, 90)) for c in created]),
        },
    )

    n_customers = 150
    customer_ids = _ids(rng, 7_000_000_000_000, n_customers)
    created = [when() for _ in customer_ids]
    email_states = [rng.choice(["subscribed", "unsubscribed", "not_subscribed"]) for _ in customer_ids]
    sms_states = [rng.choice(["subscribed", "not_subscribed", None]) for _ in customer_ids]
    has_address = [rng.random() > 0.1 for _ in customer_ids]
    _write(
        folder / "customers.parquet",
        {
            "id": (pa.int64(), customer_ids),
            "email": (pa.string(), [f"user{i}@example.jp" for i in range(n_customers)]),
            "first_name": (pa.string(), [rng.choice(["花子", "太郎", "髙子"]) for _ in customer_ids]),
            "last_name": (pa.string(), [rng.choice(["山田", "佐藤", "﨑田"]) for _ in customer_ids]),
            # フリガナ: katakana, hiragana or not given (by index, so the draws above and below stay)
            "last_name_kana": (pa.string(), [("ヤマダ", "さとう", None)[i % 3] for i in range(n_customers)]),
            "first_name_kana": (pa.string(), [("ハナコ", "たろう", None)[i % 3] for i in range(n_customers)]),
            "phone": (
                pa.string(),
                [rng.choice(["090-1234-5678", "+819012345678", None]) for _ in customer_ids],
            ),
            "created_at": (TS, created),
            "updated_at": (TS, [c + timedelta(seconds=rng.randint(0, 10**7)) for c in created]),
            "state": (pa.string(), ["enabled"] * n_customers),
            "tags": (pa.string(), [rng.choice(["", "vip", "vip, 定期"]) for _ in customer_ids]),
            "email_marketing_state": (pa.string(), email_states),
            "email_marketing_opt_in_level": (
                pa.string(),
                [
                    rng.choice(["single_opt_in", "confirmed_opt_in"]) if s == "subscribed" else None
                    for s in email_states
                ],
            ),
            "email_marketing_updated_at": (TS, created),
            "sms_marketing_state": (pa.string(), sms_states),
            "sms_marketing_updated_at": (
                TS,
                [c if s else None for c, s in zip(created, sms_states, strict=True)],
            ),
            "zip": (pa.string(), ["150-0001" if a else None for a in has_address]),
            "province": (pa.string(), ["東京都" if a else None for a in has_address]),
            "city": (pa.string(), ["渋谷区" if a else None for a in has_address]),
            "address1": (pa.string(), ["神宮前1-2-3" if a else None for a in has_address]),
            "verified_email": (pa.bool_(), [rng.random() > 0.2 for _ in customer_ids]),
        },
    )

    n_orders = 420
    order_ids = _ids(rng, 5_000_000_000_000, n_orders)
    created = sorted(when() for _ in order_ids)
    cancelled = [rng.random() < 0.05 for _ in order_ids]
    lines: dict[str, list[Any]] = {k: [] for k in ("id", "order_id", "product_id", "sku", "title", "quantity")}
    lines |= {"price": [], "compare_at_price": []}
    subtotals = []
    line_id = 9_000_000_000_000
    for order_id in order_ids:
        subtotal = 0
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(n_products)
            line_id += rng.randint(1, 5)
            quantity = rng.randint(1, 3)
            price = list_prices[k] - rng.choice([0, 200])
            for key, value in zip(
                lines,
                (
                    line_id,
                    order_id,
                    product_ids[k],
                    f"YB-{k:03d}",
                    f"ボタニカル化粧水 {k}",
                    quantity,
                    price,
                    list_prices[k],
                ),
                strict=True,
            ):
                lines[key].append(value)
            subtotal += quantity * price
        subtotals.append(subtotal)
    points_used = [rng.choice([0, 0, 100]) for _ in order_ids]
    shipping = [0 if s >= 5000 else 660 for s in subtotals]
    _write(
        folder / "orders.parquet",
        {
            "id": (pa.int64(), order_ids),
            "name": (pa.string(), [f"#{1001 + i}" for i in range(n_orders)]),
            "customer_id": (
                pa.int64(),
                [None if i % 37 == 0 else rng.choice(customer_ids) for i in range(n_orders)],
            ),
            "email": (pa.string(), [f"user{rng.randrange(n_customers)}@example.jp" for _ in order_ids]),
            "created_at": (TS, created),
            "processed_at": (TS, created),
            "updated_at": (TS, [c + timedelta(seconds=rng.randint(0, 10**6)) for c in created]),
            "cancelled_at": (
                TS,
                [c + timedelta(hours=1) if x else None for c, x in zip(created, cancelled, strict=True)],
            ),
            "cancel_reason": (pa.string(), ["customer" if x else None for x in cancelled]),
            "financial_status": (pa.string(), ["voided" if x else "paid" for x in cancelled]),
            "fulfillment_status": (pa.string(), [None if x else "fulfilled" for x in cancelled]),
            "source_name": (pa.string(), ["web"] * n_orders),
            "subtotal_price": (pa.int64(), subtotals),
            "total_discounts": (pa.int64(), [0] * n_orders),
            "shipping_price": (pa.int64(), shipping),
            "points_used": (pa.int64(), points_used),
            "points_earned": (pa.int64(), [s // 100 for s in subtotals]),
            "total_price": (
                pa.int64(),
                [s + f - p for s, f, p in zip(subtotals, shipping, points_used, strict=True)],
            ),
            "currency": (pa.string(), ["JPY"] * n_orders),
        },
    )
    _write(
        folder / "order_lines.parquet",
        {
            "id": (pa.int64(), lines["id"]),
            "order_id": (pa.int64(), lines["order_id"]),
            "product_id": (pa.int64(), lines["product_id"]),
            "sku": (pa.string(), lines["sku"]),
            "title": (pa.string(), lines["title"]),
            "quantity": (pa.int64(), lines["quantity"]),
            "price": (pa.int64(), lines["price"]),
            "compare_at_price": (pa.int64(), lines["compare_at_price"]),
        },
    )
    return out


@pytest.fixture(scope="module", params=["synth_xs", "tiny"])
def brand(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The brand folder the API serves: the generator's XS brand, and the tiny brand above, which
    adds what the contract allows but the generator may not produce (guest orders, customers
    without address or SMS state, products without sale price or variant title)."""
    if request.param == "synth_xs":
        return request.getfixturevalue("synth_xs")
    return write_tiny_brand(tmp_path_factory.mktemp("tiny_brand"))


@pytest.fixture(scope="module")
def tables(brand: Path) -> dict[str, list[dict[str, Any]]]:
    """The four Parquet files as lists of rows, sorted by id."""
    return {
        name: sorted(pq.read_table(brand / "ecommerce" / f"{name}.parquet").to_pylist(), key=lambda r: r["id"])
        for name in ("customers", "orders", "order_lines", "products")
    }


@pytest.fixture(scope="module")
def api(brand: Path) -> Iterator[RunningServer]:
    """The API with a bucket large enough never to throttle the functional tests."""
    with serve_in_thread(brand, API_KEY, bucket_size=100_000, leak_per_second=1_000.0) as server:
        yield server


@pytest.fixture
def client(api: RunningServer) -> Iterator[httpx.Client]:
    api.app.state.faults.clear()
    with httpx.Client(base_url=api.api_url, headers=HEADERS, timeout=10) as http:
        yield http
    api.app.state.faults.clear()


def walk(client: httpx.Client, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow rel="next" links from the first page; return every object in order."""
    out: list[dict[str, Any]] = []
    response = client.get(f"/{resource}.json", params=params)
    while True:
        assert response.status_code == 200, response.text
        out.extend(response.json()[resource])
        if "next" not in response.links:
            return out
        response = client.get(response.links["next"]["url"])


def jst(ts: datetime | None) -> str | None:
    """How the API writes a stored UTC timestamp."""
    return None if ts is None else (ts + JST).strftime("%Y-%m-%dT%H:%M:%S+09:00")


# --------------------------------------------------------------------------------------------
# Pagination, filters, counts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resource", "limit"), [("customers", 37), ("orders", 250), ("products", 5)])
def test_walking_next_links_returns_every_row_once_in_id_order(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]], resource: str, limit: int
) -> None:
    got = [item["id"] for item in walk(client, resource, {"limit": limit})]
    assert got == [row["id"] for row in tables[resource]]


def test_first_page_has_next_only_and_later_pages_have_previous(client: httpx.Client) -> None:
    first = client.get("/customers.json", params={"limit": 50})
    assert set(first.links) == {"next"}
    assert "page_info=" in first.links["next"]["url"] and "limit=50" in first.links["next"]["url"]
    second = client.get(first.links["next"]["url"])
    assert set(second.links) == {"previous", "next"}
    back = client.get(second.links["previous"]["url"])
    assert back.json() == first.json()


def test_walking_previous_links_from_the_last_page_returns_every_row(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    response = client.get("/orders.json", params={"limit": 100})
    while "next" in response.links:
        response = client.get(response.links["next"]["url"])
    pages = [response.json()["orders"]]
    while "previous" in response.links:
        response = client.get(response.links["previous"]["url"])
        pages.append(response.json()["orders"])
    ids = [order["id"] for page in reversed(pages) for order in page]
    assert ids == [row["id"] for row in tables["orders"]]


def test_updated_at_min_returns_exactly_the_rows_updated_at_or_after_it(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    orders = tables["orders"]
    pivot = sorted(row["updated_at"] for row in orders)[len(orders) // 2]
    for value, bound in [
        ((pivot + JST).isoformat() + "+09:00", pivot),  # full precision, shop time
        (pivot.replace(microsecond=0).isoformat() + "Z", pivot.replace(microsecond=0)),  # UTC, seconds
    ]:
        expected = [row["id"] for row in orders if row["updated_at"] >= bound]
        assert 0 < len(expected) < len(orders)
        got = walk(client, "orders", {"limit": 50, "updated_at_min": value})
        assert [order["id"] for order in got] == expected
        count = client.get("/orders/count.json", params={"updated_at_min": value}).json()["count"]
        assert count == len(expected)


def test_filters_combine_and_are_kept_in_page_info(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    customers = tables["customers"]
    since_id = customers[20]["id"]
    lo = datetime(2025, 3, 1)
    hi = datetime(2026, 3, 1)
    expected = [r["id"] for r in customers if r["id"] > since_id and r["created_at"] >= lo and r["updated_at"] <= hi]
    params = {
        "limit": 7,
        "since_id": since_id,
        "created_at_min": "2025-03-01T09:00:00+09:00",
        "updated_at_max": "2026-03-01T00:00:00Z",
    }
    assert 0 < len(expected) < len(customers)
    assert [c["id"] for c in walk(client, "customers", params)] == expected
    cancelled = [r["id"] for r in tables["orders"] if r["cancelled_at"] is not None]
    assert cancelled
    assert [o["id"] for o in walk(client, "orders", {"limit": 5, "status": "cancelled"})] == cancelled


@pytest.mark.parametrize("resource", ["customers", "orders", "products"])
def test_count_matches_the_parquet_rows(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]], resource: str
) -> None:
    response = client.get(f"/{resource}/count.json")
    assert response.status_code == 200
    assert response.json() == {"count": len(tables[resource])}


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def test_line_items_of_every_order_equal_the_order_lines_rows(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    expected: dict[int, list[tuple[Any, ...]]] = {}
    for line in tables["order_lines"]:
        expected.setdefault(line["order_id"], []).append(
            (line["id"], line["product_id"], line["sku"], line["title"], line["quantity"],
             str(line["price"]), str(line["compare_at_price"]))
        )  # fmt: skip
    orders = walk(client, "orders", {"limit": 250})
    got = {
        order["id"]: [
            (
                li["id"],
                li["product_id"],
                li["sku"],
                li["title"],
                li["quantity"],
                li["price"],
                li["compare_at_price"],
            )
            for li in order["line_items"]
        ]
        for order in orders
    }
    assert got == {order["id"]: expected.get(order["id"], []) for order in orders}


def test_order_shape_money_points_and_jst_timestamps(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    row = next(r for r in tables["orders"] if r["cancelled_at"] is not None and r["customer_id"] is not None)
    order = client.get(f"/orders/{row['id']}.json").json()["order"]
    assert order["name"] == row["name"]
    assert order["customer"] == {"id": row["customer_id"]}
    assert order["created_at"] == jst(row["created_at"])
    assert order["cancelled_at"] == jst(row["cancelled_at"])
    assert order["total_price"] == str(row["total_price"])
    assert order["subtotal_price"] == str(row["subtotal_price"])
    assert order["total_shipping_price_set"]["shop_money"] == {
        "amount": str(row["shipping_price"]),
        "currency_code": "JPY",
    }
    assert (order["points_used"], order["points_earned"]) == (row["points_used"], row["points_earned"])
    for guest in [r for r in tables["orders"] if r["customer_id"] is None][:3]:
        assert client.get(f"/orders/{guest['id']}.json").json()["order"]["customer"] is None


def test_customer_shape_consent_and_default_address(
    client: httpx.Client, tables: dict[str, list[dict[str, Any]]]
) -> None:
    by_id = {row["id"]: row for row in tables["customers"]}
    for customer in walk(client, "customers", {"limit": 250}):
        row = by_id[customer["id"]]
        assert customer["email"] == row["email"]
        assert (customer["last_name_kana"], customer["first_name_kana"]) == (
            row["last_name_kana"],
            row["first_name_kana"],
        )
        assert customer["updated_at"] == jst(row["updated_at"])
        assert customer["email_marketing_consent"] == {
            "state": row["email_marketing_state"],
            "opt_in_level": row["email_marketing_opt_in_level"],
            "consent_updated_at": jst(row["email_marketing_updated_at"]),
        }
        sms = customer["sms_marketing_consent"]
        if row["sms_marketing_state"] is None:
            assert sms is None
        else:
            assert (sms["state"], sms["consent_updated_at"]) == (
                row["sms_marketing_state"],
                jst(row["sms_marketing_updated_at"]),
            )
        address = customer["default_address"]
        if row["zip"] is None:
            assert address is None and customer["addresses"] == []
        else:
            assert {k: address[k] for k in ("zip", "province", "city", "address1")} == {
                k: row[k] for k in ("zip", "province", "city", "address1")
            }
    # フリガナ on a fetched customer too, given or null
    with_kana = next(r for r in tables["customers"] if r["last_name_kana"] is not None)
    without_kana = next(r for r in tables["customers"] if r["last_name_kana"] is None)
    for row in (with_kana, without_kana):
        customer = client.get(f"/customers/{row['id']}.json").json()["customer"]
        assert (customer["last_name_kana"], customer["first_name_kana"]) == (
            row["last_name_kana"],
            row["first_name_kana"],
        )


def test_fields_keeps_only_the_named_keys_across_pages(client: httpx.Client) -> None:
    first = client.get("/products.json", params={"limit": 5, "fields": "id,variants"})
    assert all(set(p) == {"id", "variants"} for p in first.json()["products"])
    second = client.get(first.links["next"]["url"])
    assert all(set(p) == {"id", "variants"} for p in second.json()["products"])


def test_unknown_id_is_404(client: httpx.Client) -> None:
    response = client.get("/orders/1.json")
    assert response.status_code == 404
    assert "errors" in response.json()


# --------------------------------------------------------------------------------------------
# Errors, rate limit, faults
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"X-Shopify-Access-Token": "wrong"}, {}])
def test_wrong_or_missing_key_is_401(api: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.get(f"{api.api_url}/customers.json", headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"].startswith("[API] Invalid API key or access token")


def test_limit_above_250_is_400(client: httpx.Client) -> None:
    assert client.get("/orders.json", params={"limit": 251}).status_code == 400
    assert client.get("/orders.json", params={"limit": 0}).status_code == 400
    assert client.get("/orders.json", params={"limit": 250}).status_code == 200


def test_filters_next_to_page_info_are_400(client: httpx.Client) -> None:
    first = client.get("/orders.json", params={"limit": 10, "updated_at_min": "2025-01-01"})
    next_url = first.links["next"]["url"]
    response = client.get(f"{next_url}&updated_at_min=2025-01-01")
    assert response.status_code == 400
    assert "page_info" in response.json()["errors"]
    assert client.get("/orders.json", params={"page_info": "not-a-token"}).status_code == 400
    customers_next = client.get("/customers.json", params={"limit": 1}).links["next"]["url"]
    customers_token = httpx.URL(customers_next).params["page_info"]
    assert client.get("/orders.json", params={"page_info": customers_token}).status_code == 400


def test_bad_timestamp_is_400(client: httpx.Client) -> None:
    assert client.get("/orders.json", params={"updated_at_min": "yesterday"}).status_code == 400


def test_full_bucket_gives_429_with_retry_after_and_call_limit_header(brand: Path) -> None:
    now = [100.0]
    with serve_in_thread(brand, API_KEY, bucket_size=3, leak_per_second=2.0, clock=lambda: now[0]) as server:
        with httpx.Client(base_url=server.api_url, headers=HEADERS) as http:
            used = [http.get("/products/count.json").headers[CALL_LIMIT_HEADER] for _ in range(3)]
            assert used == ["1/3", "2/3", "3/3"]
            throttled = http.get("/products/count.json")
            assert throttled.status_code == 429
            assert throttled.headers["Retry-After"] == "0.5"
            assert throttled.headers[CALL_LIMIT_HEADER] == "3/3"
            assert "errors" in throttled.json()
            now[0] += 1.0  # two calls leak out
            again = http.get("/products/count.json")
            assert again.status_code == 200
            assert again.headers[CALL_LIMIT_HEADER] == "2/3"
        base_url = server.base_url
        statuses = [call.status for call in server.app.state.calls.all()]
        assert statuses == [200, 200, 200, 429, 200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/admin/api/{API_VERSION}/products/count.json", headers=HEADERS, timeout=2)


def test_injected_statuses_come_first_then_normal_answers(api: RunningServer, client: httpx.Client) -> None:
    api.app.state.faults.inject(500)
    first = client.get("/customers/count.json")
    assert first.status_code == 500
    assert CALL_LIMIT_HEADER in first.headers
    assert client.get("/customers/count.json").status_code == 200

    api.app.state.faults.inject(503, 429, retry_after=1.5)
    assert client.get("/orders.json").status_code == 503
    throttled = client.get("/orders.json")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1.5"
    assert client.get("/orders.json").status_code == 200
    assert api.app.state.faults.pending == ()


def test_delay_makes_a_client_time_out_once(api: RunningServer, client: httpx.Client) -> None:
    api.app.state.faults.set_delay(0.5, count=1)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/products/count.json", timeout=0.1)
    assert client.get("/products/count.json", timeout=2).status_code == 200


def test_in_its_own_process_it_answers_and_stops_on_exit(brand: Path) -> None:
    import psutil

    with serve_in_process(brand, API_KEY, bucket_size=100_000, leak_per_second=1_000.0) as server:
        url = f"{server.base_url}/admin/api/{API_VERSION}/orders/count.json"
        count = httpx.get(url, headers=HEADERS, timeout=30).json()["count"]
        assert count == pq.read_metadata(brand / "ecommerce" / "orders.parquet").num_rows
        assert server.pid != psutil.Process().pid and server.cpu_seconds() > 0
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE
