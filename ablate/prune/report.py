"""The pruning summary of a study: CSV tables and PNG figures, and the report.html section.

Everything is derived from the stored tables (results/pruning, results/weight_distance,
results/grad_norms), so the summary can be rebuilt at any time from a copied study.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from ablate.prune import plots
from ablate.prune.analysis import GRAD_NORMS, PRUNING, WEIGHT_DISTANCE
from ablate.prune.summary import layer_summary, summarise, worst_targets
from ablate.store import ResultStore, path_segment
from ablate.store.fs import StudyLocation, resolve_study

SUMMARY_PARTS = ("summary", "pruning")
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


def _location(study_dir: str | Path | StudyLocation) -> StudyLocation:
    return study_dir if isinstance(study_dir, StudyLocation) else resolve_study(study_dir)


def build_summary(
    study_dir: str | Path | StudyLocation, figures: bool = True
) -> PruningSummary | None:
    """The pruning summary of a study (figures only when `figures`); None without results."""
    store = ResultStore(_location(study_dir))
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


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_summary(study_dir: str | Path | StudyLocation) -> PruningSummary | None:
    """Write STUDY_DIR/summary/pruning/ (CSV tables and PNG figures); None without results.

    Example:
        >>> write_summary("runs/pruning")  # doctest: +SKIP
    """
    location = _location(study_dir)
    result = build_summary(location)
    if result is None:
        return None
    tables = {
        "pruning_summary.csv": result.summary,
        "worst_targets.csv": result.worst,
        "weight_distance.csv": result.weight_distance,
        "grad_norms.csv": result.grad_norms,
    }
    for name, table in tables.items():
        if not table.empty:
            location.write_text(table.to_csv(index=False), *SUMMARY_PARTS, name)
    for stem, figure in result.figures.items():
        location.write_bytes(_png(figure), *SUMMARY_PARTS, f"{stem}.png")
    result.close()
    return result


def _img(figure: Figure, alt: str) -> str:
    data = base64.b64encode(_png(figure)).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(
        index=False, border=0, float_format=lambda value: f"{value:.4f}", na_rep=""
    )


def pruning_html(study_dir: str | Path | StudyLocation) -> str | None:
    """The report's pruning section (tables and base64-embedded figures); None without results.

    Example:
        >>> fragment = pruning_html("runs/pruning")  # doctest: +SKIP
        >>> fragment.startswith('<section id="pruning">')  # doctest: +SKIP
        True
    """
    result = build_summary(study_dir)
    if result is None:
        return None
    parts = [
        '<section id="pruning">',
        "<h2>Pruning sensitivity</h2>",
        "<p>Each trained run's best checkpoint, pruned with <code>torch.nn.utils.prune</code> and "
        "evaluated on the run's own test split. Deltas are pruned minus unpruned Dice of the same "
        "run (negative: worse), averaged over seeds; sparsity is the share of zero weights reached "
        "over the target's conv layers.</p>",
        "<h3>Largest macro Dice drops</h3>",
        _table_html(result.worst),
    ]
    groups = (
        ("Amount vs Dice per category", "amount_dice_"),
        ("Sensitivity heatmaps (macro Dice drop)", "heatmap_"),
        ("Weight distance from initialisation", "weight_distance_"),
        ("Gradient norms over one training epoch", "grad_norms_"),
    )
    for heading, prefix in groups:
        figures = [
            (stem, figure) for stem, figure in result.figures.items() if stem.startswith(prefix)
        ]
        if figures:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
            parts.extend(_img(figure, stem) for stem, figure in figures)
    parts.append("</section>")
    result.close()
    return "\n".join(parts)
