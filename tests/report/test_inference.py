"""The corrected resampled t, the verdict rules and seeds_needed: golden numbers and error rates.

Golden numbers use 3 seeds (2 degrees of freedom), where Student's t has closed forms:
P(|T| > t) = 1 - t / sqrt(2 + t^2) and t_q = sqrt(2 a^2 / (1 - a^2)) with a = 2q - 1, so every
expected value below is arithmetic written out, independent of scipy.

Simulations draw deltas from the Nadeau-Bengio model (`simulate_deltas`: correlation rho =
test fraction = 0.2 between seeds, r = rho / (1 - rho) = 0.25). A rate from N studies has
Monte Carlo standard error sqrt(p (1 - p) / N); every band below is Z = 4 of them around the
claimed rate (a false alarm about once in 16,000 assertions), never a hand-tuned tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ablate.report import inference as inf

RHO = 0.2
R = RHO / (1 - RHO)  # 0.25 = test fraction / train fraction for an 80/20 split
ALPHA = 0.05
MARGIN = 0.01
Z = 4.0


def mc_band(rate: float, n: int) -> float:
    """Z Monte Carlo standard errors of a rate estimated from n studies."""
    return Z * math.sqrt(rate * (1 - rate) / n)


def t2_two_sided_p(t_squared: float) -> float:
    """P(|T_2| > t) = 1 - t / sqrt(2 + t^2), from t^2."""
    return 1 - math.sqrt(t_squared / (2 + t_squared))


def t2_quantile(q: float) -> float:
    """t_(q, 2) = sqrt(2 a^2 / (1 - a^2)), a = 2q - 1."""
    a = 2 * q - 1
    return math.sqrt(2 * a * a / (1 - a * a))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm by its definition, NaN left out of the family: the adjusted p of p_i is the
    largest over the p_j <= p_i of min(1, (m - rank_j) p_j), rank_j 0-based among present."""
    present = sorted(p for p in p_values if not np.isnan(p))
    m = len(present)
    return np.array(
        [
            np.nan
            if np.isnan(p)
            else max(min(1.0, (m - j) * present[j]) for j in range(m) if present[j] <= p)
            for p in p_values
        ]
    )


def paired(deltas: dict[str, list[float]], category: str = "macro", metric: str = "dice"):
    rows = [
        {"variant": v, "category": category, "metric": metric, "seed": s, "delta": d}
        for v, values in deltas.items()
        for s, d in enumerate(values)
    ]
    return pd.DataFrame(rows)


# --- golden numbers ---------------------------------------------------------------------


def test_corrected_t_golden_numbers_by_hand() -> None:
    """deltas 0.01, 0.03, 0.05: mean 0.03; deviations -0.02, 0, +0.02, so s^2 = 0.0008 / 2
    = 0.0004. Corrected (r = 0.25): se^2 = (1/3 + 1/4) 0.0004 = 7/12 * 0.0004 = 7/30000,
    t^2 = 0.0009 / (7/30000) = 27/7, p = 1 - sqrt((27/7) / (41/7)) = 1 - sqrt(27/41)
    = 0.188497. Plain (r = 0): se^2 = 0.0004 / 3, t^2 = 6.75 = 27/4, p = 1 - sqrt(27/35)
    = 0.121690."""
    stats = inf.corrected_t(np.array([0.01, 0.03, 0.05]), R)
    assert stats.mean == pytest.approx(0.03)
    assert stats.sd == pytest.approx(0.02)
    assert stats.se == pytest.approx(math.sqrt(7 / 30000))
    assert stats.t == pytest.approx(math.sqrt(27 / 7))
    assert stats.p_value == pytest.approx(1 - math.sqrt(27 / 41), rel=1e-9)
    assert 1 - math.sqrt(27 / 41) == pytest.approx(0.188497, abs=1e-6)
    plain = inf.corrected_t(np.array([0.01, 0.03, 0.05]), 0.0)
    assert plain.p_value == pytest.approx(1 - math.sqrt(27 / 35), rel=1e-9)


def test_table_golden_numbers_interval_holm_and_labels() -> None:
    """Two variants, 3 seeds, r = 0.25.

    a: 0.01, 0.03, 0.05 (above): p_a = 1 - sqrt(27/41).
    b: -0.02, -0.01, -0.03: mean -0.02, deviations 0, +0.01, -0.01, s^2 = 0.0002 / 2 =
    0.0001, se^2 = 7/12 * 0.0001, t^2 = 0.0004 * 12 / 0.0007 = 48/7, p_b = 1 - sqrt(48/62).
    Holm over {a, b}: p_b < p_a, so p_holm_b = 2 p_b = 0.240 and p_holm_a = max(p_a, 2 p_b).
    95% interval: 0.03 ± t_(0.975, 2) se, t_(0.975, 2) = sqrt(2 * 0.95^2 / (1 - 0.95^2))
    = 4.302653; TOST (90%) interval: t_(0.95, 2) = sqrt(2 * 0.9^2 / 0.19) = 2.919986.
    """
    table = inf.inference_table(
        paired({"a": [0.01, 0.03, 0.05], "b": [-0.02, -0.01, -0.03]}), r=R, margin=MARGIN
    ).set_index("variant")
    p_a, p_b = t2_two_sided_p(27 / 7), t2_two_sided_p(48 / 7)
    assert t2_quantile(0.975) == pytest.approx(4.302653, abs=1e-6)
    se_a = math.sqrt(7 / 30000)
    a, b = table.loc["a"], table.loc["b"]
    assert a["p_value"] == pytest.approx(p_a, rel=1e-9)
    assert b["p_value"] == pytest.approx(p_b, rel=1e-9)
    assert b["p_holm"] == pytest.approx(2 * p_b, rel=1e-9)
    assert a["p_holm"] == pytest.approx(max(p_a, 2 * p_b), rel=1e-9)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(
        (0.03 - t2_quantile(0.975) * se_a, 0.03 + t2_quantile(0.975) * se_a), rel=1e-9
    )
    assert (a["eq_low"], a["eq_high"]) == pytest.approx(
        (0.03 - t2_quantile(0.95) * se_a, 0.03 + t2_quantile(0.95) * se_a), rel=1e-9
    )
    assert a["ci_level"] == pytest.approx(0.95)
    assert list(table["test"]) == [inf.CORRECTED_T] * 2
    assert list(table["verdict"]) == [inf.INCONCLUSIVE] * 2
    assert list(table["n_seeds"]) == [3, 3]
    assert "crosses the margin ±0.01" in a["reason"]
    plain = inf.inference_table(paired({"a": [0.01, 0.03, 0.05]}), r=0.0)
    assert plain.loc[0, "test"] == inf.PAIRED_T


def test_correction_ratio_counts_only_the_images_trained_on() -> None:
    assert inf.correction_ratio(0.2) == pytest.approx(0.25)
    # 10% of the remaining 80% validates: 72% trains, r = 0.2 / 0.72
    assert inf.correction_ratio(0.2, 0.1) == pytest.approx(0.2 / 0.72)
    assert inf.correction_ratio(0.2, 0.1, split_varies=False) == 0.0
    with pytest.raises(ValueError, match="fractions"):
        inf.correction_ratio(1.0)


# --- verdict rules at their edges -----------------------------------------------------------


def test_interval_touching_the_margin_is_not_inside() -> None:
    table = inf.inference_table(paired({"a": [0.001, 0.004, 0.002, 0.003]}), r=R)
    eq_low, eq_high = table.loc[0, ["eq_low", "eq_high"]]
    assert eq_low > -eq_high  # mean > 0: the upper end is the one that can touch
    touching = inf.verdicts(0.0025, eq_low, eq_high, 1.0, margin=eq_high, alpha=ALPHA)
    assert touching.item() == inf.INCONCLUSIVE
    just_inside = inf.verdicts(
        0.0025, eq_low, eq_high, 1.0, margin=float(np.nextafter(eq_high, 1)), alpha=ALPHA
    )
    assert just_inside.item() == inf.EQUIVALENT
    # the same through the table, margin exactly at the interval's end
    edge = inf.inference_table(paired({"a": [0.001, 0.004, 0.002, 0.003]}), r=R, margin=eq_high)
    assert edge.loc[0, "verdict"] == inf.INCONCLUSIVE


def test_holm_p_equal_to_alpha_is_not_significant() -> None:
    rule = inf.verdicts(
        np.array([0.05, -0.05, 0.05]), np.nan, np.nan, [ALPHA, 0.049, 0.049], 0.01, ALPHA
    )
    assert rule.tolist() == [inf.INCONCLUSIVE, inf.WORSE, inf.BETTER]
    lower_better = inf.verdicts(0.05, np.nan, np.nan, 0.001, 0.01, ALPHA, sign=-1.0)
    assert lower_better.item() == inf.WORSE


def test_equivalence_wins_over_a_significant_small_difference() -> None:
    rule = inf.verdicts(0.004, 0.002, 0.006, 0.001, MARGIN, ALPHA)
    assert rule.item() == inf.EQUIVALENT


def test_nan_never_decides() -> None:
    rule = inf.verdicts(np.nan, np.nan, np.nan, np.nan, MARGIN, ALPHA)
    assert rule.item() == inf.INCONCLUSIVE


@pytest.mark.parametrize(
    "deltas",
    [
        [0.02, 0.02, 0.02],
        [0.0, 0.0, 0.0, 0.0],
        # equal up to float noise: (0.81 - 0.80), (0.71 - 0.70), (0.91 - 0.90)
        [0.81 - 0.80, 0.71 - 0.70, 0.91 - 0.90],
    ],
)
def test_zero_variance_is_never_a_certainty(deltas: list[float]) -> None:
    row = inf.inference_table(paired({"a": deltas}), r=R).loc[0]
    assert np.isnan(row["p_value"]) and np.isnan(row["p_holm"])
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert row["verdict"] == inf.INCONCLUSIVE
    assert inf.NO_NOISE_ESTIMATE in row["reason"]
    assert pd.isna(row["seeds_needed"]) and inf.NO_NOISE_ESTIMATE in row["seeds_reason"]


def test_a_small_real_spread_is_not_zero_variance() -> None:
    stats = inf.corrected_t(np.array([0.02, 0.02 + 1e-6, 0.02 - 1e-6]), 0.0)
    assert not stats.zero_variance and stats.p_value < 1e-4


def test_zero_variance_cell_counts_in_the_holm_family_as_p_one() -> None:
    table = inf.inference_table(
        paired({"same": [0.0, 0.0, 0.0], "a": [0.05, 0.06, 0.055, 0.052]}), r=0.0
    ).set_index("variant")
    p_a = table.loc["a", "p_value"]
    assert table.loc["a", "p_holm"] == pytest.approx(2 * p_a)  # family of 2, not 1
    assert np.isnan(table.loc["same", "p_holm"])


def test_a_variant_without_seeds_still_counts_in_the_family() -> None:
    x = np.array([[0.05, 0.06, 0.055, 0.052], [np.nan] * 4])
    result = inf.analyse_family(x, r=0.0)
    assert result.p_holm[0] == pytest.approx(2 * result.p_value[0])
    assert np.isnan(result.p_holm[1]) and result.verdict[1] == inf.INCONCLUSIVE


def test_the_table_takes_the_whole_family_like_next_round() -> None:
    """`variants` puts a variant without any paired seed in every family (a row with n 0,
    in Holm as p = 1), as `next_round` does, so summary and rounds adjust alike."""
    data = paired({"a": [-0.05, -0.06, -0.055, -0.052], "b": [0.01, -0.02, 0.0, 0.02]})
    table = inf.inference_table(data, r=R, variants=["a", "dead", "b"]).set_index("variant")
    assert list(table.index) == ["a", "dead", "b"]
    assert table.loc["dead", "n_seeds"] == 0 and table.loc["dead", "verdict"] == inf.INCONCLUSIVE
    x = np.array([[-0.05, -0.06, -0.055, -0.052], [np.nan] * 4, [0.01, -0.02, 0.0, 0.02]])
    core = inf.analyse_family(x, r=R)
    np.testing.assert_allclose(table["p_holm"], core.p_holm, equal_nan=True)
    without = inf.inference_table(data, r=R).set_index("variant")
    assert table.loc["a", "p_holm"] > without.loc["a", "p_holm"]  # a family of 3, not 2


def test_one_seed_gives_no_interval_and_no_p() -> None:
    row = inf.inference_table(paired({"a": [0.03]}), r=R).loc[0]
    assert row["n_seeds"] == 1
    assert np.isnan(row["p_value"]) and np.isnan(row["ci_low"])
    assert row["verdict"] == inf.INCONCLUSIVE and inf.ONE_SEED in row["reason"]
    assert pd.isna(row["seeds_needed"])


def test_non_finite_deltas_are_left_out_and_duplicates_refused() -> None:
    frame = paired({"a": [0.01, np.nan, 0.03, 0.05]})
    assert inf.inference_table(frame, r=R).loc[0, "n_seeds"] == 3
    doubled = pd.concat([frame, frame.iloc[[0]]])
    with pytest.raises(ValueError, match="two deltas for one cell and seed"):
        inf.inference_table(doubled, r=R)
    with pytest.raises(ValueError, match="more than 1000 paired seeds"):
        inf.inference_table(paired({"a": [0.01] * 1001}), r=R)
    with pytest.raises(ValueError, match="lack columns"):
        inf.inference_table(frame.drop(columns="seed"), r=R)


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("margin", 0.0, "margin"),
        ("margin", float("nan"), "margin"),
        ("alpha", 0.5, "alpha"),
        ("r", -0.1, "r must"),
    ],
)
def test_bad_parameters_are_refused(keyword: str, value: float, match: str) -> None:
    arguments = {"r": R, "margin": MARGIN, "alpha": ALPHA, keyword: value}
    with pytest.raises(ValueError, match=match):
        inf.inference_table(paired({"a": [0.01, 0.02]}), **arguments)


def test_table_columns_types_and_direction() -> None:
    frame = pd.concat(
        [
            paired({"a": [0.05, 0.06, 0.055, 0.052]}, metric="dice"),
            paired({"a": [0.05, 0.06, 0.055, 0.052]}, metric="loss"),
            paired({"a": [0.05, 0.06, 0.055, 0.052]}, category="Polyp", metric="dice"),
        ]
    )
    frame["variant_value"] = 0.8 + frame["delta"]
    frame["baseline_value"] = 0.8
    table = inf.inference_table(frame, r=0.0, lower_is_better={"loss"})
    assert list(table.columns) == inf.TABLE_COLUMNS
    assert str(table["seeds_needed"].dtype) == "Int64"
    assert str(table["decided_at"].dtype) == "Int64"
    by_metric = table.set_index(["category", "metric"])["verdict"]
    assert by_metric[("macro", "dice")] == inf.BETTER
    assert by_metric[("macro", "loss")] == inf.WORSE
    assert by_metric[("Polyp", "dice")] == inf.BETTER
    row = table.iloc[0]
    assert row["variant_mean"] - row["baseline_mean"] == pytest.approx(row["mean_delta"])
    assert row["decided_at"] == 4
    assert inf.inference_table(frame.iloc[0:0], r=R).empty


def test_vectorised_holm_is_holm_by_definition() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(size=(200, 5)) ** 3
    p[rng.uniform(size=p.shape) < 0.2] = np.nan
    p[:, 3] = p[:, 2]  # ties
    vectorised = inf.holm_last_axis(p)
    for row, expected in zip(p, vectorised, strict=True):
        np.testing.assert_allclose(holm(row), expected, equal_nan=True)


def test_table_agrees_with_the_array_core() -> None:
    """The DataFrame path (ragged, shuffled rows) gives what the vectorised core gives."""
    rng = np.random.default_rng(11)
    x = inf.simulate_deltas(
        rng, (4,), 6, delta=np.array([0.0, 0.02, -0.03, 0.004]), sd=0.01, rho=RHO
    )
    x[1, 5] = x[3, 4] = x[3, 5] = np.nan  # variants with 5 and 4 seeds
    core = inf.analyse_family(x, r=R)
    frame = paired({name: list(row) for name, row in zip("abcd", x, strict=True)})
    table = inf.inference_table(frame.sample(frac=1, random_state=0), r=R).set_index("variant")
    table = table.loc[list("abcd")]
    np.testing.assert_allclose(table["p_value"], core.p_value)
    np.testing.assert_allclose(table["p_holm"], core.p_holm)
    np.testing.assert_allclose(table["ci_low"], core.ci_low)
    assert table["verdict"].tolist() == core.verdict.tolist()


# --- error rates by simulation --------------------------------------------------------------

N_NULL = 40_000


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_corrected_test_holds_alpha_where_the_plain_one_does_not(seeds: int) -> None:
    """True null, correlation 0.2: the corrected test's false-positive rate is alpha within
    its band (N = 40,000: ±0.0044); the plain paired t's is far above, by the amount theory
    predicts: its t is inflated by sqrt(1 + J r), so its rate is
    P(|T_(J-1)| > t_(0.975, J-1) / sqrt(1 + J r)) (0.083, 0.138, 0.257 at 3, 5, 10 seeds;
    the issue measured 9%, 16%, 24% through `ablate summarize`)."""
    rng = np.random.default_rng(seeds)
    x = inf.simulate_deltas(rng, (N_NULL,), seeds, delta=0.0, sd=0.02, rho=RHO)
    corrected = np.mean(inf.corrected_t(x, R).p_value < ALPHA)
    plain = np.mean(inf.corrected_t(x, 0.0).p_value < ALPHA)
    assert abs(corrected - ALPHA) <= mc_band(ALPHA, N_NULL)
    inflation = math.sqrt(1 + seeds * R)
    predicted = 2 * scipy_stats.t.sf(scipy_stats.t.isf(ALPHA / 2, seeds - 1) / inflation, seeds - 1)
    assert abs(plain - predicted) <= mc_band(predicted, N_NULL)
    assert plain > ALPHA + mc_band(ALPHA, N_NULL)


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_tost_false_equivalence_at_the_margin_is_at_most_alpha(seeds: int) -> None:
    """True delta = margin (not equivalent): 'equivalent' at most alpha of the time (the
    upper one-sided test alone is exact at alpha). N = 40,000, band +0.0044."""
    rng = np.random.default_rng(100 + seeds)
    for delta in (MARGIN, -MARGIN):
        x = inf.simulate_deltas(rng, (N_NULL, 1), seeds, delta=delta, sd=0.006, rho=RHO)
        rate = np.mean(inf.analyse_family(x, r=R, margin=MARGIN).verdict == inf.EQUIVALENT)
        assert rate <= ALPHA + mc_band(ALPHA, N_NULL)


def family_deltas(rng: np.random.Generator, n: int, seeds: int, effects: np.ndarray) -> np.ndarray:
    """(n, V, seeds) deltas of V variants against ONE shared baseline: each variant's and the
    baseline's scores follow the Nadeau-Bengio model, so deltas of two variants correlate
    0.5 through the baseline (Holm must hold under that dependence)."""
    variants = inf.simulate_deltas(rng, (n, len(effects)), seeds, delta=0.0, sd=1.0, rho=RHO)
    baseline = inf.simulate_deltas(rng, (n, 1), seeds, delta=0.0, sd=1.0, rho=RHO)
    return effects[:, None] + 0.01 * (variants - baseline) / math.sqrt(2)


@pytest.mark.parametrize("seeds", [3, 10])
def test_holm_holds_the_family_wise_rate(seeds: int) -> None:
    """Family of 4: two true nulls, two large effects. P(any null flagged) <= alpha
    (N = 20,000, band +0.0062); an effect is found at least as often as Bonferroni would."""
    n = 20_000
    effects = np.array([0.0, 0.0, 0.04, -0.04])
    result = inf.analyse_family(family_deltas(np.random.default_rng(seeds), n, seeds, effects), r=R)
    flagged = np.isin(result.verdict[:, :2], [inf.BETTER, inf.WORSE]).any(axis=1)
    assert flagged.mean() <= ALPHA + mc_band(ALPHA, n)
    # Holm rejects at least what Bonferroni (alpha / 4) does: its exact power is a floor
    floor = inf.significance_power(0.04, 0.01 * math.sqrt(1 - RHO), np.array([seeds]), R, ALPHA / 4)
    assert np.mean(result.verdict[:, 2] == inf.BETTER) >= floor[0] - mc_band(floor[0], n)


# --- seeds_needed ---------------------------------------------------------------------------


def test_power_functions_match_simulation() -> None:
    """significance_power and the exact TOST power equal the simulated rejection rates of the
    corrected tests (N = 40,000, band 4 MC standard errors). The model's seed sd is
    sd / sqrt(1 - rho): the sample sd of equicorrelated deltas estimates sd sqrt(1 - rho)."""
    rng = np.random.default_rng(3)
    sample_sd = 0.008
    seed_sd = sample_sd / math.sqrt(1 - RHO)
    for seeds, delta in [(4, 0.015), (8, 0.01)]:
        x = inf.simulate_deltas(rng, (N_NULL,), seeds, delta=delta, sd=seed_sd, rho=RHO)
        stats = inf.corrected_t(x, R)
        rate = np.mean((stats.p_value < ALPHA) & (stats.t > 0))
        expected = inf.significance_power(delta, sample_sd, np.array([seeds]), R, ALPHA)[0]
        assert abs(rate - expected) <= mc_band(expected, N_NULL)
    for seeds, delta in [(5, 0.0), (8, 0.004)]:
        x = inf.simulate_deltas(rng, (N_NULL, 1), seeds, delta=delta, sd=seed_sd * 0.6, rho=RHO)
        rate = np.mean(inf.analyse_family(x, r=R).verdict == inf.EQUIVALENT)
        expected = inf.equivalence_power(
            delta, sample_sd * 0.6, np.array([seeds]), R, MARGIN, ALPHA
        )[0]
        assert abs(rate - expected) <= mc_band(expected, N_NULL)


@pytest.mark.parametrize(
    ("mean", "sd", "r", "aim"),
    [
        (0.02, 0.01, R, "difference"),
        (0.012, 0.012, 0.0, "difference"),
        (0.002, 0.006, R, "equivalence"),
    ],
)
def test_seeds_needed_decides_with_80_percent_power(
    mean: float, sd: float, r: float, aim: str
) -> None:
    """Simulate studies with the recommended J' seeds, the observed mean and sd taken as the
    truth, in a family of 3 (two null variants beside): the cell is decided >= 80% of the
    time (band -4 MC se), and with J' - 1 seeds the test aimed at decides it < 80%
    (the smallest such J'). N = 20,000: band 0.0113."""
    n = 20_000
    answer = inf.seeds_needed(mean, sd, 3, r=r, margin=MARGIN, alpha=ALPHA, family_size=3)
    assert answer.aim == aim and answer.seeds is not None and answer.seeds > 3
    rho = r / (1 + r)
    seed_sd = sd / math.sqrt(1 - rho)
    rng = np.random.default_rng(int(mean * 1e4))
    rates = {}
    for seeds in (answer.seeds - 1, answer.seeds):
        x = inf.simulate_deltas(
            rng, (n, 3), seeds, delta=np.array([mean, 0, 0]), sd=seed_sd, rho=rho
        )
        result = inf.analyse_family(x, r=r, margin=MARGIN)
        target = [inf.EQUIVALENT] if aim == "equivalence" else [inf.BETTER]
        if aim == "difference":  # the test seeds_needed aimed at: Bonferroni alpha / 3
            rates[seeds] = np.mean(result.p_value[:, 0] < ALPHA / 3)
        else:
            rates[seeds] = np.mean(np.isin(result.verdict[:, 0], target))
        if seeds == answer.seeds:
            decided = np.mean(result.verdict[:, 0] != inf.INCONCLUSIVE)
            assert decided >= inf.TARGET_POWER - mc_band(inf.TARGET_POWER, n)
    assert rates[answer.seeds] >= inf.TARGET_POWER - mc_band(inf.TARGET_POWER, n)
    assert rates[answer.seeds - 1] < inf.TARGET_POWER + mc_band(inf.TARGET_POWER, n)


def test_seeds_needed_says_never_where_the_split_variance_floor_stops_it() -> None:
    """r = 0.25, sd 0.03: the mean's variance never falls below r sd^2 = 0.000225, so a TOST
    interval's half-width stays above z_0.95 sqrt(r) sd = 0.025 > margin 0.01: never. The same
    cell about one fixed split (r = 0) has an answer."""
    never = inf.seeds_needed(0.002, 0.03, 3, r=R)
    assert never.seeds is None and never.aim == "equivalence"
    assert never.reason.startswith("never") and "protocol.vary: {split: false}" in never.reason
    assert inf.seeds_needed(0.002, 0.03, 3, r=0.0).seeds is not None
    difference = inf.seeds_needed(0.012, 0.04, 3, r=R)
    assert difference.seeds is None and difference.reason.startswith("never")


def test_seeds_needed_beyond_the_cap_and_without_noise() -> None:
    beyond = inf.seeds_needed(0.0099, 0.05, 3, r=0.0, cap=1000)
    assert beyond.seeds is None and beyond.reason == "more than 1000 paired seeds"
    assert inf.seeds_needed(0.02, 0.0, 3, r=R).reason == inf.NO_NOISE_ESTIMATE
    assert inf.seeds_needed(0.02, np.nan, 1, r=R).reason == inf.ONE_SEED


def test_table_fills_seeds_needed_only_for_inconclusive_rows() -> None:
    table = inf.inference_table(
        paired({"big": [0.10, 0.11, 0.105, 0.12], "unclear": [0.01, -0.02, 0.03, 0.0]}), r=0.0
    ).set_index("variant")
    assert table.loc["big", "verdict"] == inf.BETTER and pd.isna(table.loc["big", "seeds_needed"])
    assert table.loc["unclear", "verdict"] == inf.INCONCLUSIVE
    expected = inf.seeds_needed(
        table.loc["unclear", "mean_delta"],
        table.loc["unclear", "sd_delta"],
        4,
        r=0.0,
        family_size=2,
    )
    assert table.loc["unclear", "seeds_needed"] == expected.seeds
    assert table.loc["unclear", "seeds_reason"] == expected.reason


def test_equivalence_power_grows_with_seeds_where_it_matters() -> None:
    """seeds_needed bisects, so the exact TOST power must grow with J' wherever it is not
    tiny: over sd 0.0005..0.2, effects 0..margin, r 0..1 and every J' 3..1,000 it never
    falls from one J' to the next where it is above 7%."""
    seeds = np.arange(3, 1001)
    for r in (0.0, 0.05, 0.25, 1.0):
        for sd in np.geomspace(0.0005, 0.2, 8):
            for effect in (0.0, 0.005, 0.0099):
                power = inf.equivalence_power(effect, sd, seeds, r, MARGIN, ALPHA)
                falls = np.diff(power) < -1e-12
                assert np.all(power[:-1][falls] < 0.07), (r, sd, effect)


@pytest.mark.parametrize(
    ("mean", "sd", "r"), [(0.002, 0.006, R), (0.004, 0.01, 0.0), (0.02, 0.02, 0.1), (0.0, 0.004, R)]
)
def test_seeds_needed_bisection_equals_a_full_scan(mean: float, sd: float, r: float) -> None:
    answer = inf.seeds_needed(mean, sd, 3, r=r, family_size=2)
    seeds = np.arange(4, 1001)
    if abs(mean) >= MARGIN:
        power = inf.significance_power(mean, sd, seeds, r, ALPHA / 2)
    else:
        power = inf.equivalence_power(mean, sd, seeds, r, MARGIN, ALPHA)
    reached = np.flatnonzero(power >= inf.TARGET_POWER)
    assert answer.seeds == (int(seeds[reached[0]]) if reached.size else None)
