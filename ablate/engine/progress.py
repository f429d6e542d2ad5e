"""Concise progress lines on the driver, in place of Tune's own tables.

One line per finished seed: overall count, variant, seed, status, the seed's macro Dice, the
variant's running mean, its seeds done and an estimate of its time left. Trial errors and
retries get a line each (errors are never hidden).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TextIO

from ray.tune import Callback

from ablate.engine.messages import format_duration, short_error


def _dice(value: float | None) -> str:
    return "  -  " if value is None or not math.isfinite(value) else f"{value:.3f}"


class ProgressPrinter(Callback):
    """Tune callback printing one line per seed, error and retry.

    Args:
        pending: variant -> number of seeds this invocation runs.
        finished_before: runs already finished before this invocation (resumed studies).
        total: runs of the whole study (with adaptive seeds: those scheduled so far).
        stream: where lines go (stdout).
        label: put before the variant of each line ("round 2 " in adaptive rounds).
    """

    def __init__(
        self,
        pending: dict[str, int],
        finished_before: int,
        total: int,
        stream: TextIO | None = None,
        label: str = "",
    ) -> None:
        self.pending = pending
        self.done = finished_before
        self.total = total
        self.label = label
        # Resolved when printing: Tune pickles its callbacks, and sys.stdout may not pickle.
        self.stream = stream
        self.width = max((len(name) for name in pending), default=8)
        self.seconds: dict[str, list[float]] = {}
        self.notes: set[str] = set()
        self.started = time.monotonic()

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_trial_result(
        self, iteration: int, trials: list, trial: object, result: dict, **info: object
    ) -> None:
        variant = result.get("variant", trial.config.get("variant"))
        self.done += 1
        seconds = self.seconds.setdefault(variant, [])
        seconds.append(float(result.get("seed_seconds", float("nan"))))
        left = self.pending.get(variant, 0) - len(seconds)
        eta = format_duration(left * sum(seconds) / len(seconds)) if left > 0 else "done"
        self._print(
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {self.label}"
            f"{variant:<{self.width}} "
            f"seed {result.get('seed')}: {result.get('status', '?'):<8} "
            f"dice {_dice(result.get('macro_dice'))} | mean {_dice(result.get('mean_macro_dice'))} "
            f"over {result.get('seeds_done')}/{result.get('seeds_total')} seeds | "
            f"{format_duration(seconds[-1])}/seed, left {eta}"
        )
        note = result.get("device_note")
        if note and note not in self.notes:  # once per host: a trial's GPUs unusable there
            self.notes.add(note)
            self._print(f"note: {note}")

    def on_trial_error(self, iteration: int, trials: list, trial: object, **info: object) -> None:
        self._print(f"error: trial {trial.config.get('variant')} failed: {_error_text(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: object, **info: object) -> None:
        self._print(
            f"warning: trial {trial.config.get('variant')} stopped "
            f"({_error_text(trial)}); retrying from its next unfinished seed"
        )


def _error_text(trial: object) -> str:
    """One line for a trial's error (its error file when Tune has not attached it yet)."""
    text = ""
    try:
        error = trial.get_error()
        text = str(error) if error is not None else ""
        if not text and getattr(trial, "error_file", None):
            text = Path(trial.error_file).read_text()
    except (OSError, AttributeError):
        pass
    return short_error(text)
