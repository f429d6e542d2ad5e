"""Summarising a study that lives behind a filesystem URI (file://, s3://, gs://).

The report reads and writes local files. A local study (a path or file://) is used in place;
a remote one is mirrored into a temporary folder (only what the summary reads), summarised
there, and its summary/ folder is uploaded back through the study's pyarrow filesystem.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from ablate.errors import UserError
from ablate.store import StudyLocation, resolve_study

SUMMARY = "summary"
MIRRORED_FILES = ("grid.yaml", "dataset.json")
MIRRORED_FOLDERS = ("results",)
CHECKPOINT = "best.pt"
"""Sample predictions rebuild models from best.pt; initial.pt and tensorboard/ stay remote."""


def _download(location: StudyLocation, relative: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with location.fs.open_input_stream(location.path(relative)) as stream:
        target.write_bytes(stream.read())


def _mirror(location: StudyLocation, folder: Path) -> None:
    """Copy what the summary reads from the study to `folder`."""
    for name in MIRRORED_FILES:
        if location.exists(name):
            _download(location, name, folder / name)
    root = location.root.rstrip("/") + "/"
    wanted = [location.path(name) for name in (*MIRRORED_FOLDERS, "checkpoints")]
    for base in wanted:
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        for info in location.fs.get_file_info(selector):
            relative = info.path.removeprefix(root)
            other_file = relative.startswith("checkpoints/") and info.base_name != CHECKPOINT
            if not info.is_file or other_file:
                continue
            _download(location, relative, folder / relative)


@contextmanager
def local_study(study_dir: str | Path) -> Iterator[Path]:
    """A local folder holding the study; for a remote study, summary/ is uploaded on exit.

    Raises:
        UserError: the URI cannot be opened or holds no study.
    """
    location = resolve_study(study_dir)
    if location.local:
        yield Path(location.root)
        return
    if not location.exists("results"):
        raise UserError(f"{location.uri}: study directory not found (no results/)")
    with tempfile.TemporaryDirectory(prefix="ablate-summary-") as folder:
        _mirror(location, Path(folder))
        yield Path(folder)
        if Path(folder, SUMMARY).is_dir():
            location.put_dir(Path(folder, SUMMARY), SUMMARY)
            # The paths printed above were the temporary copy's; this is where it lives now.
            print(f"uploaded the summary to {location.fs.type_name}://{location.path(SUMMARY)}")
