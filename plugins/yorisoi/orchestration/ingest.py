"""What the ingest DAGs run: one function per source kind, each landing one registry table.

Connections come from Airflow (credentials never live in code or in the registry); the warehouse
and the lake come from `yorisoi.paths` (or `YORISOI_LAKE_URL=s3://bucket/prefix` with the AWS
connection `YORISOI_AWS_CONN_ID`, default `aws_default`, for an S3 lake)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from .. import paths
from ..sources.landing import Lake, Warehouse
from ..sources.registry import load_registry
from ..transform import local_time_zone

log = logging.getLogger(__name__)


class IngestAlert(AirflowFailException):
    """Raised after a run that loaded what it could but found files that need a person. It fails
    the task without retries (a retry cannot fix a bad file), which alerts through the failure
    callback and keeps the table's Asset from triggering anything downstream."""


def match_key_for_erasures() -> None:
    """The landing recognises erased people's rows with the match key (docs/privacy.md): take it
    from the Airflow connection when there is one. Without it, landing works until the first
    erasure, then refuses with a message saying how to provide the key."""
    from airflow.exceptions import AirflowNotFoundException

    from ..transform import match_key_from_airflow

    with contextlib.suppress(AirflowNotFoundException):
        match_key_from_airflow()


def warehouse() -> Warehouse:
    url = os.environ.get("YORISOI_LAKE_URL", "")
    if url.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id=os.environ.get("YORISOI_AWS_CONN_ID", "aws_default")).get_conn()
        lake = Lake(url, staging=paths.lake_dir(), s3_client=client)
    else:
        lake = Lake(url or paths.lake_dir())
    return Warehouse(paths.warehouse_path(), lake)


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL from an Airflow connection: its extra `sqlalchemy_url` if given, else
    built from the connection type (postgres, mysql, sqlite) and fields."""
    from sqlalchemy.engine import URL

    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        return f"sqlite:///{conn.host}"
    drivers = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
    if kind not in drivers:
        raise ValueError(
            f"connection {conn.conn_id}: type {kind!r} is not supported for the OMS; set extra.sqlalchemy_url"
        )
    return URL.create(
        drivers[kind],
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    ).render_as_string(hide_password=False)


def load_date_of(run_end: datetime | None) -> date:
    """The lake partition of a run: the Japan date of its data interval's end (or of now)."""
    from zoneinfo import ZoneInfo

    return (run_end or datetime.now(UTC)).astimezone(ZoneInfo(local_time_zone())).date()


def _summary(results: dict) -> dict:
    return {name: {"rows": r.rows, "files": r.files, "watermark": r.watermark} for name, r in results.items()}


def _shop_client(source: Any) -> Any:
    from airflow.sdk import BaseHook

    from ..sources.ecommerce import ShopClient

    conn = BaseHook.get_connection(source.conn_id)
    base = conn.host if "://" in (conn.host or "") else f"{conn.schema or 'http'}://{conn.host}"
    if conn.port:
        base += f":{conn.port}"
    return ShopClient(base, conn.password, max_pages=int(source.options.get("max_pages", 200_000)))


def _oms_engine(source: Any) -> Any:
    import sqlalchemy
    from airflow.sdk import BaseHook

    return sqlalchemy.create_engine(sqlalchemy_url(BaseHook.get_connection(source.conn_id)))


def ingest_ecommerce_table(table: str, run_id: str, run_end: datetime | None = None) -> dict:
    from ..sources.ecommerce import ingest_ecommerce

    match_key_for_erasures()
    source = load_registry().source("ecommerce")
    with _shop_client(source) as client:
        results = ingest_ecommerce(
            warehouse(), source, client, run_id=run_id, load_date=load_date_of(run_end), tables=[table]
        )
    return _summary(results)


def ingest_oms_table(table: str, run_id: str, run_end: datetime | None = None) -> dict:
    from ..sources.oms import ingest_oms

    match_key_for_erasures()
    source = load_registry().source("oms")
    engine = _oms_engine(source)
    try:
        results = ingest_oms(
            warehouse(), source, engine, run_id=run_id, load_date=load_date_of(run_end), tables=[table]
        )
    finally:
        engine.dispose()
    return _summary(results)


def reconcile_table(source_name: str, table: str, run_id: str, run_end: datetime | None = None) -> dict:
    """The weekly reconciliation of one OMS or shop table (yorisoi.sources.reconcile)."""
    from ..sources import reconcile

    match_key_for_erasures()
    source = load_registry().source(source_name)
    load_date = load_date_of(run_end)
    if source.kind == "api":
        with _shop_client(source) as client:
            results = reconcile.reconcile_ecommerce(
                warehouse(), source, client, run_id=run_id, load_date=load_date, tables=[table]
            )
    else:
        engine = _oms_engine(source)
        try:
            results = reconcile.reconcile_oms(
                warehouse(), source, engine, run_id=run_id, load_date=load_date, tables=[table]
            )
        finally:
            engine.dispose()
    log.info("%s.%s reconciled:\n%s", source_name, table, reconcile.summary(results.values()))
    return {name: r.to_dict() for name, r in results.items()}


def ingest_sftp_table(table: str, run_id: str, run_end: datetime | None = None) -> dict:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    from ..sources.sftp_files import ingest_drops

    match_key_for_erasures()
    source = load_registry().source("sftp")
    hook = SFTPHook(ssh_conn_id=source.conn_id)
    with tempfile.TemporaryDirectory(prefix="yorisoi-sftp-") as work:
        report = ingest_drops(
            warehouse(),
            source,
            hook.get_conn(),
            run_id=run_id,
            load_date=load_date_of(run_end),
            now=datetime.now(UTC),
            tables=[table],
            workdir=Path(work),
        )
    hook.close_conn()
    log.info("sftp.%s: %s", table, report.summary())
    for line in report.alerts():
        log.error("ALERT %s", line)
    if report.alerts():  # quarantined files (column drift, checksum) and files whose manifest never came
        raise IngestAlert(f"sftp.{table}: " + "; ".join(report.alerts()))
    return report.to_dict()


def ingest_activation_table(table: str, run_id: str, run_end: datetime | None = None) -> dict:
    """The activation store: the connection's URL when `yorisoi_activation_store` exists, else
    the store activation itself writes (`YORISOI_ACTIVATION_URL` or the embedded SQLite file)."""
    import sqlalchemy
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    from ..activation.delivery.store import default_url
    from ..outcomes.store_source import ingest_activation

    source = load_registry().source("activation")
    try:
        url = sqlalchemy_url(BaseHook.get_connection(source.conn_id))
    except (AirflowNotFoundException, AirflowRuntimeError):
        url = default_url()
    engine = sqlalchemy.create_engine(url)
    try:
        results = ingest_activation(
            warehouse(), source, engine, run_id=run_id, load_date=load_date_of(run_end), tables=[table]
        )
    finally:
        engine.dispose()
    return _summary(results)


def ingest_messaging_table(source_name: str, table: str, run_id: str, run_end: datetime | None = None) -> dict:
    """SMS receipts or LINE statistics (yorisoi.sources.messaging), through the connection the
    destination sends with: its host is the API's base URL (the provider's own when empty), its
    login the Twilio account SID, its password the auth token or the channel access token. A
    child table (LINE's clicks per URL) is landed by its parent's task."""
    import httpx
    from airflow.sdk import BaseHook

    from ..sources.messaging import ingest_messaging

    source = load_registry().source(source_name)
    conn = BaseHook.get_connection(source.conn_id)
    twilio = source.options.get("api") == "twilio"
    base = (conn.host or "").rstrip("/") or ("https://api.twilio.com" if twilio else "https://api.line.me")
    if "://" not in base:
        base = f"{conn.schema or 'https'}://{base}" + (f":{conn.port}" if conn.port else "")
    auth: dict[str, Any] = (
        {"auth": (conn.login or "", conn.password or "")}
        if twilio
        else {"headers": {"Authorization": f"Bearer {conn.password or ''}"}}
    )
    with httpx.Client(base_url=base, timeout=60.0, **auth) as client:
        results = ingest_messaging(
            warehouse(), source, client, run_id=run_id, load_date=load_date_of(run_end), account_sid=conn.login
        )
    return _summary(results)


TASKS = {
    "api": ingest_ecommerce_table,
    "database": ingest_oms_table,
    "files": ingest_sftp_table,
    "store": ingest_activation_table,
}


def land_table(kind: str, source_name: str, table: str, run_id: str, run_end: datetime | None = None) -> dict:
    """What an ingest DAG's task runs for `table` of `source_name` (a source of `kind`)."""
    if kind == "messaging":  # several sources share the kind: the task names its source
        return ingest_messaging_table(source_name, table, run_id, run_end)
    return TASKS[kind](table, run_id, run_end)
