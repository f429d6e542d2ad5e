"""How a study's paired deltas are analysed, and its delta table.

`Design` gathers what the inference core (`ablate.report.inference`) needs from a study's
grid: r (from the protocol's fractions and `vary.split`), margin, alpha, the headline metric
and, for adaptive seeds, the sequential schedule. The summary and the engine's rounds both
build it here, so they analyse a study the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ablate.config import AnalysisConfig, ProtocolConfig
from ablate.report.inference import correction_ratio, inference_table, test_name
from ablate.report.sequential import SequentialSchedule
from ablate.report.stats import BASELINE, paired_deltas


@dataclass(frozen=True)
class Design:
    """How a study's paired deltas are analysed.

    Attributes:
        r: n_test / n_train of the corrected test; 0 when the split is fixed (`vary.split`).
        margin: the smallest change that matters (`analysis.margin`).
        alpha: level of every test (`analysis.alpha`).
        metric: the headline metric (`analysis.metric`).
        schedule: the looks of adaptive seeds; None for a fixed number of seeds.
    """

    r: float
    margin: float
    alpha: float
    metric: str
    schedule: SequentialSchedule | None

    @classmethod
    def of(cls, protocol: ProtocolConfig, analysis: AnalysisConfig) -> Design:
        """The design of a study with this protocol and analysis section.

        Example:
            >>> Design.of(ProtocolConfig(), AnalysisConfig()).r  # 0.2 / (0.8 * 0.9)
            0.2777777777777778
        """
        seeds = protocol.seeds
        schedule = (
            SequentialSchedule(seeds.min, seeds.max, futility=seeds.futility)
            if protocol.is_adaptive
            else None
        )
        r = correction_ratio(
            protocol.test_fraction, protocol.val_fraction, split_varies=protocol.vary.split
        )
        return cls(r, analysis.margin, analysis.alpha, analysis.metric, schedule)

    @property
    def test(self) -> str:
        """The test's name, as the `test` column shows it."""
        return test_name(self.r)


def delta_table(
    scores: pd.DataFrame,
    design: Design,
    variants: Sequence[str] | None = None,
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """One row per (variant, category, metric): paired delta, corrected test, Holm, verdict.

    Args:
        scores: `stats.run_scores` of the ok runs.
        design: the study's design.
        variants: the study's variants (baseline left out): every Holm family holds them
            all, as the adaptive rounds' does; one without an ok paired seed is a row with
            n_seeds 0. Default: the variants with paired seeds.
        baseline: the variant deltas are taken against.

    Returns:
        `inference.inference_table` of the paired deltas (its TABLE_COLUMNS); empty, with
        those columns, when nothing pairs.

    Raises:
        ValueError: a cell with more paired seeds than the adaptive schedule's max.
    """
    return inference_table(
        paired_deltas(scores, baseline),
        r=design.r,
        margin=design.margin,
        alpha=design.alpha,
        schedule=design.schedule,
        variants=None if variants is None else [v for v in variants if v != baseline],
    )
