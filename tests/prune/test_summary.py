"""Deltas against the unpruned model, averaged over seeds, from a hand-made pruning table."""

from __future__ import annotations

import pandas as pd
import pytest

from ablate.prune.summary import MACRO, deltas, summarise, worst_targets


def _rows(seed: int, method: str, target: str, amount: float, dice: dict[str, float]) -> list[dict]:
    scope = "none" if method == "none" else "groups"
    return [
        {
            "study": "s",
            "variant": "baseline",
            "seed": seed,
            "method": method,
            "scope": scope,
            "target": target,
            "amount": amount,
            "sparsity": amount,
            "category": category,
            "dice": value,
            "iou": value / (2 - value),
        }
        for category, value in dice.items()
    ]


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        rows += _rows(seed, "none", "unpruned", 0.0, {"A": 0.8 - shift, "B": 0.6})
        rows += _rows(
            seed, "l1_unstructured", "encoder-1", 0.5, {"A": 0.7 - shift, "B": 0.5 - shift}
        )
        rows += _rows(seed, "l1_unstructured", "bottleneck", 0.5, {"A": 0.8 - shift, "B": 0.58})
    return pd.DataFrame(rows)


def test_deltas_against_same_run(table: pd.DataFrame) -> None:
    out = deltas(table)
    row = out[(out["seed"] == 1) & (out["target"] == "encoder-1") & (out["category"] == "B")]
    assert row["delta_dice"].item() == pytest.approx(-0.2)
    macro = out[(out["seed"] == 0) & (out["target"] == "encoder-1") & (out["category"] == MACRO)]
    assert macro["delta_dice"].item() == pytest.approx(-0.1)
    assert set(out["method"]) == {"l1_unstructured"}


def test_summary_means_and_std_over_seeds(table: pd.DataFrame) -> None:
    summary = summarise(table)
    row = summary[
        (summary["target"] == "encoder-1")
        & (summary["category"] == "B")
        & (summary["amount"] == 0.5)
    ]
    assert row["delta_dice_mean"].item() == pytest.approx(-0.15)
    assert row["delta_dice_std"].item() == pytest.approx(pd.Series([-0.1, -0.2]).std())
    assert row["seeds"].item() == 2
    zero = summary[
        (summary["target"] == "encoder-1") & (summary["category"] == "A") & (summary["amount"] == 0)
    ]
    assert zero["dice_mean"].item() == pytest.approx(0.75) and zero["delta_dice_mean"].item() == 0


def test_worst_targets_ranked_by_macro_drop(table: pd.DataFrame) -> None:
    worst = worst_targets(summarise(table))
    assert list(worst["target"]) == ["encoder-1", "bottleneck"]
    assert worst["delta_dice_mean"].iloc[0] == pytest.approx(-0.125)
