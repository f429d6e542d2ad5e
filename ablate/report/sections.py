"""Sections that other parts of ablate add to the report, without the report importing them.

Pruning sensitivity is one: `ablate.prune` builds a `ReportSection` from the study, and the
command that writes the summary passes the builder in (`summarize(..., sections=[...])`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ablate.store import StudyDir


@dataclass
class ReportSection:
    """One section of report.html and the files that go with it under summary/.

    Attributes:
        title: the section's heading.
        anchor: its HTML id.
        html: the section's body, already escaped HTML (figures embedded).
        files: path relative to summary/ (e.g. "pruning/worst_targets.csv") -> bytes.
        lines: what the command prints about it (one line each).
    """

    title: str
    anchor: str
    html: str
    files: dict[str, bytes] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


SectionBuilder = Callable[[StudyDir], "ReportSection | None"]
"""Builds a section from the study, or None when it has nothing to show."""
