"""Calibration of the summary's statistics on simulated studies (no training, CPU only).

Deltas come from the Nadeau-Bengio model (`ablate.report.inference.simulate_deltas`): a
variant's per-seed deltas are delta + e, e ~ N(0, sd^2 ((1 - rho) I + rho 11^T)), with
correlation rho = test fraction = 0.2 (each seed redraws an 80/20 split of one dataset), so
the corrected test uses r = rho / (1 - rho) = 0.25. Every number is a rate over simulated
studies, with its Monte Carlo standard error sqrt(p (1 - p) / N).

1. False positives on true-null studies at 3, 5 and 10 seeds: the plain paired t (what
   `ablate summarize` used) against the corrected resampled t. Target: corrected within
   0.035..0.065.
2. The other error rates of the fixed design: TOST's false `equivalent` when the true delta
   equals the margin, and Holm's family-wise rate (4 null variants against one shared
   baseline).
3. Adaptive seeds (min 3, max 10 and min 3, max 8) against a fixed max-seed study: verdict
   rates and mean seeds for true deltas 0, 1, 2, 3, 5 and 10 margins, for every registered
   alpha-spending function without the futility stop, and for the default spending with
   it (`protocol.seeds.futility`, the default: judged at the favourable one-sigma reading)
   and with the futility rule judged at the observed mean and sd instead (the variant that
   was not built: seeds_needed > max), at r = 0.25 and with the split fixed (r = 0, rho = 0).

    python benchmarks/calibration.py          # about 2-4 min on 2 cores
    python benchmarks/calibration.py --quick  # seconds
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
from _common import machine_header, print_table

from ablate.report import inference as inf
from ablate.report.sequential import DEFAULT_SPENDING, SPENDING, SequentialSchedule

RHO = 0.2
ALPHA = 0.05
MARGIN = 0.01
TARGET = (0.035, 0.065)


def mc_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n)


def rate_cell(rate: float, n: int) -> str:
    return f"{rate:.4f} ± {mc_se(rate, n):.4f}"


def false_positive_rows(rng: np.random.Generator, n: int, seeds: list[int]) -> list[list]:
    """Plain vs corrected false-positive rate (fixed design, alpha 0.05) per seed count."""
    r = RHO / (1 - RHO)
    rows = []
    for j in seeds:
        x = inf.simulate_deltas(rng, (n,), j, delta=0.0, sd=0.02, rho=RHO)
        plain = float(np.mean(inf.corrected_t(x, 0.0).p_value < ALPHA))
        corrected = float(np.mean(inf.corrected_t(x, r).p_value < ALPHA))
        met = TARGET[0] <= corrected <= TARGET[1]
        rows.append(
            [j, n, rate_cell(plain, n), rate_cell(corrected, n), "met" if met else "NOT met"]
        )
    return rows


def other_rate_rows(rng: np.random.Generator, n: int, seeds: list[int]) -> list[list]:
    """TOST false equivalence at delta = margin; Holm family-wise rate, 4 null variants."""
    r = RHO / (1 - RHO)
    rows = []
    for j in seeds:
        x = inf.simulate_deltas(rng, (n, 1), j, delta=MARGIN, sd=0.006, rho=RHO)
        false_equivalent = float(np.mean(inf.analyse_family(x, r=r).verdict == inf.EQUIVALENT))
        variants = inf.simulate_deltas(rng, (n, 4), j, delta=0.0, sd=0.02, rho=RHO)
        baseline = inf.simulate_deltas(rng, (n, 1), j, delta=0.0, sd=0.02, rho=RHO)
        family = inf.analyse_family((variants - baseline) / math.sqrt(2), r=r)
        flagged = np.isin(family.verdict, [inf.BETTER, inf.WORSE]).any(axis=-1)
        rows.append([j, n, rate_cell(false_equivalent, n), rate_cell(float(flagged.mean()), n)])
    return rows


def verdict_rates(verdict: np.ndarray) -> list[str]:
    return [f"{np.mean(verdict == v):.3f}" for v in inf.VERDICTS]


def observed_futile(
    analysis: inf.FamilyAnalysis, schedule: SequentialSchedule, r: float
) -> np.ndarray:
    """The futility rule at the observed mean and sd (not built: it costs too much power):
    inconclusive at a look and seeds_needed's power at max seeds, with its aim, below 80%."""
    n = analysis.n
    judged = (
        (analysis.verdict == inf.INCONCLUSIVE)
        & (n >= schedule.min_seeds)
        & (n < schedule.max_seeds)
        & inf.has_noise_estimate(analysis.mean, analysis.sd, n)
        & ~analysis.zero_variance
    )
    mean, sd = np.where(judged, analysis.mean, 0.1), np.where(judged, analysis.sd, 0.01)
    seeds = schedule.max_seeds
    difference = inf.significance_power(mean, sd, seeds, r, ALPHA / n.shape[-1])
    equivalence = inf.equivalence_power(mean, sd, seeds, r, MARGIN, ALPHA)
    power = np.where(np.abs(mean) >= MARGIN, difference, equivalence)
    return judged & (power < inf.TARGET_POWER)


def replay_observed_futility(
    x: np.ndarray, r: float, schedule: SequentialSchedule
) -> tuple[np.ndarray, inf.FamilyAnalysis]:
    """`inf.replay_adaptive` with `observed_futile` in place of the built futility rule."""
    literal = replace(schedule, futility=False)
    used = np.full(x.shape[:-1], schedule.min_seeds)
    position = np.arange(x.shape[-1])
    while True:
        shown = np.where(position < used[..., None], x, np.nan)
        analysis = inf.analyse_family(shown, r=r, schedule=literal)
        more, _ = inf.needs_another_seed(analysis, used, literal, r=r)
        more &= ~observed_futile(analysis, schedule, r)
        if not more.any():
            return used, analysis
        used = used + more


def design_row(label: str, used: np.ndarray, verdict: np.ndarray, low: int, high: int) -> list:
    """Verdict rates, mean seeds, share stopped at min, share stopped early undecided."""
    early = np.mean((verdict == inf.INCONCLUSIVE) & (used < high))
    return [
        "",
        label,
        *verdict_rates(verdict),
        f"{used.mean():.2f}",
        f"{np.mean(used == low):.3f}",
        f"{early:.3f}",
    ]


def adaptive_rows(
    rng: np.random.Generator,
    n: int,
    low: int,
    high: int,
    rho: float,
    sd: float,
    effects: list[float],
) -> list[list]:
    """Verdict rates and mean seeds: fixed `high` seeds vs each spending function (no
    futility), then the default spending with futility, and with futility at observed values."""
    r = rho / (1 - rho)
    rows = []
    for multiple in effects:
        x = inf.simulate_deltas(rng, (n, 1), high, delta=multiple * MARGIN, sd=sd, rho=rho)
        fixed = inf.analyse_family(x, r=r)
        rows.append(
            [
                f"{multiple:g} m",
                f"fixed {high}",
                *verdict_rates(fixed.verdict),
                f"{high:.2f}",
                "",
                "",
            ]
        )
        for spending in SPENDING.names():
            schedule = SequentialSchedule(low, high, spending, futility=False)
            used, result = inf.replay_adaptive(x, r=r, schedule=schedule)
            rows.append(design_row(f"{spending} {low}..{high}", used, result.verdict, low, high))
        default = SequentialSchedule(low, high, DEFAULT_SPENDING)
        used, result = inf.replay_adaptive(x, r=r, schedule=default)
        rows.append(design_row(f"+ futility {low}..{high}", used, result.verdict, low, high))
        used, result = replay_observed_futility(x, r, default)
        rows.append(
            design_row(f"+ futility, observed {low}..{high}", used, result.verdict, low, high)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=100_000, help="null studies per seed count")
    parser.add_argument("--adaptive-studies", type=int, default=20_000, help="studies per row of 3")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    parser.add_argument("--quick", action="store_true", help="2,000 studies, fewer rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.studies, args.adaptive_studies = 2_000, 1_000
    rng = np.random.default_rng(args.seed)
    print(machine_header("Calibration: corrected resampled t, TOST, Holm, adaptive seeds"))
    print(
        f"model: Nadeau-Bengio deltas, correlation rho = {RHO} (r = {RHO / (1 - RHO):g}), "
        f"alpha {ALPHA}, margin {MARGIN}"
    )
    seeds = [3, 5, 10]
    fp_rows = false_positive_rows(rng, args.studies, seeds)
    print("\nFalse-positive rate on true-null studies (± one Monte Carlo standard error)")
    print_table(
        ["seeds", "studies", "plain paired t", "corrected resampled t", "target 0.035..0.065"],
        fp_rows,
    )
    print(f"\nFixed design, other error rates (alpha {ALPHA}; both should be <= alpha)")
    print_table(
        [
            "seeds",
            "studies",
            "TOST false equivalent (delta = margin, sd 0.006)",
            "Holm family-wise (4 null variants)",
        ],
        other_rate_rows(rng, args.studies // 2, seeds),
    )
    effects = [0, 3] if args.quick else [0, 1, 2, 3, 5, 10]
    headers = [
        "true delta",
        "design",
        *inf.VERDICTS,
        "mean seeds",
        "stopped at min",
        "stopped undecided before max",
    ]
    designs = [(3, 10, RHO, 0.015), (3, 8, RHO, 0.015), (3, 10, 0.0, 0.008)]
    for low, high, rho, sd in designs[:1] if args.quick else designs:
        print(
            f"\nAdaptive {low}..{high} vs fixed {high} seeds: rho {rho} "
            f"(r = {rho / (1 - rho):g}), seed sd {sd}, {args.adaptive_studies} studies per row"
        )
        print_table(headers, adaptive_rows(rng, args.adaptive_studies, low, high, rho, sd, effects))
    worst = max((row for row in fp_rows), key=lambda row: abs(float(row[3].split()[0]) - ALPHA))
    print(f"corrected_fp_rate={float(worst[3].split()[0]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
