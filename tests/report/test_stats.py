"""Statistics checked against values computed independently from the known counts."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ablate.report import stats
from ablate.report.load import load_study
from ablate.store import StudyDir


def expected_scores(spec: ModuleType, variant: str, seed: int, index: int) -> dict[str, float]:
    """Scores of one run and category with the plain formulas (no 0/0 cases here)."""
    c = spec.counts(variant, seed, index)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
    }


def per_seed(spec: ModuleType, variant: str, category: str, metric: str) -> np.ndarray:
    """The metric over seeds; `macro` is the mean over categories of each seed."""
    names = spec.CATEGORIES
    indices = range(len(names)) if category == "macro" else [names.index(category)]
    return np.array(
        [
            np.mean([expected_scores(spec, variant, s, i)[metric] for i in indices])
            for s in spec.SEEDS
        ]
    )


def naive_holm(p_values: list[float]) -> list[float]:
    """Holm by its definition: max over smaller-or-equal p of min(1, (m - rank + 1) p)."""
    m = len(p_values)
    ranked = sorted(p_values)
    return [
        max(min(1.0, (m - j) * ranked[j]) for j in range(m) if ranked[j] <= p) for p in p_values
    ]


@pytest.fixture
def scores(study_factory) -> pd.DataFrame:
    study = load_study(StudyDir.open(study_factory()))
    return stats.run_scores(study.class_metrics)


def test_scores_recomputed_from_counts_not_stored_columns(
    scores: pd.DataFrame, spec: ModuleType
) -> None:
    row = scores.query("variant == 'no-skip' and seed == 2 and category == 'Normal'")
    for metric, value in expected_scores(spec, "no-skip", 2, 1).items():
        assert row[row["metric"] == metric]["value"].item() == pytest.approx(value, abs=1e-12)
        assert value != pytest.approx(0.123)


@pytest.mark.parametrize("metric", list(stats.METRICS))
@pytest.mark.parametrize("category", ["Normal", "macro"])
def test_mean_std_n_over_seeds(
    scores: pd.DataFrame, spec: ModuleType, metric: str, category: str
) -> None:
    summary = stats.score_summary(scores)
    row = summary.query("variant == 'wider' and category == @category and metric == @metric")
    values = per_seed(spec, "wider", category, metric)
    assert row["mean"].item() == pytest.approx(values.mean(), abs=1e-12)
    assert row["std"].item() == pytest.approx(values.std(ddof=1), abs=1e-12)
    assert row["n"].item() == 4


@pytest.mark.parametrize("metric", ["dice", "iou", "recall"])
@pytest.mark.parametrize("category", ["Adenocarcinoma", "Polyp", "macro"])
def test_deltas_ci_and_p_match_scipy(
    scores: pd.DataFrame, spec: ModuleType, metric: str, category: str
) -> None:
    table = stats.delta_table(scores).set_index(["variant", "category", "metric"])
    p_values = {}
    for variant in ("no-skip", "wider"):
        variant_values = per_seed(spec, variant, category, metric)
        base_values = per_seed(spec, "baseline", category, metric)
        deltas = variant_values - base_values
        row = table.loc[(variant, category, metric)]
        low, high = scipy_stats.t.interval(
            0.95, len(deltas) - 1, loc=deltas.mean(), scale=scipy_stats.sem(deltas)
        )
        p_values[variant] = scipy_stats.ttest_rel(variant_values, base_values).pvalue
        assert row["mean_delta"] == pytest.approx(deltas.mean(), abs=1e-12)
        assert row["baseline_mean"] == pytest.approx(base_values.mean(), abs=1e-12)
        assert row["variant_mean"] == pytest.approx(variant_values.mean(), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-9)
        assert row["p_value"] == pytest.approx(p_values[variant], rel=1e-9)
        assert row["n_seeds"] == 4
    # The family of this (category, metric): no-skip, wider and same (p = 1 exactly).
    family = [p_values["no-skip"], p_values["wider"], 1.0]
    adjusted = naive_holm(family)
    assert table.loc[("no-skip", category, metric), "p_holm"] == pytest.approx(adjusted[0])
    assert table.loc[("wider", category, metric), "p_holm"] == pytest.approx(adjusted[1])
    assert table.loc[("same", category, metric), "p_holm"] == 1.0


def test_known_signs(scores: pd.DataFrame) -> None:
    """no-skip moves tp to fn on every seed: recall and dice must drop, precision stays 1-ish."""
    table = stats.delta_table(scores).set_index(["variant", "category", "metric"])
    assert table.loc[("no-skip", "macro", "recall"), "ci_high"] < 0
    assert table.loc[("no-skip", "macro", "dice"), "p_holm"] < 0.05


def test_zero_variance_identical_variant(scores: pd.DataFrame) -> None:
    row = stats.delta_table(scores).query("variant == 'same' and category == 'macro'").iloc[0]
    assert (row["mean_delta"], row["ci_low"], row["ci_high"], row["p_value"]) == (0, 0, 0, 1)


def test_zero_variance_constant_nonzero_delta() -> None:
    assert stats.delta_test(np.array([0.1, 0.1, 0.1])) == pytest.approx((0.1, 0.1, 0.0))


def test_single_seed_has_delta_but_no_interval(scores: pd.DataFrame, spec: ModuleType) -> None:
    one_seed = scores[scores["seed"] == 2]
    table = stats.delta_table(one_seed)
    row = table.query("variant == 'no-skip' and category == 'macro' and metric == 'dice'").iloc[0]
    expected = (
        per_seed(spec, "no-skip", "macro", "dice")[2]
        - per_seed(spec, "baseline", "macro", "dice")[2]
    )
    assert row["mean_delta"] == pytest.approx(expected)
    assert row["n_seeds"] == 1
    assert np.isnan([row["ci_low"], row["ci_high"], row["p_value"], row["p_holm"]]).all()


def test_deltas_pair_only_common_seeds(scores: pd.DataFrame, spec: ModuleType) -> None:
    partial = scores[~((scores["variant"] == "baseline") & (scores["seed"] == 0))]
    row = (
        stats.delta_table(partial)
        .query("variant == 'no-skip' and category == 'Normal' and metric == 'dice'")
        .iloc[0]
    )
    deltas = (
        per_seed(spec, "no-skip", "Normal", "dice") - per_seed(spec, "baseline", "Normal", "dice")
    )[1:]
    assert row["n_seeds"] == 3
    assert row["mean_delta"] == pytest.approx(deltas.mean())
    assert row["p_value"] == pytest.approx(scipy_stats.ttest_1samp(deltas, 0.0).pvalue)


def test_holm_hand_worked_example() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04).
    adjusted = stats.holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_nan() -> None:
    adjusted = stats.holm(np.array([0.6, np.nan, 0.02]))
    # Family of two: 0.02*2 = 0.04, 0.6*1 = 0.6.
    assert adjusted[0] == pytest.approx(0.6)
    assert np.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.04)
    assert stats.holm(np.array([0.5, 0.7])) == pytest.approx([1.0, 1.0])


def test_losses_at_best_epoch(study_factory) -> None:
    study = load_study(StudyDir.open(study_factory()))
    losses = stats.losses_at_best_epoch(study.history, study.runs)
    row = losses.query("variant == 'wider' and seed == 1").iloc[0]
    assert row["epoch"] == 1
    assert row["train_loss"] == pytest.approx(0.9 - 0.2 + 0.2)
    assert row["val_loss"] == pytest.approx(0.95 - 0.1 + 0.2)
    assert row["test_loss"] == pytest.approx(1.0 + 0.2)  # from the runs table


def test_ranking_orders_by_macro_mean(
    scores: pd.DataFrame, spec: ModuleType, study_factory
) -> None:
    study = load_study(StudyDir.open(study_factory("ranked")))
    losses = stats.losses_at_best_epoch(study.history, study.runs)
    ranking = stats.ranking(scores, stats.delta_table(scores), losses, "dice")
    means = {v: per_seed(spec, v, "macro", "dice").mean() for v in spec.VARIANTS}
    assert ranking["variant"].iloc[0] == max(means, key=means.get)
    assert ranking["variant"].iloc[-1] == "no-skip"
    gap = ranking.set_index("variant").loc["no-skip", "loss_gap"]
    assert gap == pytest.approx(1.0 - (0.9 - 0.2))  # test loss - train loss at best epoch
