"""Results store: Parquet tables of a study directory (local folder or filesystem URI)."""

from ablate.store.fs import StudyLocation, check_writable, is_uri, resolve_study
from ablate.store.parquet import (
    TABLES,
    ResultStore,
    parse_run_file_name,
    path_segment,
    run_file_name,
)
from ablate.store.study import StudyDir, parse_run_config

__all__ = [
    "TABLES",
    "ResultStore",
    "StudyDir",
    "StudyLocation",
    "check_writable",
    "is_uri",
    "parse_run_config",
    "parse_run_file_name",
    "path_segment",
    "resolve_study",
    "run_file_name",
]
