"""The user's ablate cache folder: generated synthetic datasets and crash logs live there."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ABLATE_CACHE"


def cache_dir() -> Path:
    """`$ABLATE_CACHE`, else `~/.cache/ablate` (not created here)."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) if base else Path.home() / ".cache" / "ablate"
