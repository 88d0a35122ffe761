"""Regenerate the synthetic brand's source systems (development and demo environments only)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, dag, task

from yorisoi.orchestration.dag_defaults import DEFAULT_ARGS

DEMO_SOURCES = Asset(name="demo_sources", uri="file:///yorisoi/var/sources")


@dag(
    dag_id="synth_demo_brand",
    description="Demo only: regenerate the synthetic brand's source systems.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a manual tool: never backfill
    max_active_runs=1,  # one writer of var/sources at a time
    default_args=DEFAULT_ARGS,
    tags=["demo", "synthetic", "sources"],
    params={"scale": "S", "seed": 42},
    doc_md="""
### Synthetic brand (demo only)
Writes the synthetic D2C brand (`yorisoi synth`) into `var/sources/`: the e-commerce API's data,
the OMS database, the SFTP drop folder and the ground truth. Trigger it with `scale` (XS, S, M, L)
and `seed` params; the same seed gives byte-identical files, so a rerun is safe.

**Outputs:** the `demo_sources` asset. **Never** point this DAG at a production sources folder.
""",
)
def synth_demo_brand():
    @task(outlets=[DEMO_SOURCES])
    def generate(params: dict | None = None) -> dict:
        from yorisoi import paths
        from yorisoi_kit.synth import generate as run

        p = params or {}
        brand = run(paths.sources_dir(), scale=str(p.get("scale", "S")), seed=int(p.get("seed", 42)))
        return {"people": brand.n, "files": len(brand.files)}

    generate()


synth_demo_brand()
