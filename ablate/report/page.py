"""Assembling `report.html` from a study, its summary and its figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ablate.config import ProtocolConfig
from ablate.report import html, inference, stats, tables
from ablate.report.load import RunStatus, StudyResults
from ablate.report.sections import ReportSection
from ablate.report.summary import Summary

MAX_DROPPED_SHOWN = 200


@dataclass
class Figures:
    """PNG bytes of each figure (None: not drawn) and notes on what was skipped."""

    heatmap: bytes | None = None
    forest: bytes | None = None
    curves: bytes | None = None
    samples: bytes | None = None
    notes: list[str] | None = None


def protocol_section(study: StudyResults) -> str:
    """Split fractions, seeds, task, early stopping; a warning when it watched the test split."""
    protocol = study.protocol()
    splits = study.early_stopping_splits()
    pairs: list[tuple[str, Any]] = [("study", study.name), ("directory", study.study.uri)]
    data = study.grid.data if study.grid is not None else None
    if data is not None:
        source = data.root or f"synthetic ({data.synthetic.model_dump_json()})"
        pairs.append(("data", source))
    if protocol is not None:
        pairs += [
            ("task", protocol.task),
            ("seeds", _seeds_text(protocol)),
            ("varies with the seed", _vary_text(protocol)),
            ("test fraction (per category)", protocol.test_fraction),
            ("validation fraction (of the rest)", protocol.val_fraction),
        ]
    pairs.append(("early stopping on", ", ".join(sorted(splits)) or "unknown"))
    parts = [html.key_values(pairs)]
    if "test" in splits:
        parts.insert(
            0,
            html.warning(
                "early stopping and model selection watched the TEST split (no validation split), "
                "so every test score in this report is optimistic."
            ),
        )
    return "\n".join(parts)


def _seeds_text(protocol: ProtocolConfig) -> str:
    seeds = protocol.max_seed_list()
    if not protocol.is_adaptive:
        return ", ".join(map(str, seeds))
    futility = "futility stop" if protocol.seeds.futility else "no futility stop"
    return (
        f"adaptive: {protocol.seeds.min} to {protocol.seeds.max} (seeds 0..{len(seeds) - 1}, "
        f"{futility})"
    )


def _vary_text(protocol: ProtocolConfig) -> str:
    vary = protocol.vary
    parts = {"split": vary.split, "initial weights": vary.init, "training order": vary.order}
    varied = [name for name, on in parts.items() if on]
    fixed = [name for name, on in parts.items() if not on]
    text = ", ".join(varied) or "nothing"
    if fixed:
        text += f" (fixed at seed {protocol.first_seed}: {', '.join(fixed)})"
    return text


def verdicts_section(summary: Summary, figures: Figures) -> list[str]:
    """The verdict per variant on the headline metric (macro), badges first, forest plot."""
    metric, design = summary.metric, summary.design
    verdicts = summary.verdicts
    if verdicts.empty:
        return [html.paragraph("No paired baseline runs: no verdicts.", "problem")]
    shown = tables.verdict_display(verdicts, metric)
    parts = [
        html.paragraph(f"Macro {metric}: {tables.design_words(design)}."),
        html.table(shown, cells={"verdict": html.badge_cell, "why": html.wide_cell}),
        html.paragraph(tables.VERDICT_LEGEND, "note"),
    ]
    if figures.forest is not None:
        caption = f"macro {metric} deltas with their intervals and the ±{design.margin:g} band"
        parts += [f"<h3>{html.escape(caption)}</h3>", html.image(figures.forest, caption)]
    return parts


def runs_section(status: RunStatus) -> str:
    """Counts and every missing, failed or diverged run."""
    text = f"{status.ok} of {status.expected} expected runs finished ok."
    problems = status.lines()
    if not problems:
        return html.paragraph(text)
    return html.paragraph(text) + html.bullets(problems, "problem")


def dataset_section(dataset: dict[str, Any] | None) -> str:
    """The cleaning report stored in dataset.json."""
    if not dataset:
        return html.paragraph("No dataset.json in the study directory.", "note")
    parts = []
    if "root" in dataset:
        parts.append(html.paragraph(f"root: {dataset['root']}"))
    counts = dataset.get("counts") or {}
    if counts:
        rows = [(category, count) for category, count in counts.items()]
        rows.append(("total", sum(int(c) for c in counts.values())))
        parts.append(html.table(_pairs_frame(rows, ["category", "usable pairs"])))
    dropped = dataset.get("dropped") or []
    parts.append(html.paragraph(f"{len(dropped)} file(s) dropped."))
    if dropped:
        shown = [(d.get("path", "?"), d.get("reason", "?")) for d in dropped[:MAX_DROPPED_SHOWN]]
        parts.append(html.table(_pairs_frame(shown, ["file", "reason"])))
        if len(dropped) > MAX_DROPPED_SHOWN:
            parts.append(
                html.paragraph(f"... and {len(dropped) - MAX_DROPPED_SHOWN} more.", "note")
            )
    return "\n".join(parts)


def _pairs_frame(rows: list[tuple[Any, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns).astype(str)


def build_report(
    study: StudyResults,
    status: RunStatus,
    summary: Summary,
    figures: Figures,
    sections: list[ReportSection] | None = None,
) -> str:
    """The whole report.html document; `sections` come after the figures."""
    report = html.Report(f"Ablation study {study.name}")
    metric = summary.metric
    report.add("Verdicts", *verdicts_section(summary, figures))
    report.add("Protocol", protocol_section(study))
    report.add("Runs", runs_section(status))
    report.add("Dataset cleaning report", dataset_section(study.dataset))
    if summary.has_baseline and not summary.deltas.empty:
        grid = tables.delta_grid(summary.summary, summary.deltas, metric)
        macro = tables.macro_grid(summary.deltas, list(stats.METRICS))
        macro_caption = tables.delta_caption(None, summary.design)
        report.add(
            f"{metric} deltas vs baseline",
            html.paragraph(tables.delta_caption(metric, summary.design), "note"),
            html.table(grid),
            "<h3>Macro delta of every metric</h3>",
            html.paragraph(macro_caption, "note"),
            html.table(macro),
        )
    else:
        report.add("Deltas", html.paragraph("No baseline run finished ok: no deltas.", "problem"))
    shown = tables.ranking_display(summary.ranking)
    report.add(
        f"Ranking by macro {metric}",
        html.paragraph(tables.LOSS_LEGEND, "note"),
        f"<h3>Best {min(tables.TOP_N, len(shown))}</h3>",
        html.table(shown.head(tables.TOP_N)),
        f"<h3>Worst {min(tables.TOP_N, len(shown))}</h3>",
        html.table(shown.iloc[::-1].head(tables.TOP_N)),
    )
    report.add("Figures", *_figure_parts(figures, metric))
    for section in sections or []:
        report.add(section.title, section.html, anchor=section.anchor)
    notes = [*study.notes, *(figures.notes or []), *stats.CONVENTIONS, *inference.CONVENTIONS]
    report.add("Notes", html.bullets(notes, "note"))
    return report.render()


def _figure_parts(figures: Figures, metric: str) -> list[str]:
    captions = [
        (figures.heatmap, f"{metric} delta per variant and category"),
        (figures.curves, "mean training and validation loss per variant"),
        (figures.samples, "sample test predictions"),
    ]
    parts = []
    for png, caption in captions:
        if png is not None:
            parts += [f"<h3>{html.escape(caption)}</h3>", html.image(png, caption)]
    return parts or [html.paragraph("No figures.", "note")]
