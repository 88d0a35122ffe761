"""The report's reads: one SQL file per chart (report/sql/), run on the warehouse opened
read-only, so a report build never blocks a dbt build's writer for long and can never change it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SQL_DIR = Path(__file__).with_name("sql")


@cache
def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


class Warehouse:
    """A read-only connection to the warehouse with the queries the views use."""

    def __init__(self, path: Path):
        if not Path(path).exists():
            raise FileNotFoundError(f"no warehouse at {path}: build the marts first (make demo)")
        self.path = Path(path)
        self.con = duckdb.connect(str(path), read_only=True)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, schema: str, table: str) -> bool:
        row = self.con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()
        return bool(row and row[0])

    def query(self, name: str, **params: Any) -> pd.DataFrame:
        """The result of report/sql/<name>.sql with `params` bound ($name)."""
        return self.con.execute(sql(name), params or None).df()

    def frame(self, statement: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(statement, params or []).df()
