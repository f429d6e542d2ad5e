"""The study directory: the one object that knows its layout.

    STUDY_DIR/
      grid.yaml  dataset.json  study.lock
      results/<table>/variant=<v>__seed=<s>.parquet
      checkpoints/<variant>/seed=<s>/initial.pt, best.pt
      tensorboard/<variant>/seed=<s>/
      summary/
      .tune/

Every other part of ablate asks a `StudyDir` where things are and reads and writes through
it, locally or behind a URI (one pyarrow filesystem). Reading is safe on a copied, damaged
or crafted study: the stored grid is read verbatim (no `${VAR}`, no `extends`), every file
is bounded in size and validated, and a damaged file is one `UserError` naming it. Writing
never goes through a link that leaves the study, and the summary is replaced as a whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml
from pydantic import ValidationError

from ablate.config import GridConfig, RunConfig
from ablate.errors import UserError
from ablate.store.fs import StudyLocation, remove_quietly, resolve_study, temp_name
from ablate.store.parquet import RESULTS, ResultStore, path_segment

GRID_FILE = "grid.yaml"
DATASET_FILE = "dataset.json"
LOCK_FILE = "study.lock"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
SUMMARY = "summary"
TUNE = ".tune"
REPORT = "report.html"
RUN_OUTPUTS = (CHECKPOINTS, TENSORBOARD)
"""The folders a run writes besides its tables, each `<folder>/<variant>/seed=<s>/`."""
MAX_TEXT_BYTES = 8 << 20
"""grid.yaml and dataset.json above this size are not files ablate wrote."""


class StudyDir:
    """A study directory (local folder or URI) and everything in it.

    Example:
        >>> study = StudyDir.open("runs/quickstart")
        >>> study.read_grid().study
        'quickstart'
        >>> study.results().ok_runs()[["variant", "seed"]].head(2)  # doctest: +SKIP
    """

    def __init__(self, location: StudyLocation) -> None:
        self.location = location

    @classmethod
    def open(cls, where: str | Path | StudyLocation) -> StudyDir:
        """The study at a path or URI (it need not exist yet).

        Raises:
            UserError: the URI's filesystem is unknown or cannot be reached.
        """
        return cls(where if isinstance(where, StudyLocation) else resolve_study(where))

    @property
    def uri(self) -> str:
        return self.location.uri

    def path(self, *parts: str) -> str:
        """Where `parts` lie inside the study's filesystem (for messages and pyarrow)."""
        return self.location.path(*parts)

    def exists(self) -> bool:
        return self.location.exists()

    def is_study(self) -> bool:
        """Whether ablate made this folder: a grid.yaml beside a dataset.json, or a results
        folder with a runs table (a study copied without its grid still reads)."""
        grid_and_dataset = self._is_file(GRID_FILE) and self._is_file(DATASET_FILE)
        return grid_and_dataset or self._is_dir(RESULTS, "runs")

    def require_study(self) -> None:
        """Raises UserError unless the folder is a study directory."""
        if not self.exists():
            raise UserError(f"{self.uri}: study directory not found")
        if not self.is_study():
            raise UserError(
                f"{self.uri}: not a study directory (no {GRID_FILE} with {DATASET_FILE}, no "
                f"{RESULTS}/runs/ in it); give the folder `ablate run` wrote"
            )

    def check_usable_for_new_study(self, option: str = "--out") -> None:
        """Refuse a folder that holds files but is not a study: `ablate run` would write its
        grid.yaml, dataset.json and summary/ over whatever is there.

        Raises:
            UserError: naming the folder and the option that chose it.
        """
        if self.is_study() or not self.exists():
            return
        info = self.location.fs.get_file_info(self.location.root)
        if info.type != pafs.FileType.Directory:
            raise UserError(f"{option} {self.uri}: exists and is not a folder")
        entries = self.location.fs.get_file_info(pafs.FileSelector(self.location.root))
        # A study another command is starting holds only its lock (and hidden temporaries).
        foreign = [e for e in entries if e.base_name != LOCK_FILE and e.base_name[:1] != "."]
        if foreign:
            raise UserError(
                f"{option} {self.uri}: the folder is not empty and is not a study directory; "
                "ablate writes a study only into a new or empty folder (or one it made)"
            )

    def _is_file(self, *parts: str) -> bool:
        return self.location.fs.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def results(self, study: str | None = None) -> ResultStore:
        """The study's Parquet tables; `study` (the grid's study name; default: the folder's
        name) fills the `study` column of what is written."""
        return ResultStore(self.location, study=study)

    @property
    def folder_name(self) -> str:
        """The study directory's own name (the last part of its path)."""
        return self.location.root.rstrip("/").rsplit("/", 1)[-1]

    # Text files ---------------------------------------------------------------------------

    def read_text(self, name: str) -> str | None:
        """A small text file of the study (None when absent), bounded and UTF-8 checked.

        Raises:
            UserError: the entry is a folder, too large, or not UTF-8 text.
        """
        info = self.location.fs.get_file_info(self.path(name))
        if info.type == pafs.FileType.NotFound:
            return None
        if info.type != pafs.FileType.File:
            raise UserError(f"{self.path(name)}: is not a file")
        if info.size is not None and info.size > MAX_TEXT_BYTES:
            raise UserError(
                f"{self.path(name)}: {info.size} bytes, more than the {MAX_TEXT_BYTES} "
                "an ablate study file can have"
            )
        with self.location.fs.open_input_stream(self.path(name)) as stream:
            data = stream.read(MAX_TEXT_BYTES + 1)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{self.path(name)}: not UTF-8 text ({error.reason})") from None

    def write_text_if_changed(self, name: str, text: str) -> None:
        """Write a text file atomically unless it already holds `text` (its time then still
        says when the study last changed)."""
        if self.read_text(name) != text:
            self.location.write_text(text, name)

    def grid_text(self) -> str | None:
        """grid.yaml as stored (the resolved grid the study ran)."""
        return self.read_text(GRID_FILE)

    def read_grid(self) -> GridConfig | None:
        """The stored grid, read verbatim: no `${VAR}` is filled and no `extends` followed
        (it was resolved when stored), so reading a study never reaches outside it.

        Raises:
            UserError: grid.yaml is not a grid ablate stored.
        """
        text = self.grid_text()
        if text is None:
            return None
        where = self.path(GRID_FILE)
        try:
            return GridConfig.model_validate(parse_stored_yaml(text, where))
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise UserError(
                f"{where}: not a grid ablate stored ({error.error_count()} problem(s), first: "
                f"{key}: {first['msg']})"
            ) from None

    def read_dataset(self) -> dict[str, Any] | None:
        """dataset.json (the cleaning report and categories), None when absent.

        Raises:
            UserError: not JSON, or not the object ablate writes.
        """
        text = self.read_text(DATASET_FILE)
        if text is None:
            return None
        where = self.path(DATASET_FILE)
        try:
            report = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise UserError(f"{where}: not valid JSON ({error})") from None
        problem = _dataset_problem(report)
        if problem:
            raise UserError(f"{where}: not the cleaning report ablate writes: {problem}")
        return report

    def write_dataset(self, report: dict[str, Any]) -> None:
        self.write_text_if_changed(DATASET_FILE, json.dumps(report, indent=2))

    def write_grid(self, text: str) -> None:
        self.write_text_if_changed(GRID_FILE, text)

    # Runs' own files ----------------------------------------------------------------------

    def run_folder(self, folder: str, variant: str, seed: int) -> tuple[str, ...]:
        """Parts of a run's folder under `checkpoints` or `tensorboard`."""
        if folder not in RUN_OUTPUTS:
            raise ValueError(f"unknown run folder {folder!r}")
        return (folder, path_segment(variant), f"seed={int(seed)}")

    def checkpoint_bytes(self, variant: str, seed: int, name: str) -> bytes | None:
        """A run's checkpoint file (`initial.pt`, `best.pt`), None when it was not saved."""
        parts = (*self.run_folder(CHECKPOINTS, variant, seed), name)
        if not self._is_file(*parts):
            return None
        with self.location.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def has_checkpoint(self, variant: str, seed: int, name: str) -> bool:
        return self._is_file(*self.run_folder(CHECKPOINTS, variant, seed), name)

    def read_lock(self) -> str | None:
        """study.lock's content (who runs the study now), None when nobody does."""
        try:
            return self.read_text(LOCK_FILE)
        except UserError:
            return "<unreadable lock>"

    def lock_time(self) -> float | None:
        """When study.lock was written (POSIX seconds, by the storage's clock), i.e. when the
        `ablate run` holding the study took it; None when nobody holds it."""
        return _mtime(self.location.fs.get_file_info(self.path(LOCK_FILE)))

    def run_output_times(self, variant: str, seed: int) -> list[float]:
        """Modification times (POSIX seconds) of the files a run has written under its
        checkpoints/ and tensorboard/ folders so far; [] when it wrote none.

        A local run writes them from its start (initial.pt before the first epoch, events
        every epoch); a run on an object store uploads them when it ends.
        """
        times: list[float] = []
        for folder in RUN_OUTPUTS:
            selector = pafs.FileSelector(
                self.path(*self.run_folder(folder, variant, seed)),
                recursive=True,
                allow_not_found=True,
            )
            infos = self.location.fs.get_file_info(selector)
            times += [t for t in map(_mtime, infos) if t is not None]
        return times

    def tune_path(self) -> str:
        """Ray Tune's own state of every `ablate run` (a storage path inside the study).

        Raises:
            UserError: `.tune` is a link that leaves the study (Tune would write through it).
        """
        path = self.path(TUNE)
        self.location.check_inside(path)
        return path

    # Summary ------------------------------------------------------------------------------

    def summary_path(self, *parts: str) -> str:
        return self.path(SUMMARY, *parts)

    def summary_is_current(self) -> bool:
        """True when summary/report.html is newer than every result and the grid (local
        studies; a remote summary is always rebuilt)."""
        return self.location.local and self.summary_state() == "current"

    def summary_state(self) -> str:
        """'current' when summary/report.html is newer than every result file and the grid,
        'stale' when not, 'missing' without a report (local folders and object stores)."""
        fs = self.location.fs
        report = fs.get_file_info(self.summary_path(REPORT))
        linked = self.location.local and Path(self.summary_path(REPORT)).is_symlink()
        if report.type != pafs.FileType.File or linked:
            return "missing"
        selector = pafs.FileSelector(self.path(RESULTS), recursive=True, allow_not_found=True)
        inputs = [
            info
            for info in [*fs.get_file_info(selector), fs.get_file_info(self.path(GRID_FILE))]
            if info.type == pafs.FileType.File
            and (info.base_name.endswith(".parquet") or info.base_name == GRID_FILE)
        ]
        newest = max((_mtime(info) or 0.0 for info in inputs), default=0.0)
        return "current" if (_mtime(report) or 0.0) >= newest else "stale"

    def write_summary(self, files: dict[str, bytes]) -> list[str]:
        """Replace summary files as one step: every file is first written under a hidden
        temporary name, and only when all are written are they renamed into place,
        report.html last. An interrupted summarize leaves the previous complete summary.

        Args:
            files: path relative to summary/ (e.g. "deltas.csv", "pruning/x.png") -> bytes.

        Returns:
            The paths written.

        Raises:
            UserError: summary/ exists but is not a folder, or leads outside the study.
        """
        if self.location.exists(SUMMARY) and not self._is_dir(SUMMARY):
            raise UserError(f"{self.summary_path()}: exists and is not a folder")
        finals = {name: self.summary_path(*name.split("/")) for name in files}
        ordered = sorted(finals, key=lambda name: name == REPORT)
        temps: dict[str, str] = {}
        fs = self.location.fs
        try:
            for name in ordered:
                folder = finals[name].rsplit("/", 1)[0]
                self.location.check_inside(folder)
                fs.create_dir(folder, recursive=True)
                temps[name] = temp_name(finals[name])
                with fs.open_output_stream(temps[name]) as stream:
                    stream.write(files[name])
            for name in ordered:
                fs.move(temps.pop(name), finals[name])
        finally:
            for temp in temps.values():
                remove_quietly(fs, temp)
        return [finals[name] for name in ordered]

    def _is_dir(self, *parts: str) -> bool:
        return self.location.fs.get_file_info(self.path(*parts)).type == pafs.FileType.Directory


def _mtime(info: pafs.FileInfo) -> float | None:
    """A file's modification time in POSIX seconds; None when absent or unknown."""
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return None
    return info.mtime_ns / 1e9 if info.mtime_ns is not None else info.mtime.timestamp()


def parse_run_config(text: object, where: str) -> RunConfig:
    """A run's stored config (the runs table's `config` JSON).

    Raises:
        UserError: naming `where` (the run) when the JSON is not a valid RunConfig.
    """
    if not isinstance(text, str):
        raise UserError(f"{where}: the runs table holds no config for this run")
    try:
        return RunConfig.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        raise UserError(
            f"{where}: the stored run config is not valid ({first['msg']} at "
            f"{'.'.join(map(str, first['loc'])) or 'top level'})"
        ) from None


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases: a stored grid never has them, and an
    alias bomb in a crafted one would otherwise expand without bound."""

    def compose_node(self, parent: object, index: object) -> yaml.Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML alias at line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


def parse_stored_yaml(text: str, where: str) -> dict[str, Any]:
    """A stored grid's YAML as a mapping; aliases and deep nesting refused.

    Raises:
        UserError: naming `where`.
    """
    loader = _NoAliasLoader(text)  # a SafeLoader: builds plain data only
    try:
        data = loader.get_single_data()
    except (yaml.YAMLError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else _yaml_reason(error)
        raise UserError(f"{where}: not a grid ablate stored ({reason})") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a grid ablate stored (not a YAML mapping)")
    return data


def _yaml_reason(error: yaml.YAMLError) -> str:
    """A YAML error on one line (PyYAML's own text quotes the line with a caret below it)."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


def _dataset_problem(report: object) -> str | None:
    """Why `report` is not the cleaning report `ablate run` stores, or None."""
    if not isinstance(report, dict):
        return f"a JSON {type(report).__name__}, not an object"
    counts = report.get("counts", {})
    if not isinstance(counts, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()
    ):
        return "counts must map categories to whole numbers >= 0"
    dropped = report.get("dropped", [])
    if not isinstance(dropped, list) or not all(isinstance(d, dict) for d in dropped):
        return "dropped must be a list of {path, reason} objects"
    categories = report.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return "categories must be a list of names"
    return None
