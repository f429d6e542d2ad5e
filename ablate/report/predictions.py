"""Sample predictions: image, ground truth, baseline and variant predictions side by side.

Each run is restored from its best.pt and stored RunConfig (`ablate.train.restore`) and
predicts on its own test split (`run_split`). Optional: when the checkpoints or the dataset
are unavailable the figure is skipped and the reason returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ablate.config import RunConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.loader import build_eval_loader
from ablate.data.source import load_data
from ablate.errors import UserError
from ablate.report.load import StudyResults
from ablate.report.stats import BASELINE, MACRO
from ablate.train.device import plan_device
from ablate.train.evaluate import native_logits
from ablate.train.restore import BEST, restore_model
from ablate.train.run import run_inputs, run_split

PER_CATEGORY = 2


@dataclass
class Samples:
    """Predicted masks of a few test images for several variants of one seed."""

    seed: int
    indices: np.ndarray  # (K,) dataset indices
    images: np.ndarray  # (K, H, W, 3) uint8
    truths: np.ndarray  # (K, H, W) {0, 1}
    categories: list[str]  # (K,) category of each image
    predictions: dict[str, np.ndarray]  # variant -> (K, H, W) bool


def pick_variants(deltas: pd.DataFrame, metric: str) -> list[str]:
    """The most harmful and the most helpful variant by macro delta (one if they coincide)."""
    macro = deltas[(deltas["category"] == MACRO) & (deltas["metric"] == metric)]
    macro = macro.dropna(subset=["mean_delta"]).sort_values("mean_delta")
    if macro.empty:
        return []
    return list(dict.fromkeys([macro["variant"].iloc[0], macro["variant"].iloc[-1]]))


def _seed_with_checkpoints(results: StudyResults, variants: list[str]) -> int | None:
    for seed in sorted(set(results.ok_runs["seed"].astype(int))):
        if all(results.study.has_checkpoint(v, seed, BEST) for v in variants):
            return seed
    return None


def _sample_indices(category_ids: np.ndarray, test: np.ndarray, per_category: int) -> np.ndarray:
    picked = [test[category_ids[test] == c][:per_category] for c in np.unique(category_ids[test])]
    return np.concatenate(picked) if picked else np.array([], dtype=np.int64)


def _predict(
    results: StudyResults,
    config: RunConfig,
    variant: str,
    seed: int,
    data: SegmentationData,
    indices: np.ndarray,
) -> np.ndarray:
    """Foreground masks (K, H, W) of one run's model at the native mask resolution."""
    model = restore_model(results.study, config, variant, seed, data.categories)
    model.eval()
    plan = plan_device(config.train, "cpu")
    # The run's own inputs: input mode, stain normalisation and statistics of its split.
    inputs = run_inputs(config, data, run_split(config, data, seed))
    loader = build_eval_loader(
        data, indices, config.train, 0, False, stats=inputs.stats, images=inputs.images
    )
    masks: dict[int, np.ndarray] = {}
    with torch.no_grad():
        for batch in loader:
            logits = native_logits(model, batch["image"], batch["mask"].shape[-2:], plan)
            foreground = logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1) > 0
            for index, mask in zip(batch["index"].tolist(), foreground.numpy(), strict=True):
                masks[index] = mask
    return np.stack([masks[int(index)] for index in indices])


def collect_samples(
    results: StudyResults, variants: list[str], per_category: int = PER_CATEGORY
) -> Samples:
    """Predict a few test images per category with the baseline and `variants`.

    Raises:
        FileNotFoundError: no seed has checkpoints for all of them.
        UserError: a damaged checkpoint or run config, or an unreadable dataset.
    """
    wanted = [BASELINE, *variants]
    seed = _seed_with_checkpoints(results, wanted)
    if seed is None:
        raise FileNotFoundError(f"no seed has best.pt checkpoints for {', '.join(wanted)}")
    base_config = results.run_config(BASELINE, seed)
    if base_config is None:
        raise FileNotFoundError(f"the runs table has no config for baseline seed {seed}")
    data = load_data(base_config.data)
    indices = _sample_indices(
        data.category_ids, run_split(base_config, data, seed).test, per_category
    )
    predictions = {}
    for variant in wanted:
        config = results.run_config(variant, seed) or base_config
        predictions[variant] = _predict(results, config, variant, seed, data, indices)
    return Samples(
        seed=seed,
        indices=indices,
        images=data.images[indices],
        truths=data.masks[indices],
        categories=[data.categories[c] for c in data.category_ids[indices]],
        predictions=predictions,
    )


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    truth = truth.astype(bool)
    overlap = 2 * np.logical_and(prediction, truth).sum()
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(overlap / total)


def samples_figure(samples: Samples) -> Figure:
    """One row per image: image, ground truth, then each variant's prediction (with Dice)."""
    columns = ["image", "ground truth", *samples.predictions]
    rows = len(samples.indices)
    figure = Figure(figsize=(1.7 * len(columns), 1.8 * max(rows, 1)), layout="constrained")
    grid = figure.subplots(max(rows, 1), len(columns), squeeze=False)
    for row in range(rows):
        panels = [samples.images[row], samples.truths[row]]
        titles = [samples.categories[row], "ground truth"]
        for variant, masks in samples.predictions.items():
            panels.append(masks[row])
            titles.append(f"{variant}\nDice {_dice(masks[row], samples.truths[row]):.2f}")
        for col, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            axes = grid[row, col]
            if panel.ndim == 3:
                axes.imshow(panel)
            else:
                axes.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_title(title, fontsize=7)
            # A thin frame instead of axes: an all-foreground mask is white on white otherwise.
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_linewidth(0.5)
                spine.set_color("0.6")
    figure.suptitle(f"test images of seed {samples.seed}", fontsize=9)
    return figure


def sample_predictions(
    results: StudyResults, deltas: pd.DataFrame, metric: str
) -> tuple[Figure | None, str]:
    """The sample-prediction figure, or None and the reason it was skipped."""
    variants = pick_variants(deltas, metric)
    if not variants:
        return None, "sample predictions skipped: no variant has a delta against the baseline"
    try:
        samples = collect_samples(results, variants)
    except (FileNotFoundError, UserError, OSError, RuntimeError, KeyError) as error:
        return None, f"sample predictions skipped: {type(error).__name__}: {error}"
    note = (
        f"sample predictions: seed {samples.seed}, baseline vs {', '.join(variants)} "
        f"(lowest and highest macro {metric} delta)"
    )
    return samples_figure(samples), note
