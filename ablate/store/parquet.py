"""The results store: one Parquet file per (table, variant, seed), written atomically.

Layout (see docs/ARCHITECTURE.md "Store"):

    STUDY_DIR/results/<table>/variant=<variant>__seed=<seed>.parquet

Each file is written to a hidden temporary name and then renamed, so a crash never leaves a
half file and two runs never share one. The `runs` file of a (variant, seed) is written
last: its presence is what marks the run complete. `pandas.read_parquet(STUDY_DIR/results/
<table>)` reads a whole table; `ResultStore.read` does the same through any filesystem.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ablate.store.fs import StudyLocation, resolve_study
from ablate.store.tables import check_table, damaged

# The runs file is written last: its presence marks a run finished. The last three tables
# hold the pruning analysis of finished runs (ablate/prune).
TABLES = (
    "runs",
    "class_metrics",
    "image_metrics",
    "history",
    "pruning",
    "weight_distance",
    "grad_norms",
)
RESULTS = "results"
KEY_COLUMNS = ("study", "variant", "seed")
FILE_PATTERN = re.compile(r"^variant=(?P<variant>.+)__seed=(?P<seed>-?\d+)\.parquet$")
# Characters kept verbatim in file names; anything else (a '/' most of all) is %-escaped.
SAFE_CHARACTERS = "=,+-_.@"
MAX_RESULT_FILE_BYTES = 64 * 2**20
"""Bytes of one run's file of one table on disk (a real one is KBs to a few MBs)."""
MAX_RESULT_DECODED_BYTES = 512 * 2**20
"""Bytes one run's file may take once decompressed and its text values spelled out: a few
hundred KB of Parquet can otherwise expand to many GB (one long text, dictionary-encoded
and repeated on millions of rows)."""


def run_file_name(variant: str, seed: int) -> str:
    """The file name of one run's rows in any table, e.g. `variant=norm=batch__seed=0.parquet`."""
    return f"variant={quote(variant, safe=SAFE_CHARACTERS)}__seed={int(seed)}.parquet"


def parse_run_file_name(name: str) -> tuple[str, int] | None:
    """(variant, seed) of a run file name; None for anything else (temporary files)."""
    match = FILE_PATTERN.match(name)
    if match is None:
        return None
    return unquote(match["variant"]), int(match["seed"])


def path_segment(variant: str) -> str:
    """A variant name made safe for a folder name (checkpoints/<variant>/...)."""
    return quote(variant, safe=SAFE_CHARACTERS)


def _read_bounded(fs: pafs.FileSystem, path: str) -> pa.Table:
    """A Parquet file as a table, refused (UserError) before it can outgrow the limits.

    The order bounds each step by the one before: the file's size (so its footer is small),
    then the decompressed size of its pages from the footer, then, with text read as
    dictionaries, the length of the text once every row's value is spelled out.
    """
    size = fs.get_file_info(path).size
    if size is not None and size > MAX_RESULT_FILE_BYTES:
        raise damaged(path, f"{size:,} bytes, over the {MAX_RESULT_FILE_BYTES:,} of a run's file")
    with fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        metadata = parquet.metadata
        decoded = sum(
            metadata.row_group(group).column(column).total_uncompressed_size
            for group in range(metadata.num_row_groups)
            for column in range(metadata.num_columns)
        )
        _check_decoded(path, decoded)
        texts = [field.name for field in parquet.schema_arrow if _is_text(field.type)]
        handle.seek(0)
        rows = pq.ParquetFile(handle, read_dictionary=texts).read()
    _check_decoded(path, sum(_spelled_out_bytes(column) for column in rows.columns))
    return rows.cast(
        pa.schema(
            field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
            for field in rows.schema
        )
    )


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _spelled_out_bytes(column: pa.ChunkedArray) -> int:
    """Bytes of a column with each dictionary value written out on every row that uses it."""
    if not pa.types.is_dictionary(column.type):
        return column.nbytes
    total = 0
    for chunk in column.chunks:
        lengths = pc.binary_length(chunk.dictionary)
        total += int(pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0)
    return total


def _check_decoded(path: str, decoded: int) -> None:
    if decoded > MAX_RESULT_DECODED_BYTES:
        raise damaged(
            path,
            f"{decoded:,} bytes once decoded, over the {MAX_RESULT_DECODED_BYTES:,} of a run's "
            "file",
        )


def _normalized_table(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with one type per column kind, so files of different runs concatenate.

    A column that is None in every row (the `error` of a run that went well) would get
    Arrow's null type and break reading the directory as one table; it becomes a string.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for field in table.schema:
        if pa.types.is_null(field.type) or pa.types.is_string(field.type):
            fields.append(pa.field(field.name, pa.large_string()))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


class ResultStore:
    """Read and write the Parquet tables of one study directory (path or URI).

    Example:
        >>> store = ResultStore("runs/quickstart", study="quickstart")
        >>> store.write("class_metrics", "baseline", 0, frame)
        >>> store.completed()
        {('baseline', 0)}
    """

    def __init__(self, study_dir: str | Path | StudyLocation, study: str | None = None) -> None:
        self.location = (
            study_dir if isinstance(study_dir, StudyLocation) else resolve_study(study_dir)
        )
        self.study = study or self.location.root.rstrip("/").rsplit("/", 1)[-1]

    @property
    def fs(self) -> pafs.FileSystem:
        return self.location.fs

    def table_dir(self, table: str) -> str:
        """The folder (inside the store's filesystem) of one table."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        return self.location.path(RESULTS, table)

    def write(self, table: str, variant: str, seed: int, frame: pd.DataFrame) -> str:
        """Write one run's rows of `table`, adding the study, variant and seed columns.

        Returns the path written. The file appears complete or not at all.
        """
        frame = frame.copy()
        for column in KEY_COLUMNS:
            if column in frame.columns:
                frame = frame.drop(columns=column)
        keys = {"study": self.study, "variant": variant, "seed": int(seed)}
        frame = pd.concat(
            [
                pd.DataFrame({k: [v] * len(frame) for k, v in keys.items()}, index=frame.index),
                frame,
            ],
            axis=1,
        )
        buffer = io.BytesIO()
        pq.write_table(_normalized_table(frame), buffer)
        name = run_file_name(variant, seed)
        self.location.write_bytes(buffer.getvalue(), RESULTS, table, name)
        return self.location.path(RESULTS, table, name)

    def run_files(self, table: str) -> dict[tuple[str, int], str]:
        """(variant, seed) -> path of every finished file of `table`; temporary files excluded."""
        selector = pafs.FileSelector(self.table_dir(table), allow_not_found=True)
        files = {}
        for info in self.fs.get_file_info(selector):
            key = parse_run_file_name(info.base_name) if info.is_file else None
            if key is not None:
                files[key] = info.path
        return files

    def completed(self) -> set[tuple[str, int]]:
        """The (variant, seed) pairs whose runs file exists, i.e. finished runs."""
        return set(self.run_files("runs"))

    def read(self, table: str) -> pd.DataFrame:
        """The whole table as one DataFrame, sorted by variant and seed; empty when absent.

        Raises:
            UserError: a file is not Parquet or breaks the table's rules (store/tables.py).
        """
        files = self.run_files(table)
        if not files:
            return pd.DataFrame()
        tables = [self._read_file(table, files[key], key) for key in sorted(files)]
        try:
            merged = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowException, ValueError) as error:
            what = f"its files do not read as one table ({error})"
            raise damaged(self.table_dir(table), what) from None
        frame = merged.to_pandas().reset_index(drop=True)
        if "seed" in frame:  # checked to be whole numbers; one dtype for every reader
            frame["seed"] = frame["seed"].astype("int64")
        return frame

    def _read_file(self, table: str, path: str, key: tuple[str, int] | None) -> pa.Table:
        """One run's file of `table`, within the size limits, checked against the table's
        rules."""
        try:
            rows = _read_bounded(self.fs, path)
            frame = rows.to_pandas()
        except (pa.ArrowException, OSError, ValueError) as error:
            raise damaged(path, f"not a readable Parquet file ({error})") from None
        check_table(table, frame, path, key)
        return rows

    def read_run(
        self, table: str, variant: str, seed: int, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """One run's rows of `table` (only `columns` when given); empty when not stored.

        Raises:
            UserError: the file is not Parquet or breaks the table's rules.
        """
        parts = (RESULTS, table, run_file_name(variant, seed))
        if not self.location.exists(*parts):
            return pd.DataFrame(columns=columns)
        rows = self._read_file(table, self.location.path(*parts), (variant, seed)).to_pandas()
        return rows if columns is None else rows[columns]

    def ok_runs(self, variants: list[str] | None = None) -> pd.DataFrame:
        """Rows of the runs table with status ok (of `variants` when given), by variant, seed.

        The one filter of "runs that finished ok": failed and diverged runs have no metrics
        worth summarising, pruning or showing.
        """
        runs = self.read("runs")
        if runs.empty:
            return runs
        runs = runs[runs["status"] == "ok"]
        if variants is not None:
            runs = runs[runs["variant"].isin(variants)]
        return runs.sort_values(["variant", "seed"], kind="stable").reset_index(drop=True)

    def delete_run(self, variant: str, seed: int) -> None:
        """Remove every table's file of one run (the runs file first, so it reads unfinished)."""
        for table in TABLES:
            self.location.delete(RESULTS, table, run_file_name(variant, seed))
