"""Where the embedded default keeps its runtime state: everything under `var/` (git-ignored).

`YORISOI_VAR` moves it (tests point it at a temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path


def var_dir() -> Path:
    return Path(os.environ.get("YORISOI_VAR", "var")).resolve()


def sources_dir() -> Path:
    """Generated source systems (`yorisoi synth` output)."""
    return var_dir() / "sources"


def lake_dir() -> Path:
    return var_dir() / "lake"


def warehouse_path() -> Path:
    return var_dir() / "warehouse.duckdb"


def out_dir() -> Path:
    """Exports, docs and reports."""
    return var_dir() / "out"


def airflow_home() -> Path:
    return var_dir() / "airflow"


def analytics_path() -> Path:
    """The analysts' database: marts without raw personal data, a separate file because DuckDB
    has no GRANT."""
    return var_dir() / "analytics.duckdb"


def match_key_file() -> Path:
    """The demo's match-key secret (production passes it from an Airflow connection)."""
    return var_dir() / "keys" / "match_key"


def audit_dir() -> Path:
    """The operation log (append-only, hash-chained JSON Lines) and its sidecar files. Outside
    the warehouse so DuckDB's single-writer lock never loses an entry; `YORISOI_AUDIT_DIR` moves
    it to storage the warehouse's writers cannot rewrite."""
    return (
        Path(os.environ["YORISOI_AUDIT_DIR"]).resolve() if os.environ.get("YORISOI_AUDIT_DIR") else var_dir() / "audit"
    )


def roles_dir() -> Path:
    """The role databases (<role>.duckdb): marts copied without personal-data columns for roles
    that may not read the warehouse."""
    return var_dir() / "roles"
