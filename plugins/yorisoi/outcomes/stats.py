"""The statistics of a campaign readout: treatment against control, A against B.

What each piece is for (docs/campaign-measurement.md has the figures that back them):

* :func:`two_proportions` (delivery, open, click, conversion rates) and :func:`welch` (revenue per
  recipient): fixed-horizon 95 % intervals from statsmodels (Newcombe's interval, the score test)
  and scipy (Welch's t), for a readout read once at the planned end.
* :func:`cuped`: the same difference with each person's pre-period covariates (spend before the
  send, RFM) regressed out first (Deng, Xu, Kohavi & Walker 2013, several covariates). Unbiased
  because the covariates are measured before assignment; narrower because they explain part of
  the outcome. The variance reduction achieved is returned with the estimate.
* :func:`confidence_sequence`: an always-valid interval, so a planner may look every day and stop
  when it excludes zero without inflating the false-positive rate. Every :class:`Estimate` carries
  one (``seq_low``/``seq_high``) and :func:`verdict` decides on it.
* :func:`sample_ratio_check`: a chi-square test of the group sizes against the assigned split; a
  mismatch blocks the readout (the groups are no longer comparable) and names the likely cause.
* :func:`benjamini_hochberg`: false-discovery control across variants x metrics (statsmodels).
* :func:`verdict`: the sentence a planner reads, in Japanese and English.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

ALPHA = 0.05
SRM_THRESHOLD = 0.001  # the industry's usual bar: a real mismatch, not a 1-in-20 fluke


@dataclass(frozen=True)
class Estimate:
    """Treatment minus control on one metric, with a fixed-horizon and an always-valid interval."""

    metric: str
    method: str
    n_treatment: int
    n_control: int
    mean_treatment: float
    mean_control: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    seq_low: float
    seq_high: float
    alpha: float
    planned_n: int
    variance_reduction: float | None = None  # CUPED only: 1 - var(adjusted) / var(raw)

    @property
    def n(self) -> int:
        return self.n_treatment + self.n_control

    @property
    def relative_lift(self) -> float:
        """diff / control mean (nan when the control mean is zero)."""
        return self.diff / self.mean_control if self.mean_control else math.nan


# --- always-valid intervals -------------------------------------------------------------------


def _mixture_rho2(planned_n: int, alpha: float) -> float:
    """The mixture's precision that makes the boundary tightest at ``planned_n`` units
    (Waudby-Smith et al. 2023, section 2.4)."""
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / planned_n


def sequence_half_width(sigma: float, n: float, planned_n: int, alpha: float = ALPHA) -> float:
    """Half-width of the always-valid interval after ``n`` units with per-unit spread ``sigma``."""
    rho2 = _mixture_rho2(planned_n, alpha)
    return sigma * math.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha))


def confidence_sequence(
    estimate: float, se: float, n: int, planned_n: int, alpha: float = ALPHA
) -> tuple[float, float]:
    """An always-valid (1 - alpha) interval for a difference whose standard error is ``se`` after
    ``n`` units (both groups together); ``planned_n`` (the audience size, fixed before the first
    look) tunes where it is tightest.

    Hand-written because neither scipy nor statsmodels has anytime-valid inference. It is the
    two-sided normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021, eq. 14), which
    is also what inverting Johari et al.'s mixture SPRT (Optimizely's Stats Engine) gives, in the
    asymptotic form of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023) that Eppo uses::

        estimate +- sigma * sqrt(2 (n rho2 + 1) / (n^2 rho2) * log(sqrt(n rho2 + 1) / alpha))

    with sigma = se * sqrt(n). tests/outcomes/test_stats.py checks it against the mixture
    likelihood ratio inverted numerically, and bench/campaign_stats_bench.py measures its
    false-positive rate under daily peeking.
    """
    if n <= 0 or planned_n <= 0:
        raise ValueError(f"n and planned_n must be positive (got n={n}, planned_n={planned_n})")
    if not se > 0:
        return (-math.inf, math.inf)
    half = sequence_half_width(se * math.sqrt(n), n, planned_n, alpha)
    return (estimate - half, estimate + half)


# --- fixed-horizon tests ----------------------------------------------------------------------


def two_proportions(
    x_treatment: int,
    n_treatment: int,
    x_control: int,
    n_control: int,
    *,
    planned_n: int | None = None,
    alpha: float = ALPHA,
    metric: str = "rate",
) -> Estimate:
    """Difference of two rates (statsmodels): Newcombe's hybrid score interval, which keeps its
    coverage at the small counts small brands have, and the score test (Miettinen-Nurminen) for
    the p-value. Not the score interval: statsmodels brackets its root too tightly when the
    lower bound is near zero and fails there."""
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        test_proportions_2indep,
    )

    if n_treatment <= 0 or n_control <= 0:
        raise ValueError(f"{metric}: both groups need at least one person")
    if not (0 <= x_treatment <= n_treatment and 0 <= x_control <= n_control):
        raise ValueError(f"{metric}: successes must lie between 0 and the group size")
    p_t, p_c = x_treatment / n_treatment, x_control / n_control
    # statsmodels also computes ratios, which divide by zero when a group has no successes.
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = confint_proportions_2indep(
            x_treatment, n_treatment, x_control, n_control, method="newcomb", compare="diff", alpha=alpha
        )
        test = test_proportions_2indep(x_treatment, n_treatment, x_control, n_control, method="score", compare="diff")
    se = math.sqrt(p_t * (1 - p_t) / n_treatment + p_c * (1 - p_c) / n_control)
    n = n_treatment + n_control
    planned = planned_n or n
    seq_low, seq_high = confidence_sequence(p_t - p_c, se, n, planned, alpha)
    return Estimate(
        metric=metric,
        method="two-proportion (Newcombe interval, score test)",
        n_treatment=n_treatment,
        n_control=n_control,
        mean_treatment=p_t,
        mean_control=p_c,
        diff=p_t - p_c,
        se=se,
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(test.pvalue) if np.isfinite(test.pvalue) else 1.0,
        seq_low=max(seq_low, -1.0),
        seq_high=min(seq_high, 1.0),
        alpha=alpha,
        planned_n=planned,
    )


def _welch(y_t: np.ndarray, y_c: np.ndarray, planned_n: int | None, alpha: float, metric: str, method: str) -> Estimate:
    if y_t.size < 2 or y_c.size < 2:
        raise ValueError(f"{metric}: Welch's test needs at least two people per group")
    res = sps.ttest_ind(y_t, y_c, equal_var=False)
    ci = res.confidence_interval(1 - alpha)
    diff = float(y_t.mean() - y_c.mean())
    se = math.sqrt(y_t.var(ddof=1) / y_t.size + y_c.var(ddof=1) / y_c.size)
    n = y_t.size + y_c.size
    planned = planned_n or n
    seq_low, seq_high = confidence_sequence(diff, se, n, planned, alpha)
    p = float(res.pvalue)
    return Estimate(
        metric=metric,
        method=method,
        n_treatment=int(y_t.size),
        n_control=int(y_c.size),
        mean_treatment=float(y_t.mean()),
        mean_control=float(y_c.mean()),
        diff=diff,
        se=se,
        ci_low=float(ci.low) if se > 0 else diff,
        ci_high=float(ci.high) if se > 0 else diff,
        p_value=p if np.isfinite(p) else 1.0,
        seq_low=seq_low,
        seq_high=seq_high,
        alpha=alpha,
        planned_n=planned,
    )


def welch_from_moments(
    mean_treatment: float,
    var_treatment: float,
    n_treatment: int,
    mean_control: float,
    var_control: float,
    n_control: int,
    *,
    planned_n: int | None = None,
    alpha: float = ALPHA,
    metric: str = "mean",
) -> Estimate:
    """Welch's difference from each group's mean, variance (ddof 1) and size: what an aggregate
    (campaign_results' sums and sums of squares) gives without reading person rows."""
    if n_treatment < 2 or n_control < 2:
        raise ValueError(f"{metric}: Welch's test needs at least two people per group")
    v_t, v_c = var_treatment / n_treatment, var_control / n_control
    se = math.sqrt(v_t + v_c)
    diff = mean_treatment - mean_control
    n = n_treatment + n_control
    planned = planned_n or n
    if se > 0:
        df = (v_t + v_c) ** 2 / (v_t**2 / (n_treatment - 1) + v_c**2 / (n_control - 1))
        half = float(sps.t.ppf(1 - alpha / 2, df)) * se
        p = float(2 * sps.t.sf(abs(diff) / se, df))
    else:
        half, p = 0.0, 1.0
    seq_low, seq_high = confidence_sequence(diff, se, n, planned, alpha)
    return Estimate(
        metric=metric,
        method="Welch t (from moments)",
        n_treatment=n_treatment,
        n_control=n_control,
        mean_treatment=mean_treatment,
        mean_control=mean_control,
        diff=diff,
        se=se,
        ci_low=diff - half,
        ci_high=diff + half,
        p_value=p,
        seq_low=seq_low,
        seq_high=seq_high,
        alpha=alpha,
        planned_n=planned,
    )


def welch(
    y_treatment: Sequence[float] | np.ndarray,
    y_control: Sequence[float] | np.ndarray,
    *,
    planned_n: int | None = None,
    alpha: float = ALPHA,
    metric: str = "mean",
) -> Estimate:
    """Difference of two means with Welch's t (scipy): unequal variances, as revenue has."""
    y_t = np.asarray(y_treatment, dtype=float)
    y_c = np.asarray(y_control, dtype=float)
    return _welch(y_t, y_c, planned_n, alpha, metric, "Welch t")


def cuped(
    y: Sequence[float] | np.ndarray,
    covariates: np.ndarray,
    treated: Sequence[bool] | np.ndarray,
    *,
    planned_n: int | None = None,
    alpha: float = ALPHA,
    metric: str = "mean",
) -> Estimate:
    """Welch's difference after regressing out pre-period covariates (one column each: spend
    before the send, recency, frequency, ...). theta is fitted on both groups pooled, which keeps
    the estimate unbiased since the covariates predate assignment."""
    y = np.asarray(y, dtype=float)
    x = np.asarray(covariates, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    t = np.asarray(treated, dtype=bool)
    if not (y.shape[0] == x.shape[0] == t.shape[0]):
        raise ValueError(f"{metric}: outcome, covariates and assignment differ in length")
    xc = x - x.mean(axis=0)
    theta, *_ = np.linalg.lstsq(xc, y - y.mean(), rcond=None)
    adjusted = y - xc @ theta
    raw_var = y.var()
    reduction = 1.0 - adjusted.var() / raw_var if raw_var > 0 else 0.0
    est = _welch(adjusted[t], adjusted[~t], planned_n, alpha, metric, "CUPED Welch t")
    return Estimate(**{**est.__dict__, "variance_reduction": float(reduction)})


# --- the sample-ratio check ---------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatio:
    """Group sizes against the assigned split: flagged means the readout must not be trusted."""

    p_value: float
    flagged: bool
    observed: dict[str, int]
    expected: dict[str, float]
    cause_ja: str = ""
    cause_en: str = ""


def sample_ratio_check(
    observed: Mapping[str, int],
    expected_share: Mapping[str, float],
    *,
    control: str = "control",
    threshold: float = SRM_THRESHOLD,
) -> SampleRatio:
    """Chi-square goodness of fit of the group sizes (scipy). When it fails, the group that is
    furthest off names the likely cause (Fabijan et al. 2019, "Diagnosing sample ratio mismatch")."""
    groups = list(expected_share)
    if set(observed) - set(groups):
        raise ValueError(f"groups {sorted(set(observed) - set(groups))} have no expected share")
    counts = np.array([observed.get(g, 0) for g in groups], dtype=float)
    shares = np.array([expected_share[g] for g in groups], dtype=float)
    if (shares <= 0).any():
        raise ValueError("every expected share must be positive")
    total = counts.sum()
    expected = shares / shares.sum() * total
    exp_map = {g: float(e) for g, e in zip(groups, expected, strict=True)}
    obs_map = {g: int(c) for g, c in zip(groups, counts, strict=True)}
    if total == 0 or len(groups) < 2:
        return SampleRatio(1.0, False, obs_map, exp_map)
    p = float(sps.chisquare(counts, expected).pvalue)
    if p >= threshold:
        return SampleRatio(p, False, obs_map, exp_map)
    z = (counts - expected) / np.sqrt(expected)
    worst = groups[int(np.argmax(np.abs(z)))]
    short = counts[groups.index(worst)] < exp_map[worst]
    if short and worst == control:
        ja = (
            "コントロール群が割付より少ない: 割付後にコントロールだけ除外されていないか"
            "(同意・重複の絞り込みを片方の群にだけ適用)"
        )
        en = (
            "control smaller than assigned: people dropped from control after assignment"
            " (a consent or de-duplication filter applied to one group only)"
        )
    elif short:
        ja = f"{worst} 群が割付より少ない: 配信失敗・拒否の行が集計から落ちていないか(配信ではなく割付で数える)"
        en = (
            f"{worst} smaller than assigned: failed or rejected sends dropped from the count"
            " (count by assignment, not by delivery)"
        )
    else:
        ja = f"{worst} 群が割付より多い: 同じ人が2回割り付けられた(再実行で追記)か、割付が固定ハッシュによらない"
        en = (
            f"{worst} larger than assigned: people assigned twice (a rerun appended members)"
            " or assignment not by a stable hash"
        )
    return SampleRatio(p, True, obs_map, exp_map, ja, en)


# --- many comparisons ---------------------------------------------------------------------------


def benjamini_hochberg(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(reject, q-values) over variants x metrics, controlling the false-discovery rate."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    reject, q, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
    return reject, q


# --- the verdict --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """code: blocked | treatment_wins | control_wins | no_difference | not_enough_data."""

    code: str
    ja: str
    en: str
    more_needed: int = 0


def more_needed(est: Estimate, mde: float) -> int:
    """People still to enrol (both groups) before the always-valid interval can conclude, if the
    estimate holds: it concludes when its half-width falls below |diff| (a winner) or below
    mde - |diff| (no difference as large as the minimum detectable effect)."""
    target = max(abs(est.diff), mde - abs(est.diff))
    if not est.se > 0 or target <= 0:
        return 0
    sigma = est.se * math.sqrt(est.n)

    def gap(n: float) -> float:
        return sequence_half_width(sigma, n, est.planned_n, est.alpha) - target

    if gap(est.n) <= 0:
        return 0
    upper = float(est.n)
    while gap(upper) > 0:
        upper *= 2.0
        if upper > 1e12:
            raise ValueError(f"{est.metric}: no sample size reaches a half-width of {target:g}")
    return math.ceil(optimize.brentq(gap, est.n, upper)) - est.n


def verdict(
    est: Estimate,
    *,
    mde: float,
    srm: SampleRatio | None = None,
    treatment: str = "B",
    control: str = "A",
    treatment_en: str | None = None,
    control_en: str | None = None,
) -> Verdict:
    """The plain-language readout, decided on the always-valid interval so that a planner who
    looks every day is told the truth. ``mde`` (minimum detectable effect, in the metric's units)
    is the smallest difference worth acting on: an interval inside +-mde means no difference that
    matters. The labels name the arms in Japanese (``treatment``, ``control``) and, when they
    differ, in English (``treatment_en``, ``control_en``)."""
    t_en, c_en = treatment_en or treatment, control_en or control
    if srm is not None and srm.flagged:
        return Verdict(
            "blocked",
            f"判定保留: サンプル比のずれ (SRM, p={srm.p_value:.1g})。{srm.cause_ja}",
            f"readout blocked: sample ratio mismatch (p={srm.p_value:.1g}). {srm.cause_en}",
        )
    if est.seq_low > 0:
        return Verdict("treatment_wins", f"{treatment} の勝ち", f"{t_en} wins")
    if est.seq_high < 0:
        return Verdict("control_wins", f"{control} の勝ち", f"{c_en} wins")
    if -mde < est.seq_low and est.seq_high < mde:
        return Verdict(
            "no_difference",
            f"差は検出されず (あっても ±{mde:.3g} 未満)",
            f"no difference detected (any difference is within ±{mde:.3g})",
        )
    more = more_needed(est, mde)
    return Verdict(
        "not_enough_data",
        f"データ不足: あと {more:,} 人必要",
        f"not enough data yet: {more:,} more needed",
        more,
    )
