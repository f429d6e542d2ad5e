"""Durations and errors as people read them, for progress lines (no Ray import: loads fast)."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """12 -> '12s', 95 -> '1m35s', 3720 -> '1h02m'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


WORKER_DIED = ("actor died", "worker process has died", "ActorDiedError")
MAX_ERROR_CHARS = 300


def short_error(text: str) -> str:
    """One line for a trial error: the exception line, not Ray's traceback and advice.

    A worker that died (SIGKILL, out of memory, segfault) gets a plain sentence instead of
    Ray's paragraph.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Failure #")]
    if any(marker in line for line in lines for marker in WORKER_DIED):
        return "its worker process died (killed, out of memory or crashed)"
    if not lines:
        return "unknown error"
    last = lines[-1]
    return last if len(last) <= MAX_ERROR_CHARS else last[: MAX_ERROR_CHARS - 3] + "..."


def plural(count: int, noun: str) -> str:
    """1 -> '1 seed', 3 -> '3 seeds'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
