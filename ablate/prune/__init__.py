"""Pruning sensitivity of trained runs: methods, scopes, analysis, weight distance, summary.

Entry points (docs/ARCHITECTURE.md): `prune_study(study_dir, config)` writes the pruning
tables and summary/pruning/; `pruning_html(study_dir)` gives the report's pruning section.
Both are imported on first use, so `ablate.prune.methods` alone needs only torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_ENTRY_POINTS = {"prune_study": "ablate.prune.study", "pruning_html": "ablate.prune.report"}

__all__ = ["prune_study", "pruning_html"]


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        return getattr(import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(f"module 'ablate.prune' has no attribute {name!r}")
