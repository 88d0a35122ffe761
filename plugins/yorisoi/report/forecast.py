"""顧客BS: what today's customers alone would buy in each of the next 1-5 years, with no new
customer acquired, from the BG/NBD + Gamma-Gamma fit of marts.customer_clv (yorisoi.clv).

* **Point forecast (expected values).** Purchases of year k are the BG/NBD conditional
  expectation E[X(365k)] - E[X(365(k-1))] of each customer (yorisoi.clv.expected_purchases,
  equation 10 of Fader, Hardie & Lee 2005), revenue the same times Gamma-Gamma's conditional
  expected spend per purchase.
* **Buying customers and 90 % intervals (simulation).** Each customer's future is drawn from the
  fitted model given their history: alive with BG/NBD's P(alive); if alive, a purchase rate
  λ ~ Gamma(r + x, α + T) and a drop-out probability p ~ Beta(a, b + x) (the posterior given
  being alive), Poisson purchases, drop-out after each purchase with probability p, and a spend
  scale ν ~ Gamma(p_gg x + q, v + x m) with each year's spend Gamma(p_gg n, ν). Buyers of year k
  are the customers with at least one purchase in it. The intervals cover the randomness of
  individual customers under the fitted parameters; the parameters' own estimation error and the
  model's fit are not in them, which the report says.

No library simulates BG/NBD this way (lifetimes' generate_new_data draws new customers from the
prior, not today's customers from their posterior), hence the numpy here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .. import clv

DAYS_PER_YEAR = 365


@dataclass
class BalanceForecast:
    """One row per year 1..years: expected purchases and revenue (closed form), expected buyers
    (simulation mean) and the simulations' 5 % and 95 % quantiles."""

    years: pd.DataFrame
    customers: int
    simulations: int


def _params(frame: pd.DataFrame) -> dict[str, float]:
    first = frame.iloc[0]
    return {
        k: float(first[c])
        for k, c in {
            "r": "bgnbd_r",
            "alpha": "bgnbd_alpha",
            "a": "bgnbd_a",
            "b": "bgnbd_b",
            "p": "gg_p",
            "q": "gg_q",
            "v": "gg_v",
        }.items()
    }


def p_alive(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, r: float, alpha: float, a: float, b: float) -> np.ndarray:
    """BG/NBD P(alive | x, t_x, T): 1 without a repeat purchase; in logs to avoid overflow."""
    x = np.asarray(x, dtype=np.float64)
    log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    with np.errstate(over="ignore"):
        alive = 1.0 / (1.0 + np.exp(log_ratio))
    return np.where(x > 0, alive, 1.0)


def expected_spend(x: np.ndarray, m: np.ndarray, p: float, q: float, v: float) -> np.ndarray:
    """Gamma-Gamma's conditional expected spend per purchase (the population mean without repeats)."""
    x = np.asarray(x, dtype=np.float64)
    return p * (v + x * m) / (p * x + q - 1)


def forecast(
    customers: pd.DataFrame,
    *,
    years: int = 5,
    simulations: int = 200,
    seed: int = 0,
    chunk: int = 25,
) -> BalanceForecast:
    """The forecast for the customers of marts.customer_clv (columns of report/sql/balance.sql)."""
    if customers.empty:
        raise ValueError("no customers to forecast")
    prm = _params(customers)
    if not np.isfinite(prm["q"]) or prm["q"] <= 1:
        raise ValueError("Gamma-Gamma was not fitted (q <= 1): no revenue forecast")
    x = customers["frequency"].to_numpy(np.float64)
    t_x = customers["recency_days"].to_numpy(np.float64)
    T = customers["tenure_days"].to_numpy(np.float64)
    m = customers["avg_repeat_order_value"].to_numpy(np.float64)
    bgf = SimpleNamespace(params_={k: prm[k] for k in ("r", "alpha", "a", "b")})

    spend = expected_spend(x, m, prm["p"], prm["q"], prm["v"])
    cumulative = [np.zeros_like(x)] + [
        clv.expected_purchases(bgf, DAYS_PER_YEAR * k, x, t_x, T) for k in range(1, years + 1)
    ]
    purchases = np.array([(cumulative[k] - cumulative[k - 1]).sum() for k in range(1, years + 1)])
    revenue = np.array([((cumulative[k] - cumulative[k - 1]) * spend).sum() for k in range(1, years + 1)])

    sims = _simulate(x, t_x, T, m, prm, years=years, simulations=simulations, seed=seed, chunk=chunk)
    out = pd.DataFrame(
        {
            "year": np.arange(1, years + 1),
            "expected_purchases": purchases,
            "expected_revenue": revenue,
            "expected_buyers": sims["buyers"].mean(axis=0),
            "simulated_revenue_mean": sims["revenue"].mean(axis=0),
            "revenue_low": np.quantile(sims["revenue"], 0.05, axis=0),
            "revenue_high": np.quantile(sims["revenue"], 0.95, axis=0),
            "buyers_low": np.quantile(sims["buyers"], 0.05, axis=0),
            "buyers_high": np.quantile(sims["buyers"], 0.95, axis=0),
            "purchases_low": np.quantile(sims["purchases"], 0.05, axis=0),
            "purchases_high": np.quantile(sims["purchases"], 0.95, axis=0),
        }
    )
    return BalanceForecast(out, customers=len(x), simulations=simulations)


def _simulate(x, t_x, T, m, prm, *, years: int, simulations: int, seed: int, chunk: int) -> dict[str, np.ndarray]:
    """Totals per simulation and year: buyers, purchases, revenue (arrays simulations × years)."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = prm["r"], prm["alpha"], prm["a"], prm["b"]
    alive_p = p_alive(x, t_x, T, r, alpha, a, b)
    out = {k: np.zeros((simulations, years)) for k in ("buyers", "purchases", "revenue")}
    n = len(x)
    done = 0
    while done < simulations:
        s = min(chunk, simulations - done)
        shape = (s, n)
        alive = rng.random(shape) < alive_p
        lam = rng.gamma(r + x, 1.0 / (alpha + T), size=shape)
        drop = rng.beta(a, b + x, size=shape)
        # purchases until drop-out, the last one included (BG/NBD drops out right after a purchase)
        until_drop = rng.geometric(np.clip(drop, 1e-12, 1.0))
        nu = rng.gamma(prm["p"] * x + prm["q"], 1.0 / (prm["v"] + x * m), size=shape)
        arrived = np.zeros(shape, dtype=np.int64)
        made_before = np.zeros(shape, dtype=np.int64)
        for k in range(years):
            arrived += rng.poisson(lam * DAYS_PER_YEAR)
            made = np.where(alive, np.minimum(arrived, until_drop), 0)
            in_year = made - made_before
            made_before = made
            bought = in_year > 0
            spent = np.zeros(shape)
            spent[bought] = rng.gamma(prm["p"] * in_year[bought], 1.0 / nu[bought])
            out["buyers"][done : done + s, k] = bought.sum(axis=1)
            out["purchases"][done : done + s, k] = in_year.sum(axis=1)
            out["revenue"][done : done + s, k] = spent.sum(axis=1)
        done += s
    return out
