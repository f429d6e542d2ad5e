"""Fixtures of the engine tests: tiny grids on the shared synthetic dataset, one finished study.

Every study here is 32 px, widths [4, 8, 16], one epoch, so a run costs well under a second
and the time goes to Ray's trial start-up; the finished study is computed once per module
that asks for it and copied by the tests that change it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY_GRID: dict[str, Any] = {
    "study": "tiny",
    "protocol": {"seeds": 2, "test_fraction": 0.25, "val_fraction": 0.15},
    "baseline": {
        "model": {"widths": [4, 8, 16], "norm": "batch-double"},
        "train": {
            "image_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "patience": None,
            "num_workers": 0,
        },
        "augment": {"ops": {"hflip": 0.5}},
    },
    "ablations": {"swap": {"norm": ["none"]}},
    "resources": {"cpu": 1, "gpu": 0, "max_failures": 2},
}
PRUNING = {"methods": ["l1_unstructured"], "scopes": ["global"], "amounts": [0.5]}
"""The finished study also runs the (smallest) pruning analysis after training."""


def _apply(grid: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys ("protocol.seeds", "baseline.train.lr"); the value None removes one."""
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = grid
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return grid


def write_grid(folder: Path, data_root: Path, name: str = "grid.yaml", **changes: Any) -> Path:
    """Write TINY_GRID on `data_root` with `changes` applied (see `_apply`)."""
    grid = copy.deepcopy(TINY_GRID)
    grid["data"] = {"root": str(data_root)}
    path = folder / name
    path.write_text(yaml.safe_dump(_apply(grid, changes), sort_keys=False))
    return path


def derive_grid(source: Path, folder: Path, name: str = "derived.yaml", **changes: Any) -> Path:
    """A copy of the grid file `source` with `changes` applied (see `_apply`)."""
    grid = yaml.safe_load(source.read_text())
    path = folder / name
    path.write_text(yaml.safe_dump(_apply(grid, changes), sort_keys=False))
    return path


@pytest.fixture
def grid_writer() -> Callable[..., Path]:
    """`write_grid` for the tests (test modules cannot import conftest under importlib)."""
    return write_grid


@pytest.fixture
def grid_deriver() -> Callable[..., Path]:
    """`derive_grid` for the tests."""
    return derive_grid


@pytest.fixture(scope="module")
def finished_study(
    tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, ray_session: object
) -> tuple[Path, Path]:
    """(grid path, study dir) of the tiny study (2 variants x 2 seeds, pruned), run once."""
    from ablate.engine.commands import run_command

    folder = tmp_path_factory.mktemp("study")
    grid = write_grid(folder, synthetic_root, pruning=PRUNING)
    study = folder / "out"
    run_command(str(grid), out=str(study))
    return grid, study


def crashing_trainable(flag: Path) -> Callable[..., None]:
    """The engine's trial, made to SIGKILL its own Ray worker once: the fault `ablate run`
    must survive, injected from the test rather than through a hook in the product.

    The first trial that finds `flag` after it finished a seed claims it (renames it to
    `<flag>.fired`, which then holds the time of the kill) and kills its worker in the
    middle of the next seed: after that seed's tables, before its runs file.

    The returned function is a closure, so Ray pickles it by value: the worker needs no
    access to the test modules. Everything it uses is imported inside it.
    """

    def trainable(config: dict, *, data: object, setup: object) -> None:
        import os
        import signal

        import pandas as pd

        from ablate.engine.trainable import train_variant
        from ablate.store.parquet import ResultStore

        write = ResultStore.write
        finished: list[int] = []

        def write_or_die(store, table, variant, seed, frame):  # type: ignore[no-untyped-def]
            if table == "runs" and finished:
                try:
                    os.rename(flag, f"{flag}.fired")
                except FileNotFoundError:
                    pass
                else:
                    Path(f"{flag}.fired").write_text(pd.Timestamp.now(tz="UTC").isoformat())
                    os.kill(os.getpid(), signal.SIGKILL)
            path = write(store, table, variant, seed, frame)
            if table == "runs":
                finished.append(seed)
            return path

        ResultStore.write = write_or_die
        try:
            train_variant(config, data=data, setup=setup)
        finally:
            ResultStore.write = write

    return trainable


@pytest.fixture
def crash_once() -> Callable[[Path], Callable[..., None]]:
    """`crash_once(flag)`: a trainable that kills its worker once mid-seed (see above)."""
    return crashing_trainable
