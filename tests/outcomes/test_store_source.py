"""The activation store landed in the warehouse like any source (yorisoi.outcomes.store_source):
SQLite and PostgreSQL on loopback, incremental with the overlap that catches late settles."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from yorisoi.activation.delivery.store import ActivationStore, Claim
from yorisoi.outcomes.store_source import ingest_activation
from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import DEFAULT_REGISTRY, RegistryError, load_registry

POSTGRES_ADMIN_URL = os.environ.get(
    "YORISOI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
T0 = dt.datetime(2026, 10, 1, 1, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'activation.sqlite'}"
        return
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"yorisoi_outcomes_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'create database "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - the test machine runs PostgreSQL
        pytest.skip(f"no PostgreSQL on loopback: {exc}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def _send(store: ActivationStore, run: str, people: list[str], at: dt.datetime) -> None:
    """One run of audience `spring` through the email destination: claim, then confirm all but
    the last person (left claimed, settled later)."""
    interval = at.isoformat()
    store.start_run(
        f"{run}:email", audience="spring", destination="email", interval=interval, mode="diff", started_at=at
    )
    store.claim(
        audience="spring", destination="email", channel="email", interval=interval,
        keys=people, person_ids=people, claim_id="c1", owner=run, now=at,
    )  # fmt: skip
    store.settle(
        run_id=f"{run}:email", audience="spring", destination="email", operation="add", at=at,
        keys=people[:-1], person_ids=people[:-1],
        claim=Claim("email", interval, run, "c1", whole_group=False),
    )  # fmt: skip


def test_the_store_lands_incrementally_and_late_settles_are_caught(store_url: str, tmp_path: Path) -> None:
    source = load_registry(DEFAULT_REGISTRY).source("activation")
    wh = Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))
    store = ActivationStore(store_url)
    people = [f"P{i:03d}" for i in range(10)]
    store.write_members(
        {"run_id": "r1", "audience": "spring", "person_id": p, "grp": "control" if i < 2 else "treatment",
         "variant": None if i < 2 else "AB"[i % 2], "computed_at": T0}
        for i, p in enumerate(people)
    )  # fmt: skip
    _send(store, "r1", people[2:], T0 + dt.timedelta(minutes=5))

    first = ingest_activation(wh, source, store.engine, run_id="run-1", load_date=dt.date(2026, 10, 1))
    assert first["audience_members"].rows == 10 and first["send_ledger"].rows == 8
    con = wh.connect(read_only=True)
    try:
        groups = dict(con.execute("select grp, count(*) from raw.activation__audience_members group by 1").fetchall())
        statuses = dict(con.execute("select status, count(*) from raw.activation__send_ledger group by 1").fetchall())
        kind = con.execute(
            "select data_type from information_schema.columns where table_name = 'activation__send_ledger' "
            "and column_name = 'claimed_at'"
        ).fetchone()[0]
    finally:
        con.close()
    assert groups == {"control": 2, "treatment": 8}
    assert statuses == {"sent": 7, "claimed": 1}
    assert kind == "TIMESTAMP WITH TIME ZONE"

    # A day later: the last claim is settled, and a new run assigns again.
    late = T0 + dt.timedelta(days=1)
    store.settle(
        run_id="r1:email", audience="spring", destination="email", operation="add", at=late,
        keys=people[-1:], person_ids=people[-1:],
        claim=Claim("email", (T0 + dt.timedelta(minutes=5)).isoformat(), "r1", "c1", whole_group=False),
    )  # fmt: skip
    store.write_members(
        {"run_id": "r2", "audience": "spring", "person_id": p, "grp": "treatment", "variant": "A",
         "computed_at": T0 + dt.timedelta(days=3)}
        for p in people[:3]
    )  # fmt: skip
    second = ingest_activation(wh, source, store.engine, run_id="run-2", load_date=dt.date(2026, 10, 2))
    assert second["audience_members"].rows == 13  # within the overlap behind the watermark: read again
    store.write_members(
        {"run_id": "r3", "audience": "spring", "person_id": p, "grp": "treatment", "variant": "B",
         "computed_at": T0 + dt.timedelta(days=6)}
        for p in people[:4]
    )  # fmt: skip
    third = ingest_activation(wh, source, store.engine, run_id="run-3", load_date=dt.date(2026, 10, 7))
    assert third["audience_members"].rows == 7  # r2 and r3 only: r1 is older than watermark - overlap
    con = wh.connect(read_only=True)
    try:
        members = con.execute("select count(*) from raw.activation__audience_members").fetchone()[0]
        statuses = dict(con.execute("select status, count(*) from raw.activation__send_ledger group by 1").fetchall())
    finally:
        con.close()
    assert members == 17
    assert statuses == {"sent": 8}  # the late settle replaced its row: no duplicate, no stale status
    store.close()


def test_a_store_with_nothing_sent_yet_lands_nothing(tmp_path: Path) -> None:
    source = load_registry(DEFAULT_REGISTRY).source("activation")
    wh = Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    results = ingest_activation(wh, source, engine, run_id="run-1", load_date=dt.date(2026, 10, 1))
    assert {r.rows for r in results.values()} == {0}
    with pytest.raises(RegistryError, match="no such table"):
        ingest_activation(wh, source, engine, run_id="run-1", load_date=dt.date(2026, 10, 1), tables=["members"])


def test_the_registry_columns_are_the_stores_tables_as_landed() -> None:
    """The raw tables are created from the registry before the first landing (yorisoi sources
    init): its columns must say what the extractor writes, or the first landing would clash."""
    from yorisoi.activation.delivery import store
    from yorisoi.outcomes.store_source import arrow_schema
    from yorisoi.sources.catalog import raw_schema

    source = load_registry(DEFAULT_REGISTRY).source("activation")
    for name, table in source.tables.items():
        assert raw_schema(table) == arrow_schema(store.metadata.tables[name]), name


def test_rows_stamped_after_the_run_started_wait_for_the_next_run(tmp_path: Path) -> None:
    """The run's upper bound (docs/reliability.md #17): a claim made after the read began is left
    for the next run, so the watermark never passes what was read."""
    source = load_registry(DEFAULT_REGISTRY).source("activation")
    wh = Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))
    store = ActivationStore(f"sqlite:///{tmp_path / 'activation.sqlite'}")
    people = ["P1", "P2"]
    store.write_members(
        {"run_id": "r1", "audience": "spring", "person_id": p, "grp": "treatment", "variant": "A", "computed_at": T0}
        for p in people
    )
    _send(store, "r1", people, T0 + dt.timedelta(minutes=5))
    early = ingest_activation(
        wh, source, store.engine, run_id="run-1", load_date=dt.date(2026, 10, 1), now=T0 + dt.timedelta(minutes=1)
    )
    assert early["audience_members"].rows == 2 and early["send_ledger"].rows == 0
    later = ingest_activation(wh, source, store.engine, run_id="run-2", load_date=dt.date(2026, 10, 1))
    assert later["send_ledger"].rows == 2
    store.close()
