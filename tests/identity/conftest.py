"""A small messy labelled set (tests/identity/messy_identities.py), ingested, built and scored
once per session: shared by the tests that read its warehouse."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def messy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development-seed set of 300 people."""
    from messy_identities import DEV_SEEDS, generate

    out = tmp_path_factory.mktemp("messy") / "set"
    generate(out, seed=DEV_SEEDS[0], people=300)
    return out


@pytest.fixture(scope="session")
def messy_result(messy_set: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`evaluate_set` on messy_set (without the Splink peer): its warehouse stays at result['warehouse']."""
    from yorisoi_kit.identity_eval import evaluate_set

    return evaluate_set(messy_set, tmp_path_factory.mktemp("messy_work"), peer=False)
