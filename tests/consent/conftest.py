"""Fixtures of the consent tests: one `dbt build` per session, then fast in-memory replays."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from consent_harness import CompiledProject, Warehouse, World, build_compiled_project


@pytest.fixture(scope="session")
def compiled_project(tmp_path_factory: pytest.TempPathFactory) -> CompiledProject:
    """The models the consent marts depend on, built once by dbt on empty raw tables in a
    temporary var folder (its own YORISOI_VAR and match key, restored afterwards)."""
    return build_compiled_project(tmp_path_factory.mktemp("consent") / "var")


@pytest.fixture(scope="session")
def session_warehouse(compiled_project: CompiledProject) -> Iterator[Warehouse]:
    """One in-memory warehouse for the session; each user empties it with `reset()` first."""
    wh = Warehouse(compiled_project)
    yield wh
    wh.close()


@pytest.fixture
def world(session_warehouse: Warehouse) -> World:
    """Empty source systems and an empty oracle."""
    session_warehouse.reset()
    return World(session_warehouse)
