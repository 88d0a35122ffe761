"""Shared fixtures: one synthetic brand at scale XS per test session, generated once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads its configuration at import: give the test session its own home and runtime
# folder, so tests never touch a developer's var/.
_SESSION_VAR = Path(tempfile.mkdtemp(prefix="yorisoi-test-var-"))
os.environ["YORISOI_VAR"] = str(_SESSION_VAR)
os.environ["AIRFLOW_HOME"] = str(_SESSION_VAR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_VAR / 'airflow' / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")


@pytest.fixture(scope="session")
def synth_xs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XS brand (about 1,000 people), seed 1, written to a session temp folder."""
    from yorisoi_kit.synth import generate

    out = tmp_path_factory.mktemp("brand_xs")
    generate(out, scale="XS", seed=1)
    return out


@pytest.fixture(scope="session")
def xs():
    """The XS brand (seed 1) ingested through the real extractors and built by dbt (customer
    layer, segment marts, triggers): shared by every test that reads the marts, built once."""
    from yorisoi_kit.scale_run import build, prepare

    run = prepare("XS", seed=1)
    build(run)
    return run
