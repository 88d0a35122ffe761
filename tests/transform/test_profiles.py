"""The dbt profile (dbt_project/profiles.yml) as dbt renders it from the environment."""

from __future__ import annotations

from argparse import Namespace

import pytest
import yaml

from yorisoi.transform import DBT_PROJECT_DIR


def _duckdb_settings(environ: dict[str, str]) -> dict:
    from dbt.config.renderer import ProfileRenderer
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    set_from_args(Namespace(), None)
    set_invocation_context({"YORISOI_WAREHOUSE": "warehouse.duckdb", "YORISOI_ANALYTICS_DB": "a.duckdb", **environ})
    raw = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    return ProfileRenderer({}).render_data(raw)["yorisoi"]["outputs"]["duckdb"]["settings"]


@pytest.mark.parametrize(
    ("environ", "limit"),
    [
        ({}, "5GB"),
        # Set but empty (a shell's `export VAR=`, an env file's `VAR=`): the default, not an
        # empty setting DuckDB refuses.
        ({"YORISOI_DUCKDB_MEMORY_LIMIT": ""}, "5GB"),
        ({"YORISOI_DUCKDB_MEMORY_LIMIT": "500MB"}, "500MB"),
    ],
)
def test_memory_limit_from_the_environment(environ: dict[str, str], limit: str) -> None:
    assert _duckdb_settings(environ)["memory_limit"] == limit
