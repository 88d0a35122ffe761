"""Build the data-definition document (データ項目定義書) into `var/out/docs/data-definition/`.

`generate()` runs `dbt docs generate --static` (manifest, catalog with column types, and dbt's own
single-file site), collects the registry, manifest, catalog, Great Expectations suites and
audiences into one model, and writes every format from it:

    index.html                 both languages: links to every format, the counts
    ja.html, en.html           the whole document, one page per language (ER diagram inline)
    data-definition.ja.xlsx    the workbook, Japanese headers and values
    data-definition.en.xlsx    the workbook, English
    erd.ja.svg, erd.en.svg     the ER diagram
    erd.mmd                    the ER diagram as Mermaid source
    data-definition.json       the collected model (what the completeness test reads)
    dbt-docs/index.html        dbt's static docs site (`dbt docs generate --static`)
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .. import paths

log = logging.getLogger(__name__)

FILES = {
    "index": "index.html",
    "html_ja": "ja.html",
    "html_en": "en.html",
    "xlsx_ja": "data-definition.ja.xlsx",
    "xlsx_en": "data-definition.en.xlsx",
    "erd_ja": "erd.ja.svg",
    "erd_en": "erd.en.svg",
    "mermaid": "erd.mmd",
    "json": "data-definition.json",
    "dbt_docs": "dbt-docs/index.html",
}


def default_out_dir() -> Path:
    return paths.out_dir() / "docs" / "data-definition"


def dbt_target_dir() -> Path:
    """Where `yorisoi.transform.run_dbt` makes dbt write (DBT_TARGET_PATH)."""
    return paths.var_dir() / "dbt" / "target"


def generate(
    out_dir: Path | str | None = None,
    *,
    run_dbt_docs: bool = True,
    demo_key: bool = False,
    expectations_dir: Path | None = None,
    audiences_dir: Path | None = None,
) -> dict[str, Path]:
    """Write the document in every format; return {format: path}.

    `run_dbt_docs`: run `dbt docs generate --static` first (otherwise the manifest and catalog
    already in var/dbt/target are used). `demo_key`: let dbt create a demo match key when none is
    configured (CLI, demo and tests; Airflow passes the key from its connection instead)."""
    from .collect import collect
    from .erd import render_mermaid, render_svg
    from .render_html import render_index, render_page
    from .render_xlsx import write_workbook

    out = Path(out_dir) if out_dir else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    target = dbt_target_dir()
    if run_dbt_docs:
        from ..transform import run_dbt

        run_dbt(["--quiet", "docs", "generate", "--static"], demo_key=demo_key)
    manifest = target / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} is missing: run with run_dbt_docs=True or `yorisoi dbt docs generate`")
    model = collect(manifest, target / "catalog.json", expectations_dir=expectations_dir, audiences_dir=audiences_dir)

    written = {key: out / name for key, name in FILES.items()}
    static = target / "static_index.html"
    if static.exists():
        written["dbt_docs"].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(static, written["dbt_docs"])
    else:
        log.warning("no %s: dbt docs were not generated with --static; the document links none", static)
        del written["dbt_docs"]
    links = {key: name for key, name in FILES.items() if key in written}
    links.setdefault("dbt_docs", "")
    mermaid = render_mermaid(model)
    written["mermaid"].write_text(mermaid, "utf-8")
    written["json"].write_text(json.dumps(model.to_dict(), ensure_ascii=False, indent=1), "utf-8")
    for lang in ("ja", "en"):
        svg = render_svg(model, lang)
        written[f"erd_{lang}"].write_text(svg, "utf-8")
        page = render_page(model, lang, svg=svg, mermaid=mermaid, files=links)
        written[f"html_{lang}"].write_text(page, "utf-8")
        write_workbook(model, lang, written[f"xlsx_{lang}"])
    written["index"].write_text(render_index(model, links), "utf-8")
    counts = model.counts()
    log.info("data-definition document: %s in %s", counts, out)
    return written


def airflow_task() -> dict:
    """The body of the build_data_definition task: the match key from the Airflow connection,
    then `generate()`; returns the counts and where the document is."""
    from ..transform import match_key_from_airflow

    match_key_from_airflow()
    written = generate()
    model = json.loads(written["json"].read_text("utf-8"))
    return {"out_dir": str(written["index"].parent), **model["counts"]}
