"""Inference on paired per-seed deltas: corrected t, verdicts, seeds needed, adaptive rounds.

Pure functions, no I/O. A cell is one (variant, category or macro, metric); its data are the
paired deltas d_1..d_J (variant minus baseline, same seed), in seed order. A family is the
non-baseline variants of one (category, metric): Holm adjusts over it.

Corrected resampled t (Nadeau & Bengio 2003; Bouckaert & Frank 2004). Every seed redraws
the train/test split of one dataset, so the deltas are correlated and the plain paired t
underestimates the variance of their mean. With r = n_test / n_train:

    se = sqrt((1/J + r) s^2),  t = mean / se,  df = J - 1,

two-sided p from t_(J-1), interval mean ± t_(1-a/2, J-1) se. r = 0 (the split does not vary
between seeds) is the plain paired t. Under the Nadeau-Bengio model (deltas equicorrelated
with correlation rho, r = rho / (1 - rho)) this t is exactly t_(J-1) distributed.

The arrays-in, arrays-out core (`corrected_t`, `analyse_family`, `replay_adaptive`) is what
the tables, the engine's rounds and the simulation tests all call, so the error rates the
tests measure are those of the code that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as scipy_stats

from ablate.report.sequential import MAX_SEEDS, SequentialSchedule

PAIRED_T = "paired t"
CORRECTED_T = "corrected resampled t"
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)
DEFAULT_MARGIN = 0.01
DEFAULT_ALPHA = 0.05
TARGET_POWER = 0.8
FUTILITY_CONFIDENCE = float(scipy_stats.norm.cdf(1.0))
"""One-sided confidence (0.841, one sigma) of the favourable reading the futility rule uses."""
# Deltas whose sd is below this share of max(1, max |d|) are "all equal": metrics live in
# [0, 1] and the float noise of a difference of two scores is ~1e-16, while any real
# seed-to-seed spread of a segmentation score is many orders of magnitude above 1e-9.
ZERO_VARIANCE_RTOL = 1e-9
NO_NOISE_ESTIMATE = "the deltas did not vary across seeds: no estimate of noise"
ONE_SEED = "fewer than 2 paired seeds: no estimate of noise"
SPLIT_FALSE = "protocol.vary: {split: false}"
_GOAL = {"difference": "a difference", "equivalence": "equivalence"}
# Gauss-Legendre nodes for the exact equivalence power (integral over the sample sd).
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(128)

CONVENTIONS = (
    "Test: corrected resampled t (Nadeau & Bengio 2003): se = sqrt((1/J + r) s^2) with J "
    "paired seeds, s^2 their sample variance (ddof 1) and r = n_test / n_train (the images "
    "tested over the images trained on, validation excluded); t = mean / se with J - 1 "
    "degrees of freedom for the interval and the two-sided p-value. When the split does not "
    "change between seeds, r = 0: the plain paired t-test (the `test` column says which).",
    "Zero variance: when every seed gives the same delta (sd <= 1e-9 max(1, max |delta|)) "
    "there is no estimate of noise: no interval, no p-value, verdict inconclusive, no "
    "seeds_needed. Never p = 0.",
    "Fewer than 2 paired seeds: no interval, no p-value, verdict inconclusive.",
    "Verdict, with margin m and level alpha: equivalent when the 1 - 2 alpha interval lies "
    "strictly inside (-m, +m) (two one-sided tests, TOST, per cell; touching the margin is "
    "not inside); else better / worse when the Holm-adjusted p < alpha, by the sign of the "
    "mean delta (every shipped metric is higher-is-better); else inconclusive.",
    "Holm family: the non-baseline variants of one (category or macro, metric); a variant "
    "without a p-value (fewer than 2 seeds, zero variance) counts in it as p = 1.",
    "Adaptive seeds: looks at J = min..max paired seeds; look J tests at its own alpha_J, "
    "from the spending function f(t) = (alpha/2) ln(1 + (e - 1) t) for t < 1, f(1) = alpha "
    "(half of alpha kept for the last look), t = I(J) / I(max) with I(J) = 1 / (1/J + r); "
    "the sum over looks is alpha, which bounds the error rate under any dependence between "
    "looks. p_value is the sequential p* = min over the looks taken of p_J alpha / alpha_J; "
    "better / worse take the sign of the mean delta at the look giving p* (decided_at). The "
    "interval is a repeated confidence interval at level 1 - alpha (Jennison & Turnbull "
    "2000): the intersection of the looks' 1 - alpha_J intervals, which all cover at once "
    "with probability >= 1 - alpha whatever decided when to stop; it excludes 0 exactly when "
    "a look rejected (where the looks' intervals do not overlap, the deciding look's stands "
    "in). Equivalence is TOST at alpha_J of the last look. A fixed design is one look with "
    "alpha_J = alpha.",
    "Futility (adaptive seeds with protocol.seeds.futility, the default): from its first look "
    "on, an inconclusive variant gets no further seed when a fixed study of max seeds would "
    "reach 80% power neither for a difference (level alpha / family size) nor for "
    "equivalence, even with the data read one sigma in its favour: the mean delta moved "
    "t_(0.841, J-1) standard errors toward each aim and the sd at its one-sided 84% lower "
    "bound. Non-binding: it only withholds seeds, so the error rates above still hold; its "
    "verdict stays inconclusive with its seeds_needed.",
    "seeds_needed: for an inconclusive cell, the fewest paired seeds J' > J at which a fixed "
    "study with the observed mean delta and variance would decide it with 80% power "
    "(difference at alpha / family size when |mean| >= m, else equivalence); 'never' when "
    "the split-to-split variance floor r s^2 keeps the power below 80% for every J'.",
)

TABLE_COLUMNS = [
    "variant",
    "category",
    "metric",
    "n_seeds",
    "baseline_mean",
    "variant_mean",
    "mean_delta",
    "sd_delta",
    "ci_low",
    "ci_high",
    "ci_level",
    "p_value",
    "p_holm",
    "test",
    "margin",
    "eq_low",
    "eq_high",
    "verdict",
    "decided_at",
    "alpha_look",
    "seeds_needed",
    "reason",
    "seeds_reason",
]
ROUND_COLUMNS = ["variant", "n_seeds", "verdict", "decided", "needs_seed", "futile", "reason"]


def correction_ratio(
    test_fraction: float, val_fraction: float = 0.0, split_varies: bool = True
) -> float:
    """r = n_test / n_train of the corrected test; 0 when the split is the same every seed.

    The model is trained on what is left after the test share and then the validation share
    of the rest: n_train = (1 - test_fraction)(1 - val_fraction), so r = test_fraction /
    ((1 - test_fraction)(1 - val_fraction)).

    Example:
        >>> correction_ratio(0.2)
        0.25
    """
    if not split_varies:
        return 0.0
    if not (0.0 < test_fraction < 1.0 and 0.0 <= val_fraction < 1.0):
        raise ValueError(f"fractions out of range: test {test_fraction}, val {val_fraction}")
    return test_fraction / ((1.0 - test_fraction) * (1.0 - val_fraction))


def test_name(r: float) -> str:
    """The `test` column's label: "paired t" for r = 0, else "corrected resampled t"."""
    return PAIRED_T if r == 0 else CORRECTED_T


@dataclass(frozen=True)
class LookStats:
    """The corrected t statistics of cells at one look; arrays of the cells' shape."""

    n: np.ndarray  # paired seeds (non-NaN values)
    mean: np.ndarray
    sd: np.ndarray  # sample sd, ddof 1; NaN for n < 2
    se: np.ndarray  # sqrt((1/n + r) sd^2); NaN for n < 2 and zero variance
    t: np.ndarray
    p_value: np.ndarray  # two-sided; NaN where se is
    zero_variance: np.ndarray  # bool


def corrected_t(deltas: np.ndarray, r: float) -> LookStats:
    """Corrected resampled t of the deltas along the last axis (NaN values are absent).

    Args:
        deltas: (..., J) paired deltas; NaN marks a seed the cell does not have.
        r: n_test / n_train (0: plain paired t).

    Returns:
        LookStats with the shape of deltas without its last axis.

    Example:
        >>> stats = corrected_t(np.array([0.01, 0.03, 0.05]), r=0.25)
        >>> round(float(stats.p_value), 6)  # 1 - sqrt(27 / 41), see the tests
        0.188497
    """
    deltas = np.asarray(deltas, dtype=float)
    present = ~np.isnan(deltas)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present, deltas, 0.0).sum(axis=-1) / n
        squares = np.where(present, (deltas - mean[..., None]) ** 2, 0.0).sum(axis=-1)
        sd = np.where(n >= 2, np.sqrt(squares / (n - 1)), np.nan)
        scale = np.maximum(1.0, np.max(np.where(present, np.abs(deltas), 0.0), axis=-1))
        zero_variance = (n >= 2) & (sd <= ZERO_VARIANCE_RTOL * scale)
        se = np.where(zero_variance, np.nan, sd * np.sqrt(1.0 / n + r))
        t = mean / se
        p_value = 2.0 * scipy_stats.t.sf(np.abs(t), n - 1)
    return LookStats(n, mean, sd, se, t, p_value, zero_variance)


def holm_last_axis(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (each row a family); NaN stays out.

    Holm's step-down rule, vectorised over rows (families) for tables and simulations.
    """
    p_values = np.asarray(p_values, dtype=float)
    order = np.argsort(p_values, axis=-1, kind="stable")  # NaN sorts last
    ranked = np.take_along_axis(p_values, order, axis=-1)
    family = (~np.isnan(p_values)).sum(axis=-1, keepdims=True)
    multiplier = family - np.arange(p_values.shape[-1])
    scaled = np.where(multiplier > 0, np.minimum(1.0, multiplier * ranked), np.nan)
    adjusted_ranked = np.fmax.accumulate(scaled, axis=-1)
    adjusted_ranked = np.where(np.isnan(ranked), np.nan, adjusted_ranked)
    adjusted = np.empty_like(adjusted_ranked)
    np.put_along_axis(adjusted, order, adjusted_ranked, axis=-1)
    return adjusted


def verdicts(
    mean: np.ndarray,
    eq_low: np.ndarray,
    eq_high: np.ndarray,
    p_holm: np.ndarray,
    margin: float,
    alpha: float,
    sign: np.ndarray | float = 1.0,
) -> np.ndarray:
    """The verdict rule, elementwise.

    equivalent when -margin < eq_low and eq_high < margin (the TOST interval strictly
    inside; touching the margin is not inside); else better / worse when p_holm < alpha, by
    the sign of sign * mean (sign -1 for lower-is-better metrics); else inconclusive. NaN
    anywhere in a test's inputs means that test does not decide.

    Example:
        >>> verdicts(np.array([0.0]), np.array([-0.005]), np.array([0.005]),
        ...          np.array([0.9]), 0.01, 0.05).tolist()
        ['equivalent']
    """
    mean, eq_low, eq_high, p_holm = (
        np.asarray(a, dtype=float) for a in (mean, eq_low, eq_high, p_holm)
    )
    with np.errstate(invalid="ignore"):
        inside = (eq_low > -margin) & (eq_high < margin)
        significant = p_holm < alpha
        oriented = np.asarray(sign) * mean
    return np.select(
        [inside, significant & (oriented > 0), significant & (oriented < 0)],
        [EQUIVALENT, BETTER, WORSE],
        default=INCONCLUSIVE,
    )


@dataclass(frozen=True)
class FamilyAnalysis:
    """Every statistic of the cells of families; arrays of shape (..., V)."""

    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    zero_variance: np.ndarray
    p_value: np.ndarray  # sequential p* (the plain p of the one look in a fixed design)
    p_holm: np.ndarray
    ci_low: np.ndarray  # repeated confidence interval, level 1 - alpha (`_looks`)
    ci_high: np.ndarray
    alpha_look: np.ndarray  # alpha of the last look (alpha in a fixed design)
    eq_low: np.ndarray  # TOST interval at the last look, level 1 - 2 alpha_look
    eq_high: np.ndarray
    decided_at: np.ndarray  # seeds at the look that gave p* (0: none)
    decided_mean: np.ndarray  # mean delta at that look (NaN: none)
    verdict: np.ndarray


def simulate_deltas(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    seeds: int,
    *,
    delta: float | np.ndarray,
    sd: float,
    rho: float,
) -> np.ndarray:
    """Paired deltas from the Nadeau-Bengio model, for simulations of the error rates.

    d = delta + e, e ~ N(0, sd^2 ((1 - rho) I + rho 11^T)) over the seeds of one cell:
    every seed's delta has sd `sd`, any two seeds' deltas correlation rho (the overlap of
    their splits). The corrected t with r = rho / (1 - rho) is exact under this model.

    Returns:
        Array of shape (*shape, seeds); `delta` broadcasts against `shape`.
    """
    own = rng.standard_normal((*shape, seeds))
    shared = rng.standard_normal((*shape, 1))
    noise = sd * (np.sqrt(1.0 - rho) * own + np.sqrt(rho) * shared)
    return np.asarray(delta, dtype=float)[..., None] + noise


def _look_alpha(
    seeds: np.ndarray, schedule: SequentialSchedule | None, r: float, alpha: float
) -> np.ndarray:
    """alpha of a look at `seeds` paired seeds (alpha itself in a fixed design)."""
    if schedule is None:
        return np.full(np.shape(seeds), alpha, dtype=float)
    return schedule.alpha_at(seeds, r, alpha)


@dataclass(frozen=True)
class _Looks:
    """What the looks a cell took say together (arrays of the cells' shape)."""

    p_star: np.ndarray  # min over looks of p_J alpha / alpha_J, capped at 1; NaN: no test
    at: np.ndarray  # seeds at the look giving p* (0: none)
    mean_at: np.ndarray  # mean delta at that look
    ci_low: np.ndarray  # repeated confidence interval at level 1 - alpha
    ci_high: np.ndarray


def _looks(
    x: np.ndarray, n: np.ndarray, r: float, alpha: float, schedule: SequentialSchedule | None
) -> _Looks:
    """p*, the look giving it and the repeated confidence interval, over the looks each cell
    took: prefixes of its seeds.

    A fixed design takes one look, at n. A schedule's cells took min_seeds..n (or n alone
    when failed runs left fewer than min_seeds). Look J's interval has level 1 - alpha_J; by
    the union bound all of them cover the true delta at once with probability >= 1 - alpha,
    whatever rule chose when to stop (Jennison & Turnbull 2000, ch. 9, repeated confidence
    intervals), so their intersection does too. The intersection excludes 0 exactly when
    some look rejected (p* < alpha before Holm), on that look's side: the interval and the
    verdict cannot disagree. Where the looks' intervals do not overlap (the data changed
    between rounds; probability <= alpha), the interval of the look giving p* stands in.
    """
    first = n if schedule is None else schedule.first_look(n)
    best = np.full(n.shape, np.inf)
    at = np.zeros(n.shape, dtype=int)
    mean_at, at_low, at_high = (np.full(n.shape, np.nan) for _ in range(3))
    low, high = np.full(n.shape, -np.inf), np.full(n.shape, np.inf)
    testable = n >= 2
    seed_counts = (
        range(max(2, int(first[testable].min())), int(n.max()) + 1) if testable.any() else []
    )
    for seeds in seed_counts:
        taken = testable & (first <= seeds) & (seeds <= n)
        if not taken.any():
            continue
        look = corrected_t(x[..., :seeds], r)
        alpha_j = _look_alpha(np.asarray(seeds), schedule, r, alpha)
        half = scipy_stats.t.isf(alpha_j / 2, seeds - 1) * look.se
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = look.p_value * alpha / alpha_j
        has_interval = taken & np.isfinite(half)
        low = np.where(has_interval, np.fmax(low, look.mean - half), low)
        high = np.where(has_interval, np.fmin(high, look.mean + half), high)
        improves = taken & (scaled < best)  # NaN (zero variance) never improves
        best = np.where(improves, scaled, best)
        at = np.where(improves, seeds, at)
        mean_at = np.where(improves, look.mean, mean_at)
        at_low = np.where(improves, look.mean - half, at_low)
        at_high = np.where(improves, look.mean + half, at_high)
    no_interval = ~np.isfinite(low) | ~np.isfinite(high)
    disjoint = ~no_interval & (low > high)
    return _Looks(
        p_star=np.where(np.isinf(best), np.nan, np.minimum(best, 1.0)),
        at=at,
        mean_at=mean_at,
        ci_low=np.where(no_interval, np.nan, np.where(disjoint, at_low, low)),
        ci_high=np.where(no_interval, np.nan, np.where(disjoint, at_high, high)),
    )


def analyse_family(
    x: np.ndarray,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    schedule: SequentialSchedule | None = None,
    sign: np.ndarray | float = 1.0,
) -> FamilyAnalysis:
    """Corrected statistics, Holm and verdicts of families of cells.

    Args:
        x: (..., V, L) paired deltas in seed order; axis -2 is the Holm family (V variants),
            the last axis the seeds, NaN after a cell's last seed.
        r: n_test / n_train (0: the split is fixed).
        margin: the smallest change that matters (> 0).
        alpha: the level of every test.
        schedule: the adaptive design's looks, or None for a fixed design.
        sign: +1 where higher is better, -1 where lower is; broadcast against (..., V).

    Returns:
        FamilyAnalysis, arrays of shape (..., V). Every cell of the family (even one with no
        test: fewer than 2 seeds, zero variance, no seed at all) enters Holm, as p = 1 when
        it has no p.
    """
    x = np.asarray(x, dtype=float)
    last = corrected_t(x, r)
    looks = _looks(x, last.n, r, alpha, schedule)
    # every variant of the family counts, tested or not (p = 1), so the family's size never
    # depends on which runs failed and a decided variant stays decided in later rounds
    p_star = looks.p_star
    p_holm = np.where(np.isnan(p_star), np.nan, holm_last_axis(np.nan_to_num(p_star, nan=1.0)))
    alpha_look = _look_alpha(np.maximum(last.n, 2), schedule, r, alpha)
    df = np.maximum(last.n - 1, 1)
    eq_half = scipy_stats.t.isf(alpha_look, df) * last.se
    eq_low, eq_high = last.mean - eq_half, last.mean + eq_half
    # the direction is the one of the look that decided: a later look's mean may have moved
    verdict = verdicts(looks.mean_at, eq_low, eq_high, p_holm, margin, alpha, sign)
    decided = np.isin(verdict, [BETTER, WORSE])
    return FamilyAnalysis(
        n=last.n,
        mean=last.mean,
        sd=last.sd,
        zero_variance=last.zero_variance,
        p_value=p_star,
        p_holm=p_holm,
        ci_low=looks.ci_low,
        ci_high=looks.ci_high,
        alpha_look=alpha_look,
        eq_low=eq_low,
        eq_high=eq_high,
        decided_at=np.where(decided, looks.at, 0),
        decided_mean=np.where(decided, looks.mean_at, np.nan),
        verdict=verdict,
    )


def has_noise_estimate(mean: np.ndarray, sd: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Cells whose deltas estimate their noise: 2+ paired seeds, finite mean and sd, and an sd
    above the zero-variance floor (what `seeds_needed` and the futility rule need)."""
    mean, sd, n = (np.asarray(a) for a in (mean, sd, n))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(mean) & np.isfinite(sd)
        return (n >= 2) & finite & (sd > ZERO_VARIANCE_RTOL * np.maximum(1.0, np.abs(mean)))


def favourable_reading(
    mean: np.ndarray, sd: np.ndarray, n: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data read one sigma in favour of a decision: (far, near, sd_low).

    With nu = n - 1, se = sd sqrt(1/n + r) and gamma = Phi(1) = 0.841 (one-sided one-sigma
    confidence): far = |mean| + t_(gamma, nu) se (the end of the mean's interval that makes
    a difference easiest to show), near = max(|mean| - t_(gamma, nu) se, 0) (the end that
    makes equivalence easiest), sd_low = sd sqrt(nu / chi2_(gamma, nu)) (the sd's lower
    one-sigma bound: less noise makes both easier).
    """
    mean, sd, n = (np.asarray(a, dtype=float) for a in (mean, sd, n))
    nu = n - 1
    shift = scipy_stats.t.ppf(FUTILITY_CONFIDENCE, nu) * sd * np.sqrt(1.0 / n + r)
    sd_low = sd * np.sqrt(nu / scipy_stats.chi2.ppf(FUTILITY_CONFIDENCE, nu))
    return np.abs(mean) + shift, np.maximum(np.abs(mean) - shift, 0.0), sd_low


def futile(
    analysis: FamilyAnalysis,
    schedule: SequentialSchedule,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    power: float = TARGET_POWER,
) -> np.ndarray:
    """The futility rule: inconclusive cells at a look that no number of paired seeds up to
    max_seeds would decide with `power`, even with the data read in their favour.

    A cell is judged from its first look on (n >= min_seeds) while n < max_seeds, when its
    deltas estimate their noise. With (far, near, sd_low) = `favourable_reading`, J' =
    max_seeds and k the family size (the length of the last axis), it is futile when both

        significance_power(far, sd_low, J', r, alpha / k) < power   (no difference) and
        equivalence_power(near, sd_low, J', r, margin, alpha) < power   (no equivalence).

    Why not the observed mean and sd themselves (`seeds_needed` > max_seeds): at the first
    look they rest on min - 1 degrees of freedom (2 at min 3), and an sd drawn high or a
    mean drawn low stops true effects: simulated at 3 margins (seed sd 0.015, r 0.25, min 3,
    max 10) the power fell from 85% to 55%, and equivalence at a true 0 with the split
    fixed from 89% to 36%. Read one sigma in favour and judged on both aims, the power to
    find a difference is unchanged (0 to 10 margins) and equivalence loses 2-4 points
    (benchmarks/calibration.py, tests/report/test_sequential.py).

    Returns:
        bool array of the cells' shape.
    """
    n = analysis.n
    judged = (
        (analysis.verdict == INCONCLUSIVE)
        & (n >= schedule.min_seeds)
        & (n < schedule.max_seeds)
        & ~analysis.zero_variance
        & has_noise_estimate(analysis.mean, analysis.sd, n)
    )
    stop = np.zeros(n.shape, dtype=bool)
    if judged.any():
        far, near, sd_low = favourable_reading(
            analysis.mean[judged], analysis.sd[judged], n[judged], r
        )
        seeds = schedule.max_seeds
        difference = significance_power(far, sd_low, seeds, r, alpha / n.shape[-1])
        equivalence = equivalence_power(near, sd_low, seeds, r, margin, alpha)
        stop[judged] = (difference < power) & (equivalence < power)
    return stop


def needs_another_seed(
    analysis: FamilyAnalysis,
    seeds_run: np.ndarray,
    schedule: SequentialSchedule,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    power: float = TARGET_POWER,
) -> tuple[np.ndarray, np.ndarray]:
    """The adaptive rule, after a round: which variants get another seed.

    A variant gets another seed while it is inconclusive, or has not reached its first look
    (fewer than min_seeds paired seeds), and has run fewer than max_seeds seeds; with
    schedule.futility, not when it is `futile` (no J' up to max_seeds would decide it).
    Futility is non-binding: it only withholds seeds, so the error rates of the looks stay
    bounded as without it (the sequential p-value and TOST at alpha_J hold whatever stops).

    Returns:
        (more, stopped_for_futility): bool arrays of the cells' shape; a futile variant is
        in the second and not in the first.
    """
    undecided = (analysis.verdict == INCONCLUSIVE) | (analysis.n < schedule.min_seeds)
    more = undecided & (np.asarray(seeds_run) < schedule.max_seeds)
    stopped = np.zeros(more.shape, dtype=bool)
    if schedule.futility:
        stopped = more & futile(analysis, schedule, r=r, margin=margin, alpha=alpha, power=power)
    return more & ~stopped, stopped


def replay_adaptive(
    x: np.ndarray,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    schedule: SequentialSchedule,
    sign: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, FamilyAnalysis]:
    """What the adaptive rule would have run, given every seed's delta in advance.

    Starts every cell at min_seeds and adds one seed per round to the cells
    `needs_another_seed` picks (futility included when schedule.futility), re-analysing
    each family after every round, exactly as the engine does between rounds (no failed runs
    here: every seed pairs).

    Args:
        x: (..., V, L) deltas in seed order, L >= max_seeds, no NaN in the first max_seeds.

    Returns:
        (seeds used per cell, the FamilyAnalysis at the end), shapes (..., V).
    """
    x = np.asarray(x, dtype=float)[..., : schedule.max_seeds]
    if x.shape[-1] < schedule.max_seeds or np.isnan(x).any():
        raise ValueError(f"need {schedule.max_seeds} deltas per cell, without NaN")
    used = np.full(x.shape[:-1], schedule.min_seeds)
    position = np.arange(x.shape[-1])
    while True:
        shown = np.where(position < used[..., None], x, np.nan)
        analysis = analyse_family(
            shown, r=r, margin=margin, alpha=alpha, schedule=schedule, sign=sign
        )
        more, _ = needs_another_seed(analysis, used, schedule, r=r, margin=margin, alpha=alpha)
        if not more.any():
            return used, analysis
        used = used + more


def significance_power(
    effect: float, sd: float, seeds: np.ndarray, r: float, level: float
) -> np.ndarray:
    """Exact power of the two-sided corrected t at `level` to find `effect` (its own sign).

    effect, sd and seeds broadcast (one cell at many J, or many cells at one J). With
    se(J) = sd sqrt(1/J + r), T = mean / se_hat follows a noncentral t with J - 1 degrees of
    freedom and noncentrality |effect| / se(J): power = P(T > t_(1-level/2, J-1)).
    """
    seeds = np.asarray(seeds, dtype=float)
    noncentrality = np.abs(effect) / (np.asarray(sd) * np.sqrt(1.0 / seeds + r))
    critical = scipy_stats.t.isf(level / 2, seeds - 1)
    return scipy_stats.nct.sf(critical, seeds - 1, noncentrality)


def equivalence_power(
    effect: float, sd: float, seeds: np.ndarray, r: float, margin: float, alpha: float
) -> np.ndarray:
    """Exact power of TOST at `alpha` (corrected t) to show |delta| < margin, true delta `effect`.

    TOST rejects when -m + c se_hat < mean < m - c se_hat, c = t_(1-alpha, J-1). The mean is
    N(effect, se^2), se = sd sqrt(1/J + r), and independently se_hat = se V / sqrt(nu) with
    V ~ chi_nu, nu = J - 1, so

        power = E_V [Phi((m - effect - c se V/sqrt nu) / se)
                     - Phi((-m - effect + c se V/sqrt nu) / se)]^+,

    the integral Owen's Q computes, here by 128-point Gauss-Legendre over V (between its
    1e-12 quantiles, stopping where the bracket reaches 0). effect, sd and seeds broadcast;
    the result has their shape (at least 1-D).
    """
    effect, sd, seeds = np.broadcast_arrays(
        np.asarray(effect, dtype=float), np.asarray(sd, dtype=float), np.asarray(seeds, float)
    )
    shape = np.atleast_1d(seeds).shape
    effect, sd, seeds = (np.ravel(a) for a in (effect, sd, seeds))
    nu = seeds - 1
    se = sd * np.sqrt(1.0 / seeds + r)
    # scipy.special rather than scipy.stats: the same functions without the per-call
    # argument checks, which dominate when seeds_needed scans up to 1,000 J' per cell
    critical = special.stdtrit(nu, 1.0 - alpha)
    lower = np.sqrt(2.0 * special.gammaincinv(nu / 2, 1e-12))
    upper = np.sqrt(2.0 * special.gammainccinv(nu / 2, 1e-12))
    upper = np.minimum(upper, margin * np.sqrt(nu) / (critical * se))
    width = np.maximum(upper - lower, 0.0)
    v = lower[:, None] + (_NODES[None, :] + 1.0) / 2.0 * width[:, None]  # (J, nodes)
    half = (critical / np.sqrt(nu))[:, None] * v  # c V / sqrt(nu): se_hat in units of se
    bracket = special.ndtr((margin - effect[:, None]) / se[:, None] - half) - special.ndtr(
        (-margin - effect[:, None]) / se[:, None] + half
    )
    k = nu[:, None]
    with np.errstate(divide="ignore"):
        log_density = (k - 1) * np.log(v) - v * v / 2 - (k / 2 - 1) * np.log(2.0)
    density = np.exp(log_density - special.gammaln(k / 2))  # chi_nu density
    integral = (np.maximum(bracket, 0.0) * density * _WEIGHTS[None, :]).sum(axis=1) * width / 2
    return np.clip(integral, 0.0, 1.0).reshape(shape)


def _power_limit(
    effect: float, sd: float, r: float, margin: float, level: float, aim: str
) -> float:
    """Power as J' -> infinity: the mean stays N(effect, r sd^2), se_hat -> sqrt(r) sd."""
    if r == 0:
        return 1.0
    floor = np.sqrt(r) * sd
    if aim == "difference":
        return float(scipy_stats.norm.sf(scipy_stats.norm.isf(level / 2) - abs(effect) / floor))
    half = scipy_stats.norm.isf(level) * floor
    if half >= margin:
        return 0.0
    return float(
        scipy_stats.norm.cdf((margin - half - abs(effect)) / floor)
        - scipy_stats.norm.cdf((-margin + half - abs(effect)) / floor)
    )


def _first_reaching(
    power_at: Callable[[int], float], low: int, high: int, target: float
) -> int | None:
    """The smallest J in [low, high] with power_at(J) >= target, by bisection; None if none.

    Bisection needs the power to grow with J where it matters. It does: the difference
    test's power grows with J' (larger noncentrality, smaller critical value); TOST's
    dips only where it is below 7% (small-df effects; checked over a grid of sd 0.0005..0.2,
    effects 0..margin, r 0..1 and every J' 3..1,000 in tests/report/test_inference.py),
    far from the 80% sought.
    """
    if low > high or power_at(high) < target:
        return None
    while low < high:
        middle = (low + high) // 2
        if power_at(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass(frozen=True)
class SeedsNeeded:
    """seeds: paired seeds that would decide the cell with the target power; None when no
    number would (or none up to the cap, or no noise estimate). aim: "difference",
    "equivalence" or "" (no estimate). reason: one line for the report."""

    seeds: int | None
    aim: str
    reason: str


def seeds_needed(
    mean: float,
    sd: float,
    n_seeds: int,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    family_size: int = 1,
    power: float = TARGET_POWER,
    cap: int = MAX_SEEDS,
) -> SeedsNeeded:
    """The fewest paired seeds J' > n_seeds deciding the cell with `power`, for a fixed study.

    The observed mean delta and sd are taken as the truth, se(J') = sd sqrt(1/J' + r):

    - |mean| >= margin: aim at the difference test, two-sided at the Bonferroni level
      alpha / family_size (Holm's first step: an upper bound on the seeds Holm needs);
      power(J') = P(T' > t_(1 - alpha/(2 family_size), J'-1)), T' noncentral t with J' - 1
      degrees of freedom and noncentrality |mean| / se(J') (`significance_power`).
    - |mean| < margin: aim at equivalence, TOST at alpha (`equivalence_power`).

    The corrected variance never falls below r sd^2, so the power has a limit below 1 when
    r > 0; where that limit is under `power` no J' can decide ("never": a question about
    one fixed split, protocol.vary: {split: false}, has r = 0 and no floor).

    Example:
        >>> seeds_needed(0.02, 0.01, 3, r=0.0).seeds
        5
    """
    if n_seeds < 2 or not (np.isfinite(mean) and np.isfinite(sd)):
        return SeedsNeeded(None, "", ONE_SEED)
    if not has_noise_estimate(mean, sd, n_seeds):
        return SeedsNeeded(None, "", NO_NOISE_ESTIMATE)
    aim = "difference" if abs(mean) >= margin else "equivalence"
    level = alpha / max(family_size, 1) if aim == "difference" else alpha

    def power_at(seeds: int) -> float:
        if aim == "difference":
            return float(significance_power(mean, sd, np.array([seeds]), r, level)[0])
        return float(equivalence_power(mean, sd, np.array([seeds]), r, margin, alpha)[0])

    seeds = _first_reaching(power_at, n_seeds + 1, cap, power)
    if seeds is not None:
        return SeedsNeeded(
            seeds, aim, f"{seeds} paired seeds would show {_GOAL[aim]} with {power:.0%} power"
        )
    limit = _power_limit(mean, sd, r, margin, level, aim)
    goal = _GOAL[aim]
    if limit < power:
        return SeedsNeeded(
            None,
            aim,
            f"never: with the split redrawn every seed, the variance of the mean delta cannot "
            f"fall below r·s² = {r * sd**2:.3g} however many seeds run (the dataset's size "
            f"sets it), which caps the power to show {goal} at {limit:.0%}; for a question "
            f"about one fixed split, use {SPLIT_FALSE}",
        )
    return SeedsNeeded(None, aim, f"more than {cap} paired seeds")


def _level(alpha_look: float, two_sided: bool) -> str:
    """'95%'-style label of an interval's confidence."""
    confidence = 1.0 - (alpha_look if two_sided else 2 * alpha_look)
    return f"{100 * confidence:.3g}%"


def verdict_reason(row: Mapping[str, object], alpha: float, margin: float) -> str:
    """One line saying why a cell got its verdict (keys as in TABLE_COLUMNS)."""
    verdict, n = row["verdict"], int(row["n_seeds"])
    if verdict in (BETTER, WORSE):
        at = int(row["decided_at"])
        then = ""
        if at < n and np.isfinite(row.get("decided_mean", np.nan)):
            then = f", where the mean delta was {row['decided_mean']:+.4f}"
        significant = f"Holm-adjusted p {row['p_holm']:.3g} < {alpha:g}"
        return f"{verdict}: {significant} (at {at} paired seeds{then})"
    level = _level(row["alpha_look"], two_sided=False)
    interval = f"the {level} interval [{row['eq_low']:+.4f}, {row['eq_high']:+.4f}]"
    if verdict == EQUIVALENT:
        return f"equivalent: {interval} lies inside ±{margin:g}"
    if n < 2:
        return f"inconclusive: {ONE_SEED}"
    if not np.isfinite(row["p_value"]):
        return f"inconclusive: {NO_NOISE_ESTIMATE}"
    return (
        f"inconclusive: {interval} crosses the margin ±{margin:g} and the Holm-adjusted "
        f"p {row['p_holm']:.3g} >= {alpha:g}"
    )


def _check_parameters(r: float, margin: float, alpha: float) -> None:
    if not (np.isfinite(r) and r >= 0):
        raise ValueError(f"r must be a finite number >= 0, got {r!r}")
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")


def _family_matrix(
    group: pd.DataFrame, variants: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """(variants, (V, L) deltas in seed order, NaN after each variant's last) of one family.

    `variants` fixes the family's members and order (one without rows gets no deltas);
    default: the variants in `group`, in order of appearance.
    """
    names = list(variants) if variants is not None else list(dict.fromkeys(group["variant"]))
    by_variant = {
        name: rows.sort_values("seed")["delta"] for name, rows in group.groupby("variant")
    }
    rows = [
        by_variant[name].to_numpy(float) if name in by_variant else np.empty(0) for name in names
    ]
    matrix = np.full((len(rows), max([1, *(len(row) for row in rows)])), np.nan)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return names, matrix


def _clean_paired(paired: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The rows with a finite delta; one row per cell and seed (else ValueError)."""
    missing = [c for c in [*keys, "seed", "delta"] if c not in paired.columns]
    if missing:
        raise ValueError(f"paired deltas lack columns {missing}")
    paired = paired[np.isfinite(paired["delta"].to_numpy(dtype=float))]
    duplicated = paired.duplicated([*keys, "seed"])
    if duplicated.any():
        first = paired[duplicated].iloc[0]
        raise ValueError(f"two deltas for one cell and seed: {first[[*keys, 'seed']].to_dict()}")
    if len(paired) and paired.groupby(list(keys)).size().max() > MAX_SEEDS:
        raise ValueError(f"more than {MAX_SEEDS} paired seeds in one cell")
    return paired


def inference_table(
    paired: pd.DataFrame,
    *,
    r: float,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    schedule: SequentialSchedule | None = None,
    lower_is_better: Collection[str] = (),
    power: float = TARGET_POWER,
    cap: int = MAX_SEEDS,
    variants: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (variant, category, metric): corrected test, Holm, verdict, seeds needed.

    Args:
        paired: long paired deltas, columns variant, category, metric, seed, delta (and,
            optionally, variant_value, baseline_value: their means over the paired seeds
            become variant_mean, baseline_mean). Rows with a non-finite delta are left out.
        r: n_test / n_train (`correction_ratio`); 0 for a fixed split.
        margin: the smallest change that matters, in the metric's units.
        alpha: level of the tests (Holm over each (category, metric) family).
        schedule: the adaptive design, or None for a fixed number of seeds.
        lower_is_better: metrics where a decrease is an improvement (none of the shipped ones).
        power, cap: target power and largest answer of `seeds_needed`.
        variants: every non-baseline variant of the study, in the order shown: each
            (category, metric) family holds all of them, as `next_round`'s does (one without
            a paired seed is a row with n_seeds 0, in Holm as p = 1), so the summary and the
            adaptive rounds adjust over the same family. Default: the variants in `paired`.

    Returns:
        DataFrame with TABLE_COLUMNS; seeds_needed is a nullable Int64 (NA unless the cell
        is inconclusive and some J' <= cap decides it); ci_level is the displayed interval's
        confidence (1 - alpha: in an adaptive design a repeated confidence interval, see
        `_looks`); decided_at the seeds at the look that decided better / worse (NA
        otherwise).

    Raises:
        ValueError: r, margin or alpha out of range, a missing column, two deltas for one
            cell and seed, more than 1,000 seeds in a cell, or more than schedule.max_seeds.

    Example:
        >>> paired = pd.DataFrame({"variant": "v", "category": "macro", "metric": "dice",
        ...                        "seed": [0, 1, 2], "delta": [0.01, 0.03, 0.05]})
        >>> inference_table(paired, r=0.25).loc[0, "verdict"]
        'inconclusive'
    """
    _check_parameters(r, margin, alpha)
    paired = _clean_paired(paired, ["variant", "category", "metric"])
    frames = [
        _family_rows(group, category, metric, r, margin, alpha, schedule, lower_is_better, variants)
        for (category, metric), group in paired.groupby(["category", "metric"], sort=False)
    ]
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table = _add_seeds_needed(table, r, margin, alpha, power, cap)
    table["reason"] = [verdict_reason(row, alpha, margin) for row in table.to_dict("records")]
    table["decided_at"] = table["decided_at"].where(table["decided_at"] > 0).astype("Int64")
    table["n_seeds"] = table["n_seeds"].astype("int64")
    return table[TABLE_COLUMNS]


def _family_rows(
    group: pd.DataFrame,
    category: str,
    metric: str,
    r: float,
    margin: float,
    alpha: float,
    schedule: SequentialSchedule | None,
    lower_is_better: Collection[str],
    members: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The analysed rows of one (category, metric) family (`members`: all its variants)."""
    variants, matrix = _family_matrix(group, members)
    sign = -1.0 if metric in lower_is_better else 1.0
    result = analyse_family(matrix, r=r, margin=margin, alpha=alpha, schedule=schedule, sign=sign)
    means = {}
    for column in ("baseline_value", "variant_value"):
        if column in group:
            values = group.groupby("variant", sort=False)[column].mean()
            means[column] = values.reindex(variants).to_numpy(float)
        else:
            means[column] = np.full(len(variants), np.nan)
    return pd.DataFrame(
        {
            "variant": variants,
            "category": category,
            "metric": metric,
            "n_seeds": result.n,
            "baseline_mean": means["baseline_value"],
            "variant_mean": means["variant_value"],
            "mean_delta": result.mean,
            "sd_delta": result.sd,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "ci_level": 1.0 - alpha,
            "p_value": result.p_value,
            "p_holm": result.p_holm,
            "test": test_name(r),
            "margin": margin,
            "eq_low": result.eq_low,
            "eq_high": result.eq_high,
            "verdict": result.verdict,
            "decided_at": result.decided_at,
            "decided_mean": result.decided_mean,
            "alpha_look": result.alpha_look,
            "family_size": len(variants),
        }
    )


def _add_seeds_needed(
    table: pd.DataFrame, r: float, margin: float, alpha: float, power: float, cap: int
) -> pd.DataFrame:
    """seeds_needed and seeds_reason for the inconclusive rows (NA and "" for the others)."""
    needed: list[int | None] = []
    reasons: list[str] = []
    for row in table.to_dict("records"):
        if row["verdict"] != INCONCLUSIVE:
            needed.append(None)
            reasons.append("")
            continue
        answer = seeds_needed(
            row["mean_delta"],
            row["sd_delta"],
            int(row["n_seeds"]),
            r=r,
            margin=margin,
            alpha=alpha,
            family_size=int(row["family_size"]),
            power=power,
            cap=cap,
        )
        needed.append(answer.seeds)
        reasons.append(answer.reason)
    table["seeds_needed"] = pd.array(needed, dtype="Int64")
    table["seeds_reason"] = reasons
    return table


def next_round(
    paired: pd.DataFrame,
    *,
    r: float,
    schedule: SequentialSchedule,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    variants: Sequence[str] | None = None,
    seeds_run: Mapping[str, int] | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """After a round: which variants are decided and which get another seed, and why.

    Args:
        paired: the paired deltas so far of analysis.metric, macro: columns variant, seed,
            delta (one row per variant and seed both finished ok).
        r, schedule, margin, alpha: the study's design.
        variants: every non-baseline variant (the Holm family); one without a paired seed
            yet needs a seed. Default: the variants in `paired`.
        seeds_run: seeds each variant has run (failed ones included); a variant stops at
            schedule.max_seeds of them. Default: its paired seeds.
        higher_is_better: direction of analysis.metric.

    Returns:
        DataFrame with ROUND_COLUMNS: n_seeds (paired), verdict, decided (bool), needs_seed
        (bool), futile (bool: stopped by the futility rule, `needs_another_seed`), reason
        (one line, e.g. "inconclusive: the 92.9% interval [-0.0120, +0.0200] crosses the
        margin ±0.01 ...; another seed", or "...; stopped for futility: no number of seeds up
        to max=8 would decide it at 80% power, ... (seeds needed: never)").
    """
    _check_parameters(r, margin, alpha)
    paired = _clean_paired(paired, ["variant"])
    names, matrix = _family_matrix(paired, variants)
    result = analyse_family(
        matrix,
        r=r,
        margin=margin,
        alpha=alpha,
        schedule=schedule,
        sign=1.0 if higher_is_better else -1.0,
    )
    run = np.array(
        [(seeds_run or {}).get(name, n) for name, n in zip(names, result.n, strict=True)]
    )
    more, stopped = needs_another_seed(result, run, schedule, r=r, margin=margin, alpha=alpha)
    verdict = np.where(result.n < schedule.min_seeds, INCONCLUSIVE, result.verdict)
    look = _Look(result, schedule, r, margin, alpha)
    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "variant": name,
                "n_seeds": int(result.n[i]),
                "verdict": verdict[i],
                "decided": verdict[i] != INCONCLUSIVE,
                "needs_seed": bool(more[i]),
                "futile": bool(stopped[i]),
                "reason": look.reason(i, verdict[i], bool(more[i]), bool(stopped[i]), run[i]),
            }
        )
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


@dataclass(frozen=True)
class _Look:
    """A round's analysis and design, for its progress lines."""

    result: FamilyAnalysis
    schedule: SequentialSchedule
    r: float
    margin: float
    alpha: float

    def reason(self, i: int, verdict: str, more: bool, futile_stop: bool, run: int) -> str:
        """One progress line for variant i: its verdict so far and what happens next, why."""
        result, schedule = self.result, self.schedule
        n = int(result.n[i])
        if n < schedule.min_seeds:
            why = f"{n} paired seeds, the first look is at {schedule.min_seeds}"
        else:
            row = {
                "verdict": verdict,
                "n_seeds": n,
                "p_value": result.p_value[i],
                "p_holm": result.p_holm[i],
                "decided_at": result.decided_at[i],
                "alpha_look": result.alpha_look[i],
                "eq_low": result.eq_low[i],
                "eq_high": result.eq_high[i],
            }
            why = verdict_reason(row, self.alpha, self.margin)
        if more:
            return f"{why}; another seed"
        if futile_stop:
            return f"{why}; {self.futility_reason(i)}"
        if verdict == INCONCLUSIVE:
            return f"{why}; stopped at max_seeds={schedule.max_seeds} ({run} run)"
        return why

    def futility_reason(self, i: int) -> str:
        """Why variant i stops for futility, with its seeds_needed at the observed values."""
        result = self.result
        needed = seeds_needed(
            float(result.mean[i]),
            float(result.sd[i]),
            int(result.n[i]),
            r=self.r,
            margin=self.margin,
            alpha=self.alpha,
            family_size=result.n.shape[-1],
        )
        if needed.seeds is not None:
            count = str(needed.seeds)
        else:
            count = "never" if needed.reason.startswith("never") else f"more than {MAX_SEEDS}"
        return (
            f"stopped for futility: no number of seeds up to max={self.schedule.max_seeds} "
            f"would decide it at {TARGET_POWER:.0%} power, even with the data read one sigma "
            f"in its favour (seeds needed: {count})"
        )
