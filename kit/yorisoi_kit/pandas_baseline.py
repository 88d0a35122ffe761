"""The segment marts as an analyst would write them in pandas: the baseline the dbt segment layer
must beat (bench suite `segments`).

Given the identity result (`marts.fct_orders`: each order with its person, whether it counts, its
total and points; `intermediate.int_segmented_people`: who is segmented), this computes per person
recency, frequency, monetary, AOV, tenure, VIP reached, 顧客ステータス, the spend deciles of the
last `decile_period_days` and the F-ladder (people with at least n purchases), from the definitions
in dbt_project.yml and models/marts/segments/_segments__docs.md, written again here and not read
from the models. `compare()` checks every answer against the marts, so the timing compares two
programs that agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from yorisoi.transform import local_time_zone, project_vars


def _segment_vars() -> dict:
    return project_vars()["segments"]


@dataclass
class Baseline:
    people: pd.DataFrame  # one row per segmented person: frequency, monetary, recency_days, status ...
    deciles: pd.DataFrame  # person_id, decile, period_spend
    f_ladder: pd.Series  # n -> people with at least n purchases (n = 1..10)
    seconds: float  # read + compute


def compute(warehouse: Path, as_of: str) -> Baseline:
    """Read the two inputs with DuckDB into pandas and compute every answer in pandas."""
    seg = _segment_vars()
    status, vip = seg["status"], seg["vip"]
    started = time.perf_counter()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        orders = con.execute(
            "select person_id, ordered_at, total, points_earned from marts.fct_orders "
            "where is_counted and person_id is not null"
        ).df()
        people = con.execute("select person_id from intermediate.int_segmented_people").df()
    as_of_day = pd.Timestamp(as_of[:10])
    ordered_at = pd.to_datetime(orders["ordered_at"], utc=True).dt.tz_convert(local_time_zone())
    orders["order_date"] = ordered_at.dt.tz_localize(None).dt.normalize()
    orders = orders[(orders["order_date"] < as_of_day) & orders["person_id"].isin(people["person_id"])]

    per_person = orders.groupby("person_id").agg(
        frequency=("total", "size"),
        monetary=("total", "sum"),
        points_earned=("points_earned", "sum"),
        first_order_date=("order_date", "min"),
        last_order_date=("order_date", "max"),
    )
    out = people.set_index("person_id").join(per_person, how="left")
    out["frequency"] = out["frequency"].fillna(0).astype("int64")
    out["monetary"] = out["monetary"].fillna(0).astype("int64")
    out["recency_days"] = (as_of_day - out["last_order_date"]).dt.days
    out["tenure_days"] = (as_of_day - out["first_order_date"]).dt.days
    out["aov"] = np.where(out["frequency"] > 0, out["monetary"] / out["frequency"].clip(lower=1), np.nan)
    # Cumulative spend, orders and points only grow, so a threshold was crossed at some order
    # before the as-of day exactly when the totals reach it.
    reached_vip = (
        (out["monetary"] >= vip["min_spend"])
        | (out["frequency"] >= vip["min_orders"])
        | (out["points_earned"].fillna(0) >= vip["min_points_earned"])
    )
    conditions = [
        out["frequency"] == 0,
        out["recency_days"] > status["churned_after_days"],
        out["recency_days"] > status["dormant_after_days"],
        reached_vip,
        (out["tenure_days"] <= status["new_within_days"]) & (out["frequency"] == 1),
        (out["frequency"] >= status["good_min_orders"]) | (out["monetary"] >= status["good_min_spend"]),
    ]
    choices = ["prospect", "churned", "dormant", "vip", "new", "good"]
    out["status"] = np.select(conditions, choices, default="active")

    period_start = as_of_day - pd.Timedelta(days=seg["decile_period_days"])
    recent = orders[orders["order_date"] >= period_start]
    spend = recent.groupby("person_id")["total"].sum().rename("period_spend").reset_index()
    spend = spend.sort_values(["period_spend", "person_id"], ascending=[False, True], kind="mergesort")
    n = len(spend)
    # ntile(10): the first n % 10 groups hold one more row.
    base, extra = divmod(n, 10)
    sizes = [base + (1 if i < extra else 0) for i in range(10)]
    spend["decile"] = np.repeat(np.arange(1, 11), sizes)

    f_counts = out.loc[out["frequency"] > 0, "frequency"]
    ladder = pd.Series({k: int((f_counts >= k).sum()) for k in range(1, 11)})
    return Baseline(out.reset_index(), spend.reset_index(drop=True), ladder, time.perf_counter() - started)


def compare(baseline: Baseline, warehouse: Path) -> dict[str, int]:
    """Mismatches per answer between the baseline and the marts (all zero when they agree)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        traits = con.execute(
            "select t.person_id, t.frequency, t.monetary, t.recency_days, s.status "
            "from marts.customer_traits t join marts.customer_status s using (person_id)"
        ).df()
        deciles = con.execute("select person_id, decile, period_spend from marts.customer_deciles").df()
        ladder_mart = dict(
            con.execute("select from_f, customers_at_f from marts.f_retention where dimension = 'overall'").fetchall()
        )
    ours = baseline.people.set_index("person_id")
    theirs = traits.set_index("person_id")
    joined = ours.join(theirs, rsuffix="_mart", how="outer")
    recency_differs = ~(
        (joined["recency_days"] == joined["recency_days_mart"])
        | (joined["recency_days"].isna() & joined["recency_days_mart"].isna())
    )
    mart_deciles = deciles.set_index("person_id")
    our_deciles = baseline.deciles.set_index("person_id")
    d = our_deciles.join(mart_deciles, rsuffix="_mart", how="outer")
    ladder_differs = sum(ladder_mart.get(k, 0) != baseline.f_ladder[k] for k in range(1, 11))
    return {
        "people": int(joined["frequency"].isna().sum() + joined["frequency_mart"].isna().sum()),
        "frequency": int((joined["frequency"] != joined["frequency_mart"]).sum()),
        "monetary": int((joined["monetary"] != joined["monetary_mart"]).sum()),
        "recency_days": int(recency_differs.sum()),
        "status": int((joined["status"] != joined["status_mart"]).sum()),
        "decile": int((d["decile"] != d["decile_mart"]).sum()),
        "f_ladder": ladder_differs,
    }
