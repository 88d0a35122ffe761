"""The report built once from the XS brand the other tests build (never from var/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from yorisoi_kit.scale_run import ScaleRun


@pytest.fixture(scope="session")
def xs_report(xs: ScaleRun, tmp_path_factory: pytest.TempPathFactory):
    from yorisoi.report.build import build_report

    return build_report(tmp_path_factory.mktemp("report") / "report", warehouse=xs.warehouse, simulations=50)


@pytest.fixture
def warehouse_copy(xs: ScaleRun, tmp_path: Path) -> Path:
    """A copy of the XS warehouse a test may change."""
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(xs.warehouse, copy)
    return copy
