"""`yorisoi synth`: a synthetic Japanese D2C brand, in each source system's native shape, with
the ground truth behind it. See docs/synthetic-brand.md for the data contract."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .brand import STAGES, Brand, new_brand, write_manifest
from .defects import add_defects

__all__ = ["STAGES", "Brand", "generate"]


def generate(
    out: Path | str,
    scale: str = "S",
    seed: int = 42,
    *,
    as_of: datetime | None = None,
    people: int | None = None,
    on_stage: Callable[[str, int], None] | None = None,
    defects: bool = False,
) -> Brand:
    """Write the brand to `out` (replacing what a previous run left there) and return it.

    Parameters: `scale` XS/S/M/L sets the number of people (or pass `people`); the same `seed`
    gives byte-identical files; `as_of` is the exclusive end of the two-year window;
    `on_stage(name, rows)` is called after each stage (progress bars); `defects` adds the bad
    drops of `synth/defects.py` (demo and ingestion tests) and describes them in truth/defects.json.
    """
    out = Path(out)
    brand = new_brand(out, scale, seed, as_of, people)
    for sub in ("ecommerce", "oms", "sftp", "truth"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    for name, stage in STAGES:
        rows = stage(brand)
        if on_stage:
            on_stage(name, rows)
    if defects:
        add_defects(out, brand.as_of)
        brand.defects = True
    write_manifest(brand)
    return brand
