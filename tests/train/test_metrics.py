"""Confusion counts on hand-made masks, scores against hand-computed values, 0/0 cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ablate.train.metrics import (
    CLASS_COLUMNS,
    IMAGE_COLUMNS,
    all_foreground,
    class_metrics,
    confusion_counts,
    empty_class_metrics,
    empty_image_metrics,
    imagewise,
    macro,
    scores_from_counts,
)


def _mask(rows: list[str]) -> torch.Tensor:
    """A bool (H, W) mask drawn with '#' for foreground."""
    return torch.tensor([[char == "#" for char in row] for row in rows])


def test_confusion_counts_on_hand_made_masks() -> None:
    empty = ["....", "....", "....", "...."]
    pred = torch.stack([_mask(["##..", "##..", "....", "...."]), _mask(empty)])
    true = torch.stack(
        [_mask(["#...", "#...", "#...", "...."]), _mask(["....", ".##.", "....", "...."])]
    )
    counts = confusion_counts(pred, true)
    assert counts.dtype == torch.int64
    # image 0: pred 4 px, true 3 px, overlap 2 -> tp 2, fp 2, fn 1, tn 16-5 = 11
    # image 1: nothing predicted, 2 true px -> tp 0, fp 0, fn 2, tn 14
    assert counts.tolist() == [[2, 2, 1, 11], [0, 0, 2, 14]]


def test_confusion_counts_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="masks"):
        confusion_counts(torch.zeros(1, 4, 4).bool(), torch.zeros(1, 4, 5).bool())


def test_confusion_counts_sum_to_pixels_on_random_masks() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 7, 9, generator=generator) > 0.5
    true = torch.rand(5, 7, 9, generator=generator) > 0.3
    counts = confusion_counts(pred, true)
    assert counts.sum(dim=1).tolist() == [63] * 5
    assert counts[:, 0].tolist() == (pred & true).sum(dim=(1, 2)).tolist()


def test_scores_match_hand_computed_values() -> None:
    counts = pd.DataFrame({"tp": [6], "fp": [2], "fn": [4], "tn": [88]})
    row = scores_from_counts(counts).iloc[0]
    assert row["dice"] == pytest.approx(12 / 18)
    assert row["iou"] == pytest.approx(6 / 12)
    assert row["precision"] == pytest.approx(6 / 8)
    assert row["recall"] == pytest.approx(6 / 10)
    assert row["accuracy"] == pytest.approx(94 / 100)
    assert row["conformity"] == pytest.approx(1 - 6 / 6)
    assert list(counts.columns) == ["tp", "fp", "fn", "tn"]  # input left untouched


def test_zero_over_zero_conventions() -> None:
    counts = pd.DataFrame(
        {
            # empty & nothing predicted, missed everything, hallucinated only, no pixels
            "tp": [0, 0, 0, 0],
            "fp": [0, 0, 5, 0],
            "fn": [0, 7, 0, 0],
            "tn": [10, 3, 5, 0],
        }
    )
    scores = scores_from_counts(counts)
    assert scores["dice"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert scores["iou"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert scores["precision"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert scores["recall"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert scores["conformity"].iloc[0] == 1.0
    assert math.isnan(scores["conformity"].iloc[1]) and math.isnan(scores["conformity"].iloc[2])
    assert math.isnan(scores["accuracy"].iloc[3])
    assert not np.isinf(scores[["dice", "iou", "precision", "recall"]].to_numpy()).any()


def _image_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": ["A/1", "A/2", "B/1"],
            "category": ["A", "A", "B"],
            "class_name": ["foreground"] * 3,
            "tp": [4, 0, 9],
            "fp": [1, 0, 0],
            "fn": [1, 2, 1],
            "tn": [10, 14, 6],
        }
    )


def test_class_metrics_sums_counts_per_category_in_dataset_order() -> None:
    table = class_metrics(_image_rows(), ["B", "A", "C"])
    assert list(table.columns) == CLASS_COLUMNS
    assert table["category"].tolist() == ["B", "A"]  # C has no test image: left out
    a = table.set_index("category").loc["A"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (4, 1, 3, 24)
    assert a["dice"] == pytest.approx(8 / 12)
    assert macro(table) == pytest.approx((8 / 12 + 18 / 19) / 2)


def test_class_metrics_multiclass_groups_by_class() -> None:
    rows = pd.DataFrame(
        {
            "image": ["A/1", "A/1", "B/1", "B/1"],
            "category": ["A", "A", "B", "B"],
            "class_name": ["A", "B", "A", "B"],
            "tp": [3, 0, 0, 5],
            "fp": [0, 1, 2, 0],
            "fn": [1, 0, 0, 0],
            "tn": [12, 15, 14, 11],
        }
    )
    table = class_metrics(rows, ["A", "B"]).set_index("category")
    assert table.loc["A", ["tp", "fp", "fn", "tn"]].tolist() == [3, 2, 1, 26]
    assert table.loc["B", "dice"] == pytest.approx(10 / 11)


def test_imagewise_averages_per_image_scores() -> None:
    table = imagewise(_image_rows()).set_index("category")
    # A: image 1 dice 8/10, image 2 dice 0 (missed all) -> mean 0.4; pooled would be 8/12
    assert table.loc["A", "dice"] == pytest.approx(0.4)
    assert table.loc["A", "images"] == 2


def test_all_foreground_floor_from_counts() -> None:
    floor = class_metrics(all_foreground(_image_rows()), ["A", "B"]).set_index("category")
    # A: 7 true px of 32 -> predicting everything gives dice 14 / (14 + 25)
    assert floor.loc["A", ["tp", "fp", "fn", "tn"]].tolist() == [7, 25, 0, 0]
    assert floor.loc["A", "dice"] == pytest.approx(14 / 39)
    assert floor.loc["A", "recall"] == 1.0


def test_empty_tables_have_the_contract_columns() -> None:
    assert list(empty_image_metrics().columns) == IMAGE_COLUMNS
    assert list(empty_class_metrics().columns) == CLASS_COLUMNS
    assert class_metrics(empty_image_metrics(), ["A"]).empty
