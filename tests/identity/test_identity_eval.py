"""`yorisoi eval identity` on a hand-built warehouse whose answer is worked out below.

Truth (person: records):
    1 A: ecommerce:e1, ecommerce:e2, oms:o1
    2 B: ecommerce:e3
    3 C: ecommerce:e4, line:U1 (U1 in the LINE ID-link table)
    4 D: pos:p1, line:U2 (U2 not linked: no identifier, unresolvable)

Edges: email e1–e2 (right), phone e2–e3 (wrong), line_link e4–U1 (right) accepted; name_postal e1–o1
(right) and kana_birth_postal o1–p1 (wrong) vetoed.

Bridge (follows the accepted edges): P1 {e1, e2, e3}, P2 {o1}, P3 {e4, U1}, P5 {U2}, P9 {pos:p9, unknown
to the truth}; pos:p1 is missing (a singleton).

All 8 records: true pairs A 3 + C 1 + D 1 = 5; predicted pairs P1 3 + P3 1 = 4; TP (e1,e2) + (e4,U1) = 2.
    precision 2/4, recall 2/5, F1 4/9.
Resolvable 7 records (no U2): true pairs 4, predicted 4, TP 2: precision, recall, F1 = 1/2.
Ablations on the resolvable records:
    without email:     {e2,e3} {e4,U1}        predicted 2, TP 1: precision 1/2, recall 1/4
    without phone:     {e1,e2} {e4,U1}        predicted 2, TP 2: precision 1,   recall 1/2
    without line_link: {e1,e2,e3}             predicted 3, TP 1: precision 1/3, recall 1/4
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from yorisoi.cli import app
from yorisoi_kit.identity_eval import evaluate, pairwise_metrics

TRUTH = [
    ("ecommerce", "e1", 1),
    ("ecommerce", "e2", 1),
    ("oms", "o1", 1),
    ("ecommerce", "e3", 2),
    ("ecommerce", "e4", 3),
    ("line", "U1", 3),
    ("pos", "p1", 4),
    ("line", "U2", 4),
]
BRIDGE = [
    ("ecommerce", "e1", "P1"),
    ("ecommerce", "e2", "P1"),
    ("ecommerce", "e3", "P1"),
    ("oms", "o1", "P2"),
    ("ecommerce", "e4", "P3"),
    ("line", "U1", "P3"),
    ("line", "U2", "P5"),
    ("pos", "p9", "P9"),
]
EDGES = [
    ("ecommerce:e1", "ecommerce:e2", "email", True),
    ("ecommerce:e2", "ecommerce:e3", "phone", True),
    ("ecommerce:e4", "line:U1", "line_link", True),
    ("ecommerce:e1", "oms:o1", "name_postal", False),
    ("oms:o1", "pos:p1", "kana_birth_postal", False),
]
PERFECT_BRIDGE = [(s, i, f"T{p}") for s, i, p in TRUTH]


def _brand(tmp_path: Path, bridge: list[tuple[str, str, str]], edges: list[tuple[str, str, str, bool]]) -> Path:
    """Write truth/source_records.parquet, manifest.json and warehouse.duckdb under tmp_path."""
    truth_dir = tmp_path / "sources" / "truth"
    truth_dir.mkdir(parents=True)
    (tmp_path / "sources" / "manifest.json").write_text(json.dumps({"scale": "XS", "seed": 7, "people": 4}))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (source VARCHAR, source_id VARCHAR, person_id BIGINT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", TRUTH)
    con.execute(f"COPY t TO '{truth_dir / 'source_records.parquet'}' (FORMAT parquet)")
    con.close()

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    for schema in ("marts", "intermediate", "raw"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute("CREATE TABLE marts.bridge_customer_identities (source VARCHAR, source_id VARCHAR, person_id VARCHAR)")
    con.execute(
        "CREATE TABLE intermediate.int_identity_edges "
        "(record_a VARCHAR, record_b VARCHAR, rule VARCHAR, accepted BOOLEAN)"
    )
    con.execute("CREATE TABLE raw.sftp__line_id_links (line_user_id VARCHAR, ec_customer_id BIGINT)")
    if bridge:
        con.executemany("INSERT INTO marts.bridge_customer_identities VALUES (?, ?, ?)", bridge)
    if edges:
        con.executemany("INSERT INTO intermediate.int_identity_edges VALUES (?, ?, ?, ?)", edges)
    con.execute("INSERT INTO raw.sftp__line_id_links VALUES ('U1', 4)")
    con.close()
    return truth_dir


@pytest.fixture
def result(tmp_path: Path) -> dict:
    truth_dir = _brand(tmp_path, BRIDGE, EDGES)
    return evaluate(tmp_path / "warehouse.duckdb", truth_dir)


def test_info_and_counts(result: dict, tmp_path: Path) -> None:
    assert (result["scale"], result["seed"]) == ("XS", 7)
    assert result["warehouse"] == str(tmp_path / "warehouse.duckdb")
    assert result["records"] == {
        "ecommerce": {"truth": 4, "resolvable": 4, "predicted": 4},
        "oms": {"truth": 1, "resolvable": 1, "predicted": 1},
        "pos": {"truth": 1, "resolvable": 1, "predicted": 1},
        "line": {"truth": 2, "resolvable": 1, "predicted": 2},
    }
    assert result["truth_records_missing_from_prediction"] == 1  # pos:p1
    assert result["predicted_records_unknown_to_truth"] == 1  # pos:p9
    assert result["predicted_records_with_several_persons"] == 0
    assert result["persons"] == {"predicted": 5, "true": 4}


def test_all_records(result: dict) -> None:
    m = result["all_records"]
    assert (m["true_pairs"], m["predicted_pairs"], m["true_positive_pairs"]) == (5, 4, 2)
    assert m["precision"] == 0.5
    assert m["recall"] == 0.4
    assert m["f1"] == pytest.approx(4 / 9, abs=1e-12)
    assert (m["records"], m["predicted_persons"], m["true_persons"]) == (8, 5, 4)


def test_resolvable_records_drop_unlinked_line(result: dict) -> None:
    m = result["resolvable_records"]
    assert (m["true_pairs"], m["predicted_pairs"], m["true_positive_pairs"]) == (4, 4, 2)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert (m["records"], m["predicted_persons"], m["true_persons"]) == (7, 4, 4)
    assert "LINE" in m["note"]
    assert result["goal"] == {"f1": 0.995, "precision": 0.999}
    assert result["meets_goal"] is False


def test_rules(result: dict) -> None:
    rules = result["rules"]
    assert sorted(rules) == ["email", "kana_birth_postal", "line_link", "name_postal", "phone"]
    counts = {r: (v["accepted_edges"], v["vetoed_edges"], v["edge_precision"]) for r, v in rules.items()}
    assert counts == {
        "email": (1, 0, 1.0),
        "phone": (1, 0, 0.0),
        "line_link": (1, 0, 1.0),
        "name_postal": (0, 1, None),
        "kana_birth_postal": (0, 1, None),
    }
    assert rules["name_postal"]["vetoed_same_person_edges"] == 1
    assert rules["kana_birth_postal"]["vetoed_same_person_edges"] == 0

    edge = result["edge_clustering"]
    assert (edge["precision"], edge["recall"], edge["predicted_pairs"]) == (0.5, 0.5, 4)
    assert edge["bridge_agrees"] is True

    email, phone, line = rules["email"], rules["phone"], rules["line_link"]
    assert (email["without_rule"]["precision"], email["without_rule"]["recall"]) == (0.5, 0.25)
    assert (email["recall_contribution"], email["precision_change"]) == (0.25, 0.0)
    assert (phone["without_rule"]["precision"], phone["without_rule"]["recall"]) == (1.0, 0.5)
    assert (phone["recall_contribution"], phone["precision_change"]) == (0.0, -0.5)
    assert line["without_rule"]["precision"] == pytest.approx(1 / 3, abs=1e-12)
    assert line["without_rule"]["recall"] == 0.25
    assert line["recall_contribution"] == 0.25
    # A rule with no accepted edge changes nothing.
    assert rules["name_postal"]["without_rule"]["f1"] == 0.5
    assert rules["name_postal"]["recall_contribution"] == 0.0


def test_debugging_aids(result: dict) -> None:
    assert result["over_merged_people"] == [{"person_id": "P1", "size": 3, "true_persons": 2}]
    assert result["split_people"] == 1  # A over P1 and P2
    assert result["split_people_all_records"] == 2  # and D: pos:p1 apart from line:U2


def test_pairwise_metrics_without_pairs() -> None:
    con = duckdb.connect()
    m = pairwise_metrics(con, "SELECT * FROM (VALUES (1, 1), (2, 2)) v(pred, truth)")
    assert (m["precision"], m["recall"], m["f1"], m["true_pairs"]) == (1.0, 1.0, 1.0, 0)


def test_perfect_prediction_meets_goal(tmp_path: Path) -> None:
    truth_dir = _brand(tmp_path, PERFECT_BRIDGE, [])
    r = evaluate(tmp_path / "warehouse.duckdb", truth_dir)
    assert (r["all_records"]["f1"], r["resolvable_records"]["precision"]) == (1.0, 1.0)
    assert r["meets_goal"] is True
    assert r["rules"] == {}
    assert r["edge_clustering"]["bridge_agrees"] is False  # no edges, yet the bridge merged


def test_cli_json_and_check(tmp_path: Path) -> None:
    truth_dir = _brand(tmp_path, BRIDGE, EDGES)
    args = ["eval", "identity", "--warehouse", str(tmp_path / "warehouse.duckdb"), "--truth", str(truth_dir)]
    runner = CliRunner()

    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    assert printed["resolvable_records"]["f1"] == 0.5
    assert printed["meets_goal"] is False

    out = runner.invoke(app, [*args, "--json", "--check"])
    assert out.exit_code == 1
    assert json.loads(out.stdout)["all_records"]["recall"] == 0.4

    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "misses" in out.stdout


def test_cli_check_passes_on_perfect_prediction(tmp_path: Path) -> None:
    truth_dir = _brand(tmp_path, PERFECT_BRIDGE, [])
    out = CliRunner().invoke(
        app,
        ["eval", "identity", "--warehouse", str(tmp_path / "warehouse.duckdb"), "--truth", str(truth_dir), "--check"],
    )
    assert out.exit_code == 0, out.output


def test_cli_missing_models(tmp_path: Path) -> None:
    truth_dir = _brand(tmp_path, BRIDGE, EDGES)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("DROP TABLE marts.bridge_customer_identities")
    con.close()
    out = CliRunner().invoke(
        app, ["eval", "identity", "--warehouse", str(tmp_path / "warehouse.duckdb"), "--truth", str(truth_dir)]
    )
    assert out.exit_code == 2
    assert "marts.bridge_customer_identities" in out.stderr
