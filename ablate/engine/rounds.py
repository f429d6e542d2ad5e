"""Adaptive seeds on Ray: one Tune run per round until no variant needs another seed.

What each round runs comes from `ablate.report.load.study_rounds`: the rounds replayed on
the stored runs (the summary reads the same files the same way), so a study killed
mid-round continues with exactly the runs it still lacked, each run stored once.
"""

from __future__ import annotations

from dataclasses import replace

from ablate.engine.driver import Trainable, run_trials
from ablate.engine.messages import plural
from ablate.engine.progress import ProgressPrinter
from ablate.engine.study import PreparedStudy
from ablate.engine.trainable import TrialSetup
from ablate.report.load import study_rounds
from ablate.report.rounds import RoundPlan


def current_round(prepared: PreparedStudy) -> RoundPlan:
    """Where the adaptive study stands now, from its stored runs."""
    return study_rounds(prepared.study, prepared.grid, prepared.variant_names)


def round_lines(plan: RoundPlan) -> list[str]:
    """What a round runs and why each variant does or does not get another seed."""
    runs = sum(len(seeds) for seeds in plan.pending.values())
    if plan.number == 0:
        first = max((len(seeds) for seeds in plan.scheduled.values()), default=0)
        head = (
            f"round 0: every variant's first {plural(first, 'seed')} ({plural(runs, 'run')} to run)"
        )
        return [head]
    seeds = sorted({seed for pending in plan.pending.values() for seed in pending})
    head = (
        f"round {plan.number}: seed {', '.join(map(str, seeds))} for "
        f"{', '.join(plan.pending)} ({plural(runs, 'run')})"
    )
    return [head, *(f"  {line}" for line in plan.reasons())]


def done_lines(plan: RoundPlan) -> list[str]:
    """The final state: each variant's verdict and seeds."""
    runs = len(plan.pairs())
    head = f"adaptive seeds: done after round {plan.number}, {plural(runs, 'run')}"
    return [head, *(f"  {line}" for line in plan.reasons())]


def train_rounds(
    prepared: PreparedStudy,
    setup: TrialSetup,
    data: object,
    max_concurrent: int | None,
    may_grow: bool,
    trainable: Trainable,
) -> dict[str, str]:
    """Run rounds until the study is done; returns trial errors (then it stops: running the
    same command again continues the round).

    Args:
        prepared: the study.
        setup: what every trial shares (its seeds: the study's whole seed list).
        data: the dataset's ObjectRef.
        max_concurrent: trials at once.
        may_grow: the cluster may grow (joined with --address).
        trainable: the trial function.
    """
    resources = prepared.grid.resources
    plan = current_round(prepared)
    while plan.pending:
        for line in round_lines(plan):
            print(line, flush=True)
        scheduled = len(plan.pairs())
        printer = ProgressPrinter(
            pending={variant: len(seeds) for variant, seeds in plan.pending.items()},
            finished_before=scheduled - sum(len(s) for s in plan.pending.values()),
            total=scheduled,
            label=f"round {plan.number} ",
        )
        round_setup = replace(setup, round=plan.number, variant_seeds=plan.pending)
        errors = run_trials(
            round_setup,
            data,
            plan.pending,
            resources,
            max_concurrent,
            printer,
            prepared.study,
            may_grow=may_grow,
            trainable=trainable,
            name_suffix=f"-round{plan.number}",
        )
        if errors:
            return errors
        before, plan = plan, current_round(prepared)
        if plan.number == before.number and plan.pending == before.pending:
            # every trial ended without error yet stored nothing: never loop on it
            return dict.fromkeys(plan.pending, f"round {plan.number} stored none of its runs")
    for line in done_lines(plan):
        print(line, flush=True)
    return {}
