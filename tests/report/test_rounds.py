"""Adaptive rounds replayed from stored runs (`plan_rounds`), without Ray: what each round
schedules, that the baseline pairs every seed, that a round interrupted anywhere resumes
with exactly its missing runs, and that the replay ends where the core's own rule does."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ablate.config import AnalysisConfig, ProtocolConfig
from ablate.report import inference as inf
from ablate.report.design import Design
from ablate.report.rounds import plan_rounds

VARIANTS = ["baseline", "big", "null", "small"]
EFFECTS = {"big": -0.2, "null": 0.0, "small": 0.03}
SEEDS = list(range(8))


def design(max_seeds: int = 8, **protocol: object) -> Design:
    seeds = {"min": 3, "max": max_seeds}
    return Design.of(ProtocolConfig(seeds=seeds, **protocol), AnalysisConfig())


def all_deltas(seed: int = 0) -> dict[tuple[str, int], float]:
    """Every delta the study could ever observe (as if every run were made)."""
    rng = np.random.default_rng(seed)
    x = inf.simulate_deltas(rng, (3,), 8, delta=np.array(list(EFFECTS.values())), sd=0.02, rho=0.2)
    return {(v, s): float(x[i, s]) for i, v in enumerate(EFFECTS) for s in SEEDS}


def stored(truth: dict, finished: set[tuple[str, int]], failed=frozenset()) -> pd.DataFrame:
    """The paired deltas of the ok runs among `finished`."""
    rows = [
        {"variant": v, "seed": s, "delta": truth[(v, s)]}
        for (v, s) in sorted(finished)
        if v != "baseline" and ("baseline", s) in finished
        if (v, s) not in failed and ("baseline", s) not in failed
    ]
    return pd.DataFrame(rows, columns=["variant", "seed", "delta"])


def run_to_the_end(truth: dict, d: Design, failed=frozenset()) -> tuple[set, list]:
    """Run every round the replay asks for; returns (finished runs, plan per round)."""
    finished: set[tuple[str, int]] = set()
    plans = []
    while True:
        plan = plan_rounds(VARIANTS, SEEDS, finished, stored(truth, finished, failed), d)
        plans.append(plan)
        if plan.done:
            return finished, plans
        finished |= {(v, s) for v, seeds in plan.pending.items() for s in seeds}


def test_round_zero_gives_every_variant_its_first_min_seeds() -> None:
    plan = plan_rounds(VARIANTS, SEEDS, set(), stored({}, set()), design())
    assert plan.number == 0 and not plan.done and plan.decisions.empty
    assert plan.pending == {v: [0, 1, 2] for v in VARIANTS} == plan.scheduled


def test_rounds_add_the_next_seed_to_undecided_variants_and_the_baseline() -> None:
    truth = all_deltas()
    finished, plans = run_to_the_end(truth, design())
    final = plans[-1]
    assert final.done and set(final.pairs()) == finished
    assert final.scheduled["big"] == [0, 1, 2]  # a large effect stops at min
    union = set().union(*(set(final.scheduled[v]) for v in EFFECTS))
    assert set(final.scheduled["baseline"]) == union
    for before, plan in itertools.pairwise(plans[:-1]):
        assert plan.number == before.number + 1
    assert final.number == plans[-2].number
    for plan in plans[1:-1]:
        added = {s for seeds in plan.pending.values() for s in seeds}
        assert added == {plan.number + 2}  # round n adds seed index min + n - 1
        getting = set(plan.pending) - {"baseline"}
        needing = set(plan.decisions.loc[plan.decisions["needs_seed"], "variant"])
        assert getting == needing and "baseline" in plan.pending
        assert all(
            r.endswith("another seed")
            for r in plan.decisions.loc[plan.decisions["needs_seed"], "reason"]
        )


def test_the_replay_ends_where_the_cores_adaptive_rule_does() -> None:
    """No failures: the seeds each variant ends with are `inference.replay_adaptive`'s."""
    for seed in range(10):
        truth = all_deltas(seed)
        _, plans = run_to_the_end(truth, design())
        x = np.array([[truth[(v, s)] for s in SEEDS] for v in EFFECTS])
        d = design()
        used, final = inf.replay_adaptive(x, r=d.r, schedule=d.schedule)
        assert [len(plans[-1].scheduled[v]) for v in EFFECTS] == used.tolist()
        assert plans[-1].decisions["verdict"].tolist() == final.verdict.tolist()


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_round_interrupted_anywhere_resumes_with_exactly_its_missing_runs(cut: int) -> None:
    """Kill the study after `cut` runs of the order they were made in: the replay schedules
    what the uninterrupted study would have, and no run twice."""
    truth = all_deltas(3)
    complete, plans = run_to_the_end(truth, design())
    made = [(v, s) for plan in plans[:-1] for v, seeds in plan.pending.items() for s in seeds]
    assert len(made) == len(set(made)) == len(complete)
    partial = set(made[: min(cut, len(made))])
    finished = set(partial)
    while True:
        plan = plan_rounds(VARIANTS, SEEDS, finished, stored(truth, finished), design())
        new = {(v, s) for v, seeds in plan.pending.items() for s in seeds}
        assert not new & finished
        if plan.done:
            break
        finished |= new
    assert finished == complete


def test_later_runs_never_change_an_earlier_rounds_decision() -> None:
    """A store that holds more than a round scheduled (a later round's runs of another
    history) decides each round on the runs scheduled up to it."""
    truth = all_deltas(5)
    complete, plans = run_to_the_end(truth, design())
    extra = {("big", 3), ("big", 4)}  # never scheduled: big stops at min
    assert not extra & complete
    with_extra = complete | extra | {("baseline", 3), ("baseline", 4)}
    plan = plan_rounds(VARIANTS, SEEDS, with_extra, stored(truth, with_extra), design())
    assert plan.done and plan.scheduled == plans[-1].scheduled


def test_a_failed_run_counts_as_run_and_its_variant_gets_more_seeds() -> None:
    truth = all_deltas()
    failed = {("big", 1)}  # runs file written, status failed: no delta for seed 1
    finished, plans = run_to_the_end(truth, design(), failed)
    big = plans[-1].scheduled["big"]
    assert len(big) > 3  # two paired seeds at min: below the first look
    assert ("big", 1) in finished and len(finished) == len(set(plans[-1].pairs()))


def noisy_null() -> dict[tuple[str, int], float]:
    """Deltas of 0 on average with a spread of 0.07: no seed count up to 8 decides them."""
    return {key: 0.0 + 0.05 * ((key[1] * 7919) % 5 - 2) for key in all_deltas()}


def test_every_variant_stops_at_max_without_futility() -> None:
    seeds = {"min": 3, "max": 5, "futility": False}
    d = Design.of(ProtocolConfig(seeds=seeds), AnalysisConfig())
    _, plans = run_to_the_end(noisy_null(), d)
    assert all(len(seeds) <= 5 for seeds in plans[-1].scheduled.values())
    assert plans[-1].scheduled["baseline"] == [0, 1, 2, 3, 4]
    stopped = plans[-1].decisions
    assert stopped["reason"].str.contains("stopped at max_seeds=5").any()
    assert not stopped["futile"].any()


def test_futility_stops_what_no_seed_count_up_to_max_decides() -> None:
    """The same noisy null with futility (the default): every variant stops at min, its
    reason says why, and the baseline runs no seed beyond."""
    _, plans = run_to_the_end(noisy_null(), design(max_seeds=5))
    final = plans[-1]
    assert final.number == 0 and final.done
    assert final.scheduled == {v: [0, 1, 2] for v in VARIANTS}
    decisions = final.decisions.set_index("variant")
    assert decisions["futile"].all() and not decisions["needs_seed"].any()
    assert (decisions["verdict"] == inf.INCONCLUSIVE).all()
    assert (
        decisions["reason"]
        .str.contains(
            "stopped for futility: no number of seeds up to max=5 would decide it at 80% power"
        )
        .all()
    )
    assert decisions["reason"].str.endswith("(seeds needed: never)").all()


def test_the_design_carries_the_futility_setting() -> None:
    assert design().schedule.futility is True
    off = ProtocolConfig(seeds={"min": 3, "max": 8, "futility": False})
    assert Design.of(off, AnalysisConfig()).schedule.futility is False


def test_a_fixed_design_has_no_rounds() -> None:
    with pytest.raises(ValueError, match="adaptive"):
        plan_rounds(
            VARIANTS, SEEDS, set(), stored({}, set()), Design.of(ProtocolConfig(), AnalysisConfig())
        )
