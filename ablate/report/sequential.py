"""Group-sequential looks for adaptive seeds: alpha spending over the looks J = min..max.

An adaptive study looks at a variant's paired deltas after every round: first at `min`
seeds, then after each added seed, up to `max`. Each look J gets its own share alpha_J of the
level alpha, from a spending function f of the information fraction:

    alpha_min = f(t_min),  alpha_J = f(t_J) - f(t_(J-1))  (J > min),  sum over looks = alpha.

The information of J paired seeds is the inverse of the corrected variance factor,
I(J) = 1 / (1/J + r) (r = n_test / n_train, 0 when the split is fixed), and the information
fraction is t_J = I(J) / I(max). A look tests at its own alpha_J and nothing else; the union
(Bonferroni) bound over looks then holds the error rate of the whole sequence at alpha under
ANY dependence between looks. That matters here: the corrected statistics of successive
looks are not the independent-increment process the classic Pocock / O'Brien-Fleming
boundaries assume (the split-to-split correlation r never averages away), so boundaries
that rely on that joint distribution could overspend.

A sequential p-value turns the looks into one number that Holm can adjust:
p* = min over the looks taken of p_J * alpha / alpha_J, capped at 1. P(p* <= u) <= u for
every u by the same union bound, whatever rule decided when to stop. A fixed design is the
special case with one look and alpha_1 = alpha (p* = p).

Spending functions are a registry (`SPENDING`). The default, `pocock-final-half`, keeps
alpha/2 for the last look and spends the other half over the looks (min included) with the
Lan-DeMets Pocock-type function: f(t) = (alpha/2) ln(1 + (e - 1) t) for t < 1, f(1) = alpha.
Why: the union bound, unlike classic boundaries, recovers nothing from the correlation
between looks, so alpha spent early is lost to the last look, where the t test has the most
degrees of freedom; and the first look has only min - 1 of them (2 at min 3), where the t
distribution's heavy tails make a tiny alpha_1 hopeless. Plain `pocock` (f(t) = alpha ln(1 +
(e - 1) t)) spends 71% of alpha at min when r = 0.25 (t_3 = 0.6 of the information at max
10) and leaves 0.001 for the last look: half the power of a fixed 10-seed study at an effect
it finds 92% of the time. `obrien-fleming` (f(t) = 2 - 2 Phi(z_(1-alpha/2) / sqrt t)) almost
never stops at min when the split is fixed (r = 0, alpha_1 = 0.0003). Reserving half for the
last look keeps the power within 12 points of the fixed design (7 at 3 margins, none from 5
margins up) while large effects still stop at min; benchmarks/calibration.py measures all
three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from ablate.registry import Registry

MAX_SEEDS = 1000
DEFAULT_SPENDING = "pocock-final-half"

SpendingFunction = Callable[[np.ndarray, float], np.ndarray]
SPENDING: Registry[SpendingFunction] = Registry("alpha spending function")


@SPENDING.register("pocock")
def pocock(fraction: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets Pocock-type spending: alpha ln(1 + (e - 1) t); f(0) = 0, f(1) = alpha."""
    return alpha * np.log1p((np.e - 1.0) * np.asarray(fraction, dtype=float))


@SPENDING.register("obrien-fleming")
def obrien_fleming(fraction: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending: 2 - 2 Phi(z_(1-alpha/2) / sqrt t)."""
    fraction = np.asarray(fraction, dtype=float)
    with np.errstate(divide="ignore"):
        return 2.0 * scipy_stats.norm.sf(scipy_stats.norm.isf(alpha / 2) / np.sqrt(fraction))


@SPENDING.register("pocock-final-half")
def pocock_final_half(fraction: np.ndarray, alpha: float) -> np.ndarray:
    """alpha/2 spent Pocock-like over the looks before the last; the last gets the rest."""
    fraction = np.asarray(fraction, dtype=float)
    return np.where(fraction >= 1.0, alpha, 0.5 * pocock(fraction, alpha))


def information(seeds: np.ndarray | int, r: float) -> np.ndarray:
    """Information of J paired seeds: 1 / (1/J + r), the inverse corrected variance factor."""
    return 1.0 / (1.0 / np.asarray(seeds, dtype=float) + r)


@dataclass(frozen=True)
class SequentialSchedule:
    """Looks at J = min_seeds, min_seeds + 1, ..., max_seeds paired seeds.

    Attributes:
        min_seeds: seeds every variant runs before the first look (>= 2).
        max_seeds: the last look; a variant still inconclusive there stops (<= 1,000).
        spending: name in `SPENDING`.
        futility: stop giving seeds to an inconclusive variant that no number of seeds up to
            max_seeds would decide at 80% power (`inference.futile`); False: seeds until
            decided or max_seeds.

    Example:
        >>> schedule = SequentialSchedule(3, 10)
        >>> bool(np.isclose(schedule.look_alphas(r=0.25, alpha=0.05).sum(), 0.05))
        True
    """

    min_seeds: int
    max_seeds: int
    spending: str = DEFAULT_SPENDING
    futility: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.min_seeds <= self.max_seeds <= MAX_SEEDS:
            raise ValueError(
                f"need 2 <= min_seeds <= max_seeds <= {MAX_SEEDS}, "
                f"got {self.min_seeds}..{self.max_seeds}"
            )
        SPENDING.get(self.spending)  # an unknown name fails here, listing the valid ones

    @property
    def looks(self) -> np.ndarray:
        """The seed counts J of the looks, min_seeds..max_seeds."""
        return np.arange(self.min_seeds, self.max_seeds + 1)

    def fractions(self, r: float) -> np.ndarray:
        """Information fraction t_J = I(J) / I(max) of each look (the last is 1)."""
        return information(self.looks, r) / information(self.max_seeds, r)

    def look_alphas(self, r: float, alpha: float) -> np.ndarray:
        """alpha_J of each look J = min..max: increments of the spending function; sum alpha."""
        spent = SPENDING.get(self.spending)(self.fractions(r), alpha)
        spent[-1] = alpha  # f(1) = alpha exactly, whatever the float error of f
        return np.diff(spent, prepend=0.0)

    def alpha_at(self, seeds: np.ndarray | int, r: float, alpha: float) -> np.ndarray:
        """alpha_J for looks at J seeds; J below min_seeds (failed runs) gets the first look's.

        Raises:
            ValueError: a J above max_seeds (no alpha is left for it).
        """
        seeds = np.asarray(seeds)
        if np.any(seeds > self.max_seeds):
            raise ValueError(f"a look at more than max_seeds={self.max_seeds} paired seeds")
        index = np.clip(seeds, self.min_seeds, self.max_seeds) - self.min_seeds
        return self.look_alphas(r, alpha)[index]

    def first_look(self, seeds: np.ndarray | int) -> np.ndarray:
        """The first look a cell with J paired seeds had: min_seeds, or J itself when fewer."""
        return np.minimum(np.asarray(seeds), self.min_seeds)


def sequential_p_value(p_looks: np.ndarray, alpha_looks: np.ndarray, alpha: float) -> np.ndarray:
    """p* = min over looks (last axis) of p_J alpha / alpha_J, capped at 1; NaN looks skipped.

    Valid (P(p* <= u) <= u) under any dependence between the looks, by the union bound.

    Example:
        >>> p_star = sequential_p_value(np.array([0.04, 0.003]), np.array([0.04, 0.01]), 0.05)
        >>> round(float(p_star), 6)
        0.015
    """
    p_looks = np.asarray(p_looks, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a look with alpha_J = 0 (spending underflow) can never reject: its term is inf
        scaled = p_looks * alpha / np.asarray(alpha_looks, dtype=float)
    best = np.min(np.where(np.isnan(scaled), np.inf, scaled), axis=-1)
    return np.where(np.all(np.isnan(p_looks), axis=-1), np.nan, np.minimum(best, 1.0))
