"""A brand with only some of the sources builds end to end (issue: every source is optional).

One small generated brand (scale XS) is shared; each subset is the default registry with the
other sources or tables turned off (`enabled: false`), pointed at by YORISOI_REGISTRY. For each:
ingest through the real extractors from the loopback servers (shop API over HTTP, the OMS
database, SFTP drops), `dbt build` of the customer layer and the segment marts, both quality
gates, and one audience dry run. Disabled sources' raw tables exist empty (created from the
registry), their models build empty, their raw suites are not run, and nothing waits on them.
The subsets are marked slow; `make test` builds the OMS-only brand's core customer layer, and the
campaign facts of an OMS-only brand whose back office has no coupon column (DM credit by window).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from yorisoi import paths
from yorisoi.sources.registry import DEFAULT_REGISTRY, PROJECT_ROOT, load_registry

# subset → {source: None (whole source off) or [tables kept]}; sources not named keep everything
SUBSETS: dict[str, dict[str, list[str] | None]] = {
    "oms_only": {"ecommerce": None, "sftp": None},
    "shop_only": {"oms": None, "sftp": None},
    "shop_pos": {"oms": None, "sftp": ["pos_members", "pos_sales"]},
    "shop_oms_line": {"sftp": ["line_friends", "line_id_links"]},
    "no_web_events": {
        "sftp": [
            "pos_members",
            "pos_sales",
            "callcenter_requests",
            "line_friends",
            "line_id_links",
            "esp_campaigns",
            "esp_sends",
        ]
    },
    "no_esp_logs": {
        "sftp": ["pos_members", "pos_sales", "callcenter_requests", "line_friends", "line_id_links", "web_events"]
    },
}
# Each full subset takes minutes (a full dbt build): `make test-all`. `make test` runs the fast
# variant below: the OMS-only brand through the raw gate and the customer layer activation reads.
FAST: set[str] = set()


def write_registry(folder: Path, subset: str) -> Path:
    """The default registry with the subset's other sources and tables disabled."""
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    for source, keep in SUBSETS[subset].items():
        entry = doc["sources"][source]
        if keep is None:
            entry["enabled"] = False
        else:
            for name, table in entry["tables"].items():
                table["enabled"] = name in keep
    oms = doc["sources"]["oms"]
    oms["mapping"] = str(DEFAULT_REGISTRY.parent / oms["mapping"])
    path = folder / "registry.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_brand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yorisoi_kit.synth import generate

    out = tmp_path_factory.mktemp("brand_subsets")
    generate(out, scale="XS", seed=11)
    return out


@pytest.fixture
def subset_env(request: pytest.FixtureRequest, tmp_path: Path, tiny_brand: Path) -> Iterator[tuple[str, Path]]:
    subset = request.param
    old = dict(os.environ)
    os.environ["YORISOI_VAR"] = str(tmp_path / "var")
    os.environ["YORISOI_REGISTRY"] = str(write_registry(tmp_path, subset))
    from yorisoi.transform import brand_as_of

    os.environ["YORISOI_AS_OF"] = brand_as_of(tiny_brand)
    try:
        yield subset, tmp_path
    finally:
        os.environ.clear()
        os.environ.update(old)


def ingest_enabled(brand: Path, work: Path) -> None:
    """What the ingest DAGs of the enabled sources would land, through the same extractors. The
    drops are served from a copy: the ingest moves each file it loads to processed/ on the
    server, and the brand is shared by the module's tests (a subset that ran before would leave
    the next one without the files it had loaded)."""
    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi_kit.scale_run import ingest_back_office, ingest_drop_folder, ingest_shop

    wh = Warehouse(paths.warehouse_path(), Lake(paths.lake_dir()))
    registry = load_registry()
    if registry.source("ecommerce").enabled:
        ingest_shop(brand, wh, "subset-1")
    if registry.source("oms").enabled:
        ingest_back_office(brand, wh, "subset-1")
    if registry.source("sftp").enabled:
        drops = work / "drops"
        shutil.copytree(brand / "sftp", drops / "sftp")
        ingest_drop_folder(drops, wh, work, "subset-1", list(registry.source("sftp").enabled_tables()))


def build_and_check(subset: str, brand: Path, work: Path) -> None:
    from yorisoi.activation import run
    from yorisoi.orchestration.assets import registry_raw_assets
    from yorisoi.quality.gate import validate_layer
    from yorisoi.transform import CUSTOMER_LAYER, SEGMENT_LAYER, run_dbt

    registry = load_registry()
    enabled = {t.raw_name for t in registry.tables(enabled_only=True)}
    disabled = {t.raw_name for t in registry.tables()} - enabled
    assert disabled, "a subset turns something off"
    ingest_enabled(brand, work)

    raw = validate_layer("raw", run_name=f"subset-{subset}")  # raises QualityGateFailed on a failure
    assert raw["success"]
    assert {s.removeprefix("raw.") for s in raw["skipped_suites"]} == disabled

    # unit tests are the same whatever the brand has (the full build runs them): left out for time
    select = f"{CUSTOMER_LAYER} {SEGMENT_LAYER}"
    build = run_dbt(
        ["--quiet", "build", "--select", select, "--exclude-resource-type", "unit_test"],
        demo_key=True,
        raise_on_failure=False,
    )
    failed = [r for r in build.results if r["status"] in ("error", "fail")]
    assert build.success, failed

    marts = validate_layer("marts", run_name=f"subset-{subset}")
    assert marts["success"]

    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        for name in disabled:  # created from the registry, never landed
            assert con.execute(f'select count(*) from raw."{name}"').fetchone()[0] == 0
        people = con.execute("select count(*) from marts.dim_customers").fetchone()[0]
        sources = {r[0] for r in con.execute("select distinct source from marts.bridge_customer_identities").fetchall()}
    finally:
        con.close()
    assert people > 0
    assert {"oms": "oms" in sources, "ecommerce": "ecommerce" in sources} == {
        "oms": registry.source("oms").enabled,
        "ecommerce": registry.source("ecommerce").enabled,
    }
    # the customer build waits only on what can land (not on the campaign facts' own inputs)
    triggers = {t.raw_name for t in registry.tables(enabled_only=True) if t.kind not in ("store", "messaging")}
    assert {a.name.removeprefix("raw.") for a in registry_raw_assets()} == triggers

    as_of = datetime.fromisoformat(os.environ["YORISOI_AS_OF"] + "T09:00:00+09:00")
    summary = run.activate(
        "dormant_winback",
        "sftp_dm_list",
        dry_run=True,
        as_of=as_of,
        context=run.Context.load(),
        role="scenario_author",  # a dry run shows counts: the scenario author's right
    )
    assert summary["status"] == "planned", summary


@pytest.mark.timeout(1800)  # ingest, a full dbt build and both gates: minutes on a loaded machine
@pytest.mark.parametrize(
    "subset_env",
    [pytest.param(s, id=s, marks=() if s in FAST else pytest.mark.slow) for s in SUBSETS],
    indirect=True,
)
def test_a_brand_with_only_some_sources_builds_end_to_end(subset_env: tuple[str, Path], tiny_brand: Path) -> None:
    subset, work = subset_env
    build_and_check(subset, tiny_brand, work)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("subset_env", ["oms_only"], indirect=True)
def test_an_oms_only_brand_builds_its_customer_layer(subset_env: tuple[str, Path], tiny_brand: Path) -> None:
    """The fast variant: before, this brand stopped at 13 dbt errors (the shop's and the drops' raw
    tables did not exist)."""
    from yorisoi.quality.gate import validate_layer
    from yorisoi.transform import run_dbt

    subset, work = subset_env
    ingest_enabled(tiny_brand, work)
    raw = validate_layer("raw", run_name=f"subset-{subset}-fast")
    assert raw["success"] and len(raw["skipped_suites"]) == 12
    build = run_dbt(
        [
            "--quiet",
            "build",
            "--select",
            "+deliverable_customers",
            "--indirect-selection",
            "cautious",
            "--exclude-resource-type",
            "unit_test",
        ],
        demo_key=True,
        raise_on_failure=False,
    )
    assert build.success, [r for r in build.results if r["status"] in ("error", "fail")]
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        sources = con.execute("select distinct source from intermediate.int_identity_records").fetchall()
        deliverable = con.execute("select count(*) from marts.deliverable_customers").fetchone()[0]
        shop_rows = con.execute("select count(*) from raw.ecommerce__customers").fetchone()[0]
    finally:
        con.close()
    assert sources == [("oms",)] and deliverable > 0 and shop_rows == 0


def _without_coupon_codes(brand: Path, work: Path) -> Path:
    """A copy of the brand's OMS with no coupon column, and a mapping that names none; the
    registry at YORISOI_REGISTRY points at that mapping. Returns the copy's brand folder."""
    import sqlite3

    copy = work / "brand_without_coupons"
    (copy / "oms").mkdir(parents=True)
    shutil.copyfile(brand / "oms" / "oms.sqlite", copy / "oms" / "oms.sqlite")
    con = sqlite3.connect(copy / "oms" / "oms.sqlite")
    con.execute("alter table orders drop column coupon_code")
    con.commit()
    con.close()
    registry = Path(os.environ["YORISOI_REGISTRY"])
    doc = yaml.safe_load(registry.read_text("utf-8"))
    mapping = yaml.safe_load(Path(doc["sources"]["oms"]["mapping"]).read_text("utf-8"))
    del mapping["entities"]["orders"]["columns"]["coupon_code"]
    (work / "oms_mapping.yml").write_text(yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False), "utf-8")
    doc["sources"]["oms"]["mapping"] = str(work / "oms_mapping.yml")
    registry.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return copy


def _send_dm(store_url: str, people: list[str], sent_at: datetime) -> None:
    """The store as an activation run of the coupon-carrying DM audience (seed
    campaign_coupon_codes: planted_dm) would leave it: every other person held out, the rest mailed."""
    from yorisoi.activation.delivery.store import ActivationStore, Claim

    audience, destination, interval, run = "planted_dm", "dm_file", sent_at.isoformat(), "subset-dm"
    treated = people[::2]
    store = ActivationStore(store_url)
    try:
        store.write_members(
            {"run_id": run, "audience": audience, "person_id": p, "grp": "treatment" if i % 2 == 0 else "control",
             "variant": "A" if i % 2 == 0 else None, "computed_at": sent_at}
            for i, p in enumerate(people)
        )  # fmt: skip
        keys = [f"{p}:dm" for p in treated]
        store.start_run(
            run, audience=audience, destination=destination, interval=interval, mode="diff", started_at=sent_at
        )
        store.claim(
            audience=audience, destination=destination, channel="dm", interval=interval, keys=keys,
            person_ids=treated, claim_id="c1", owner=run, now=sent_at,
        )  # fmt: skip
        store.settle(
            run_id=run, audience=audience, destination=destination, operation="add", at=sent_at, keys=keys,
            person_ids=treated, claim=Claim("dm", interval, run, "c1", whole_group=True),
        )  # fmt: skip
        store.finish_run(run, status="succeeded", counts={"adds": len(keys)}, finished_at=sent_at)
    finally:
        store.close()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("subset_env", ["oms_only"], indirect=True)
def test_a_brand_without_coupon_codes_credits_dm_conversions_by_window(
    subset_env: tuple[str, Path], tiny_brand: Path
) -> None:
    """Coupon credit needs the OMS's coupon_code: a back office without the column (and a mapping
    that names none) still builds the campaign facts, and a DM whose audience has a code in the
    seed is credited by its delivery window: every order of a mailed person within the DM's
    credit window, none by code."""
    import sqlalchemy

    from yorisoi.outcomes.store_source import ingest_activation
    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi.transform import run_dbt
    from yorisoi_kit.scale_run import LOAD_DATE, ingest_back_office

    _, work = subset_env
    brand = _without_coupon_codes(tiny_brand, work)
    wh = Warehouse(paths.warehouse_path(), Lake(paths.lake_dir()))
    ingest_back_office(brand, wh, "subset-1")

    def build(select: str) -> None:
        args = ["--quiet", "build", "--select", select, "--indirect-selection", "cautious"]
        args += ["--exclude-resource-type", "unit_test"]
        result = run_dbt(args, demo_key=True, raise_on_failure=False)
        assert result.success, [r for r in result.results if r["status"] in ("error", "fail")]

    build("+fct_orders")
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        people = [r[0] for r in con.execute("select distinct person_id from marts.fct_orders order by 1").fetchall()]
        newest = con.execute("select max(ordered_at) from marts.fct_orders").fetchone()[0]
    finally:
        con.close()
    sent_at = newest - timedelta(days=120)
    store_url = f"sqlite:///{work / 'activation.sqlite'}"
    _send_dm(store_url, people, sent_at)
    engine = sqlalchemy.create_engine(store_url)
    try:
        ingest_activation(wh, load_registry().source("activation"), engine, run_id="subset-1", load_date=LOAD_DATE)
    finally:
        engine.dispose()
    build("+tag:campaigns")

    window = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text("utf-8"))["vars"]["campaigns"][
        "credit_window_hours"
    ]["dm"]
    con = duckdb.connect(str(paths.warehouse_path()), read_only=True)
    try:
        quoted = con.execute("select count(coupon_code), count(*) from raw.oms__orders").fetchone()
        credit = con.execute(
            "select credit_rule, touch, channel, count(*) from marts.fct_campaign_conversions group by all"
        ).fetchall()
        expected = con.execute(
            "select count(distinct o.order_key) from marts.fct_campaign_sends as s inner join marts.fct_orders as o "
            "on s.person_id = o.person_id and o.ordered_at >= s.sent_at "
            f"and o.ordered_at < s.sent_at + interval {int(window)} hour "
            "where s.delivery_status = 'sent' and o.is_counted"
        ).fetchone()[0]
        arms = dict(con.execute("select arm, people from marts.campaign_results").fetchall())
    finally:
        con.close()
    assert quoted[0] == 0 and quoted[1] > 0  # the orders landed, with no code
    assert arms == {"control": len(people) // 2, "A": len(people) - len(people) // 2}
    assert expected > 0
    assert credit == [("last_touch", "delivery", "dm", expected)]
