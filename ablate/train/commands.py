"""`ablate train GRID --seed S [--variant V] [--out DIR]`: one run in-process, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ablate.config import MAX_SEED
from ablate.data.ebhi import CleaningReport
from ablate.data.source import load_grid_data
from ablate.errors import UserError
from ablate.grid import load_grid_variants
from ablate.train.device import available_cpus
from ablate.train.metrics import all_foreground, class_metrics
from ablate.train.run import RunOutputs, RunResult, execute_run

TABLE_SCORES = ["dice", "iou", "precision", "recall"]


def default_out(study: str, variant: str, seed: int) -> Path:
    """runs/train/<study>/<variant>/seed=<seed>"""
    return Path("runs") / "train" / study / variant / f"seed={seed}"


def train_command(grid: str, seed: int, variant: str = "baseline", out: str | None = None) -> None:
    """Train and evaluate one variant of a grid for one seed, and print its test metrics.

    Writes initial.pt, best.pt, tensorboard/, image_metrics.parquet, class_metrics.parquet,
    history.parquet and run.json into `out`. Bad input raises UserError (exit 2); a failed
    or diverged run prints its status and exits with code 1.

    Example:
        $ ablate train grids/quickstart.yaml --seed 0 --variant no-skips
    """
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed}: seeds are whole numbers from 0 to {MAX_SEED}")
    config_grid, listed = load_grid_variants(grid)
    variants = {item.name: item for item in listed}
    if variant not in variants:
        raise UserError(f"{grid}: no variant {variant!r}; variants: {', '.join(variants)}")
    config = config_grid.run_config(variants[variant].recipe)
    directory = Path(out) if out is not None else default_out(config_grid.study, variant, seed)
    data = load_grid_data(grid, config.data)
    _make_out(directory)
    _print_dropped(data.report)
    outputs = RunOutputs(checkpoint_dir=directory, tensorboard_dir=directory / "tensorboard")
    print(f"training {config_grid.study}/{variant} seed={seed} -> {directory}", flush=True)

    result = execute_run(config, data, seed, outputs=outputs, cpus=available_cpus())
    _write_tables(result, directory, config.model_dump_json())
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


RUN_RECORD = "run.json"
"""What `ablate train` writes last into its folder; a folder holding it is a run folder."""


def _make_out(directory: Path) -> None:
    """Create the output folder before training, so a bad --out costs no training.

    A folder that holds files but is not a run folder (no run.json) is refused: training
    would write run.json, *.parquet and *.pt over whatever is there.
    """
    is_run_folder = (directory / RUN_RECORD).is_file()
    if directory.is_dir() and not is_run_folder and _has_visible_entries(directory):
        raise UserError(
            f"--out {directory}: the folder is not empty and is not an `ablate train` run "
            f"folder (no {RUN_RECORD}); give a new or empty folder"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"--out {directory}: cannot create the output folder: {reason}") from None


def _has_visible_entries(directory: Path) -> bool:
    return any(not entry.name.startswith(".") for entry in directory.iterdir())


def _write_tables(result: RunResult, directory: Path, config_json: str) -> None:
    result.image_metrics.to_parquet(directory / "image_metrics.parquet", index=False)
    result.class_metrics.to_parquet(directory / "class_metrics.parquet", index=False)
    result.history.to_parquet(directory / "history.parquet", index=False)
    summary = {
        "status": result.status,
        "error": result.error,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "duration_s": result.duration_s,
        "device": result.device,
        "early_stopping_split": result.early_stopping_split,
        "config": json.loads(config_json),
    }
    (directory / RUN_RECORD).write_text(json.dumps(summary, indent=2))


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
