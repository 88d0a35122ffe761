"""What a view is made of (charts, tiles, tables, notes), the facts a build reads once, and
the small formatting helpers every view uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .forecast import BalanceForecast
from .strings import Text


@dataclass
class Block:
    kind: str  # chart | tiles | table | note
    id: str = ""
    half: bool = False  # a small chart drawn two to a row
    spec: dict[str, Any] | None = None
    caption: str = ""
    tiles: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: str = ""


@dataclass
class View:
    id: str
    title: str
    what: str
    blocks: list[Block]


@dataclass
class Facts:
    """Every query's result, read once per build."""

    frames: dict[str, pd.DataFrame]
    balance: BalanceForecast | None
    balance_error: str | None
    time_zone: str
    allocation: dict | None
    gates: list[dict]
    has_campaigns: bool
    # yorisoi.outcomes.readout over marts.campaign_results (what `yorisoi campaign readout` prints)
    campaign_readouts: list[Any] = field(default_factory=list)
    campaign_error: str | None = None


def chart(view: str, name: str, spec: dict[str, Any], caption: str = "", *, half: bool = False) -> Block:
    return Block("chart", id=f"{view}-{name}", spec=spec, caption=caption, half=half)


def text(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def table(columns: list[str], rows: list[list[Any]], caption: str = "") -> Block:
    return Block("table", columns=columns, rows=[[text(v) for v in r] for r in rows], caption=caption)


def pct(v: Any) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.1%}"


def when(v: Any, time_zone: str) -> str:
    """A moment in the brand's local time (stored times without a zone are UTC)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "–"
    ts = pd.Timestamp(v)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return ts.tz_convert(time_zone).strftime("%Y-%m-%d %H:%M")


def view(vid: str, t: Text, blocks: list[Block]) -> View:
    return View(vid, t(f"views.{vid}.title"), t(f"views.{vid}.what"), blocks)
