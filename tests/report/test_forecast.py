"""顧客BS: the closed-form forecast agrees with marts.customer_clv and with its own simulation,
and behaves as a base with no new customers must."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from yorisoi.report.data import Warehouse
from yorisoi.report.forecast import forecast, p_alive
from yorisoi_kit.scale_run import ScaleRun


@pytest.fixture(scope="module")
def customers(xs: ScaleRun) -> pd.DataFrame:
    with Warehouse(xs.warehouse) as wh:
        return wh.query("balance")


@pytest.fixture(scope="module")
def result(customers: pd.DataFrame):
    return forecast(customers, simulations=200, seed=1)


def test_year_one_is_the_marts_365_day_expectation(xs: ScaleRun, result) -> None:
    """Year 1's expected purchases are Σ customer_clv.expected_purchases_365d (the same BG/NBD
    conditional expectation the mart stores per person)."""
    con = duckdb.connect(str(xs.warehouse), read_only=True)
    expected = con.execute("select sum(expected_purchases_365d) from marts.customer_clv").fetchone()[0]
    assert result.years["expected_purchases"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_the_simulation_reproduces_the_expectations(result) -> None:
    """The simulated customers' mean revenue is the closed-form expectation (within 3 %), and the
    90 % interval contains it: the simulation draws from the fitted model, not something else."""
    y = result.years
    assert np.allclose(y["simulated_revenue_mean"], y["expected_revenue"], rtol=0.03)
    assert ((y["revenue_low"] <= y["expected_revenue"]) & (y["expected_revenue"] <= y["revenue_high"])).all()
    assert ((y["purchases_low"] <= y["expected_purchases"]) & (y["expected_purchases"] <= y["purchases_high"])).all()


def test_without_new_customers_the_base_only_shrinks(result, customers: pd.DataFrame) -> None:
    y = result.years
    assert (np.diff(y["expected_purchases"]) < 0).all()
    assert (np.diff(y["expected_buyers"]) < 0).all()
    assert (y["buyers_high"] <= len(customers)).all()
    assert (y["expected_buyers"] <= y["expected_purchases"]).all()  # a buyer makes at least one purchase


def test_p_alive_is_lifetimes_value() -> None:
    from lifetimes import BetaGeoFitter

    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43})
    x, t_x, T = np.array([0, 1, 4, 10]), np.array([0, 20, 30, 35]), np.array([39, 39, 39, 39])
    ours = p_alive(x, t_x, T, 0.24, 4.41, 0.79, 2.43)
    assert np.allclose(ours, bgf.conditional_probability_alive(x, t_x, T))


def test_a_model_without_gamma_gamma_is_refused(customers: pd.DataFrame) -> None:
    broken = customers.assign(gg_q=0.9)
    with pytest.raises(ValueError, match="Gamma-Gamma"):
        forecast(broken, simulations=5)
