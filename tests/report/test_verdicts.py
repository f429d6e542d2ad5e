"""The summary's verdicts on the hand-built study: deltas columns, the verdict rules read back
from the files, verdicts.md, the report's Verdicts section, captions, LaTeX tables, and the
summary of studies with a fixed split or adaptive seeds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ablate.cli import main
from ablate.config import AnalysisConfig, ProtocolConfig
from ablate.report import inference
from ablate.report.commands import summarize_command
from ablate.report.design import Design
from ablate.report.latex import deltas_latex
from ablate.report.load import load_study, study_rounds
from ablate.report.sequential import SequentialSchedule
from ablate.store import StudyDir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# r of the hand-built study's split as drawn (conftest: 100 images per category): 20 / 72
R = 0.2 / (0.8 * 0.9)


def _summarize(study_dir: Path, metric: str | None = None) -> Path:
    summarize_command(str(study_dir), metric=metric)
    return study_dir / "summary"


def _deltas(summary: Path) -> pd.DataFrame:
    return pd.read_csv(summary / "deltas.csv")


def expected_verdict(row: pd.Series, margin: float, alpha: float) -> str:
    """The verdict rule written out: equivalence first, then Holm significance by sign."""
    if row["eq_low"] > -margin and row["eq_high"] < margin:
        return "equivalent"
    if row["p_holm"] < alpha:
        return "better" if row["mean_delta"] > 0 else "worse"
    return "inconclusive"


@pytest.mark.parametrize(
    "analysis",
    [{}, {"margin": 0.05}, {"margin": 0.001, "alpha": 0.2}, {"alpha": 0.001}],
    ids=["defaults", "wide-margin", "narrow-margin", "strict-alpha"],
)
def test_every_row_of_deltas_follows_the_verdict_rules(study_factory, analysis: dict) -> None:
    margin, alpha = analysis.get("margin", 0.01), analysis.get("alpha", 0.05)
    deltas = _deltas(_summarize(study_factory(analysis=analysis)))
    assert list(deltas.columns) == inference.TABLE_COLUMNS
    assert (deltas["margin"] == margin).all() and (deltas["test"] == "corrected resampled t").all()
    tested = deltas.dropna(subset=["p_value"])
    # the TOST interval: mean ± t(1 - alpha, n - 1) se, se = sd sqrt(1/n + r)
    se = tested["sd_delta"] * np.sqrt(1 / tested["n_seeds"] + R)
    half = scipy_stats.t.isf(alpha, tested["n_seeds"] - 1) * se
    np.testing.assert_allclose(tested["eq_high"], tested["mean_delta"] + half, rtol=1e-9)
    for _, row in deltas.iterrows():
        assert row["verdict"] == expected_verdict(row, margin, alpha), row.to_dict()
        decided = row["verdict"] != "inconclusive"
        assert pd.isna(row["seeds_needed"]) or not decided
        assert decided == pd.isna(row["seeds_reason"])  # "" in the CSV reads back as NaN
    verdicts = set(deltas["verdict"])
    assert len(verdicts) >= 2, verdicts  # each setting decides some rows and not others


def test_a_wide_margin_makes_a_significant_small_loss_equivalent(study_factory) -> None:
    """Equivalence wins over significance: -0.039 is a real loss, but inside ±0.05."""
    narrow = _deltas(_summarize(study_factory("narrow"))).set_index(
        ["variant", "category", "metric"]
    )
    wide = _deltas(_summarize(study_factory("wide", analysis={"margin": 0.05})))
    wide = wide.set_index(["variant", "category", "metric"])
    key = ("no-skip", "macro", "dice")
    assert narrow.loc[key, "verdict"] == "worse" and narrow.loc[key, "p_holm"] < 0.05
    assert wide.loc[key, "verdict"] == "equivalent"
    assert wide.loc[key, "p_holm"] == pytest.approx(narrow.loc[key, "p_holm"])


def test_zero_variance_rows_say_so_and_never_claim_certainty(study_factory) -> None:
    deltas = _deltas(_summarize(study_factory()))
    same = deltas[deltas["variant"] == "same"]
    assert (same["verdict"] == "inconclusive").all()
    assert same[["ci_low", "ci_high", "p_value", "p_holm"]].isna().all().all()
    assert same["reason"].str.contains("no estimate of noise").all()
    assert same["seeds_needed"].isna().all()


def test_verdicts_md_has_one_row_per_variant_with_seeds_needed(study_factory) -> None:
    summary = _summarize(study_factory())
    deltas = _deltas(summary).set_index(["variant", "category", "metric"])
    text = (summary / "verdicts.md").read_text()
    assert text.startswith("# handmade: verdicts on macro dice")
    assert "margin ±0.01, alpha 0.05, corrected resampled t-test" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| variant", "| no-skip", "| same", "| wider"]
    cells = {row.split(" | ")[0][2:]: row.split(" | ") for row in rows[1:]}
    assert cells["no-skip"][1] == "worse" and cells["no-skip"][5] == "-"
    assert cells["same"][1] == "inconclusive" and cells["same"][5] == "n/a"
    wider = deltas.loc[("wider", "macro", "dice")]
    shown = (
        "never" if wider["seeds_reason"].startswith("never") else str(int(wider["seeds_needed"]))
    )
    assert cells["wider"][5] == shown
    if shown == "never":  # the reason points to the fixed split
        assert "protocol.vary: {split: false}" in cells["wider"][6]
    low, high = wider["ci_low"], wider["ci_high"]
    assert cells["wider"][2] == f"{wider['mean_delta']:+.4f} \\[{low:+.4f}, {high:+.4f}\\]"


def test_report_opens_with_verdicts_badges_and_the_forest_plot(study_factory) -> None:
    summary = _summarize(study_factory())
    page = (summary / "report.html").read_text()
    sections = re.findall(r'<section id="([^"]+)">', page)
    assert sections[0] == "verdicts"
    verdicts = page[page.index('<section id="verdicts">') : page.index('<section id="protocol">')]
    assert verdicts.count('<span class="badge worse">worse</span>') == 1
    assert verdicts.count('<span class="badge inconclusive">inconclusive</span>') == 2
    assert len(re.findall(r'<img src="data:image/png;base64,', verdicts)) == 1
    assert "±0.01 band" in verdicts
    assert (summary / "forest_dice.png").read_bytes()[:4] == b"\x89PNG"
    # Notes: the core's conventions, and nothing of the old "p = 0" rule
    for convention in inference.CONVENTIONS:
        assert convention.split(":")[0] in page
    assert "p = 0 when" not in page and "Never p = 0" in page


def test_markdown_tables_mark_equivalence_and_significance_and_say_the_test(
    study_factory,
) -> None:
    summary = _summarize(study_factory(analysis={"margin": 0.05}))
    deltas = _deltas(summary).query("metric == 'dice'").set_index(["variant", "category"])
    text = (summary / "deltas_dice.md").read_text()
    assert "corrected resampled t-test" in text and "the 95% interval" in text
    assert "`*` better or worse" in text and "`≈` equivalent" in text
    lines = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip("| ") for cell in lines[0]]
    marks = {"better": "*", "worse": "*", "equivalent": "≈", "inconclusive": ""}
    for (variant, category), row in deltas.iterrows():
        line = next(cells for cells in lines if cells[0] == f"| {variant}")
        cell = line[header.index(category)]
        last = cell.split()[-1]
        assert cell.startswith(f"{row['mean_delta']:+.3f}")
        assert (last if last in ("*", "≈") else "") == marks[row["verdict"]], (variant, cell)
    assert {"equivalent", "inconclusive"} <= set(deltas["verdict"])
    ranking = (summary / "ranking.md").read_text()
    assert "| no-skip | 0.894 ± 0.007 | -0.039 ≈ |" in ranking  # equivalent within ±0.05


def test_a_fixed_split_study_says_paired_t_everywhere(study_factory) -> None:
    summary = _summarize(study_factory(protocol={"vary": {"split": False}}))
    assert (_deltas(summary)["test"] == "paired t").all()
    assert (
        "paired t-test (the split is the same for every seed"
        in (summary / "deltas_dice.md").read_text()
    )
    assert "(paired $t$)" in (summary / "deltas_dice.tex").read_text()
    page = (summary / "report.html").read_text()
    assert "fixed at seed 0: split" in page


def test_headline_metric_defaults_to_analysis_metric(study_factory) -> None:
    study = study_factory(analysis={"metric": "iou"})
    assert main(["summarize", str(study)]) == 0  # the command line's default too
    summary = study / "summary"
    assert (summary / "forest_iou.png").is_file() and not (summary / "forest_dice.png").exists()
    assert (summary / "verdicts.md").read_text().startswith("# handmade: verdicts on macro iou")
    assert (_summarize(summary.parent, metric="dice") / "forest_dice.png").is_file()


def test_adaptive_study_summary_uses_the_schedule_and_expects_the_rounds(study_factory) -> None:
    """seeds {min: 3, max: 4, futility: false}: no-skip is decided at its first look, so its
    seed 3 was never scheduled; wider was not, so its missing seed 3 is a missing run."""
    study = study_factory(
        protocol={"seeds": {"min": 3, "max": 4, "futility": False}},
        skip={("no-skip", 3), ("wider", 3)},
    )
    summary = _summarize(study)
    page = (summary / "report.html").read_text()
    assert "missing: wider seed 3" in page and "missing: no-skip seed 3" not in page
    assert "14 of 15 expected runs finished ok." in page
    deltas = _deltas(summary).set_index(["variant", "category", "metric"])
    schedule = SequentialSchedule(3, 4)
    alphas = schedule.look_alphas(R, 0.05)
    no_skip = deltas.loc[("no-skip", "macro", "dice")]
    assert no_skip["verdict"] == "worse" and no_skip["decided_at"] == 3
    assert no_skip["ci_level"] == pytest.approx(0.95)  # a repeated confidence interval
    # "same" has 4 seeds: its alpha is the last look's (zero variance: no interval though)
    assert deltas.loc[("same", "macro", "dice"), "alpha_look"] == pytest.approx(alphas[1])
    text = (summary / "deltas_dice.md").read_text()
    assert "the 95% repeated confidence interval" in text
    assert "adaptive seeds 3..4" in (summary / "verdicts.md").read_text()


def test_a_variant_stopped_for_futility_is_not_missing_its_next_seed(study_factory) -> None:
    """The same study with futility (the default): wider, noisy around a small gain, is
    stopped at its first look, so its seed 3 is not expected; its verdict stays inconclusive
    with its seeds_needed, as the round's decision says."""
    study = study_factory(
        protocol={"seeds": {"min": 3, "max": 4}}, skip={("no-skip", 3), ("wider", 3)}
    )
    summary = _summarize(study)
    page = (summary / "report.html").read_text()
    assert "missing: wider seed 3" not in page and "missing: no-skip seed 3" not in page
    assert "futility stop" in page  # the protocol section names the rule
    results = load_study(StudyDir.open(study))
    assert ("wider", 3) not in results.expected.pairs()
    grid = results.grid
    rounds = study_rounds(StudyDir.open(study), grid, results.expected.variants)
    decision = rounds.decisions.set_index("variant").loc["wider"]
    assert decision["futile"] and "stopped for futility" in decision["reason"]
    wider = (
        _deltas(summary)
        .set_index(["variant", "category", "metric"])
        .loc[("wider", "macro", "dice")]
    )
    assert wider["verdict"] == "inconclusive" and wider["n_seeds"] == 3
    assert pd.isna(wider["seeds_needed"]) or wider["seeds_needed"] > 4


def test_adaptive_rows_at_different_looks_share_the_repeated_interval_level(
    study_factory,
) -> None:
    """Variants stopped at different looks: every interval is a 95% repeated confidence
    interval, so the tables need no per-row level column, and the captions say which."""
    summary = _summarize(
        study_factory(protocol={"seeds": {"min": 3, "max": 4}}, skip={("wider", 3)})
    )
    text = (summary / "deltas_dice.md").read_text()
    assert "| variant | Adenocarcinoma | Normal | Polyp | macro | n |" in text
    assert "| level |" not in text and "95% repeated confidence interval" in text
    tex = (summary / "deltas_dice.tex").read_text()
    assert "& level" not in tex and "95\\% repeated confidence interval" in tex
    assert set(_deltas(summary)["ci_level"].dropna()) == {0.95}


# --- LaTeX -----------------------------------------------------------------------------


def _row(variant: str, category: str, mean: float, half: float, verdict: str) -> dict:
    return {
        "variant": variant,
        "category": category,
        "metric": "dice",
        "mean_delta": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "ci_level": 0.95,
        "verdict": verdict,
    }


def test_latex_escapes_names_marks_cells_and_uses_booktabs() -> None:
    odd = ["Adeno_carcinoma", "R&D", "50%", "<b>"]
    deltas = pd.DataFrame(
        [
            _row("no_skips", odd[0], -0.031, 0.012, "worse"),
            _row("no_skips", odd[1], 0.002, 0.004, "equivalent"),
            _row("no_skips", odd[2], 0.010, 0.030, "inconclusive"),
            _row("no_skips", odd[3], 0.050, 0.010, "better"),
        ]
    )
    summary = pd.DataFrame(
        {"variant": "baseline", "category": odd, "metric": "dice", "mean": 0.9, "std": 0.01}
    )
    design = Design.of(ProtocolConfig(), AnalysisConfig())
    tex = deltas_latex(summary, deltas, "dice", design)
    assert tex.startswith("% ablate: needs \\usepackage{booktabs}\n\\begin{table}")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) == 1
    header = next(line for line in tex.splitlines() if line.startswith("variant &"))
    assert header == (
        "variant & 50\\% & \\textless{}b\\textgreater{} & Adeno\\_carcinoma & R\\&D & macro \\\\"
    )
    body = next(line for line in tex.splitlines() if line.startswith("no\\_skips &"))
    cells = [cell.strip() for cell in body.removesuffix("\\\\").split(" & ")[1:]]
    assert cells == [  # in the header's (sorted) order, macro empty
        "$+0.010 \\pm 0.030$",
        "{\\boldmath $+0.050 \\pm 0.010$}",
        "{\\boldmath $-0.031 \\pm 0.012$}",
        "$+0.002 \\pm 0.004$${}^{\\approx}$",
        "",
    ]
    assert "baseline & $0.900 \\pm 0.010$" in tex
    assert "95\\% interval" in tex and "corrected resampled $t$, $r = 0.278$" in tex


def test_summary_writes_a_latex_table_per_metric(study_factory) -> None:
    summary = _summarize(study_factory())
    for metric in ("dice", "iou", "precision", "recall", "accuracy"):
        tex = (summary / f"deltas_{metric}.tex").read_text()
        assert f"\\label{{tab:deltas-{metric}}}" in tex
    dice = (summary / "deltas_dice.tex").read_text()
    no_skip = next(line for line in dice.splitlines() if line.startswith("no-skip &"))
    assert no_skip.count("\\boldmath") == 4  # worse in every category and macro
    assert "\\boldmath" not in next(line for line in dice.splitlines() if line.startswith("same &"))


def test_a_variant_without_any_ok_run_stays_in_its_holm_family(study_factory, spec) -> None:
    """Every run of `wider` failed: it is still a row (no paired seed, inconclusive) and
    still in the Holm family, as in the adaptive rounds' decisions (`next_round` is given
    every variant), so the summary adjusts over the family the rounds used."""
    failed = {("wider", seed): "failed" for seed in spec.SEEDS}
    summary = _summarize(study_factory(status=failed))
    deltas = _deltas(summary).set_index(["variant", "category", "metric"])
    wider = deltas.loc[("wider", "macro", "dice")]
    assert wider["n_seeds"] == 0 and wider["verdict"] == "inconclusive"
    assert "fewer than 2 paired seeds" in wider["reason"]
    no_skip = deltas.loc[("no-skip", "macro", "dice")]
    # family of three: no-skip's p, and p = 1 for wider (no seed) and same (no noise)
    assert no_skip["p_holm"] == pytest.approx(min(1.0, 3 * no_skip["p_value"]))
    macro = _macro_dice_deltas(spec).assign(category="macro", metric="dice")
    core = inference.inference_table(macro, r=R, variants=["no-skip", "same", "wider"])
    assert core.set_index("variant").loc["no-skip", "p_holm"] == pytest.approx(no_skip["p_holm"])
    page = (summary / "report.html").read_text()
    assert "n/a (no paired seed)" in page
    assert "wider & -- & -- & -- & -- \\\\" in (summary / "deltas_dice.tex").read_text()


def _macro_dice_deltas(spec) -> pd.DataFrame:
    """no-skip's and same's paired macro Dice deltas, from the known counts."""
    rows = []
    for variant in ("no-skip", "same"):
        for seed in spec.SEEDS:
            values = []
            for name in (variant, "baseline"):
                dice = []
                for index in range(len(spec.CATEGORIES)):
                    c = spec.counts(name, seed, index)
                    dice.append(2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]))
                values.append(np.mean(dice))
            rows.append({"variant": variant, "seed": seed, "delta": values[0] - values[1]})
    return pd.DataFrame(rows)
