"""Does the campaign readout tell the truth? Coverage, peeking false positives, CUPED's gain.

    .venv/bin/python bench/campaign_stats_bench.py [--seeds 1000]

Each seed simulates a customer base (numpy, seeded) and a campaign with a planted effect, then
reads it out with yorisoi.outcomes.stats exactly as the readout does:

* Coverage: an A/B email test (CTR 3.0 % vs 3.6 %: B lifts CTR 20 % relative) and a DM holdout
  test (90-day conversion +3 points, so revenue per recipient rises by 0.03 x the mean order
  value). Share of seeds whose 95 % interval holds the true difference: two-proportion (CTR,
  conversion), Welch and CUPED (revenue per recipient).
* Peeking: an A/A trigger campaign (150 people per arm enrol each day, 5 % convert) looked at
  every day for 30 days; a false positive is any day on which the naive 95 % interval (or the
  always-valid one) excludes zero.
* CUPED: the variance of revenue per recipient explained by the pre-period covariates (spend in
  the year before, recency, frequency), and the interval's width against Welch's.

Customers: a purchase rate lambda ~ Gamma(0.6, 1/0.004 per day) (capped), a mean order value
m ~ LogNormal(log 6000, 0.5); the year before the send gives Poisson(365 lambda) orders (spend,
frequency, recency); within 90 days after it a person converts with 1 - exp(-90 lambda) (+ the
effect if treated) and spends m x LogNormal(-0.08, 0.4) (mean m).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from yorisoi.outcomes import stats

AOV_MU, AOV_SIGMA = math.log(6000), 0.5
MEAN_AOV = math.exp(AOV_MU + AOV_SIGMA**2 / 2)
DM_LIFT = 0.03  # 90-day conversion, absolute
CTR_A, CTR_B = 0.030, 0.036


def customers(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    lam = np.minimum(rng.gamma(0.6, 0.004, size=n), 0.02)
    m = rng.lognormal(AOV_MU, AOV_SIGMA, size=n)
    orders = rng.poisson(365 * lam)
    spend = orders * m * rng.lognormal(-0.02, 0.2, size=n)
    # days since the last order in the year before (365 when none): the max of `orders` uniforms
    last = np.where(orders > 0, 365 * (1 - rng.random(n) ** (1 / np.maximum(orders, 1))), 365.0)
    return {"lam": lam, "m": m, "frequency": orders, "spend": spend, "recency": last}


def dm_holdout(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    c = customers(rng, n)
    treated = rng.random(n) < 0.8  # 80 % mailed, 20 % held out
    base = 1 - np.exp(-90 * c["lam"])
    converted = rng.random(n) < base + DM_LIFT * treated
    revenue = converted * c["m"] * rng.lognormal(-0.08, 0.4, size=n)
    covariates = np.column_stack([c["spend"], c["recency"], c["frequency"]])
    return {"treated": treated, "converted": converted, "revenue": revenue, "covariates": covariates}


def coverage_and_cuped(seeds: int) -> dict[str, float]:
    hits = {"ctr": 0, "conversion": 0, "revenue_welch": 0, "revenue_cuped": 0}
    reductions, width_ratio = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        n_ab = 4_000
        ctr = stats.two_proportions(rng.binomial(n_ab, CTR_B), n_ab, rng.binomial(n_ab, CTR_A), n_ab)
        hits["ctr"] += ctr.ci_low <= CTR_B - CTR_A <= ctr.ci_high
        d = dm_holdout(rng, 10_000)
        t = d["treated"]
        # The true conversion difference is exactly DM_LIFT for every person (caps never bind).
        conv = stats.two_proportions(
            int(d["converted"][t].sum()), int(t.sum()), int(d["converted"][~t].sum()), int((~t).sum())
        )
        hits["conversion"] += conv.ci_low <= DM_LIFT <= conv.ci_high
        truth = DM_LIFT * MEAN_AOV
        raw = stats.welch(d["revenue"][t], d["revenue"][~t])
        adj = stats.cuped(d["revenue"], d["covariates"], t)
        hits["revenue_welch"] += raw.ci_low <= truth <= raw.ci_high
        hits["revenue_cuped"] += adj.ci_low <= truth <= adj.ci_high
        reductions.append(adj.variance_reduction)
        width_ratio.append((adj.ci_high - adj.ci_low) / (raw.ci_high - raw.ci_low))
    out = {f"coverage_{k}": v / seeds for k, v in hits.items()}
    out["cuped_variance_reduction"] = float(np.mean(reductions))
    out["cuped_width_ratio"] = float(np.mean(width_ratio))
    return out


def peeking(seeds: int, days: int = 30, per_day: int = 150, rate: float = 0.05) -> dict[str, float]:
    naive = seq = 0
    planned = 2 * days * per_day  # the audience size, known before the first look
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        conv = rng.binomial(per_day, rate, size=(days, 2)).cumsum(axis=0)
        hit_naive = hit_seq = False
        for d in range(days):
            n = (d + 1) * per_day
            est = stats.two_proportions(int(conv[d, 0]), n, int(conv[d, 1]), n, planned_n=planned)
            hit_naive |= not (est.ci_low <= 0 <= est.ci_high)
            hit_seq |= not (est.seq_low <= 0 <= est.seq_high)
        naive += hit_naive
        seq += hit_seq
    return {"peeking_fpr_naive": naive / seeds, "peeking_fpr_sequential": seq / seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    args = ap.parse_args()
    started = time.perf_counter()
    results = {**coverage_and_cuped(args.seeds), **peeking(args.seeds)}
    print(f"seeds: {args.seeds}  ({time.perf_counter() - started:.0f} s)")
    for key, value in results.items():
        print(f"{key:32s} {value:7.3f}")


if __name__ == "__main__":
    main()
