"""What each results table must hold, checked on every read.

A study folder may have been copied, edited or crafted: a table file that is not Parquet,
lacks a column, has a text where a number belongs, or holds a negative, fractional or NaN
pixel count is refused with one message naming the file, instead of a traceback (or, worse,
a summary computed from it). The rules are the columns every part of ablate relies on;
other columns pass through unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.errors import UserError

COUNTS = ("tp", "fp", "fn", "tn")
STATUSES = ("ok", "failed", "diverged")
TEXT, INTEGER, NUMBER, COUNT = "text", "integer", "number", "count"


@dataclass(frozen=True)
class TableRules:
    """Columns a table must have, and the kinds of those (and of optional ones) it has."""

    required: dict[str, str]
    optional: dict[str, str]


_KEYS = {"variant": TEXT, "seed": INTEGER}
_COUNTS = {name: COUNT for name in COUNTS}
_SCORES = {name: NUMBER for name in ("dice", "iou", "precision", "recall", "accuracy")}

RULES: dict[str, TableRules] = {
    "runs": TableRules(
        {**_KEYS, "status": TEXT},
        {
            "study": TEXT,
            "error": TEXT,
            "config": TEXT,
            "epochs": INTEGER,
            "duration_s": NUMBER,
            "test_loss": NUMBER,
            "round": INTEGER,
        },
    ),
    "class_metrics": TableRules({**_KEYS, "category": TEXT, **_COUNTS}, dict(_SCORES)),
    "image_metrics": TableRules({**_KEYS, "category": TEXT, **_COUNTS}, {"image": TEXT}),
    "history": TableRules(
        {**_KEYS, "epoch": INTEGER},
        {"train_loss": NUMBER, "val_loss": NUMBER, "val_dice": NUMBER, "lr": NUMBER},
    ),
    "pruning": TableRules(
        {
            **_KEYS,
            "method": TEXT,
            "scope": TEXT,
            "target": TEXT,
            "amount": NUMBER,
            "category": TEXT,
            **_COUNTS,
        },
        {"sparsity": NUMBER, **_SCORES},
    ),
    "weight_distance": TableRules(
        {**_KEYS, "layer": TEXT}, {"distance": NUMBER, "relative_distance": NUMBER}
    ),
    "grad_norms": TableRules({**_KEYS, "layer": TEXT, "weights": TEXT}, {"grad_norm": NUMBER}),
}


# Columns that name one row of a run's file: a second row with the same values would be
# counted twice (or contradict the first) in every score computed from the file.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "runs": (),
    "class_metrics": ("category",),
    "image_metrics": ("category", "image"),
    "history": ("epoch",),
}


def _kind_problem(series: pd.Series, kind: str) -> str | None:
    """Why `series` is not of `kind`, or None."""
    if kind == TEXT:
        values = series.dropna()
        if not all(isinstance(value, str) for value in values):
            return "holds non-text values"
        return None
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        textual = pd.api.types.is_string_dtype(series) or series.dtype == object
        return "holds text, not numbers" if textual else f"is {series.dtype}, not numbers"
    values = series.to_numpy(dtype=float, na_value=np.nan)
    if kind == NUMBER:
        return None
    if kind == INTEGER:
        present = values[~np.isnan(values)]
        return None if np.all(present == np.round(present)) else "holds fractional values"
    if np.isnan(values).any() or np.isinf(values).any():
        return "holds NaN or infinite pixel counts"
    if (values < 0).any():
        return "holds negative pixel counts"
    if not np.all(values == np.round(values)):
        return "holds fractional pixel counts"
    return None


def table_problems(table: str, frame: pd.DataFrame, key: tuple[str, int] | None) -> list[str]:
    """Every way `frame` (one run's file of `table`) breaks the table's rules.

    Args:
        table: the table's name.
        frame: the file's rows.
        key: (variant, seed) the file name claims; the rows must carry the same.
    """
    rules = RULES.get(table)
    if rules is None or frame.empty:  # no rows: nothing that could mislead a summary
        return []
    problems = [f"column {name!r} is missing" for name in rules.required if name not in frame]
    for name, kind in {**rules.optional, **rules.required}.items():
        if name in frame:
            problem = _kind_problem(frame[name], kind)
            if problem:
                problems.append(f"column {name!r} {problem}")
    if problems:
        return problems
    if table == "runs":
        unknown = sorted(set(frame["status"].dropna()) - set(STATUSES))
        if unknown or frame["status"].isna().any():
            problems.append(f"status must be one of {', '.join(STATUSES)}, got {unknown or 'null'}")
    problems.extend(_repeated_rows(table, frame))
    if key is not None and len(frame):
        variants, seeds = set(frame["variant"]), set(frame["seed"].astype("int64"))
        if variants != {key[0]} or seeds != {key[1]}:
            problems.append(f"rows are of another run than its name says ({key[0]} seed {key[1]})")
    return problems


def _repeated_rows(table: str, frame: pd.DataFrame) -> list[str]:
    """A runs file holds one row; the other files one row per ROW_KEYS value."""
    if table not in ROW_KEYS:
        return []
    columns = [name for name in ROW_KEYS[table] if name in frame]
    if not columns:
        return [] if len(frame) == 1 else [f"holds {len(frame)} rows; a run's file holds one"]
    repeated = frame.duplicated(subset=columns, keep=False)
    if not repeated.any():
        return []
    first = frame.loc[repeated, columns].iloc[0].tolist()
    return [f"holds more than one row for {', '.join(columns)} = {first}"]


def check_table(table: str, frame: pd.DataFrame, path: str, key: tuple[str, int] | None) -> None:
    """Raise one UserError naming `path` when the file breaks the table's rules.

    Raises:
        UserError: the file and every problem found.
    """
    problems = table_problems(table, frame, key)
    if problems:
        raise damaged(path, "; ".join(problems))


def damaged(path: str, what: str) -> UserError:
    """The one message of a damaged results file: which file, what is wrong, what to do."""
    return UserError(
        f"{path}: damaged results file: {what}. Restore it, or delete that run's files under "
        "results/ so that `ablate run` trains it again"
    )
