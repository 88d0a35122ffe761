"""What the report reads besides the marts: the raw layer's load ledger (freshness, quarantined
files), the quality gates' latest results (var/quality/latest/), and the activation store (the
latest allocation's funnel per audience, the last sync runs). Each reader returns an empty frame
when its source does not exist yet, and the view says so."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import paths
from .data import Warehouse


def freshness(wh: Warehouse) -> pd.DataFrame:
    """Per raw table: its source, rows, the newest load and the watermark (one statement built
    from the catalogue, since the set of raw tables comes from the source registry)."""
    tables = wh.frame(
        "select table_name from information_schema.tables where table_schema = 'raw' "
        "and table_name not like '\\_%' escape '\\' order by 1"
    )["table_name"].tolist()
    if not tables:
        return pd.DataFrame(columns=["source", "table_name", "rows", "last_loaded", "watermark"])
    parts = " union all ".join(
        f"select '{name}' as name, count(*) as rows, max(_loaded_at) as last_loaded from raw.\"{name}\""  # noqa: S608 - names from the catalogue
        for name in tables
    )
    marks = (
        "select source || '__' || table_name as name, watermark from raw._watermarks"
        if wh.has("raw", "_watermarks")
        else "select null as name, null as watermark where false"
    )
    frame = wh.frame(
        f"select split_part(t.name, '__', 1) as source, split_part(t.name, '__', 2) as table_name, "  # noqa: S608
        f"t.rows, t.last_loaded, m.watermark from ({parts}) t left join ({marks}) m on t.name = m.name "
        "order by source, table_name"
    )
    return frame


def quarantined(wh: Warehouse) -> pd.DataFrame:
    if not wh.has("raw", "_files"):
        return pd.DataFrame(columns=["source", "feed", "file_name", "status", "reason", "recorded_at"])
    return wh.query("quarantine")


def gates(var: Path | None = None) -> list[dict]:
    """The latest result of each quality gate (raw, marts), as the gate published it."""
    folder = (var or paths.var_dir()) / "quality" / "latest"
    out = []
    for f in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except ValueError:
            out.append({"layer": f.stem, "success": False, "failed_suites": ["(unreadable result file)"]})
    return out


def _store_url(var: Path | None) -> str | None:
    import os

    if url := os.environ.get("YORISOI_ACTIVATION_URL"):
        return url
    db = (var or paths.var_dir()) / "activation" / "activation.sqlite"
    return f"sqlite:///{db}" if db.exists() else None


def sync_runs(var: Path | None = None, limit: int = 15) -> pd.DataFrame:
    """The last sync runs of the activation store (read-only; never creates the store)."""
    url = _store_url(var)
    if url is None:
        return pd.DataFrame()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            if not sa.inspect(con).has_table("sync_runs"):
                return pd.DataFrame()
            return pd.read_sql(
                sa.text(
                    "select audience, destination, mode, status, started_at, adds, updates, removes, "
                    "delivered, rejected, skipped from sync_runs order by started_at desc limit :n"
                ),
                con,
                params={"n": limit},
            )
    finally:
        engine.dispose()


def latest_allocation(var: Path | None = None) -> dict | None:
    """The newest activation allocation's summary (run id, as-of, per-audience stats), and per
    audience the people it allocated a message or a list place to (`sent`)."""
    folder = (var or paths.var_dir()) / "activation" / "allocations"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    if not files:
        return None
    meta = json.loads(files[-1].read_text(encoding="utf-8"))
    sends = files[-1].with_suffix(".parquet")
    if sends.exists():
        # people given something: a message, or a place on a list the destination keeps
        meta["sent"] = pd.read_parquet(sends).groupby("audience")["person_id"].nunique().to_dict()
    return meta


STAGES = ("selected", "not_contactable", "exited", "capped", "control", "sent")


def funnel(stats: dict, sent: int | None) -> list[tuple[str, int, str]]:
    """An audience's funnel from its allocation stats: (stage, customers, kept | removed).
    `capped` adds up the people held back per channel (frequency_cap_<channel>); `sent` is the
    people given at least one message (lists and messages alike when `sent` is unknown)."""
    exited = sum(v for k, v in stats.items() if k.startswith("exit_"))
    capped = sum(v for k, v in stats.items() if k.startswith("frequency_cap_"))
    allocated = stats.get("allocated") or {}
    return [
        ("selected", int(stats.get("selected", 0)), "kept"),
        ("not_contactable", int(stats.get("not_contactable", 0)), "removed"),
        ("exited", int(exited), "removed"),
        ("capped", int(capped), "removed"),
        ("control", int(stats.get("control", 0)), "removed"),
        ("sent", int(sent if sent is not None else max(allocated.values(), default=0)), "kept"),
    ]
