"""Seconds and rows/s of predicted CLV (yorisoi.clv) at 20 k, 200 k and 2 M synthetic customers.

    .venv/bin/python bench/clv_bench.py [--customers 20000 200000 2000000] [--compare]

Customers follow BG/NBD and Gamma-Gamma themselves (numpy, seeded): a first purchase day in a
two-year window, a purchase rate λ ~ Gamma(r, α) and a drop-out probability p ~ Beta(a, b) after
each repeat purchase, a spend rate ν ~ Gamma(q, rate v) and purchases ~ Gamma(p, rate ν) yen
(mean p v / (q - 1) = 10,000). Several
purchases on one day collapse into one purchase day, as in int_customer_purchase_days.

Timed: summarise (purchase days -> RFM), fit (BG/NBD on distinct histories with weights, plus
Gamma-Gamma), and predict (the whole thing, summarise and fit included, as the dbt model runs it).
With --compare, also lifetimes' own summary_data_from_transaction_data (which clv.summarise replaces),
and the BG/NBD fit alone on the distinct histories with weights (as clv.fit does) and on one row per
customer.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from yorisoi import clv

AS_OF = np.datetime64("2026-11-01", "D")
WINDOW_DAYS = 730
# Roughly what the fit finds on the S brand, in days.
TRUE = {"r": 0.5, "alpha": 60.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 5000.0}


def synthetic_purchase_days(n: int, seed: int = 11) -> pd.DataFrame:
    """One row per customer and purchase day (person_id, purchase_date, spend), vectorised."""
    rng = np.random.default_rng(seed)
    first = rng.integers(-WINDOW_DAYS, 0, size=n)  # days before AS_OF
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], size=n)
    p = rng.beta(TRUE["a"], TRUE["b"], size=n)
    nu = rng.gamma(TRUE["q"], 1 / TRUE["v"], size=n)  # a customer's spend rate: Gamma(q, rate v)
    horizon = -first  # days observable after the first purchase
    # Repeat purchases of a Poisson process on (0, horizon], cut at the purchase after which the
    # customer drops out (geometric number of repeat purchases).
    candidates = rng.poisson(lam * horizon)
    alive_for = rng.geometric(p)
    repeats = np.minimum(candidates, alive_for)
    owner = np.repeat(np.arange(n), candidates)
    offsets = rng.random(owner.size) * horizon[owner]
    order = np.lexsort((offsets, owner))
    owner, offsets = owner[order], offsets[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(candidates) - candidates, candidates)
    kept = rank < repeats[owner]
    owner, offsets = owner[kept], offsets[kept]
    who = np.concatenate([np.arange(n), owner])
    day = np.concatenate([first, first[owner] + np.floor(offsets).astype(np.int64)])
    day = np.minimum(day, -1)
    spend = rng.gamma(TRUE["p"], 1 / nu[who])  # one purchase: Gamma(p, rate nu), mean p v / (q - 1) overall
    df = pd.DataFrame({"person_id": who, "purchase_date": AS_OF + day.astype("timedelta64[D]"), "spend": spend.round()})
    df = df.groupby(["person_id", "purchase_date"], as_index=False, sort=False)["spend"].sum()
    df["person_id"] = "P" + df["person_id"].astype(str).str.zfill(8)
    return df


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(n: int, compare: bool) -> dict:
    rows, gen_s = timed(lambda: synthetic_purchase_days(n))
    summary, sum_s = timed(lambda: clv.summarise(rows, AS_OF))
    fitted, fit_s = timed(lambda: clv.fit(summary))
    result, pred_s = timed(lambda: clv.predict(rows, AS_OF))
    out = {
        "customers": len(summary),
        "purchase_days": len(rows),
        "generate_s": gen_s,
        "summarise_s": sum_s,
        "fit_s": fit_s,
        "patterns": fitted.patterns,
        "predict_total_s": pred_s,
        "params": {k: round(v, 4) for k, v in fitted.params.items()},
        "mean_p_alive": float(result["p_alive"].mean()),
    }
    if compare:
        from lifetimes import BetaGeoFitter
        from lifetimes.utils import summary_data_from_transaction_data

        theirs, lt_s = timed(
            lambda: summary_data_from_transaction_data(
                rows, "person_id", "purchase_date", "spend", observation_period_end=AS_OF - 1, freq="D"
            )
        )
        theirs = theirs.sort_index()[["frequency", "recency", "T", "monetary_value"]]
        same = summary.sort_index().index.equals(theirs.index) and np.allclose(
            summary.sort_index().to_numpy(float), theirs.to_numpy(float)
        )
        patterns = summary[["frequency", "recency", "T"]].value_counts(sort=False).reset_index(name="weight")
        _, weighted_s = timed(
            lambda: BetaGeoFitter().fit(
                patterns["frequency"], patterns["recency"], patterns["T"], weights=patterns["weight"]
            )
        )
        _, unweighted_s = timed(lambda: BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"]))
        out.update(
            {
                "lifetimes_summary_s": lt_s,
                "lifetimes_summary_equal": bool(same),
                "bgnbd_weighted_s": weighted_s,
                "bgnbd_unweighted_s": unweighted_s,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--compare", action="store_true", help="also time lifetimes' summary and BG/NBD alone")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    clv.predict(synthetic_purchase_days(2_000), AS_OF)  # warm-up: imports and autograd's first trace
    for n in args.customers:
        r = run(n, args.compare)
        line = (
            f"{r['customers']:>9,} customers {r['purchase_days']:>10,} purchase days | "
            f"summarise {r['summarise_s']:6.2f} s ({r['purchase_days'] / r['summarise_s']:>12,.0f} rows/s) | "
            f"fit {r['fit_s']:6.2f} s ({r['patterns']:,} histories) | "
            f"predict total {r['predict_total_s']:6.2f} s ({r['customers'] / r['predict_total_s']:>10,.0f} customers/s)"
        )
        if args.compare:
            line += (
                f" | lifetimes summary {r['lifetimes_summary_s']:6.2f} s (equal: {r['lifetimes_summary_equal']})"
                f" | BG/NBD alone: weighted {r['bgnbd_weighted_s']:6.2f} s,"
                f" one row per customer {r['bgnbd_unweighted_s']:6.2f} s"
            )
        print(line, flush=True)
        print(f"    params {r['params']}  mean p_alive {r['mean_p_alive']:.3f}", flush=True)


if __name__ == "__main__":
    main()
