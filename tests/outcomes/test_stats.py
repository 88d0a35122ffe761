"""The readout's statistics against reference formulas and planted effects (yorisoi.outcomes.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from yorisoi.outcomes import stats


def _mixture_sprt_interval(estimate, se, n, planned_n, alpha):
    """Reference: Johari et al.'s mixture SPRT for a normal estimate, written in information time
    (I = 1/se^2) with a N(0, tau2) mixture over the effect, inverted numerically: the interval is
    every theta0 whose likelihood ratio stays below 1/alpha."""
    info = 1.0 / se**2
    log_term = -2 * math.log(alpha)
    tau2 = (log_term + math.log(log_term + 1)) / planned_n * se**2 * n

    def log_lr(theta0):
        return 0.5 * math.log(1 / (1 + info * tau2)) + tau2 * info**2 * (estimate - theta0) ** 2 / (
            2 * (1 + info * tau2)
        )

    target = math.log(1 / alpha)
    far = 100 * se * math.sqrt(n)
    low = optimize.brentq(lambda t: log_lr(t) - target, estimate - far, estimate)
    high = optimize.brentq(lambda t: log_lr(t) - target, estimate, estimate + far)
    return low, high


@pytest.mark.parametrize(
    ("estimate", "se", "n", "planned_n", "alpha"),
    [(0.01, 0.004, 10_000, 10_000, 0.05), (-3.0, 1.2, 800, 5_000, 0.05), (0.0, 0.02, 50, 50, 0.1)],
)
def test_confidence_sequence_is_the_inverted_mixture_sprt(estimate, se, n, planned_n, alpha):
    low, high = stats.confidence_sequence(estimate, se, n, planned_n, alpha)
    ref_low, ref_high = _mixture_sprt_interval(estimate, se, n, planned_n, alpha)
    assert low == pytest.approx(ref_low, rel=1e-8)
    assert high == pytest.approx(ref_high, rel=1e-8)


def test_confidence_sequence_is_howards_normal_mixture_boundary():
    """Howard et al. (2021) eq. 14 on the sum S_n with intrinsic time V_n = n sigma^2:
    |S_n| <= sqrt((V + r) log((V + r) / (r alpha^2))), r = sigma^2 / rho2."""
    sigma, n, planned_n, alpha = 2.5, 400, 1_000, 0.05
    se = sigma / math.sqrt(n)
    log_term = -2 * math.log(alpha)
    rho2 = (log_term + math.log(log_term + 1)) / planned_n
    v, r = n * sigma**2, sigma**2 / rho2
    bound_on_sum = math.sqrt((v + r) * math.log((v + r) / (r * alpha**2)))
    low, high = stats.confidence_sequence(0.0, se, n, planned_n, alpha)
    assert high == pytest.approx(bound_on_sum / n, rel=1e-10)
    assert low == pytest.approx(-bound_on_sum / n, rel=1e-10)


def test_confidence_sequence_is_wider_than_the_fixed_interval_and_shrinks_with_data():
    widths = [stats.sequence_half_width(1.0, n, planned_n=10_000) * math.sqrt(n) for n in (100, 10_000)]
    assert widths[0] > 1.96 and widths[1] > 1.96  # the price of peeking, in standard errors
    assert stats.sequence_half_width(1.0, 20_000, 10_000) < stats.sequence_half_width(1.0, 10_000, 10_000)


def test_daily_peeking_inflates_the_naive_test_but_not_the_sequential_one():
    """A/A tests looked at every day for 30 days (a fast version of the benchmark)."""
    rng = np.random.default_rng(7)
    sims, days, per_day = 400, 30, 100
    y = rng.normal(size=(sims, days, 2, per_day)).sum(axis=3)  # daily sums per group
    naive = np.zeros(sims, dtype=bool)
    seq = np.zeros(sims, dtype=bool)
    cum = y.cumsum(axis=1)
    for d in range(days):
        n_arm = (d + 1) * per_day
        diff = (cum[:, d, 0] - cum[:, d, 1]) / n_arm
        se = math.sqrt(2 / n_arm)
        naive |= np.abs(diff / se) > 1.96
        half = stats.sequence_half_width(se * math.sqrt(2 * n_arm), 2 * n_arm, 2 * days * per_day)
        seq |= np.abs(diff) > half
    assert naive.mean() > 0.15
    assert seq.mean() <= 0.05


def test_two_proportions_recovers_a_planted_lift_and_its_p_value_is_the_pooled_z_test():
    rng = np.random.default_rng(3)
    n = 20_000
    x_t, x_c = rng.binomial(n, 0.06), rng.binomial(n, 0.05)
    est = stats.two_proportions(x_t, n, x_c, n, metric="ctr")
    assert est.ci_low < 0.01 < est.ci_high
    assert est.ci_low > 0 and est.p_value < 0.05
    assert est.seq_low < est.ci_low and est.seq_high > est.ci_high
    pooled = (x_t + x_c) / (2 * n)
    z = (x_t / n - x_c / n) / math.sqrt(pooled * (1 - pooled) * 2 / n)
    assert est.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-3)


def test_two_proportions_intervals_cover_the_truth():
    rng = np.random.default_rng(11)
    n, p_t, p_c = 2_000, 0.036, 0.03
    covered = [
        (e.ci_low <= p_t - p_c <= e.ci_high)
        for e in (stats.two_proportions(rng.binomial(n, p_t), n, rng.binomial(n, p_c), n) for _ in range(300))
    ]
    assert 0.91 <= np.mean(covered) <= 0.99


def test_welch_matches_the_satterthwaite_formula_by_hand():
    rng = np.random.default_rng(5)
    a, b = rng.exponential(3000, 400), rng.exponential(2500, 250)
    est = stats.welch(a, b, metric="revenue")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert est.ci_low == pytest.approx(diff - half, rel=1e-9)
    assert est.ci_high == pytest.approx(diff + half, rel=1e-9)
    assert est.p_value == pytest.approx(2 * sps.t.sf(abs(diff) / math.sqrt(va + vb), df), rel=1e-9)


def test_cuped_is_unbiased_and_narrower_by_the_variance_it_explains():
    rng = np.random.default_rng(9)
    diffs, widths_raw, widths_cuped, reductions = [], [], [], []
    for _ in range(60):
        n = 2_000
        pre = rng.gamma(2.0, 2_000, size=n)
        recency = rng.integers(0, 365, size=n)
        treated = rng.random(n) < 0.5
        y = 0.6 * pre - 3 * recency + rng.normal(0, 2_000, size=n) + 300 * treated
        raw = stats.welch(y[treated], y[~treated])
        adj = stats.cuped(y, np.column_stack([pre, recency]), treated)
        diffs.append(adj.diff)
        widths_raw.append(raw.ci_high - raw.ci_low)
        widths_cuped.append(adj.ci_high - adj.ci_low)
        reductions.append(adj.variance_reduction)
    assert np.mean(diffs) == pytest.approx(300, abs=60)
    explained = 1 - 2_000**2 / (0.6**2 * 2 * 2_000**2 + 9 * 365**2 / 12 + 2_000**2)
    assert np.mean(reductions) == pytest.approx(explained, abs=0.03)
    assert np.mean(widths_cuped) < np.mean(widths_raw) * math.sqrt(1 - explained) * 1.05


def test_cuped_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        stats.cuped([1.0, 2.0, 3.0], np.ones((2, 1)), [True, False, True])


def test_sample_ratio_check_flags_a_broken_split_and_names_the_cause():
    balanced = stats.sample_ratio_check({"treatment": 5_000, "control": 4_950}, {"treatment": 0.5, "control": 0.5})
    assert not balanced.flagged and balanced.cause_en == ""
    short_control = stats.sample_ratio_check({"treatment": 9_000, "control": 800}, {"treatment": 0.9, "control": 0.1})
    assert short_control.flagged and short_control.p_value < 0.001
    assert "control smaller than assigned" in short_control.cause_en
    assert "コントロール" in short_control.cause_ja
    extra_b = stats.sample_ratio_check({"control": 2_000, "A": 4_000, "B": 4_600}, {"control": 0.2, "A": 0.4, "B": 0.4})
    assert extra_b.flagged and extra_b.cause_en.startswith("B larger than assigned")
    short_t = stats.sample_ratio_check({"treatment": 4_500, "control": 5_000}, {"treatment": 0.5, "control": 0.5})
    assert short_t.flagged and "failed or rejected sends" in short_t.cause_en


def test_sample_ratio_check_rejects_a_group_without_a_share():
    with pytest.raises(ValueError, match="no expected share"):
        stats.sample_ratio_check({"A": 1, "C": 2}, {"A": 0.5, "B": 0.5})


def test_benjamini_hochberg_is_the_step_up_rule():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    reject, q = stats.benjamini_hochberg(p)
    m = len(p)
    order = np.argsort(p)
    ranked = np.array(p)[order] * m / np.arange(1, m + 1)
    expected = np.minimum.accumulate(ranked[::-1])[::-1]
    assert q[order] == pytest.approx(expected)
    assert list(reject) == [True, True, True, True, False]


def test_verdict_says_who_won_no_difference_or_how_many_more_are_needed():
    big = stats.two_proportions(1_200, 20_000, 1_000, 20_000, planned_n=40_000)
    assert stats.verdict(big, mde=0.005).en == "B wins"
    assert stats.verdict(big, mde=0.005).ja == "B の勝ち"
    flat = stats.two_proportions(5_000, 100_000, 5_010, 100_000, planned_n=200_000)
    v = stats.verdict(flat, mde=0.005)
    assert v.code == "no_difference" and v.en.startswith("no difference detected")
    small = stats.two_proportions(22, 400, 20, 400, planned_n=800)
    v = stats.verdict(small, mde=0.01)
    assert v.code == "not_enough_data" and v.more_needed > 0
    assert v.en == f"not enough data yet: {v.more_needed:,} more needed"
    # with that many more people and the same rates and spread, the interval can conclude
    n_after = small.n + v.more_needed
    half = stats.sequence_half_width(small.se * math.sqrt(small.n), n_after, small.planned_n)
    assert half <= max(abs(small.diff), 0.01 - abs(small.diff)) + 1e-12


def test_verdict_is_blocked_by_a_sample_ratio_mismatch():
    est = stats.two_proportions(1_200, 20_000, 1_000, 20_000)
    srm = stats.sample_ratio_check({"treatment": 20_000, "control": 18_000}, {"treatment": 0.5, "control": 0.5})
    v = stats.verdict(est, mde=0.005, srm=srm, treatment="配信", control="コントロール")
    assert v.code == "blocked" and v.en.startswith("readout blocked: sample ratio mismatch")
    assert "判定保留" in v.ja


def test_two_proportions_rejects_impossible_counts():
    with pytest.raises(ValueError, match="between 0 and the group size"):
        stats.two_proportions(11, 10, 1, 10, metric="ctr")
    with pytest.raises(ValueError, match="at least one person"):
        stats.two_proportions(0, 0, 1, 10, metric="ctr")


def test_welch_from_moments_equals_welch_on_the_rows():
    rng = np.random.default_rng(8)
    a, b = rng.exponential(3000, 300), rng.exponential(2000, 200)
    rows = stats.welch(a, b, planned_n=1_000)
    moments = stats.welch_from_moments(
        a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size, planned_n=1_000
    )
    for name in ("diff", "se", "ci_low", "ci_high", "p_value", "seq_low", "seq_high"):
        assert getattr(moments, name) == pytest.approx(getattr(rows, name), rel=1e-9), name
