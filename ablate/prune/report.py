"""The pruning summary of a study: CSV tables and PNG figures, and the report's section.

Everything is derived from the stored tables (results/pruning, results/weight_distance,
results/grad_norms), so the summary can be rebuilt at any time from a copied study. The
report does not import this module: the command that writes the summary passes
`pruning_section` in, and its files land under summary/pruning/ with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from ablate.prune import plots
from ablate.prune.analysis import GRAD_NORMS, PRUNING, WEIGHT_DISTANCE
from ablate.prune.summary import layer_summary, summarise, worst_targets
from ablate.report import html
from ablate.report.plots import png_bytes
from ablate.report.sections import ReportSection
from ablate.store import StudyDir, path_segment

FOLDER = "pruning"
"""The pruning summary's folder under summary/."""
HEATMAP_SCOPES = ("modules", "groups", "layers")


@dataclass
class PruningSummary:
    """Tables and figures of a study's pruning results (figures keyed by file stem)."""

    summary: pd.DataFrame
    worst: pd.DataFrame
    weight_distance: pd.DataFrame
    grad_norms: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)

    def close(self) -> None:
        """Free the figures' memory (matplotlib keeps them alive otherwise)."""
        for figure in self.figures.values():
            plt.close(figure)
        self.figures.clear()


def build_summary(study: StudyDir, figures: bool = True) -> PruningSummary | None:
    """The pruning summary of a study (figures only when `figures`); None without results."""
    store = study.results()
    table = store.read(PRUNING)
    if table.empty:
        return None
    summary = summarise(table)
    distance = store.read(WEIGHT_DISTANCE)
    grads = store.read(GRAD_NORMS)
    result = PruningSummary(
        summary=summary,
        worst=worst_targets(summary),
        weight_distance=layer_summary(distance, ["distance", "relative_distance"])
        if not distance.empty
        else distance,
        grad_norms=layer_summary(grads, ["grad_norm"], extra=["weights"])
        if not grads.empty
        else grads,
    )
    if figures:
        result.figures = _figures(result)
    return result


def _figures(result: PruningSummary) -> dict[str, Figure]:
    """Every figure of the summary, keyed by a file stem that names variant, method and scope."""
    figures: dict[str, Figure | None] = {}
    summary = result.summary
    for variant in dict.fromkeys(summary["variant"]):
        tag = path_segment(variant)
        figures[f"amount_dice_{tag}"] = plots.amount_curves(summary, variant)
        for method in dict.fromkeys(summary["method"]):
            for scope in HEATMAP_SCOPES:
                figures[f"heatmap_{tag}_{method}_{scope}"] = plots.sensitivity_heatmap(
                    summary, variant, method, scope
                )
        figures[f"weight_distance_{tag}"] = _variant_bars(
            result.weight_distance, variant, "distance", "L2 norm ||W_trained - W_initial||"
        )
        # Relative to the initial norm: comparable across layers of different sizes.
        figures[f"weight_distance_relative_{tag}"] = _variant_bars(
            result.weight_distance,
            variant,
            "relative_distance",
            "||W_trained - W_initial|| / ||W_initial||",
        )
        figures[f"grad_norms_{tag}"] = _variant_bars(
            result.grad_norms,
            variant,
            "grad_norm",
            "gradient norm per layer, one epoch",
            hue="weights",
        )
    return {stem: figure for stem, figure in figures.items() if figure is not None}


def _variant_bars(
    table: pd.DataFrame, variant: str, value: str, title: str, hue: str | None = None
) -> Figure | None:
    if table.empty:
        return None
    return plots.layer_bars(
        table[table["variant"] == variant], value, f"{variant}: {title}", hue=hue
    )


INTRODUCTION = (
    "Each trained run's best checkpoint, pruned with torch.nn.utils.prune and evaluated on the "
    "run's own test split. Deltas are pruned minus unpruned Dice of the same run (negative: "
    "worse), averaged over seeds; sparsity is the share of zero weights reached over the "
    "target's conv layers."
)
FIGURE_GROUPS = (
    ("Amount vs Dice per category", "amount_dice_"),
    ("Sensitivity heatmaps (macro Dice drop)", "heatmap_"),
    ("Weight distance from initialisation", "weight_distance_"),
    ("Gradient norms over one training epoch", "grad_norms_"),
)


def _files(result: PruningSummary, pngs: dict[str, bytes]) -> dict[str, bytes]:
    """summary/pruning/: the CSV tables and every figure as PNG."""
    tables = {
        "pruning_summary.csv": result.summary,
        "worst_targets.csv": result.worst,
        "weight_distance.csv": result.weight_distance,
        "grad_norms.csv": result.grad_norms,
    }
    files = {
        f"{FOLDER}/{name}": table.to_csv(index=False).encode("utf-8")
        for name, table in tables.items()
        if not table.empty
    }
    files.update({f"{FOLDER}/{stem}.png": png for stem, png in pngs.items()})
    return files


def _body(result: PruningSummary, pngs: dict[str, bytes]) -> str:
    """The section's HTML: introduction, largest drops, then the figures by kind."""
    parts = [
        html.paragraph(INTRODUCTION),
        "<h3>Largest macro Dice drops</h3>",
        html.table(result.worst),
    ]
    for heading, prefix in FIGURE_GROUPS:
        shown = [(stem, png) for stem, png in pngs.items() if stem.startswith(prefix)]
        if shown:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
            parts.extend(html.image(png, stem) for stem, png in shown)
    return "\n".join(parts)


def pruning_section(study: StudyDir) -> ReportSection | None:
    """The report's pruning section and the files of summary/pruning/; None without results.

    Example:
        >>> section = pruning_section(StudyDir.open("runs/pruning"))  # doctest: +SKIP
        >>> sorted(section.files)[0]  # doctest: +SKIP
        'pruning/amount_dice_baseline.png'
    """
    result = build_summary(study)
    if result is None:
        return None
    pngs = {stem: png_bytes(figure) for stem, figure in result.figures.items()}
    result.close()
    return ReportSection(
        title="Pruning sensitivity",
        anchor=FOLDER,
        html=_body(result, pngs),
        files=_files(result, pngs),
        lines=[f"pruning summary: {study.summary_path(FOLDER)}"],
    )
