"""Splink as a peer for `yorisoi eval identity --set`: the field's standard probabilistic linker
(Fellegi–Sunter, EM-trained m, randomly sampled u, term-frequency adjustments) on the same records
Yorisoi resolves, with the same information: the staged (normalised) name, kana, birthday,
postal code, address, email and phone of every shop account, OMS customer and store card, and the
LINE ID-link table as an exact shop-account key.

Splink is an optional extra (`pip install yorisoi[peer]`); without it the peer reports
`available: false`. Its clusters are connected components of the pairs above a match
weight, scored with the same pairwise metrics on the same resolvable records, at every
match weight of THRESHOLDS; `best` is the threshold with the highest F1 (chosen on the truth, so it is
Splink's best case, not a deployable setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .identity_eval import LINE_LINKS, components, pairwise_metrics

# Match weights (log2 of the Bayes factor): 0 is a match probability of one half, 10 about 0.999.
THRESHOLDS = (0, 4, 8, 10, 12, 14, 16, 18, 20, 24)
# em: m learned by expectation maximisation, as Splink is deployed; labels: m counted from the
# truth, Splink's upper bound.
MODES = ("em", "labels")

# One row per source record, the same columns for every source, from the staging models.
RECORDS_SQL = """
SELECT 'ecommerce:' || customer_id AS unique_id, full_name, name_kana, NULL::VARCHAR AS birth_date,
       postal_code, city || address AS address, email, phone, customer_id AS ec_account
FROM staging.stg_ecommerce__customers
UNION ALL
SELECT 'oms:' || customer_id, full_name, name_kana, birth_date::VARCHAR, postal_code, address, email, phone, NULL
FROM staging.stg_oms__customers
UNION ALL
SELECT 'pos:' || card_no, NULL, name_kana, birth_date::VARCHAR, postal_code, NULL, email, phone, NULL
FROM staging.stg_pos__members
UNION ALL
SELECT 'line:' || u.line_user_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, max(l.ec_customer_id)
FROM (SELECT line_user_id FROM staging.stg_line__friend_events
      UNION SELECT line_user_id FROM staging.stg_line__id_links) u
LEFT JOIN staging.stg_line__id_links l USING (line_user_id)
GROUP BY u.line_user_id
"""


def splink_available() -> bool:
    try:
        import splink  # noqa: F401
    except ImportError:
        return False
    return True


def _settings() -> Any:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.LevenshteinAtThresholds("full_name", [1]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("name_kana", [1, 2]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("birth_date", [1]),
            cl.LevenshteinAtThresholds("postal_code", [1]).configure(term_frequency_adjustments=True),
            cl.ExactMatch("address").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.ExactMatch("ec_account"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("name_kana"),
            block_on("full_name"),
            block_on("postal_code"),
            block_on("ec_account"),
        ],
        retain_intermediate_calculation_columns=False,
    )


def _predict(con: Any, mode: str) -> Any:
    """Train a model on the table `records` (EM, or m from the truth labels) and score its pairs."""
    import logging

    from splink import Linker, block_on
    from splink.backends.duckdb import DuckDBAPI

    linker = Linker(DuckDBAPI(con).register("records"), _settings(), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("phone", "name_kana"), block_on("ec_account")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    if mode == "labels":
        linker.training.estimate_m_from_label_column("truth")
    else:
        # Each EM pass blocks on a field that marks a person (not a household) and trains the rest.
        for rule in (block_on("birth_date"), block_on("full_name"), block_on("name_kana")):
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
    return linker.inference.predict(threshold_match_weight=min(THRESHOLDS)).as_pyarrow_table()


def splink_peer(warehouse: Path, truth_dir: Path) -> dict[str, Any]:
    """Splink on the staged records of `warehouse`, scored against `truth_dir` (see module doc)."""
    if not splink_available():
        return {"available": False, "note": "splink is not installed (pip install yorisoi[peer])"}
    import logging

    import duckdb
    import numpy as np
    import pyarrow as pa
    import splink

    from yorisoi.privacy.normalize import fold_kana_arrow

    src = duckdb.connect(str(warehouse), read_only=True)
    try:
        records = src.sql(RECORDS_SQL).to_arrow_table()
        linked = src.execute(f"SELECT DISTINCT line_user_id::VARCHAR FROM {LINE_LINKS}").fetchall()  # noqa: S608
    finally:
        src.close()
    records = records.set_column(
        records.schema.get_field_index("name_kana"), "name_kana", fold_kana_arrow(records["name_kana"])
    )
    for name in ("splink", "splink.internals"):
        logging.getLogger(name).setLevel(logging.ERROR)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE truth AS SELECT source || ':' || source_id AS key, person_id AS truth, source, source_id "
        "FROM read_parquet(?)",
        [str(truth_dir / "source_records.parquet")],
    )
    con.register("_records_in", records)
    con.execute(
        "CREATE TABLE records AS SELECT r.*, t.truth FROM _records_in r LEFT JOIN truth t ON t.key = r.unique_id"
    )
    con.unregister("_records_in")
    con.register("_linked", pa.table({"line_user_id": [r[0] for r in linked]}))
    con.execute(
        "CREATE TABLE nodes AS SELECT t.key, t.truth, (row_number() OVER (ORDER BY t.key) - 1)::BIGINT AS id, "
        "NOT (t.source = 'line' AND l.line_user_id IS NULL) AS resolvable "
        "FROM truth t LEFT JOIN _linked l ON t.source = 'line' AND l.line_user_id = t.source_id"
    )
    n = con.execute("SELECT count(*) FROM nodes").fetchall()[0][0]
    out: dict[str, Any] = {"available": True, "engine": f"splink {splink.__version__} (duckdb)"}
    for mode in MODES:
        pairs = _predict(con, mode)
        con.register("_pairs", pairs.select(["unique_id_l", "unique_id_r", "match_weight"]))
        e = con.execute(
            "SELECT a.id AS a, b.id AS b, p.match_weight AS w FROM _pairs p "
            "JOIN nodes a ON a.key = p.unique_id_l JOIN nodes b ON b.key = p.unique_id_r"
        ).fetchnumpy()
        con.unregister("_pairs")
        a, b, w = (np.asarray(e[k]) for k in ("a", "b", "w"))
        by_threshold = {}
        for t in THRESHOLDS:
            keep = w >= t
            labels = pa.table({"id": np.arange(n, dtype=np.int64), "comp": components(n, a[keep], b[keep])})
            con.register("_labels", labels)
            m = pairwise_metrics(
                con, "SELECT l.comp AS pred, n.truth FROM nodes n JOIN _labels l ON l.id = n.id WHERE n.resolvable"
            )
            con.unregister("_labels")
            by_threshold[str(t)] = {
                k: m[k] for k in ("precision", "recall", "f1", "predicted_pairs", "true_positive_pairs")
            }
        best = max(by_threshold, key=lambda k: by_threshold[k]["f1"])
        out[mode] = {
            "scored_pairs": pairs.num_rows,
            "thresholds": by_threshold,
            "best": {"threshold": float(best), **by_threshold[best]},
        }
    con.close()
    out["best"] = max((dict(out[m]["best"], mode=m) for m in MODES), key=lambda b: b["f1"])
    return out
