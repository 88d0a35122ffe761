"""The source registry (`include/sources/registry.yml`): every source and table, described once.

Loaded into typed objects with clear errors, so a typo in the YAML stops the DAG file from loading
with a message that names the entry, instead of failing in the middle of a run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_REGISTRY = PROJECT_ROOT / "include" / "sources" / "registry.yml"
TYPES = {"string", "integer", "money", "boolean", "date", "timestamp", "timestamptz"}
METHODS = {"automatic", "manual"}
# store: Yorisoi's own activation store, landed for the campaign-outcome facts;
# messaging: what the SMS and LINE providers report back (yorisoi.sources.messaging)
KINDS = {"api", "database", "files", "store", "messaging"}
# Kinds that feed only the campaign-outcome facts: they trigger no customer build (that would loop:
# customer build -> segments -> activation -> what it sent lands -> customer build) and have no raw suite.
OUTCOME_KINDS = frozenset({"store", "messaging"})


class RegistryError(ValueError):
    """The registry or a mapping file is invalid; the message names the entry."""


@dataclass(frozen=True)
class Column:
    name: str
    source: str
    type: str


@dataclass(frozen=True)
class Table:
    source: str
    name: str
    primary_key: tuple[str, ...]
    watermark: str | None
    description: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    columns: tuple[Column, ...] = ()
    enabled: bool = True
    """False when the brand does not have this table (its source's or its own `enabled: false`):
    nothing ingests it, nothing waits on it, its raw table exists empty so models build empty."""
    kind: str = ""
    """The source's kind (api, database, files, store): says where the raw table's columns come from."""
    money_scale: int = 0
    """Decimal places of the source's amounts (the currency's minor unit: 0 for JPY, 2 for USD):
    0 lands money as whole units (int64), more as DECIMAL(18, money_scale)."""

    @property
    def raw_name(self) -> str:
        """Table name in the warehouse's `raw` schema: `<source>__<table>`."""
        return f"{self.source}__{self.name}"


@dataclass(frozen=True)
class Source:
    name: str
    system: str
    conn_id: str
    schedule: str
    method: str
    kind: str
    description: str
    tables: dict[str, Table]
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    folder: Path = PROJECT_ROOT
    enabled: bool = True
    currency: str = "JPY"
    """ISO 4217 code of the source's amounts (`money.currency`; `money.minor_unit` is on each table)."""

    def enabled_tables(self) -> dict[str, Table]:
        """The tables the brand has (see `Table.enabled`)."""
        return {name: t for name, t in self.tables.items() if t.enabled}

    def duration(self, key: str, default: str) -> timedelta:
        return parse_duration(str(self.options.get(key, default)), f"{self.name}.{key}")


def parse_duration(text: str, where: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+)\s*(minute|hour|day)s?\s*", text)
    if not m:
        raise RegistryError(f"{where}: {text!r} is not a duration like '3 days' or '6 hours'")
    return timedelta(**{f"{m.group(2)}s": int(m.group(1))})


def _req(entry: dict, key: str, where: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise RegistryError(f"{where}: '{key}' is required")
    return entry[key]


def _money(entry: dict, where: str) -> tuple[str, int]:
    """The source's `money: {currency: JPY, minor_unit: 0}` (the default)."""
    money = entry.get("money") or {}
    if not isinstance(money, dict) or set(money) - {"currency", "minor_unit"}:
        raise RegistryError(f"{where}.money: expected {{currency: <ISO 4217 code>, minor_unit: <decimal places>}}")
    currency, minor = money.get("currency", "JPY"), money.get("minor_unit", 0)
    if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
        raise RegistryError(f"{where}.money.currency: {currency!r} is not an ISO 4217 code such as JPY or USD")
    if isinstance(minor, bool) or not isinstance(minor, int) or not 0 <= minor <= 6:
        raise RegistryError(f"{where}.money.minor_unit: {minor!r} is not a number of decimal places (0 to 6)")
    return currency, minor


def _flag(entry: dict, where: str) -> bool:
    value = entry.get("enabled", True)
    if not isinstance(value, bool):
        raise RegistryError(f"{where}.enabled: expected true or false, got {value!r}")
    return value


def _table(
    source: str, name: str, entry: dict, source_enabled: bool = True, kind: str = "", money_scale: int = 0
) -> Table:
    where = f"sources.{source}.tables.{name}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping")
    pk = _req(entry, "primary_key", where)
    if isinstance(pk, str):
        pk = [pk]
    columns = []
    for col, spec in (entry.get("columns") or {}).items():
        if not isinstance(spec, dict) or "source" not in spec or spec.get("type") not in TYPES:
            raise RegistryError(f"{where}.columns.{col}: needs 'source' and a 'type' in {sorted(TYPES)}")
        columns.append(Column(col, str(spec["source"]), spec["type"]))
    names = {c.name for c in columns}
    if columns and not set(pk) <= names:
        raise RegistryError(f"{where}: primary key {pk} is not among its columns")
    known = {"primary_key", "watermark", "description", "columns", "enabled"}
    return Table(
        source=source,
        name=name,
        primary_key=tuple(pk),
        watermark=entry.get("watermark"),
        description=str(entry.get("description", "")),
        options={k: v for k, v in entry.items() if k not in known},
        columns=tuple(columns),
        enabled=source_enabled and _flag(entry, where),
        kind=kind,
        money_scale=money_scale,
    )


@dataclass(frozen=True)
class Registry:
    sources: dict[str, Source]
    path: Path

    def source(self, name: str) -> Source:
        try:
            return self.sources[name]
        except KeyError:
            raise RegistryError(f"no source {name!r} in {self.path}; have {sorted(self.sources)}") from None

    def tables(self, *, enabled_only: bool = False) -> list[Table]:
        """Every table of every source, in registry order (only the enabled ones if asked)."""
        return [t for s in self.sources.values() for t in s.tables.values() if t.enabled or not enabled_only]


def load_registry(path: Path | str | None = None) -> Registry:
    """Read and check the registry (default: `$YORISOI_REGISTRY` or include/sources/registry.yml)."""
    path = Path(path or os.environ.get("YORISOI_REGISTRY") or DEFAULT_REGISTRY)
    return _load(path.resolve())


def read_yaml(path: Path, what: str, top_key: str) -> dict:
    """A YAML document with a top-level mapping under `top_key`, or a RegistryError saying why not."""
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read the {what} {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get(top_key), dict):
        raise RegistryError(f"{path}: expected a top-level '{top_key}' mapping")
    return doc


@cache
def _load(path: Path) -> Registry:
    doc = read_yaml(path, "source registry", "sources")
    sources = {}
    for name, entry in doc["sources"].items():
        where = f"sources.{name}"
        method, kind = _req(entry, "method", where), _req(entry, "kind", where)
        if method not in METHODS:
            raise RegistryError(f"{where}.method: {method!r} is not one of {sorted(METHODS)}")
        if kind not in KINDS:
            raise RegistryError(f"{where}.kind: {kind!r} is not one of {sorted(KINDS)}")
        enabled = _flag(entry, where)
        currency, minor_unit = _money(entry, where)
        tables = {t: _table(name, t, e, enabled, kind, minor_unit) for t, e in (_req(entry, "tables", where)).items()}
        known = {"system", "conn_id", "schedule", "method", "kind", "description", "tables", "enabled", "money"}
        sources[name] = Source(
            name=name,
            system=str(_req(entry, "system", where)),
            conn_id=str(_req(entry, "conn_id", where)),
            schedule=str(_req(entry, "schedule", where)),
            method=method,
            kind=kind,
            description=str(entry.get("description", "")),
            tables=tables,
            options={k: v for k, v in entry.items() if k not in known},
            folder=path.parent,
            enabled=any(t.enabled for t in tables.values()),
            currency=currency,
        )
    return Registry(sources=sources, path=path)
