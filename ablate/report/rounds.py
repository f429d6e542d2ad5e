"""Adaptive seeds round by round, replayed from a study's stored runs.

Adaptive seeds (`protocol.seeds: {min, max}`) run in rounds. Round 0 gives every variant its
first `min` seeds; after each round `inference.next_round` looks at the paired macro deltas
of `analysis.metric` and names the variants that need another seed; those get the next seed
of the study's seed list, and the baseline gets every seed any variant gets. `plan_rounds`
replays this from round 0 on the stored runs alone, each round deciding on the data that
existed after it, so the same store always gives the same rounds: a study interrupted mid-
round resumes with exactly the runs the uninterrupted study would have made.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd

from ablate.report.design import Design
from ablate.report.inference import ROUND_COLUMNS, next_round
from ablate.report.stats import BASELINE, MACRO, paired_deltas

ROUND_DELTA_COLUMNS = ["variant", "seed", "delta"]


@dataclass(frozen=True)
class RoundPlan:
    """Where an adaptive study stands.

    Attributes:
        number: the round whose runs were scheduled last (0: every variant's first min seeds).
        scheduled: variant -> every seed scheduled for it up to this round, in order.
        pending: the scheduled runs without a runs file (the round to run now); empty when
            the study is done.
        decisions: `inference.next_round` after the previous round (why this round's
            variants get a seed), or after the last round when done; empty in round 0.
        done: every scheduled run is stored and no variant needs another seed.
    """

    number: int
    scheduled: dict[str, list[int]]
    pending: dict[str, list[int]]
    decisions: pd.DataFrame
    done: bool

    def pairs(self) -> list[tuple[str, int]]:
        """Every scheduled (variant, seed), in variant order."""
        return [(variant, seed) for variant, seeds in self.scheduled.items() for seed in seeds]

    def reasons(self) -> list[str]:
        """One line per variant: its verdict so far and whether it gets another seed, why."""
        return [f"{row.variant}: {row.reason}" for row in self.decisions.itertuples()]


def round_deltas(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The paired macro deltas of `metric` that adaptive rounds decide on.

    Args:
        scores: `stats.run_scores` of the ok runs (what the summary computes too).
        metric: analysis.metric.

    Returns:
        Columns variant, seed, delta (one row per non-baseline variant and seed both ok).
    """
    if scores.empty:
        return pd.DataFrame(columns=ROUND_DELTA_COLUMNS)
    macro = scores[(scores["category"] == MACRO) & (scores["metric"] == metric)]
    return paired_deltas(macro)[ROUND_DELTA_COLUMNS].reset_index(drop=True)


def plan_rounds(
    variants: Sequence[str],
    seeds: Sequence[int],
    finished: Collection[tuple[str, int]],
    deltas: pd.DataFrame,
    design: Design,
) -> RoundPlan:
    """Replay the adaptive rounds on the stored runs: the rounds done and the one to run.

    Each round decides on the runs scheduled up to it and nothing later, so stored runs of
    a later round never change an earlier decision; the replay stops at the first round
    with runs still missing (the one to run or finish) or when no variant needs a seed.

    Args:
        variants: the study's variants, baseline included (grid order).
        seeds: the study's seed list (`protocol.max_seed_list()`), in the order seeds run.
        finished: (variant, seed) with a runs file, whatever its status.
        deltas: `round_deltas` of the ok runs.
        design: the study's design; its schedule must be set (adaptive seeds).

    Returns:
        The RoundPlan.

    Raises:
        ValueError: the design has no schedule.
    """
    schedule = design.schedule
    if schedule is None:
        raise ValueError("plan_rounds needs adaptive seeds (a schedule)")
    others = [variant for variant in variants if variant != BASELINE]
    count = dict.fromkeys(variants, schedule.min_seeds)
    done_runs = set(finished)
    decisions = pd.DataFrame(columns=ROUND_COLUMNS)
    number = 0
    while True:
        scheduled = {variant: list(seeds[: count[variant]]) for variant in variants}
        pending = {
            variant: missing
            for variant, planned in scheduled.items()
            if (missing := [seed for seed in planned if (variant, seed) not in done_runs])
        }
        if pending:
            return RoundPlan(number, scheduled, pending, decisions, done=False)
        if not others:
            return RoundPlan(number, scheduled, {}, decisions, done=True)
        decisions = _decide(deltas, scheduled, others, count, design)
        more = list(decisions.loc[decisions["needs_seed"].astype(bool), "variant"])
        if not more:
            return RoundPlan(number, scheduled, {}, decisions, done=True)
        for variant in more:
            count[variant] += 1
        if BASELINE in count:  # the baseline runs every seed any variant runs: pairs stay pairs
            count[BASELINE] = max(count[BASELINE], *(count[v] for v in others))
        number += 1


def _decide(
    deltas: pd.DataFrame,
    scheduled: dict[str, list[int]],
    others: list[str],
    count: dict[str, int],
    design: Design,
) -> pd.DataFrame:
    """next_round on the deltas of the scheduled runs only."""
    keep = [
        seed in scheduled.get(variant, ())
        for variant, seed in zip(deltas["variant"], deltas["seed"], strict=True)
    ]
    return next_round(
        deltas[keep] if len(deltas) else deltas,
        r=design.r,
        schedule=design.schedule,
        margin=design.margin,
        alpha=design.alpha,
        variants=others,
        seeds_run={variant: count[variant] for variant in others},
    )
