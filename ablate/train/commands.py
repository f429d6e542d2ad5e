"""`ablate train GRID --seed S [--variant V] [--out DIR] [--set KEY=VALUE]`: one run
in-process, no Ray (the command-line edge of `ablate.train.single`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ablate.data.ebhi import CleaningReport
from ablate.train.metrics import all_foreground, class_metrics
from ablate.train.run import RunResult
from ablate.train.single import check_seed, load_run_data, make_out, resolve_run, train_single

TABLE_SCORES = ["dice", "iou", "precision", "recall"]


def default_out(study: str, variant: str, seed: int) -> Path:
    """runs/train/<study>/<variant>/seed=<seed>"""
    return Path("runs") / "train" / study / variant / f"seed={seed}"


def train_command(
    grid: str,
    seed: int,
    variant: str = "baseline",
    out: str | None = None,
    overrides: Sequence[str] = (),
) -> None:
    """Train and evaluate one variant of a grid for one seed, and print its test metrics.

    Writes initial.pt, best.pt, tensorboard/, image_metrics.parquet, class_metrics.parquet,
    history.parquet and run.json into `out`. Bad input raises UserError (exit 2); a failed
    or diverged run prints its status and exits with code 1.

    Example:
        $ ablate train grids/quickstart.yaml --seed 0 --variant no-skips --set train.epochs=2
    """
    check_seed(seed)
    run = resolve_run(grid, variant, overrides)
    directory = Path(out) if out is not None else default_out(run.study, variant, seed)
    data = load_run_data(run)
    make_out(directory)  # before the lines below: a bad --out is refused first
    _print_dropped(data.report)
    print(f"training {run.study}/{variant} seed={seed} -> {directory}", flush=True)
    result = train_single(run, data, seed, directory)
    print(format_result(result, data.categories))
    if result.status != "ok":
        raise SystemExit(1)


def _print_dropped(report: CleaningReport, shown: int = 5) -> None:
    """Say what the dataset lost before training on the rest (all of it: `ablate data check`)."""
    if not report.dropped:
        return
    print(f"dataset {report.root}: {len(report.dropped)} file(s) dropped", flush=True)
    for item in report.dropped[:shown]:
        print(f"  {item.path}: {item.reason}")
    if len(report.dropped) > shown:
        print(f"  ... (ablate data check {report.root} lists all)")


def format_result(result: RunResult, categories: list[str]) -> str:
    """The per-category table with its macro row, the all-foreground floor, and the status."""
    lines = []
    if result.status == "ok" and not result.class_metrics.empty:
        floor = class_metrics(all_foreground(result.image_metrics), categories)
        lines.append(_table(result.class_metrics, floor))
    lines.append(
        f"status: {result.status}"
        + (f" ({result.error})" if result.error else "")
        + f" | epochs: {result.epochs} | best epoch: {result.best_epoch}"
        + f" | {result.duration_s:.1f} s on {result.device}"
    )
    if result.early_stopping_split == "test":
        lines.append(
            "note: val_fraction is 0, so early stopping watched the TEST split: "
            "these test numbers are optimistic"
        )
    elif result.early_stopping_split == "none":
        lines.append("note: no early stopping (patience None): the last epoch's weights")
    return "\n".join(lines)


def _table(metrics: pd.DataFrame, floor: pd.DataFrame) -> str:
    """Fixed-width text table: one row per category, then macro (mean over categories)."""
    rows = metrics[["category", *TABLE_SCORES]].copy()
    rows["floor dice"] = floor.set_index("category").loc[rows["category"], "dice"].to_numpy()
    means = rows.drop(columns="category").mean()
    rows.loc[len(rows)] = ["macro", *means.to_list()]
    width = max(len("category"), *(len(name) for name in rows["category"]))
    header = f"{'category':<{width}}  " + "  ".join(f"{name:>10}" for name in rows.columns[1:])
    body = [
        f"{row.category:<{width}}  " + "  ".join(f"{value:>10.4f}" for value in row[1:])
        for row in rows.itertuples(index=False)
    ]
    body.insert(-1, "-" * len(header))
    return "\n".join([header, "-" * len(header), *body])
