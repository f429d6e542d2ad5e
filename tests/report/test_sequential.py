"""Adaptive seeds: the alpha-spending schedule, the sequential p-value, the round rule.

Error rates are simulated with `replay_adaptive`, the rule the engine applies between rounds
(start every variant at min seeds, add one seed to each inconclusive variant, re-analyse),
on deltas from the Nadeau-Bengio model (correlation rho = 0.2, r = 0.25). Bands are Z = 4
Monte Carlo standard errors sqrt(p (1 - p) / N) around the claimed rate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ablate.errors import UserError
from ablate.report import inference as inf
from ablate.report.sequential import (
    SPENDING,
    SequentialSchedule,
    information,
    sequential_p_value,
)

RHO = 0.2
R = RHO / (1 - RHO)
ALPHA = 0.05
MARGIN = 0.01
Z = 4.0
SCHEDULE = SequentialSchedule(3, 10)


def mc_band(rate: float, n: int) -> float:
    return Z * math.sqrt(rate * (1 - rate) / n)


# --- the schedule -----------------------------------------------------------------------


@pytest.mark.parametrize("spending", SPENDING.names())
@pytest.mark.parametrize("r", [0.0, R])
def test_every_spending_function_spends_exactly_alpha(spending: str, r: float) -> None:
    alphas = SequentialSchedule(3, 10, spending).look_alphas(r, ALPHA)
    assert len(alphas) == 8
    assert alphas.sum() == pytest.approx(ALPHA, rel=1e-12)
    assert np.all(alphas >= 0)


def test_information_fraction_uses_the_corrected_variance_factor() -> None:
    # I(J) = 1 / (1/J + r): r = 0.25 gives I(3) = 12/7 and I(10) = 20/7, t_3 = 0.6
    assert information(3, R) == pytest.approx(12 / 7)
    fractions = SCHEDULE.fractions(R)
    assert fractions[0] == pytest.approx(0.6) and fractions[-1] == 1.0
    # the split fixed (r = 0): the usual J / max
    np.testing.assert_allclose(SCHEDULE.fractions(0.0), np.arange(3, 11) / 10)


def test_default_spending_keeps_half_for_the_last_look() -> None:
    """pocock-final-half: f(t) = (alpha/2) ln(1 + (e-1) t) before the last look; the first
    look gets (alpha/2) ln(1 + (e-1) 0.6) at r = 0.25, the last alpha/2 plus what is left."""
    alphas = SCHEDULE.look_alphas(R, ALPHA)
    assert alphas[0] == pytest.approx(ALPHA / 2 * math.log(1 + (math.e - 1) * 0.6))
    assert alphas[-1] >= ALPHA / 2
    assert SCHEDULE.spending == "pocock-final-half"


def test_one_look_is_the_fixed_design() -> None:
    schedule = SequentialSchedule(5, 5)
    np.testing.assert_allclose(schedule.look_alphas(R, ALPHA), [ALPHA])
    x = inf.simulate_deltas(np.random.default_rng(0), (500, 3), 5, delta=0.01, sd=0.01, rho=RHO)
    fixed = inf.analyse_family(x, r=R)
    sequential = inf.analyse_family(x, r=R, schedule=schedule)
    np.testing.assert_allclose(sequential.p_value, fixed.p_value)
    np.testing.assert_allclose(sequential.ci_low, fixed.ci_low)
    assert (sequential.verdict == fixed.verdict).all()


def test_schedule_bounds_and_names() -> None:
    with pytest.raises(ValueError, match="min_seeds"):
        SequentialSchedule(1, 5)
    with pytest.raises(ValueError, match="min_seeds"):
        SequentialSchedule(5, 4)
    with pytest.raises(ValueError, match="min_seeds"):
        SequentialSchedule(3, 1001)
    with pytest.raises(UserError, match="pocock-final-half"):
        SequentialSchedule(3, 5, "haybittle")
    assert SCHEDULE.alpha_at(2, R, ALPHA) == SCHEDULE.alpha_at(3, R, ALPHA)
    with pytest.raises(ValueError, match="max_seeds"):
        SCHEDULE.alpha_at(11, R, ALPHA)


def test_sequential_p_value_by_hand() -> None:
    # looks p = 0.04 at alpha_1 = 0.04 and p = 0.003 at alpha_2 = 0.01:
    # min(0.04 * 0.05 / 0.04, 0.003 * 0.05 / 0.01) = min(0.05, 0.015) = 0.015
    assert sequential_p_value(np.array([0.04, 0.003]), np.array([0.04, 0.01]), 0.05) == (
        pytest.approx(0.015)
    )
    assert sequential_p_value(np.array([0.9, 0.8]), np.array([0.04, 0.01]), 0.05) == 1.0
    assert np.isnan(sequential_p_value(np.array([np.nan, np.nan]), np.array([0.04, 0.01]), 0.05))


def test_analyse_uses_the_looks_min_to_n_and_the_last_looks_level() -> None:
    """p* of a 5-seed cell is the minimum over the prefixes of 3, 4 and 5 seeds of
    p_J alpha / alpha_J; its interval is the one at 5 seeds at level 1 - alpha_5."""
    x = np.array([[0.03, 0.01, 0.05, 0.04, 0.02]])
    result = inf.analyse_family(x, r=R, schedule=SCHEDULE)
    alphas = SCHEDULE.look_alphas(R, ALPHA)
    looks = [inf.corrected_t(x[0, :j], R).p_value * ALPHA / alphas[j - 3] for j in (3, 4, 5)]
    assert result.p_value[0] == pytest.approx(min(1.0, min(looks)))
    last = inf.corrected_t(x[0], R)
    half = scipy_stats.t.isf(alphas[2] / 2, 4) * last.se
    assert result.ci_low[0] == pytest.approx(last.mean - half)
    assert result.alpha_look[0] == pytest.approx(alphas[2])


# --- error rates of the adaptive rule ---------------------------------------------------------

N = 20_000


def test_adaptive_rule_holds_alpha_under_the_null() -> None:
    """True null, min 3, max 10, one variant: P(better or worse) <= alpha (N = 20,000,
    band +0.0062). The sequential p* is valid too: P(p* <= u) <= u at u = 0.01, 0.05, 0.2."""
    x = inf.simulate_deltas(np.random.default_rng(21), (N, 1), 10, delta=0.0, sd=0.015, rho=RHO)
    _, result = inf.replay_adaptive(x, r=R, schedule=SCHEDULE)
    flagged = np.isin(result.verdict, [inf.BETTER, inf.WORSE]).mean()
    assert flagged <= ALPHA + mc_band(ALPHA, N)
    for u in (0.01, 0.05, 0.2):
        assert np.mean(result.p_value <= u) <= u + mc_band(u, N)


def test_adaptive_rule_holds_the_family_wise_rate() -> None:
    """Family of 4 null variants against one shared baseline (deltas correlated 0.5 across
    variants): P(any variant flagged) <= alpha (N = 10,000, band +0.0087)."""
    n = 10_000
    rng = np.random.default_rng(22)
    variants = inf.simulate_deltas(rng, (n, 4), 10, delta=0.0, sd=0.015, rho=RHO)
    baseline = inf.simulate_deltas(rng, (n, 1), 10, delta=0.0, sd=0.015, rho=RHO)
    _, result = inf.replay_adaptive((variants - baseline) / math.sqrt(2), r=R, schedule=SCHEDULE)
    flagged = np.isin(result.verdict, [inf.BETTER, inf.WORSE]).any(axis=-1).mean()
    assert flagged <= ALPHA + mc_band(ALPHA, n)


def test_adaptive_false_equivalence_at_the_margin_is_at_most_alpha() -> None:
    """True delta = margin: 'equivalent' at most alpha of the time (N = 20,000, band +0.0062),
    at a noise (sd 0.004) where equivalence is often claimed when the truth is 0."""
    rng = np.random.default_rng(23)
    x = inf.simulate_deltas(rng, (N, 1), 10, delta=MARGIN, sd=0.004, rho=RHO)
    _, result = inf.replay_adaptive(x, r=R, schedule=SCHEDULE)
    assert np.mean(result.verdict == inf.EQUIVALENT) <= ALPHA + mc_band(ALPHA, N)
    x0 = inf.simulate_deltas(rng, (N, 1), 10, delta=0.0, sd=0.004, rho=RHO)
    _, null = inf.replay_adaptive(x0, r=R, schedule=SCHEDULE)
    assert np.mean(null.verdict == inf.EQUIVALENT) > 0.5


def test_adaptive_rule_finds_three_margins_mostly_before_max() -> None:
    """True delta 3 x margin = 0.03, seed sd 0.01 (a fixed 10-seed study finds it 99.9% of
    the time): the adaptive rule finds it >= 95% of the time and, of those, most (> 50%)
    before the 10th seed; it stops at min as often as the first look's test alone rejects
    (its exact power, 0.30) (N = 10,000, bands 4 MC se). Its displayed interval, at the
    stopping look's level 1 - alpha_J, covers the truth >= 95% of the time."""
    n = 10_000
    x = inf.simulate_deltas(np.random.default_rng(24), (n, 1), 10, delta=0.03, sd=0.01, rho=RHO)
    assert np.mean(inf.analyse_family(x, r=R).verdict == inf.BETTER) >= 0.99
    used, result = inf.replay_adaptive(x, r=R, schedule=SCHEDULE)
    found = result.verdict == inf.BETTER
    assert found.mean() >= 0.95 - mc_band(0.95, n)
    assert np.mean(used[found] < 10) > 0.5 + mc_band(0.5, n)
    # stopping at min is the first look's test at alpha_3 alone: its exact power
    first = inf.significance_power(
        0.03, 0.01 * math.sqrt(1 - RHO), np.array([3]), R, SCHEDULE.alpha_at(3, R, ALPHA)
    )[0]
    assert abs(np.mean(used == 3) - first) <= mc_band(first, n)
    covered = (result.ci_low <= 0.03) & (result.ci_high >= 0.03)
    assert covered.mean() >= 1 - ALPHA - mc_band(ALPHA, n)


# --- the engine's round function ----------------------------------------------------------------


def frame(deltas: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "seed": s, "delta": d}
            for v, ds in deltas.items()
            for s, d in enumerate(ds)
        ]
    )


def test_next_round_says_who_is_decided_and_why() -> None:
    paired = frame(
        {
            "no-skip": [-0.20, -0.21, -0.19],  # a large loss: decided at min
            "wider": [0.01, -0.02, 0.03],  # unclear: another seed
            "short": [0.01, 0.02],  # a failed run: below the first look
        }
    )
    decisions = inf.next_round(
        paired, r=R, schedule=SCHEDULE, variants=["no-skip", "wider", "short", "new"]
    )
    rows = decisions.set_index("variant")
    assert list(decisions.columns) == inf.ROUND_COLUMNS
    assert rows.loc["no-skip", "verdict"] == inf.WORSE and not rows.loc["no-skip", "needs_seed"]
    assert rows.loc["no-skip", "reason"].startswith("worse: Holm-adjusted p")
    assert rows.loc["wider", "verdict"] == inf.INCONCLUSIVE and rows.loc["wider", "needs_seed"]
    assert "crosses the margin ±0.01" in rows.loc["wider", "reason"]
    assert rows.loc["wider", "reason"].endswith("another seed")
    assert (
        rows.loc["short", "needs_seed"] and "the first look is at 3" in rows.loc["short", "reason"]
    )
    assert rows.loc["new", "needs_seed"] and rows.loc["new", "n_seeds"] == 0


def test_next_round_stops_at_max_seeds_run() -> None:
    paired = frame({"wider": [0.01, -0.02, 0.03, 0.0, 0.01]})
    schedule = SequentialSchedule(3, 6)
    more = inf.next_round(paired, r=R, schedule=schedule)
    assert more.loc[0, "needs_seed"]
    # 6 seeds run (one failed): max reached, stop with the reason
    stop = inf.next_round(paired, r=R, schedule=schedule, seeds_run={"wider": 6})
    assert not stop.loc[0, "needs_seed"] and not stop.loc[0, "decided"]
    assert "stopped at max_seeds=6" in stop.loc[0, "reason"]


def test_next_round_replays_like_the_vectorised_rule() -> None:
    """Round by round through next_round (DataFrames) ends where replay_adaptive (arrays)
    does, on 30 random families of 3; a decided variant stays decided."""
    rng = np.random.default_rng(25)
    effects = np.array([0.03, 0.0, -0.015])
    x = inf.simulate_deltas(rng, (30, 3), 10, delta=effects, sd=0.012, rho=RHO)
    used, final = inf.replay_adaptive(x, r=R, schedule=SCHEDULE)
    names = ["a", "b", "c"]
    for study in range(30):
        counts = dict.fromkeys(names, 3)
        decided: dict[str, str] = {}
        while True:
            paired = frame({v: list(x[study, i, : counts[v]]) for i, v in enumerate(names)})
            decisions = inf.next_round(paired, r=R, schedule=SCHEDULE, variants=names)
            for row in decisions.itertuples():
                if row.variant in decided:
                    assert row.verdict == decided[row.variant]
                if row.decided:
                    decided[row.variant] = row.verdict
            if not decisions["needs_seed"].any():
                break
            for row in decisions.itertuples():
                counts[row.variant] += int(row.needs_seed)
        assert [counts[v] for v in names] == used[study].tolist()
        assert decisions["verdict"].tolist() == final.verdict[study].tolist()
