"""The self-contained `report.html`: inline CSS, images embedded as base64, no scripts.

Every piece of text that comes from the study (names, errors, file paths) is escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from ablate.report.inference import INCONCLUSIVE, VERDICTS

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.warning { background: #fff3cd; border: 2px solid #d39e00; padding: 0.8em; margin: 1em 0; }
.problem { color: #a00; }
.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.badge { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.8em; color: #fff;
         font-weight: 600; font-size: 0.85em; }
.badge.better { background: #2166ac; } .badge.worse { background: #b2182b; }
.badge.equivalent { background: #1b7837; } .badge.inconclusive { background: #777; }
td.why { text-align: left; max-width: 40em; font-size: 0.85em; }
"""


@dataclass
class Section:
    """One titled part of the report; `body` is HTML built by this module's helpers."""

    title: str
    body: str
    anchor: str = ""


@dataclass
class Report:
    """The report's content, in order."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def add(self, title: str, *parts: str, anchor: str | None = None) -> None:
        """A section of HTML `parts`; its id is `anchor`, else made from the title."""
        if anchor is None:
            anchor = "".join(ch if ch.isalnum() else "-" for ch in title.lower())
        self.sections.append(Section(title, "\n".join(parts), anchor))

    def render(self) -> str:
        """The whole document as one string."""
        toc = "".join(
            f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in self.sections
        )
        body = "\n".join(
            f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>\n{s.body}</section>'
            for s in self.sections
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(self.title)}</title><style>{CSS}</style></head>\n<body>"
            f"<h1>{escape(self.title)}</h1><ul>{toc}</ul>\n{body}\n</body></html>\n"
        )


def table(frame: pd.DataFrame, cells: dict[str, Callable[[str], str]] | None = None) -> str:
    """A DataFrame as an HTML table; every header and cell escaped.

    Args:
        frame: the table.
        cells: column -> function making that column's cell (`<td>...</td>`) from its
            value; the function escapes what it shows (`badge`, say). Default: escaped text.
    """
    cells = cells or {}
    makers = [cells.get(str(column), _cell) for column in frame.columns]
    head = "".join(f"<th>{escape(str(column))}</th>" for column in frame.columns)
    rows = "".join(
        "<tr>" + "".join(make(str(v)) for make, v in zip(makers, row, strict=True)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: str) -> str:
    return f"<td>{escape(value)}</td>"


def badge_cell(verdict: str) -> str:
    """A table cell with a coloured verdict badge (class from the known verdicts only)."""
    kind = verdict if verdict in VERDICTS else INCONCLUSIVE
    return f'<td><span class="badge {kind}">{escape(verdict)}</span></td>'


def wide_cell(value: str) -> str:
    """A left-aligned cell for a sentence."""
    return f'<td class="why">{escape(value)}</td>'


def key_values(pairs: list[tuple[str, Any]]) -> str:
    """A two-column table of labels and values."""
    return table(pd.DataFrame(pairs, columns=["", "value"]).astype(str))


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def bullets(items: list[str], css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<ul{attribute}>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def warning(text: str) -> str:
    return f'<div class="warning"><strong>Warning:</strong> {escape(text)}</div>'


def image(png: bytes, alt: str) -> str:
    """A PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
