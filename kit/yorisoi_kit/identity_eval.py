"""`yorisoi eval identity`: identity resolution measured against the generator's ground truth.

Pairwise metrics: two records form a *true pair* when the generator says they belong to the same
person, and a *predicted pair* when the warehouse puts them in the same customer. The pair counts
come from the contingency table (records per (predicted person, true person) cell) in SQL, never
by enumerating pairs: TP = Σ C(n_cell, 2), predicted pairs = Σ C(n_pred, 2), true pairs = Σ C(n_true, 2).

The universe is the ground truth's records. A truth record absent from the bridge counts as a
predicted singleton; bridge records unknown to the truth are counted but not scored.

Each match rule is also measured by ablation: the accepted edges of `intermediate.int_identity_edges`
are clustered (connected components) with and without that rule's edges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOAL = {"f1": 0.995, "precision": 0.999}
SOURCES = ("ecommerce", "oms", "pos", "line")
BRIDGE = "marts.bridge_customer_identities"
EDGES = "intermediate.int_identity_edges"
LINE_LINKS = "raw.sftp__line_id_links"
HOUSEHOLDS = "marts.customer_households"
RESOLVABLE_NOTE = (
    "Headline scope. A LINE record whose user id is not in the LINE ID-link table carries no identifier "
    "(only its LINE user id), so no rule can ever match it to the person's other records; its true pairs "
    "are unreachable by any resolver and would only lower recall. resolvable_records drops those LINE records."
)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pairwise_metrics(con: Any, relation: str) -> dict[str, Any]:
    """Pairwise precision / recall / F1 of `relation` (SQL with columns `pred` and `truth`, one row a record).

    By convention precision is 1.0 without predicted pairs and recall is 1.0 without true pairs."""
    tp, pred_pairs, true_pairs, records, pred_persons, true_persons = con.execute(
        f"""
        WITH r AS (SELECT pred, truth FROM ({relation})),
        cells AS (SELECT count(*) AS n FROM r GROUP BY pred, truth),
        preds AS (SELECT count(*) AS n FROM r GROUP BY pred),
        truths AS (SELECT count(*) AS n FROM r GROUP BY truth)
        SELECT
            coalesce((SELECT sum(n * (n - 1) // 2) FROM cells), 0)::BIGINT,
            coalesce((SELECT sum(n * (n - 1) // 2) FROM preds), 0)::BIGINT,
            coalesce((SELECT sum(n * (n - 1) // 2) FROM truths), 0)::BIGINT,
            (SELECT count(*) FROM r),
            (SELECT count(*) FROM preds),
            (SELECT count(*) FROM truths)
        """  # noqa: S608 - relation is built in this module, not user input
    ).fetchall()[0]
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
        "true_positive_pairs": tp,
        "records": records,
        "predicted_persons": pred_persons,
        "true_persons": true_persons,
    }


def components(n_nodes: int, a: Any, b: Any) -> Any:
    """Component label of each of `n_nodes` integer-coded nodes, given edges `a[i]`–`b[i]`."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    return labels


def _manifest(truth_dir: Path) -> dict[str, Any]:
    path = truth_dir.parent / "manifest.json"
    if not path.is_file():
        return {"scale": None, "seed": None, "people": None}
    m = json.loads(path.read_text("utf-8"))
    return {"scale": m.get("scale"), "seed": m.get("seed"), "people": m.get("people")}


def _require(con: Any, tables: tuple[str, ...]) -> None:
    present = {
        f"{s}.{t}" for s, t in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    }
    missing = [t for t in tables if t not in present]
    if missing:
        raise LookupError(f"the warehouse lacks {', '.join(missing)} (build the models first)")


def _rule_report(con: Any, resolvable_scope: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-rule edge counts, edge precision and ablation; plus the clustering of all accepted edges."""
    import numpy as np
    import pyarrow as pa

    con.execute(
        f"""
        CREATE TEMP TABLE _edges AS
        SELECT e.record_a, e.record_b, e.rule, coalesce(e.accepted, false) AS accepted,
               ta.truth AS truth_a, tb.truth AS truth_b
        FROM {EDGES} e
        LEFT JOIN _records ta ON ta.key = e.record_a
        LEFT JOIN _records tb ON tb.key = e.record_b
        """  # noqa: S608 - constant table names
    )
    con.execute(
        """
        CREATE TEMP TABLE _nodes AS
        SELECT key, (row_number() OVER (ORDER BY key) - 1)::BIGINT AS id
        FROM (SELECT key FROM _records UNION SELECT record_a FROM _edges UNION SELECT record_b FROM _edges)
        """
    )
    n_nodes = con.execute("SELECT count(*) FROM _nodes").fetchall()[0][0]
    e = con.execute(
        """
        SELECT na.id AS a, nb.id AS b, e.rule
        FROM _edges e JOIN _nodes na ON na.key = e.record_a JOIN _nodes nb ON nb.key = e.record_b
        WHERE e.accepted
        """
    ).fetchnumpy()
    a, b = np.asarray(e["a"], dtype=np.int64), np.asarray(e["b"], dtype=np.int64)
    edge_rules = np.asarray(e["rule"], dtype=object)

    def cluster(mask: Any) -> dict[str, Any]:
        labels = components(n_nodes, a[mask], b[mask])
        con.register("_labels", pa.table({"id": np.arange(n_nodes, dtype=np.int64), "comp": labels}))
        try:
            return pairwise_metrics(
                con,
                "SELECT l.comp AS pred, r.truth FROM _records r JOIN _nodes n ON n.key = r.key "
                "JOIN _labels l ON l.id = n.id WHERE r.resolvable",
            )
        finally:
            con.unregister("_labels")

    everything = cluster(np.ones(len(a), dtype=bool))
    rows = con.execute(
        """
        SELECT rule,
               count(*) FILTER (WHERE accepted) AS accepted_edges,
               count(*) FILTER (WHERE NOT accepted) AS vetoed_edges,
               count(*) FILTER (WHERE accepted AND truth_a IS NOT NULL AND truth_b IS NOT NULL) AS scored,
               count(*) FILTER (WHERE accepted AND truth_a = truth_b) AS same_person,
               count(*) FILTER (WHERE NOT accepted AND truth_a = truth_b) AS vetoed_same_person,
               count(*) FILTER (WHERE truth_a IS NULL OR truth_b IS NULL) AS unknown_record_edges
        FROM _edges GROUP BY rule ORDER BY rule
        """
    ).fetchall()
    rules: dict[str, Any] = {}
    for rule, accepted, vetoed, scored, same, vetoed_same, unknown in rows:
        without = cluster(edge_rules != rule) if accepted else everything
        rules[str(rule)] = {
            "accepted_edges": accepted,
            "vetoed_edges": vetoed,
            "edge_precision": same / scored if scored else None,
            "same_person_edges": same,
            "vetoed_same_person_edges": vetoed_same,
            "unknown_record_edges": unknown,
            "without_rule": {k: without[k] for k in ("precision", "recall", "f1", "predicted_pairs")},
            "recall_contribution": everything["recall"] - without["recall"],
            "precision_change": everything["precision"] - without["precision"],
            "f1_contribution": everything["f1"] - without["f1"],
        }
    everything["bridge_agrees"] = everything["predicted_pairs"] == resolvable_scope["predicted_pairs"] and (
        everything["true_positive_pairs"] == resolvable_scope["true_positive_pairs"]
    )
    return rules, everything


def evaluate(warehouse: Path, truth_dir: Path) -> dict[str, Any]:
    """Identity resolution of `warehouse` against `truth_dir/source_records.parquet` (see module doc)."""
    import duckdb

    truth_file = truth_dir / "source_records.parquet"
    if not truth_file.is_file():
        raise FileNotFoundError(f"no ground truth at {truth_file} (run `yorisoi synth` first)")
    if not warehouse.is_file():
        raise FileNotFoundError(f"no warehouse at {warehouse}")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        _require(con, (BRIDGE, EDGES, LINE_LINKS))
        # One row per truth record: its key, true person, predicted person (a singleton when the
        # bridge lacks it) and whether it carries an identifier at all.
        con.execute(
            f"""
            CREATE TEMP TABLE _pred AS
            SELECT source::VARCHAR AS source, source_id::VARCHAR AS source_id, min(person_id::VARCHAR) AS person_id,
                   count(DISTINCT person_id) AS persons
            FROM {BRIDGE} GROUP BY ALL
            """  # noqa: S608 - constant table name
        )
        con.execute(
            f"""
            CREATE TEMP TABLE _records AS
            SELECT t.source, t.source_id, t.source || ':' || t.source_id AS key, t.person_id AS truth,
                   coalesce('p:' || p.person_id, 'singleton:' || t.source || ':' || t.source_id) AS pred,
                   p.person_id AS bridge_person_id,
                   NOT (t.source = 'line' AND l.line_user_id IS NULL) AS resolvable
            FROM (SELECT source::VARCHAR AS source, source_id::VARCHAR AS source_id, person_id
                  FROM read_parquet({_sql_str(str(truth_file))})) t
            LEFT JOIN _pred p USING (source, source_id)
            LEFT JOIN (SELECT DISTINCT line_user_id::VARCHAR AS line_user_id FROM {LINE_LINKS}) l
                   ON t.source = 'line' AND l.line_user_id = t.source_id
            """  # noqa: S608 - constant table name and our own file path
        )
        by_source = {
            s: {"truth": truth, "resolvable": resolvable, "predicted": 0}
            for s, truth, resolvable in con.execute(
                "SELECT source, count(*), count(*) FILTER (WHERE resolvable) FROM _records GROUP BY source"
            ).fetchall()
        }
        for s, n in con.execute("SELECT source, count(*) FROM _pred GROUP BY source").fetchall():
            by_source.setdefault(s, {"truth": 0, "resolvable": 0, "predicted": 0})["predicted"] = n
        order = {s: i for i, s in enumerate(SOURCES)}
        by_source = dict(sorted(by_source.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
        missing = con.execute("SELECT count(*) FILTER (WHERE bridge_person_id IS NULL) FROM _records").fetchall()[0][0]
        unknown, ambiguous = con.execute(
            "SELECT count(*) FILTER (WHERE r.key IS NULL), count(*) FILTER (WHERE p.persons > 1) "
            "FROM _pred p LEFT JOIN _records r USING (source, source_id)"
        ).fetchall()[0]
        true_persons, predicted_persons = con.execute(
            f"SELECT (SELECT count(DISTINCT truth) FROM _records), (SELECT count(DISTINCT person_id) FROM {BRIDGE})"  # noqa: S608
        ).fetchall()[0]

        all_records = pairwise_metrics(con, "SELECT pred, truth FROM _records")
        resolvable = pairwise_metrics(con, "SELECT pred, truth FROM _records WHERE resolvable")
        resolvable["note"] = RESOLVABLE_NOTE
        meets_goal = resolvable["f1"] >= GOAL["f1"] and resolvable["precision"] >= GOAL["precision"]

        over_merged = [
            {"person_id": pid, "size": size, "true_persons": n_true}
            for pid, size, n_true in con.execute(
                """
                SELECT bridge_person_id, count(*) AS size, count(DISTINCT truth) AS n_true
                FROM _records WHERE bridge_person_id IS NOT NULL
                GROUP BY bridge_person_id HAVING count(DISTINCT truth) > 1
                ORDER BY size DESC, n_true DESC, bridge_person_id LIMIT 10
                """
            ).fetchall()
        ]
        split, split_all = con.execute(
            """
            SELECT count(*) FILTER (WHERE n_resolvable > 1), count(*) FILTER (WHERE n_all > 1)
            FROM (SELECT truth, count(DISTINCT pred) FILTER (WHERE resolvable) AS n_resolvable,
                         count(DISTINCT pred) AS n_all
                  FROM _records GROUP BY truth)
            """
        ).fetchall()[0]
        rules, edge_clustering = _rule_report(con, resolvable)
        households = _household_report(con, truth_file)
    finally:
        con.close()

    return {
        **_manifest(truth_dir),
        "truth_dir": str(truth_dir),
        "warehouse": str(warehouse),
        "records": by_source,
        "truth_records_missing_from_prediction": missing,
        "predicted_records_unknown_to_truth": unknown,
        "predicted_records_with_several_persons": ambiguous,
        "persons": {"predicted": predicted_persons, "true": true_persons},
        "all_records": all_records,
        "resolvable_records": resolvable,
        "goal": GOAL,
        "meets_goal": meets_goal,
        "edge_clustering": {
            **edge_clustering,
            "note": "connected components of all accepted edges, on resolvable records; the rules' ablations "
            "compare against this. bridge_agrees: the bridge's pairs equal these.",
        },
        "rules": rules,
        "over_merged_people": over_merged,
        "split_people": split,
        "split_people_all_records": split_all,
        **({"households": households} if households else {}),
    }


def _household_report(con: Any, truth_file: Path) -> dict[str, Any] | None:
    """Households (marts.customer_households) against the truth's household_id, when both exist:
    pairwise over the resolvable records, and how many DMs one per household would send."""
    present = {
        f"{s}.{t}" for s, t in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    }
    truth = _sql_str(str(truth_file))
    columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({truth})").fetchall()}  # noqa: S608
    if HOUSEHOLDS not in present or "household_id" not in columns:
        return None
    con.execute(
        f"""
        CREATE TEMP TABLE _households AS
        SELECT r.key, h.household_id AS pred, t.household_id AS truth, h.is_household_contact
        FROM _records r
        JOIN (SELECT source::VARCHAR || ':' || source_id::VARCHAR AS key, household_id
              FROM read_parquet({_sql_str(str(truth_file))})) t USING (key)
        JOIN {HOUSEHOLDS} h ON h.person_id = r.bridge_person_id
        WHERE r.resolvable
        """  # noqa: S608 - constant table name and our own file path
    )
    metrics = pairwise_metrics(con, "SELECT pred, truth FROM _households")
    contacts, true_households = con.execute(
        f"SELECT (SELECT count(*) FROM {HOUSEHOLDS} WHERE is_household_contact), "  # noqa: S608
        "(SELECT count(DISTINCT truth) FROM _households)"
    ).fetchall()[0]
    return {
        **{k: metrics[k] for k in ("precision", "recall", "f1", "predicted_pairs", "true_pairs")},
        "dm_recipients": contacts,
        "true_households": true_households,
        "note": "pairwise over resolvable records: two records in one household; dm_recipients: one per household",
    }


# --- Labelled sets -------------------------------------------------------------------------------
# A labelled set is a folder with the four systems' exports in the brand's layout (ecommerce/,
# oms/oms.sqlite, sftp/inbox/...), truth/source_records.parquet and manifest.json (e.g. the messy
# sets of tests/identity/messy_identities.py). It is ingested by the real extractors, built by dbt
# and scored; Splink, when installed, links the same staged records as a peer.
SET_TABLES = {
    "ecommerce": ["customers"],
    "oms": ["customers"],
    "sftp": ["pos_members", "line_friends", "line_id_links"],
}


def ingest_set(folder: Path, work: Path) -> Any:
    """Ingest the labelled set `folder` into a fresh warehouse under `work`; returns the ScaleRun."""
    import shutil

    from yorisoi.sources.landing import Lake, Warehouse

    from .scale_run import ScaleRun, ingest_back_office, ingest_drop_folder, ingest_shop

    for part in ("ecommerce", "oms", "sftp", "truth"):
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"{folder} is not a labelled set: no {part}/ folder")
    if work.exists():
        shutil.rmtree(work)
    sources = work / "sources"
    # The drop folder is consumed (files move to processed/): ingest a copy, never the set.
    shutil.copytree(folder / "sftp", sources / "sftp")
    if (folder / "manifest.json").is_file():
        shutil.copy(folder / "manifest.json", sources / "manifest.json")
    wh = Warehouse(work / "warehouse.duckdb", Lake(work / "lake"))
    run = ScaleRun("set", work, "customers")
    run.ingest.append(ingest_shop(folder, wh, "set-1", SET_TABLES["ecommerce"]))
    run.ingest.append(ingest_back_office(folder, wh, "set-1", SET_TABLES["oms"]))
    run.ingest.append(ingest_drop_folder(sources, wh, work, "set-1", SET_TABLES["sftp"]))
    return run


def evaluate_set(folder: Path, work: Path, *, peer: bool = True, quiet: bool = True) -> dict[str, Any]:
    """Ingest, build (identity resolution only) and score the labelled set `folder`; with `peer`,
    also Splink on the same staged records (see identity_peer)."""
    import os
    import time

    from .scale_run import build

    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8")) if (folder / "manifest.json").is_file() else {}
    run = ingest_set(folder, work)
    os.environ.setdefault("YORISOI_AS_OF", str(manifest.get("as_of") or "2026-10-31")[:10])
    built = build(run, select="+bridge_customer_identities +customer_households +identity_review_queue", quiet=quiet)
    result = evaluate(run.warehouse, folder / "truth")
    result["set"] = {"folder": str(folder), **{k: manifest.get(k) for k in ("generator", "seed", "people")}}
    result["build_seconds"] = round(built["seconds"], 2)
    if peer:
        from .identity_peer import splink_peer

        t0 = time.perf_counter()
        result["splink"] = splink_peer(run.warehouse, folder / "truth")
        if result["splink"].get("available"):
            result["splink"]["seconds"] = round(time.perf_counter() - t0, 2)
    return result
