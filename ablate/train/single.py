"""One run in-process, without Ray: what `ablate train` and `ablate.train_one` share.

The run is one variant of a grid (a file, or a grid or run config built in Python) for one
seed. With an output folder it leaves the same files as `ablate train`: initial.pt, best.pt,
tensorboard/, image_metrics.parquet, class_metrics.parquet, history.parquet and run.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ablate.config import MAX_SEED, RunConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.source import load_grid_data
from ablate.errors import UserError
from ablate.grid.load import GridSource, grid_source, load_grid_variants
from ablate.train.device import available_cpus
from ablate.train.run import RunOutputs, RunResult, execute_run

RUN_RECORD = "run.json"
"""What a run writes last into its folder; a folder holding it is a run folder."""

RUN_ENTRIES = (
    RUN_RECORD,
    "image_metrics.parquet",
    "class_metrics.parquet",
    "history.parquet",
    "initial.pt",
    "best.pt",
    "tensorboard",
)
"""What a run writes into its --out folder."""


@dataclass(frozen=True)
class SingleRun:
    """One variant of a grid, resolved to the RunConfig it trains."""

    study: str
    """The grid's study name (a run config file's: its file name)."""
    variant: str
    config: RunConfig
    source: str
    """How messages name the grid (its file)."""


def resolve_run(
    config: GridSource, variant: str = "baseline", overrides: Sequence[str] = ()
) -> SingleRun:
    """The RunConfig of `variant` of a grid (file, GridConfig or RunConfig), overrides applied.

    Raises:
        GridError: the grid or an override is invalid.
        UserError: the grid has no such variant.
    """
    grid, variants = load_grid_variants(config, overrides)
    by_name = {item.name: item for item in variants}
    source = grid_source(config)
    if variant not in by_name:
        raise UserError(f"{source}: no variant {variant!r}; variants: {', '.join(by_name)}")
    run_config = grid.run_config(by_name[variant].recipe)
    return SingleRun(grid.study, variant, run_config, source)


def load_run_data(run: SingleRun) -> SegmentationData:
    """The run's dataset, decoded once per process; a problem names the grid and key.

    Raises:
        DatasetError: the dataset is missing, not in the EBHI layout, or has no usable pair.
    """
    return load_grid_data(run.source, run.config.data)


def train_single(
    run: SingleRun, data: SegmentationData, seed: int, out: Path | None = None
) -> RunResult:
    """Train and evaluate `run` for `seed` in this process; with `out`, write its files there.

    The output folder is checked (or created) before training, so a bad one costs no time.
    A failed or diverged run is returned with its status, never raised.

    Raises:
        UserError: `out` is a folder that holds other files, or cannot be created.
    """
    outputs = None
    if out is not None:
        make_out(out)
        outputs = RunOutputs(checkpoint_dir=out, tensorboard_dir=out / "tensorboard")
    result = execute_run(run.config, data, seed, outputs=outputs, cpus=available_cpus())
    if out is not None:
        write_tables(result, out, run.config.model_dump_json())
    return result


def train_one(
    config: GridSource,
    seed: int,
    *,
    variant: str = "baseline",
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
) -> RunResult:
    """One run in this process, without Ray: `ablate train` as a function.

    Args:
        config: a `RunConfig`, a grid or single-run config file, or a `GridConfig`.
        seed: fixes the split, the initial weights and the augmentation.
        variant: which variant of the grid (default the baseline).
        overrides: `KEY=VALUE` changes, as `--set` (`train.epochs=1` for a run config).
        out: folder for checkpoints, TensorBoard events and the run's tables; None keeps
            everything in memory.

    Returns:
        The RunResult: status, history, image and class metrics (pandas DataFrames).

    Raises:
        UserError: bad config, override, variant, dataset or output folder.

    Example:
        >>> result = train_one("grids/quickstart.yaml", seed=0, variant="no-skips")
        >>> result.class_metrics[["category", "dice"]]  # doctest: +SKIP
    """
    check_seed(seed)
    run = resolve_run(config, variant, overrides)
    data = load_run_data(run)
    return train_single(run, data, seed, Path(out) if out is not None else None)


def check_seed(seed: int) -> None:
    """Raises UserError for a seed outside 0..MAX_SEED (the grid's own bound)."""
    if not 0 <= seed <= MAX_SEED:
        # No option name: `ablate.train_one(seed=...)` raises this too.
        raise UserError(f"seed {seed}: seeds are whole numbers from 0 to {MAX_SEED}")


def make_out(directory: Path) -> None:
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
    linked = [name for name in RUN_ENTRIES if (directory / name).is_symlink()]
    if linked:
        raise UserError(
            f"--out {directory}: {', '.join(linked)} is a symbolic link, and ablate never "
            "writes through a link; remove it or give a new folder"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"--out {directory}: cannot create the output folder: {reason}") from None


def _has_visible_entries(directory: Path) -> bool:
    return any(not entry.name.startswith(".") for entry in directory.iterdir())


def write_tables(result: RunResult, directory: Path, config_json: str) -> None:
    """The run's tables as Parquet files, then run.json (its status and config) last."""
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
