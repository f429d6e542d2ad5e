"""How a study's paired deltas are analysed, and its delta table.

`Design` gathers what the inference core (`ablate.report.inference`) needs from a study's
grid and dataset: r (from the split as drawn and `vary.split`), margin, alpha, the headline
metric and, for adaptive seeds, the sequential schedule. The summary and the engine's rounds both
build it here, so they analyse a study the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ablate.config import AnalysisConfig, ProtocolConfig
from ablate.data.split import split_sizes
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
    def of(
        cls,
        protocol: ProtocolConfig,
        analysis: AnalysisConfig,
        dataset: Mapping[str, Any] | None = None,
    ) -> Design:
        """The design of a study with this protocol, analysis section and dataset.

        Args:
            protocol: the grid's protocol.
            analysis: the grid's analysis section.
            dataset: the study's cleaning report (dataset.json): its category sizes give
                r from the split as drawn; None: r from the protocol's fractions.

        Example:
            >>> Design.of(ProtocolConfig(), AnalysisConfig()).r  # 0.2 / (0.8 * 0.9)
            0.2777777777777778
            >>> round(Design.of(ProtocolConfig(), AnalysisConfig(), {"counts": {"a": 24}}).r, 4)
            0.2941
        """
        seeds = protocol.seeds
        schedule = (
            SequentialSchedule(seeds.min, seeds.max, futility=seeds.futility)
            if protocol.is_adaptive
            else None
        )
        r = split_ratio(protocol, dataset_counts(dataset))
        return cls(r, analysis.margin, analysis.alpha, analysis.metric, schedule)

    @property
    def test(self) -> str:
        """The test's name, as the `test` column shows it."""
        return test_name(self.r)


def dataset_counts(dataset: Mapping[str, Any] | None) -> list[int] | None:
    """The category sizes of a cleaning report (dataset.json), None when it has none."""
    counts = (dataset or {}).get("counts")
    return list(counts.values()) if isinstance(counts, Mapping) and counts else None


def split_ratio(protocol: ProtocolConfig, category_counts: Sequence[int] | None) -> float:
    """r = n_test / n_train of the corrected test; 0 when the split is the same every seed.

    From the split as drawn when the category sizes are known: each category's test and
    validation shares are rounded, and every category keeps at least one test image, so a
    small dataset's r can be well above the nominal fractions' (24 images per category at
    the default 0.2 and 0.1: 5 tested, 17 trained on, r = 0.294, not 0.278), and an r too
    small would make the test too liberal. From the fractions otherwise
    (`correction_ratio`).
    """
    if category_counts and protocol.vary.split:
        n_train, _, n_test = split_sizes(
            category_counts, protocol.test_fraction, protocol.val_fraction
        )
        if n_train > 0 and n_test > 0:
            return n_test / n_train
    return correction_ratio(
        protocol.test_fraction, protocol.val_fraction, split_varies=protocol.vary.split
    )


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
