"""ablate: Ray-distributed ablation studies for U-Net segmentation of EBHI-Seg.

The Python API (README, "Use from Python"):

    ablate.load_grid(grid, overrides=[...]) -> GridConfig       a validated grid
    ablate.run(grid, out=..., address=..., overrides=[...]) -> Study   `ablate run`
    ablate.Study.open(path_or_uri)        .runs .class_metrics .image_metrics .history
                                          .deltas(metric) .scores(metric) .summarize() .status()
    ablate.train_one(config, seed, variant=..., out=...) -> RunResult   `ablate train`

Errors: `UserError` (bad input, the CLI's exit 2; `GridError` and `DatasetError` are
kinds of it), `MachineError` (a full disk), `StudyIncomplete` (runs left unfinished).

Everything but the errors loads on first use (PEP 562), so `import ablate` loads neither
torch nor Ray, and `ablate --help` stays quick.
"""

import importlib
import os
from typing import Any

# OpenMP threads that spin-wait while they wait for work slow torch on CPU by 5-10x when
# the cores are shared (several Ray trials, other jobs). This must be set before torch is
# first imported, which is why it lives here; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ablate.errors import (
    DatasetError,
    GridError,
    MachineError,
    StudyIncomplete,
    UserError,
)

__version__ = "0.1.0"

_LAZY = {
    "load_grid": "ablate.grid.load",
    "run": "ablate.api.run",
    "Study": "ablate.api.study",
    "StudyStatus": "ablate.engine.status",
    "train_one": "ablate.train.single",
    "GridConfig": "ablate.config",
    "RunConfig": "ablate.config",
    "RunResult": "ablate.train.run",
}
"""Public name -> the module that defines it, imported when the name is first used."""

__all__ = [
    "DatasetError",
    "GridConfig",
    "GridError",
    "MachineError",
    "RunConfig",
    "RunResult",
    "Study",
    "StudyIncomplete",
    "StudyStatus",
    "UserError",
    "load_grid",
    "run",
    "train_one",
]


def __getattr__(name: str) -> Any:
    """PEP 562: a public name's module is imported on first use, then the name is cached."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ablate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "__version__"})
