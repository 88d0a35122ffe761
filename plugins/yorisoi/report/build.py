"""Build the report: query the marts once, write index.html (Japanese) and en.html (English)
with the shared assets into <var>/out/report/, replacing the previous report in one rename.

The charts are Vega-Lite specs drawn by assets/vega.js: Vega, Vega-Lite and Vega-Embed bundled
into one classic script by vl-convert-python (`javascript_bundle`, no network; ~0.9 MB, the
Vega-Lite version Altair writes). Making the bundle takes ~8 s, so it is cached under
<var>/cache/report/ per vl-convert and Vega-Lite version. Measured choices are in
docs/report.md."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import paths
from ..transform import local_time_zone
from .data import Warehouse
from .strings import LANGUAGES, Text
from .views import assemble, collect

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGES = {"ja": "index.html", "en": "en.html"}
VENDOR = "vega.js"
SIZE_LIMIT = 10 * 1024 * 1024  # the whole file set must stay under 10 MB


@dataclass
class Report:
    folder: Path
    files: dict[str, int]  # relative path -> bytes
    seconds: float
    as_of: str

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def summary(self) -> dict:
        return {
            "folder": str(self.folder),
            "index": str(self.folder / PAGES["ja"]),
            "bytes": self.total_bytes,
            "files": self.files,
            "seconds": round(self.seconds, 2),
            "as_of": self.as_of,
        }


def default_folder() -> Path:
    return paths.out_dir() / "report"


def vega_bundle(cache: Path | None = None) -> str:
    """Vega + Vega-Lite + Vega-Embed as one classic script, for the Vega-Lite version Altair
    writes; cached per version. Wrapped in a function scope: the bundle's top-level constants
    stay private, it publishes only window.vega, window.vegaLite and window.vegaEmbed."""
    import altair as alt
    import vl_convert

    vl_version = ".".join(alt.SCHEMA_VERSION.split(".")[:2])  # v6.4.1 -> v6.4
    cache = cache or paths.var_dir() / "cache" / "report"
    target = cache / f"vega-{vl_convert.__version__}-vl{vl_version.lstrip('v')}.js"
    if not target.exists():
        t0 = time.perf_counter()
        body = vl_convert.javascript_bundle(vl_version=vl_version)
        header = (
            f"/* Vega, Vega-Lite {vl_version} and Vega-Embed, bundled by vl-convert-python {vl_convert.__version__} */"
        )
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(header + "\n(function () {\n" + body + "\n})();\n", encoding="utf-8")
        tmp.replace(target)
        log.info(
            "bundled Vega-Lite %s in %.1f s (%s bytes)", vl_version, time.perf_counter() - t0, target.stat().st_size
        )
    return target.read_text(encoding="utf-8")


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _specs_json(views) -> str:
    specs = {b.id: b.spec for v in views for b in v.blocks if b.kind == "chart"}
    # inside <script>: "</" would end the element early
    return json.dumps(specs, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def build_report(
    out: Path | None = None,
    *,
    warehouse: Path | None = None,
    var: Path | None = None,
    simulations: int = 200,
    designs: Mapping[str, Mapping[str, float]] | None = None,
) -> Report:
    """Build the report from `warehouse` (default the embedded one) into `out`; `designs`: the
    audiences' assigned splits for the campaigns' sample-ratio check (default audiences/*.yml)."""
    t0 = time.perf_counter()
    out = Path(out or default_folder())
    time_zone = local_time_zone()
    with Warehouse(warehouse or paths.warehouse_path()) as wh:
        facts = collect(wh, time_zone=time_zone, var=var, simulations=simulations, designs=designs)
    as_of = str(facts.frames["kpi"]["as_of_date"].iloc[0])[:10]
    built_at = datetime.now(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M %Z")
    env = _environment()
    template = env.get_template("report.html.j2")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        assets = staging / "assets"
        assets.mkdir()
        (assets / VENDOR).write_text(vega_bundle(), encoding="utf-8")
        for name in ("report.js", "report.css"):
            shutil.copyfile(HERE / "static" / name, assets / name)
        for lang in LANGUAGES:
            t = Text(lang)
            views = assemble(facts, t)
            other = "en" if lang == "ja" else "ja"
            html = template.render(
                lang=lang,
                t=t,
                views=views,
                as_of=as_of,
                built_at=built_at,
                other_lang=other,
                other_href=PAGES[other],
                vendor=VENDOR,
                specs_json=_specs_json(views),
            )
            (staging / PAGES[lang]).write_text(html, encoding="utf-8")
        files = {str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
        total = sum(files.values())
        if total > SIZE_LIMIT:
            raise RuntimeError(f"the report is {total:,} bytes, over the {SIZE_LIMIT:,}-byte limit: {files}")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = Report(out, files, time.perf_counter() - t0, as_of)
    log.info("CRM report: %s (%s bytes) in %.1f s", out / PAGES["ja"], f"{report.total_bytes:,}", report.seconds)
    return report


def airflow_task() -> dict:
    """Airflow task body: rebuild the report after the segment marts were validated."""
    return build_report().summary()
