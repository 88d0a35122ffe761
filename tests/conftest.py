"""Shared fixtures: one synthetic brand at scale XS per test session, generated once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_xs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XS brand (about 1,000 people), seed 1, written to a session temp folder."""
    from yorisoi.synth import generate

    out = tmp_path_factory.mktemp("brand_xs")
    generate(out, scale="XS", seed=1)
    return out
