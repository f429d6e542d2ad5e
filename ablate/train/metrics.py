"""Segmentation metrics, all derived from pixel confusion counts (tp, fp, fn, tn).

Counts are the raw result of a run: one row per test image (and per class for multiclass).
Every score is a function of counts, so per-category, macro and image-wise numbers all come
from the same stored table and can be recomputed at any time.

Conventions for empty denominators (0/0), chosen so that an image (or category) with no
foreground where none was predicted counts as perfect, and one where the model missed or
hallucinated everything counts as a failure:

| score | formula | when the denominator is 0 |
| --- | --- | --- |
| dice | 2tp / (2tp + fp + fn) | 1 (nothing present, nothing predicted) |
| iou | tp / (tp + fp + fn) | 1 (same case) |
| precision | tp / (tp + fp) | 1 if fn == 0 (nothing to find), else 0 |
| recall | tp / (tp + fn) | 1 if fp == 0 (nothing falsely predicted), else 0 |
| accuracy | (tp + tn) / all | NaN (no pixels at all) |
| conformity | 1 - (fp + fn) / tp | 1 if fp + fn == 0, else NaN (it tends to -inf) |

pandas' `mean` skips NaN, so an undefined conformity does not poison a macro average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ablate.config import Task

COUNTS = ["tp", "fp", "fn", "tn"]
SCORES = ["dice", "iou", "precision", "recall", "accuracy", "conformity"]
IMAGE_COLUMNS = ["image", "category", "class_name", *COUNTS]
CLASS_COLUMNS = ["category", *COUNTS, *SCORES]
BINARY_CLASS = "foreground"
"""The `class_name` of every image_metrics row of a binary run."""


def confusion_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel confusion counts per image, computed where the tensors live (no host sync).

    Args:
        pred: bool (B, H, W), predicted foreground.
        target: bool (B, H, W), true foreground.

    Returns:
        int64 (B, 4): tp, fp, fn, tn per image.

    Example:
        >>> pred = torch.tensor([[[True, False], [True, False]]])
        >>> target = torch.tensor([[[True, True], [False, False]]])
        >>> confusion_counts(pred, target).tolist()
        [[1, 1, 1, 1]]
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"expected two (B, H, W) masks, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    pred, target = pred.bool(), target.bool()
    tp = (pred & target).sum(dim=(1, 2))
    fp = (pred & ~target).sum(dim=(1, 2))
    fn = (~pred & target).sum(dim=(1, 2))
    total = pred.shape[1] * pred.shape[2]
    tn = total - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=1).to(torch.int64)  # (B, 4)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: np.ndarray | float) -> np.ndarray:
    """numerator / denominator, with `empty` where the denominator is 0."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, empty, numerator / safe)


def scores_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """A copy of `counts` with dice, iou, precision, recall, accuracy and conformity added.

    Works on any table with tp, fp, fn, tn columns (image rows, category rows, sums); the
    0/0 conventions are in this module's docstring.

    Example:
        >>> row = pd.DataFrame({"tp": [8], "fp": [2], "fn": [2], "tn": [88]})
        >>> scores_from_counts(row)["dice"].item()
        0.8
    """
    out = counts.copy()
    tp, fp, fn, tn = (counts[column].to_numpy(dtype=np.float64) for column in COUNTS)
    errors = fp + fn
    out["dice"] = _ratio(2 * tp, 2 * tp + errors, 1.0)
    out["iou"] = _ratio(tp, tp + errors, 1.0)
    out["precision"] = _ratio(tp, tp + fp, np.where(fn == 0, 1.0, 0.0))
    out["recall"] = _ratio(tp, tp + fn, np.where(fp == 0, 1.0, 0.0))
    out["accuracy"] = _ratio(tp + tn, tp + errors + tn, np.nan)
    out["conformity"] = 1.0 - _ratio(errors, tp, np.where(errors == 0, 0.0, np.nan))
    return out


def _group_key(image_metrics: pd.DataFrame, task: Task | None) -> str:
    """Binary runs are reported per category, multiclass runs per class."""
    if task is None:
        names = set(image_metrics["class_name"].unique())
        task = "binary" if names <= {BINARY_CLASS} else "multiclass"
    return "category" if task == "binary" else "class_name"


def class_metrics(
    image_metrics: pd.DataFrame, categories: Sequence[str], task: Task | None = None
) -> pd.DataFrame:
    """Counts summed per category (binary) or per class (multiclass), then scored.

    Args:
        image_metrics: rows of `IMAGE_COLUMNS` (one per test image, and class if multiclass).
        categories: the dataset's categories; fixes the row order. Categories without any
            row (no test image) are left out rather than scored on zero counts.
        task: binary or multiclass; None infers it from `class_name` ("foreground" only
            means binary).

    Returns:
        One row per category/class with `CLASS_COLUMNS`; the `category` column holds the
        category (binary) or class name (multiclass), which are the same folder names.

    Example:
        >>> rows = pd.DataFrame({"image": ["a", "b"], "category": ["X", "X"],
        ...     "class_name": ["foreground"] * 2, "tp": [1, 3], "fp": [0, 0],
        ...     "fn": [1, 0], "tn": [2, 1]})
        >>> class_metrics(rows, ["X"])[["category", "tp", "fn"]].values.tolist()
        [['X', 4, 1]]
    """
    if image_metrics.empty:
        return empty_class_metrics()
    key = _group_key(image_metrics, task)
    sums = image_metrics.groupby(key, sort=False)[COUNTS].sum()
    order = [name for name in categories if name in sums.index]
    sums = sums.loc[order].astype("int64").rename_axis("category").reset_index()
    return scores_from_counts(sums)[CLASS_COLUMNS]


def macro(class_df: pd.DataFrame, metric: str = "dice") -> float:
    """Macro average: the mean of `metric` over categories (rows), NaN rows skipped."""
    return float(class_df[metric].mean())


def imagewise(image_metrics: pd.DataFrame, task: Task | None = None) -> pd.DataFrame:
    """Image-wise scores: each score computed per image, then averaged per category/class.

    Returns one row per category/class with `category`, `images` (how many were averaged)
    and the mean of every score in `SCORES`.
    """
    if image_metrics.empty:
        return pd.DataFrame(columns=["category", "images", *SCORES])
    key = _group_key(image_metrics, task)
    scored = scores_from_counts(image_metrics)
    grouped = scored.groupby(key, sort=False)
    out = grouped[SCORES].mean()
    out.insert(0, "images", grouped.size())
    return out.rename_axis("category").reset_index()


def all_foreground(image_metrics: pd.DataFrame) -> pd.DataFrame:
    """The counts a model predicting foreground everywhere would get on the same images.

    Every true pixel becomes a tp and every background pixel an fp, so the floor needs no
    masks: it follows from the counts. Scored with `class_metrics`, it is the trivial
    baseline that a trained model's Dice must beat.
    """
    floor = image_metrics.copy()
    floor["tp"] = image_metrics["tp"] + image_metrics["fn"]
    floor["fp"] = image_metrics["fp"] + image_metrics["tn"]
    floor["fn"] = 0
    floor["tn"] = 0
    return floor


def empty_image_metrics() -> pd.DataFrame:
    """An image_metrics table with no rows and the right columns (failed runs)."""
    return _empty(IMAGE_COLUMNS, {"image": object, "category": object, "class_name": object})


def empty_class_metrics() -> pd.DataFrame:
    """A class_metrics table with no rows and the right columns (failed runs)."""
    return _empty(CLASS_COLUMNS, {"category": object})


def _empty(columns: list[str], text: dict[str, type]) -> pd.DataFrame:
    dtypes = {
        column: text.get(column, "int64" if column in COUNTS else "float64") for column in columns
    }
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
