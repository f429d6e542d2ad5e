"""`ablate data check` and `ablate data synth`."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ablate.config import SyntheticConfig
from ablate.data.ebhi import load_ebhi
from ablate.data.synth import CATEGORY_STYLES, write_synthetic
from ablate.errors import UserError


def data_check(root: str) -> None:
    """Scan an EBHI-Seg folder and print its cleaning report.

    Raises:
        DatasetError: the folder is missing, empty, not in the layout, or has no usable pair.
    """
    print(load_ebhi(root).report.format())


def _synthetic_config(per_class: int, size: int, seed: int) -> SyntheticConfig:
    try:
        return SyntheticConfig(per_class=per_class, size=size, seed=seed)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(part) for part in item['loc']).replace('_', '-')}: {item['msg']}"
            for item in error.errors()
        )
        raise UserError(problems) from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: folder is not empty; choose a new or empty folder")


def data_synth(out: str, per_class: int, size: int, seed: int) -> None:
    """Write a synthetic EBHI-like dataset into `out` (a new or empty folder).

    Raises:
        UserError: `out` is a file or a non-empty folder, cannot be written, or an argument is
            out of range.
    """
    config = _synthetic_config(per_class, size, seed)
    folder = Path(out).expanduser()
    _check_out(folder)
    try:
        write_synthetic(folder, config.per_class, config.size, config.seed)
    except OSError as error:
        raise UserError(f"{folder}: cannot write the dataset ({error.strerror or error})") from None
    pairs = config.per_class * len(CATEGORY_STYLES)
    print(
        f"wrote {pairs} image/mask pairs ({config.per_class} per category, {config.size} px, "
        f"seed {config.seed}) to {folder}"
    )
