"""What the messaging channels report back, landed like any source: SMS delivery receipts and
LINE's statistics per message (docs/campaign-measurement.md).

Registry sources of kind ``messaging``; the source's ``api`` says which provider's reporting
API it reads, through the connection the destination sends with:

- ``twilio``: the Messages list (``GET /2010-04-01/Accounts/{sid}/Messages.json``), one row per
  message with its final status (delivered, undelivered, failed) and error code. Read by
  ``DateSent>`` from the watermark's day minus the source's ``overlap`` (a carrier's receipt
  comes up to days after sending, so recent messages are read again and their row replaced),
  following ``next_page_uri``.
- ``line``: aggregate statistics per custom aggregation unit (the LINE destination tags each
  multicast with one, by default the audience's name) and JST day: unique impressions and
  clicks, and clicks per URL. LINE gives no per-user opens or clicks, and withholds counts over
  fewer than 20 users (null). LINE revises a day's statistics for about two weeks: each run
  reads the last ``lookback`` days again for every unit in use, and replaces them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa

from .catalog import raw_schema
from .landing import LandResult, Warehouse
from .registry import RegistryError, Source, Table

log = logging.getLogger(__name__)
JST = ZoneInfo("Asia/Tokyo")
TWILIO_API_VERSION = "2010-04-01"
APIS = ("twilio", "line")


def _twilio_time(text: str | None) -> datetime | None:
    return parsedate_to_datetime(text).astimezone(UTC) if text else None


def twilio_messages(
    client: httpx.Client, account_sid: str, *, since: date | None, page_size: int = 1000
) -> Iterator[list[dict]]:
    """Pages of the account's messages sent on or after ``since`` (all when None)."""
    params: dict[str, Any] | None = {"PageSize": page_size}
    if since is not None:
        params["DateSent>"] = since.isoformat()
    url: str | None = f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages.json"
    seen: set[str] = set()
    while url:
        response = client.get(url, params=params)
        response.raise_for_status()
        body = response.json()
        yield body.get("messages") or []
        url, params = body.get("next_page_uri"), None  # the next page's URI carries the query
        if url in seen:
            raise RuntimeError(f"the SMS API repeated page {url}: stopped rather than loop")
        if url:
            seen.add(url)


def _receipts_table(messages: list[dict], schema: pa.Schema) -> pa.Table:
    rows = {
        "sid": [m["sid"] for m in messages],
        "to": [m.get("to") for m in messages],
        "status": [m.get("status") for m in messages],
        "error_code": [int(m["error_code"]) if m.get("error_code") is not None else None for m in messages],
        "date_created": [_twilio_time(m.get("date_created")) for m in messages],
        "date_sent": [_twilio_time(m.get("date_sent")) for m in messages],
        "date_updated": [_twilio_time(m.get("date_updated")) for m in messages],
    }
    return pa.table(rows, schema=schema)


def line_units(client: httpx.Client) -> list[str]:
    """The custom aggregation units LINE has messages for (its ``next`` token followed)."""
    units: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        response = client.get("/v2/bot/message/aggregation/list", params=params)
        response.raise_for_status()
        body = response.json()
        units += body.get("customAggregationUnits") or []
        if not body.get("next"):
            return units
        params = {"limit": 100, "start": body["next"]}


def line_insight(client: httpx.Client, unit: str, day: date) -> dict:
    """LINE's statistics of ``unit`` for the messages sent on JST day ``day``."""
    stamp = day.strftime("%Y%m%d")
    response = client.get(
        "/v2/bot/insight/message/event/aggregation",
        params={"customAggregationUnit": unit, "from": stamp, "to": stamp},
    )
    response.raise_for_status()
    return response.json()


def _land(warehouse: Warehouse, table: Table, parts: list[pa.Table], *, batch_id: str, load_date: date) -> LandResult:
    with warehouse.batch(table, batch_id=batch_id, load_date=load_date, watermark=table.watermark) as batch:
        for part in parts:
            if part.num_rows:
                batch.write(part)
    return batch.result


def _schema(table: Table) -> pa.Schema:
    schema = raw_schema(table)
    if schema is None:
        raise RegistryError(f"sources.{table.source}.tables.{table.name}: a messaging table needs its columns")
    return schema


def _ingest_twilio(
    warehouse: Warehouse, source: Source, client: httpx.Client, account_sid: str, *, run_id: str, load_date: date
) -> dict[str, LandResult]:
    results = {}
    for table in source.enabled_tables().values():
        mark = warehouse.get_watermark(table)
        since = None
        if mark:
            since = (datetime.fromisoformat(mark) - source.duration("overlap", "3 days")).astimezone(UTC).date()
        schema = _schema(table)
        parts = [_receipts_table(page, schema) for page in twilio_messages(client, account_sid, since=since)]
        results[table.name] = _land(warehouse, table, parts, batch_id=f"{run_id}:{table.name}", load_date=load_date)
        log.info("%s.%s: %d receipts (%s)", source.name, table.name, results[table.name].rows, since or "full read")
    return results


def _ingest_line(
    warehouse: Warehouse, source: Source, client: httpx.Client, *, run_id: str, load_date: date, now: datetime
) -> dict[str, LandResult]:
    tables = source.enabled_tables()
    insights = next((t for t in tables.values() if t.options.get("report") == "unit_insights"), None)
    links = next((t for t in tables.values() if t.options.get("report") == "unit_link_clicks"), None)
    today = now.astimezone(JST).date()
    days = [today - timedelta(days=n) for n in range(source.duration("lookback", "14 days").days, -1, -1)]
    fetched_at = now.astimezone(UTC)
    overview_rows: list[dict] = []
    link_rows: list[dict] = []
    for unit in line_units(client):
        for day in days:
            stats = line_insight(client, unit, day)
            overview = stats.get("overview") or {}
            first = (stats.get("messages") or [{}])[0]
            overview_rows.append(
                {
                    "unit": unit,
                    "sent_on": day,
                    "unique_impressions": overview.get("uniqueImpression"),
                    "impressions": first.get("impression"),
                    "unique_clicks": overview.get("uniqueClick"),
                    "fetched_at": fetched_at,
                }
            )
            link_rows += [
                {
                    "unit": unit,
                    "sent_on": day,
                    "seq": click.get("seq"),
                    "url": click.get("url"),
                    "clicks": click.get("click"),
                    "unique_clicks": click.get("uniqueClick"),
                    "fetched_at": fetched_at,
                }
                for click in stats.get("clicks") or []
            ]
    results = {}
    for table, rows in ((insights, overview_rows), (links, link_rows)):
        if table is None:
            continue
        part = pa.Table.from_pylist(rows, schema=_schema(table))
        results[table.name] = _land(warehouse, table, [part], batch_id=f"{run_id}:{table.name}", load_date=load_date)
    log.info("%s: %d unit-days, %d link rows, last %d days", source.name, len(overview_rows), len(link_rows), len(days))
    return results


def ingest_messaging(
    warehouse: Warehouse,
    source: Source,
    client: httpx.Client,
    *,
    run_id: str,
    load_date: date,
    account_sid: str | None = None,
    now: datetime | None = None,
) -> dict[str, LandResult]:
    """Land what ``source``'s provider reports, through ``client`` (an httpx client on the API's
    base URL with its credentials; ``account_sid`` for Twilio's paths). One batch per table,
    ``<run_id>:<table>``: a rerun replaces its rows."""
    api = source.options.get("api")
    if api not in APIS:
        raise RegistryError(f"sources.{source.name}.api: {api!r} is not one of {list(APIS)}")
    if api == "twilio":
        if not account_sid:
            raise RegistryError(f"sources.{source.name}: the connection's login must be the account SID")
        return _ingest_twilio(warehouse, source, client, account_sid, run_id=run_id, load_date=load_date)
    return _ingest_line(warehouse, source, client, run_id=run_id, load_date=load_date, now=now or datetime.now(UTC))
