"""Predicted CLV (yorisoi.clv): the published BG/NBD and Gamma-Gamma fits on the real CDNOW data,
the RFM summary's conventions, and the predictions' behaviour."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from yorisoi import clv

lifetimes = pytest.importorskip("lifetimes")

CDNOW_END = "1997-10-01"  # as_of, exclusive: the 39-week calibration period ends 1997-09-30


def _dataset(name: str):
    # Not lifetimes.datasets: its loaders import pkg_resources, gone from current setuptools.
    return resources.files("lifetimes") / "datasets" / name


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    """CDNOW_sample.txt: master customer id, customer id 1..2357, date, CDs bought, dollar value;
    one row per purchase, 1997-01-01 to 1998-06-30."""
    with _dataset("CDNOW_sample.txt").open() as f:
        df = pd.read_csv(
            f, sep=r"\s+", header=None, names=["master_id", "customer_id", "date", "cds", "value"], dtype={"date": str}
        )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


@pytest.fixture(scope="module")
def cdnow_summary(cdnow_transactions: pd.DataFrame) -> pd.DataFrame:
    return clv.summarise(
        cdnow_transactions, CDNOW_END, unit_days=7, customer_col="customer_id", date_col="date", value_col="value"
    ).sort_index()


@pytest.fixture(scope="module")
def published_summary() -> pd.DataFrame:
    """lifetimes' bundled CDNOW calibration summary with monetary value (x, t_x, T in weeks,
    rounded to 2 decimals; zbar the mean repeat transaction value)."""
    with _dataset("cdnow_customers_summary_with_transactions.csv").open() as f:
        df = pd.read_csv(f)
    df.columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    return df.set_index("customer_id").sort_index()


def test_summary_of_raw_cdnow_is_the_published_summary(cdnow_summary, published_summary) -> None:
    assert len(cdnow_summary) == 2357
    assert cdnow_summary.index.equals(published_summary.index)
    assert (cdnow_summary["frequency"] == published_summary["frequency"]).all()
    for col in ("recency", "T", "monetary_value"):  # the published file is rounded to 2 decimals
        assert np.abs(cdnow_summary[col] - published_summary[col]).max() <= 0.005 + 1e-9, col


def test_summary_equals_lifetimes_own(cdnow_transactions, cdnow_summary) -> None:
    from lifetimes.utils import summary_data_from_transaction_data

    theirs = summary_data_from_transaction_data(
        cdnow_transactions, "customer_id", "date", "value", observation_period_end="1997-09-30", freq="D"
    ).sort_index()
    assert (theirs["frequency"] == cdnow_summary["frequency"]).all()
    np.testing.assert_allclose(theirs["recency"] / 7, cdnow_summary["recency"])
    np.testing.assert_allclose(theirs["T"] / 7, cdnow_summary["T"])
    np.testing.assert_allclose(theirs["monetary_value"], cdnow_summary["monetary_value"])


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow_summary) -> None:
    # Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", table 1.
    fitted = clv.fit(cdnow_summary)
    params = fitted.params
    assert round(params["r"], 3) == 0.243
    assert round(params["alpha"], 3) == 4.414
    assert round(params["a"], 3) == 0.793
    assert round(params["b"], 3) == 2.426
    assert fitted.customers == 2357
    # Fitted on the distinct histories with weights: the same likelihood as one row per customer.
    assert fitted.patterns < fitted.customers
    unweighted = lifetimes.BetaGeoFitter().fit(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    np.testing.assert_allclose(fitted.bgf.params_.to_numpy(), unweighted.params_.to_numpy(), rtol=1e-4)


def test_gamma_gamma_reproduces_the_lifetimes_documentation(published_summary) -> None:
    # lifetimes' README: "<lifetimes.GammaGammaFitter: fitted with 946 subjects, p: 6.25, q: 3.74, v: 15.45>"
    fitted = clv.fit(published_summary)
    assert fitted.returning_customers == 946
    assert round(fitted.params["p"], 2) == 6.25
    assert round(fitted.params["q"], 2) == 3.74
    assert round(fitted.params["v"], 2) == 15.45


def test_discounted_purchases_match_lifetimes_clv(published_summary) -> None:
    fitted = clv.fit(published_summary)
    s = published_summary.head(200)
    theirs = fitted.ggf.customer_lifetime_value(
        fitted.bgf, s["frequency"], s["recency"], s["T"], s["monetary_value"], time=12, discount_rate=0.01, freq="W"
    )
    spend = fitted.ggf.conditional_expected_average_profit(s["frequency"], s["monetary_value"])
    ours = spend * clv.discounted_expected_purchases(
        fitted.bgf, s["frequency"], s["recency"], s["T"], months=12, unit_per_month=4.345, discount_rate=0.01
    )
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-9)


def _purchases(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["person_id", "purchase_date", "spend"])


@pytest.fixture(scope="module")
def synthetic_purchases() -> pd.DataFrame:
    """A seeded BG/NBD population for the fit (purchase rate ~ Gamma(0.5, 1/60 per day), drop-out
    after each repeat purchase ~ Beta(0.8, 2.5)), plus three customers to compare."""
    rng = np.random.default_rng(3)
    base = np.datetime64("2026-11-01")
    rows = []
    for i in range(1000):
        first = int(rng.integers(1, 731))  # days before as_of
        rate, p_drop = rng.gamma(0.5, 1 / 60), rng.beta(0.8, 2.5)
        days, t = [first], 0.0
        while True:
            t += rng.exponential(1 / rate)
            if t >= first:
                break
            days.append(first - int(t))
            if rng.random() < p_drop:
                break
        rows += [(f"P{i:04d}", str(base - d), float(rng.gamma(4.0, 2500.0))) for d in days if d >= 1]
    # Ten purchase days each: every 70 days up to 70 days ago, or every 30 days up to 430 days ago; and once.
    rows += [("recent", str(base - d), 5000.0) for d in range(700, 0, -70)]
    rows += [("lapsed", str(base - d), 5000.0) for d in range(700, 400, -30)]
    rows += [("once", str(base - 300), 5000.0)]
    return _purchases(rows)


@pytest.fixture(scope="module")
def synthetic_prediction(synthetic_purchases: pd.DataFrame) -> pd.DataFrame:
    return clv.predict(synthetic_purchases, "2026-11-01").set_index("person_id")


def test_predict_ranks_recent_frequent_buyers_above_lapsed_ones(synthetic_prediction: pd.DataFrame) -> None:
    recent, lapsed = synthetic_prediction.loc["recent"], synthetic_prediction.loc["lapsed"]
    assert recent["frequency"] == lapsed["frequency"] == 9
    assert recent["p_alive"] > lapsed["p_alive"]
    assert recent["expected_purchases_365d"] > lapsed["expected_purchases_365d"]
    assert recent["predicted_clv_365d"] > lapsed["predicted_clv_365d"]


def test_predict_output_is_consistent(synthetic_prediction: pd.DataFrame) -> None:
    p = synthetic_prediction
    assert p["p_alive"].between(0, 1).all()
    assert (p["expected_purchases_90d"] >= 0).all()
    assert (p["expected_purchases_90d"] <= p["expected_purchases_365d"]).all()
    assert (p["predicted_clv_365d"] >= 0).all()
    assert (p["recency_days"] <= p["tenure_days"]).all()
    assert (p["as_of_date"] == dt.date(2026, 11, 1)).all()
    for col in ("bgnbd_r", "bgnbd_alpha", "bgnbd_a", "bgnbd_b", "gg_p", "gg_q", "gg_v"):
        assert p[col].nunique() == 1 and p[col].iloc[0] > 0, col


def test_predictions_from_parameters_are_lifetimes_own(cdnow_summary) -> None:
    """probability_alive and expected_average_spend, which predict from stored parameters without
    lifetimes, are lifetimes' expressions: the same values."""
    fitted = clv.fit(cdnow_summary)
    s = cdnow_summary
    params = fitted.params
    np.testing.assert_array_equal(
        clv.probability_alive(params, s["frequency"], s["recency"], s["T"]),
        fitted.bgf.conditional_probability_alive(s["frequency"], s["recency"], s["T"]),
    )
    np.testing.assert_array_equal(
        clv.expected_average_spend(params, s["frequency"], s["monetary_value"]),
        fitted.ggf.conditional_expected_average_profit(s["frequency"], s["monetary_value"]),
    )


def test_a_stored_fit_predicts_as_the_fit_itself(synthetic_purchases, synthetic_prediction) -> None:
    """customer_clv predicts from customer_clv_fit's row: for the day it was fitted on, the same
    table as fitting in place; a week later, the same parameters on that day's histories."""
    fit = clv.fit_purchases(synthetic_purchases, "2026-11-01")
    assert len(fit) == 1 and fit["customers"].iloc[0] == len(synthetic_prediction)
    stored = clv.predict(synthetic_purchases, "2026-11-01", fit=fit.iloc[0]).set_index("person_id")
    pd.testing.assert_frame_equal(stored, synthetic_prediction)
    later = clv.predict(synthetic_purchases, "2026-11-08", fit=fit.iloc[0]).set_index("person_id")
    assert (later["fitted_as_of"] == dt.date(2026, 11, 1)).all()
    assert (later["as_of_date"] == dt.date(2026, 11, 8)).all()
    assert (later["bgnbd_r"] == fit["bgnbd_r"].iloc[0]).all()
    assert (later["tenure_days"] == synthetic_prediction["tenure_days"] + 7).all()


def test_usable_fit_is_the_newest_young_enough_under_the_same_setting() -> None:
    fits = pd.DataFrame(
        {
            "fitted_as_of": pd.to_datetime(["2026-10-01", "2026-10-20", "2026-10-25", "2026-11-03"]),
            "penalizer_setting": [0.0, 0.0, 0.001, 0.0],
            "customers": [1000, 1000, 1000, 1000],
        }
    )

    def day(as_of, penalizer=0.0, **kw):
        row = clv.usable_fit(fits, as_of, penalizer, **kw)
        return None if row is None else str(row["fitted_as_of"].date())

    assert day("2026-11-01") == "2026-10-20"  # not the one after as_of, nor another penalizer's
    assert day("2026-11-01", 0.001) == "2026-10-25"
    assert day("2026-10-26", refit_days=7) == "2026-10-20"  # 6 days old
    assert day("2026-10-27", refit_days=7) is None  # 7 days old: refit
    assert day("2026-10-21", refit_days=0) is None  # 0 refits on every build
    assert day("2026-10-21", refit_days=7, customers=1100) == "2026-10-20"
    assert day("2026-10-21", refit_days=7, customers=1101) is None  # more than 10 % more customers
    assert day("2026-09-30") is None
    assert clv.usable_fit(None, "2026-11-01", 0.0) is None


def test_no_purchases_no_fit() -> None:
    fit = clv.fit_purchases(_purchases([("A", "2026-11-05", 100.0)]), "2026-11-01")
    assert len(fit) == 0 and "bgnbd_r" in fit.columns


def test_one_time_buyer_is_alive_by_definition(synthetic_prediction: pd.DataFrame) -> None:
    once = synthetic_prediction.loc["once"]
    assert once["frequency"] == 0 and once["recency_days"] == 0 and once["tenure_days"] == 299
    assert once["avg_repeat_order_value"] == 0
    assert once["p_alive"] == 1.0
    assert once["predicted_clv_365d"] > 0  # the population's mean spend


def test_summarise_counts_a_day_once_and_ignores_as_of_and_later() -> None:
    rows = _purchases(
        [
            ("A", "2026-01-01", 1000.0),
            ("A", "2026-01-01", 500.0),  # same day: one purchase of 1,500
            ("A", "2026-01-11", 3000.0),
            ("A", "2026-01-11", 1000.0),
            ("A", "2026-01-31", 2000.0),
            ("A", "2026-02-01", 9999.0),  # as_of: not observed yet
            ("A", "2026-03-01", 9999.0),
            ("B", "2026-01-31", 800.0),  # first purchase on the last observed day
            ("C", "2026-02-05", 100.0),  # only after as_of: not a customer yet
        ]
    )
    s = clv.summarise(rows, "2026-02-01")
    assert list(s.index) == ["A", "B"]
    a, b = s.loc["A"], s.loc["B"]
    assert a["frequency"] == 2
    assert a["recency"] == 30
    assert a["T"] == 30  # to 2026-01-31, the day before as_of
    assert a["monetary_value"] == (4000 + 2000) / 2
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0, 0, 0)
    weekly = clv.summarise(rows, dt.date(2026, 2, 1), unit_days=7)
    assert weekly.loc["A", "frequency"] == 2 and weekly.loc["A", "T"] == pytest.approx(30 / 7)


def test_summarise_takes_datetimes_and_rejects_missing_ids() -> None:
    rows = _purchases(
        [("A", "2026-01-01 23:59:00", 1.0), ("A", "2026-01-01 00:01:00", 1.0), ("A", "2026-01-02 00:00:00", 1.0)]
    )
    rows["purchase_date"] = pd.to_datetime(rows["purchase_date"])
    assert clv.summarise(rows, "2026-01-03").loc["A", "frequency"] == 1
    rows.loc[0, "person_id"] = None
    with pytest.raises(ValueError, match="missing customer ids"):
        clv.summarise(rows, "2026-01-03")
    with pytest.raises(ValueError, match="as_of is required"):
        clv.summarise(rows, "")


def test_as_of_or_today() -> None:
    assert clv.as_of_or_today("2026-11-01") == dt.date(2026, 11, 1)
    today_tokyo = pd.Timestamp.now(tz="Asia/Tokyo").date()
    assert clv.as_of_or_today("", "Asia/Tokyo") in (today_tokyo, today_tokyo + dt.timedelta(days=1))
    assert clv.as_of_or_today("None", "Asia/Tokyo") in (today_tokyo, today_tokyo + dt.timedelta(days=1))


def _bgf(r: float, alpha: float, a: float, b: float):
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series({"r": r, "alpha": alpha, "a": a, "b": b})
    return bgf


def test_expected_purchases_equal_lifetimes_where_it_is_finite() -> None:
    bgf = _bgf(0.243, 4.414, 0.793, 2.426)  # CDNOW, weeks
    x, rec, T = (v.ravel() for v in np.meshgrid(np.arange(0, 400, 7.0), np.arange(0, 60, 3.0), np.arange(0, 60, 5.0)))
    keep = (rec <= T) & ((x > 0) | (rec == 0))
    x, rec, T = x[keep], rec[keep], T[keep]
    for t in (1, 13, 52, 200):
        with np.errstate(over="ignore"):  # lifetimes: the denominator overflows to inf (expectation 0)
            theirs = bgf.conditional_expected_number_of_purchases_up_to_time(t, x, rec, T)
        assert np.isfinite(theirs).all()
        np.testing.assert_allclose(clv.expected_purchases(bgf, t, x, rec, T), theirs, rtol=1e-9)


def test_expected_purchases_when_a_plus_b_is_below_one() -> None:
    # The S brand's fit: lifetimes' formula takes the log of a negative hypergeometric term (NaN)
    # for one-time buyers. A brand-new customer (x = 0, T = 0) must get the unconditional
    # expectation, equation (9), which lifetimes computes without the log.
    bgf = _bgf(0.152, 5.47, 0.168, 0.579)
    zero = np.zeros(1)
    for t in (90, 365):
        with np.errstate(invalid="ignore"):
            assert np.isnan(bgf.conditional_expected_number_of_purchases_up_to_time(t, zero, zero, zero)).all()
        ours = clv.expected_purchases(bgf, t, zero, zero, zero)
        assert ours[0] == pytest.approx(bgf.expected_number_of_purchases_up_to_time(t), rel=1e-9)
    T = np.arange(0, 730.0)
    short, long_ = (clv.expected_purchases(bgf, t, np.zeros_like(T), np.zeros_like(T), T) for t in (90, 365))
    assert np.isfinite(long_).all() and (short > 0).all() and (short <= long_).all()
    assert (np.diff(long_) <= 1e-12).all()  # the longer a one-time buyer stays silent, the fewer
