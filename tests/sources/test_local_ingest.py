"""A new user's first look, without Airflow: `yorisoi sources check` before anything runs, then
`yorisoi ingest --from FOLDER|URL` through the same extractors (files through the SFTP gates, a
database through the mapping, the shop over HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from yorisoi import paths
from yorisoi.cli import app
from yorisoi.sources.registry import DEFAULT_REGISTRY, RegistryError

MEMBERS_HEADER = "会員番号,氏名カナ,電話番号,生年月日,郵便番号,メールアドレス,入会店舗,入会日,更新日"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh var/ and a registry the test edits (YORISOI_REGISTRY)."""
    return {"YORISOI_VAR": str(tmp_path / "var"), "YORISOI_REGISTRY": str(tmp_path / "registry.yml")}


def write_registry(path: Path, edit=None, mapping: dict | None = None) -> None:
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    oms_mapping = DEFAULT_REGISTRY.parent / doc["sources"]["oms"]["mapping"]
    if mapping is not None:
        oms_mapping = path.parent / "oms_mapping.yml"
        oms_mapping.write_text(yaml.safe_dump(mapping, allow_unicode=True), "utf-8")
    doc["sources"]["oms"]["mapping"] = str(oms_mapping)
    if edit:
        edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")


def run(env: dict[str, str], *args: str):
    old = dict(os.environ)
    os.environ.update(env)  # paths and the registry are read from the environment
    try:
        return CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.environ.clear()
        os.environ.update(old)


def query(env: dict[str, str], sql: str) -> list[tuple]:
    con = duckdb.connect(str(Path(env["YORISOI_VAR"]) / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_sources_check_says_what_each_entity_gets_before_anything_runs(tmp_path: Path, env: dict) -> None:
    mapping = yaml.safe_load((DEFAULT_REGISTRY.parent / "oms_mapping.yml").read_text("utf-8"))
    del mapping["entities"]["customers"]["columns"]["gender"]

    def no_web(doc):
        doc["sources"]["sftp"]["tables"]["web_events"]["enabled"] = False
        doc["sources"]["ecommerce"]["enabled"] = False

    write_registry(Path(env["YORISOI_REGISTRY"]), no_web, mapping)
    result = run(env, "sources", "check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    tables = {t["raw_name"]: t for t in report["tables"]}
    assert tables["oms__customers"]["null_columns"] == ["gender"]
    assert not tables["sftp__web_events"]["enabled"] and not tables["ecommerce__orders"]["enabled"]
    entities = {e["entity"]: e for e in report["entities"]}
    assert entities["web behaviour"]["empty"] and not entities["orders"]["empty"]
    assert entities["orders"]["fed_by"] == ["oms__orders", "sftp__pos_sales"]
    assert not Path(env["YORISOI_VAR"], "warehouse.duckdb").exists()  # nothing ran

    mapping["entities"]["orders"]["columns"]["totl"] = "TOTAL"
    write_registry(Path(env["YORISOI_REGISTRY"]), no_web, mapping)
    broken = run(env, "sources", "check", "--json")
    assert broken.exit_code == 1
    assert any("not a canonical column of orders" in p for p in json.loads(broken.output)["problems"])


def test_ingest_from_a_folder_goes_through_the_file_gates_and_leaves_the_folder_alone(
    tmp_path: Path, env: dict
) -> None:
    write_registry(Path(env["YORISOI_REGISTRY"]))
    exports = tmp_path / "exports"
    (exports / "pos").mkdir(parents=True)
    members = (
        f"{MEMBERS_HEADER}\r\n"
        "M001,ヤマダ ハナコ,090-1111-2222,1980/04/01,150-0001,a@example.jp,渋谷店,2024/01/05,2026/10/01\r\n"
        "M002,スズキ タロウ,03-1234-5678,1975/12/31,530-0001,,梅田店,2024/02/01,2026/10/02\r\n"
        "M003,サトウ,080-0000-0000,1990/13/45,100-0001,,銀座店,2024/03/01,2026/10/03\r\n"
    ).encode("cp932")
    (exports / "pos" / "members_202610.csv").write_bytes(members)
    (exports / "members_drift.csv").write_bytes("会員番号,カナ\r\nM9,ヤ\r\n".encode("cp932"))
    (exports / "README.txt").write_text("not data", "utf-8")
    before = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}

    result = run(env, "ingest", "--from", str(exports), "--json")
    assert result.exit_code == 1, result.output  # the drifted file is quarantined: an alert
    report = json.loads(result.output)
    assert report["rows"]["pos_members"] == 2
    by_file = {f["file"]: f for f in report["files"]}
    assert by_file["members_202610.csv"]["status"] == "loaded" and by_file["members_202610.csv"]["rejects"] == 1
    assert by_file["members_drift.csv"]["status"] == "quarantined"
    assert report["unmatched_files"] == ["README.txt"]
    assert query(env, "select card_no from raw.sftp__pos_members order by 1") == [("M001",), ("M002",)]
    assert query(env, "select line from raw._rejects where table_name = 'pos_members'") == [(4,)]
    assert query(env, "select count(*) from raw.ecommerce__orders") == [(0,)]  # every raw table exists
    assert {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()} == before

    again = run(env, "ingest", "--from", str(exports), "--json")  # the same content is not loaded twice
    assert {f["file"]: f["status"] for f in json.loads(again.output)["files"]}["members_202610.csv"] == "duplicate"


def test_ingest_from_a_database_url_and_from_the_shop(tmp_path: Path, env: dict, synth_xs: Path) -> None:
    from yorisoi_kit.servers import ecommerce

    def items_only(doc):
        for name, table in doc["sources"]["oms"]["tables"].items():
            table["enabled"] = name == "items"

    write_registry(Path(env["YORISOI_REGISTRY"]), items_only)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'oms.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create table items (item_code text, item_name text, category text, brand text, taste text, "
            "list_price integer)"
        )
        conn.exec_driver_sql("insert into items values ('A-1', '煎茶', 'tea', 'Y', null, 1200)")
    engine.dispose()
    result = run(env, "ingest", "--from", f"sqlite:///{tmp_path / 'oms.sqlite'}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"items": 1}
    assert query(env, "select item_code, list_price from raw.oms__items") == [("A-1", 1200)]

    with ecommerce.serve_in_thread(synth_xs / "ecommerce", api_key="first-look") as shop:
        with pytest.raises(RegistryError, match="YORISOI_SHOP_TOKEN"):  # one line and exit 2 from `yorisoi`
            run(env, "ingest", "--from", shop.base_url)
        shop_run = run({**env, "YORISOI_SHOP_TOKEN": "first-look"}, "ingest", "--from", shop.base_url, "--json")
    assert shop_run.exit_code == 0, shop_run.output
    customers = query(env, "select count(*) from raw.ecommerce__customers")[0][0]
    assert customers == json.loads(shop_run.output)["rows"]["customers"] > 0
    assert paths.var_dir() != Path(env["YORISOI_VAR"])  # the test's var/ was only set for the commands
