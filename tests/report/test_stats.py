"""Statistics checked against values computed independently from the known counts."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ablate.config import AnalysisConfig, ProtocolConfig
from ablate.data.split import split_indices
from ablate.report import stats
from ablate.report.design import Design, delta_table
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


R = 0.2 / (0.8 * 0.9)
"""n_test / n_train from the protocol's fractions (test 0.2, validation 0.1 of the rest): the
designs below are built without a dataset.json."""


def corrected(deltas: np.ndarray, r: float, confidence: float = 0.95) -> tuple[float, ...]:
    """(ci_low, ci_high, p) of the corrected resampled t, written out from its definition."""
    n = len(deltas)
    se = deltas.std(ddof=1) * np.sqrt(1 / n + r)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * se
    p = 2 * scipy_stats.t.sf(abs(deltas.mean()) / se, n - 1)
    return deltas.mean() - half, deltas.mean() + half, p


def design(**protocol: object) -> Design:
    return Design.of(ProtocolConfig(seeds=4, **protocol), AnalysisConfig())


@pytest.mark.parametrize("metric", ["dice", "iou", "recall"])
@pytest.mark.parametrize("category", ["Adenocarcinoma", "Polyp", "macro"])
def test_deltas_use_the_corrected_test_and_holm(
    scores: pd.DataFrame, spec: ModuleType, metric: str, category: str
) -> None:
    table = delta_table(scores, design()).set_index(["variant", "category", "metric"])
    p_values = {}
    for variant in ("no-skip", "wider"):
        variant_values = per_seed(spec, variant, category, metric)
        base_values = per_seed(spec, "baseline", category, metric)
        deltas = variant_values - base_values
        row = table.loc[(variant, category, metric)]
        low, high, p_values[variant] = corrected(deltas, R)
        assert row["mean_delta"] == pytest.approx(deltas.mean(), abs=1e-12)
        assert row["baseline_mean"] == pytest.approx(base_values.mean(), abs=1e-12)
        assert row["variant_mean"] == pytest.approx(variant_values.mean(), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-9)
        assert row["p_value"] == pytest.approx(p_values[variant], rel=1e-9)
        assert row["n_seeds"] == 4 and row["test"] == "corrected resampled t"
        assert row["ci_level"] == 0.95 and row["margin"] == 0.01
    # The family of this (category, metric): no-skip, wider and same (no p: counts as 1).
    family = [p_values["no-skip"], p_values["wider"], 1.0]
    adjusted = naive_holm(family)
    assert table.loc[("no-skip", category, metric), "p_holm"] == pytest.approx(adjusted[0])
    assert table.loc[("wider", category, metric), "p_holm"] == pytest.approx(adjusted[1])
    assert np.isnan(table.loc[("same", category, metric), "p_holm"])


def test_a_fixed_split_is_the_plain_paired_t(scores: pd.DataFrame, spec: ModuleType) -> None:
    table = delta_table(scores, design(vary={"split": False})).set_index(
        ["variant", "category", "metric"]
    )
    row = table.loc[("no-skip", "Normal", "dice")]
    variant_values = per_seed(spec, "no-skip", "Normal", "dice")
    base_values = per_seed(spec, "baseline", "Normal", "dice")
    assert row["test"] == "paired t"
    assert row["p_value"] == pytest.approx(
        scipy_stats.ttest_rel(variant_values, base_values).pvalue
    )
    low, high = scipy_stats.t.interval(
        0.95,
        3,
        loc=(variant_values - base_values).mean(),
        scale=scipy_stats.sem(variant_values - base_values),
    )
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-9)


def test_known_signs(scores: pd.DataFrame) -> None:
    """no-skip moves tp to fn on every seed: recall and dice must drop, and be called worse."""
    table = delta_table(scores, design()).set_index(["variant", "category", "metric"])
    assert table.loc[("no-skip", "macro", "recall"), "ci_high"] < 0
    assert table.loc[("no-skip", "macro", "dice"), "p_holm"] < 0.05
    assert table.loc[("no-skip", "macro", "dice"), "verdict"] == "worse"


def test_zero_variance_identical_variant_is_no_certainty(scores: pd.DataFrame) -> None:
    row = delta_table(scores, design()).query("variant == 'same' and category == 'macro'").iloc[0]
    assert row["mean_delta"] == 0 and row["verdict"] == "inconclusive"
    assert np.isnan([row["ci_low"], row["ci_high"], row["p_value"]]).all()
    assert "no estimate of noise" in row["reason"]


def test_single_seed_has_delta_but_no_interval(scores: pd.DataFrame, spec: ModuleType) -> None:
    one_seed = scores[scores["seed"] == 2]
    table = delta_table(one_seed, design())
    row = table.query("variant == 'no-skip' and category == 'macro' and metric == 'dice'").iloc[0]
    expected = (
        per_seed(spec, "no-skip", "macro", "dice")[2]
        - per_seed(spec, "baseline", "macro", "dice")[2]
    )
    assert row["mean_delta"] == pytest.approx(expected)
    assert row["n_seeds"] == 1 and row["verdict"] == "inconclusive"
    assert np.isnan([row["ci_low"], row["ci_high"], row["p_value"], row["p_holm"]]).all()


def test_deltas_pair_only_common_seeds(scores: pd.DataFrame, spec: ModuleType) -> None:
    partial = scores[~((scores["variant"] == "baseline") & (scores["seed"] == 0))]
    row = (
        delta_table(partial, design())
        .query("variant == 'no-skip' and category == 'Normal' and metric == 'dice'")
        .iloc[0]
    )
    deltas = (
        per_seed(spec, "no-skip", "Normal", "dice") - per_seed(spec, "baseline", "Normal", "dice")
    )[1:]
    assert row["n_seeds"] == 3
    assert row["mean_delta"] == pytest.approx(deltas.mean())
    assert row["p_value"] == pytest.approx(corrected(deltas, R)[2])


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
    ranking = stats.ranking(scores, delta_table(scores, design()), losses, "dice")
    means = {v: per_seed(spec, v, "macro", "dice").mean() for v in spec.VARIANTS}
    assert ranking["variant"].iloc[0] == max(means, key=means.get)
    assert ranking["variant"].iloc[-1] == "no-skip"
    gap = ranking.set_index("variant").loc["no-skip", "loss_gap"]
    assert gap == pytest.approx(1.0 - (0.9 - 0.2))  # test loss - train loss at best epoch
    assert ranking.set_index("variant").loc["no-skip", "verdict"] == "worse"
    assert pd.isna(ranking.set_index("variant").loc["baseline", "verdict"])


def test_r_is_counted_on_the_split_as_drawn() -> None:
    """r = n_test / n_train of the split the runs really used: the category shares are
    rounded and every category keeps a test image, so small categories raise r above the
    fractions' 0.2 / (0.8 * 0.9); the engine's rounds and the summary read it the same way."""
    protocol, analysis = ProtocolConfig(), AnalysisConfig()
    dataset = {"counts": {name: 24 for name in "abcdef"}}
    split = split_indices(np.repeat(np.arange(6), 24), seed=3, test_fraction=0.2, val_fraction=0.1)
    assert Design.of(protocol, analysis, dataset).r == pytest.approx(
        len(split.test) / len(split.train)
    )
    assert Design.of(protocol, analysis, dataset).r == pytest.approx(30 / 102)
    assert Design.of(protocol, analysis, {"counts": {"a": 4, "b": 4}}).r == pytest.approx(0.5)
    assert Design.of(protocol, analysis).r == pytest.approx(0.2 / 0.72)  # no dataset.json
    assert Design.of(protocol, analysis, {"counts": {}}).r == pytest.approx(0.2 / 0.72)
    fixed = ProtocolConfig(vary={"split": False})
    assert Design.of(fixed, analysis, dataset).r == 0.0
