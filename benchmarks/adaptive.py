"""Adaptive seeds vs a fixed number: the quickstart study with seeds {min: 3, max: 8} against
the same study with 8 seeds for every variant.

Each study is one `ablate run` in a fresh process, as a user runs it (Ray's start and the
summary included, the same for both), into a new folder. Compared: total runs, wall time,
and the verdict of every variant on macro Dice (analysis.metric) in each study's summary.
Target (issue 13): at least 40% fewer runs, and no verdict reversed (better <-> worse).
Adaptive seeds stop for futility by default (`protocol.seeds.futility`); `--no-futility`
runs the literal rule (seeds until decided or max).

Wall time: each adaptive round is one Ray Tune run whose trial processes start anew (and
import torch again), so on the quickstart, whose runs last seconds, rounds can cost more
time than the runs they save.

    python benchmarks/adaptive.py            # the fixed study alone is 40 runs: ~5-10 min
    python benchmarks/adaptive.py --fixed-split   # both with protocol.vary: {split: false}
    python benchmarks/adaptive.py --no-futility   # adaptive seeds without the futility stop
    python benchmarks/adaptive.py --quick    # smoke test: 2 variants, 1 epoch at 32 px,
                                             # seeds {min: 2, max: 3} vs 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import derived_grid, load_average, machine_header, main_guard, print_table

TARGET_REDUCTION = 0.40
QUICK = {
    "baseline.train.epochs": 1,
    "baseline.train.image_size": 32,
    "baseline.model.widths": [4, 8],
    "data.synthetic.per_class": 4,
    "data.synthetic.size": 64,
    "ablations": {"remove": ["norm"]},  # baseline and no-norm: 2 variants
}
QUICK_SEEDS = (2, 3)


def run_study(grid: Path, out: Path) -> tuple[float, str]:
    """(wall seconds, stdout) of `ablate run GRID --out OUT` in a fresh interpreter."""
    print(f"{grid.stem}: load average {load_average()}", flush=True)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"ablate run {grid.name} exited {done.returncode}:\n{done.stderr}")
    return seconds, done.stdout


def macro_verdicts(study: Path, metric: str = "dice") -> pd.DataFrame:
    """variant, n_seeds, mean_delta, verdict of the summary's macro rows of `metric`."""
    deltas = pd.read_csv(study / "summary" / "deltas.csv")
    rows = deltas[(deltas["category"] == "macro") & (deltas["metric"] == metric)]
    return rows[["variant", "n_seeds", "mean_delta", "verdict"]].set_index("variant")


def compare(adaptive: pd.DataFrame, fixed: pd.DataFrame) -> list[list[object]]:
    """One row per variant: seeds and verdict in each study, and how they relate."""
    rows = []
    for variant in fixed.index:
        a, f = adaptive.loc[variant], fixed.loc[variant]
        if a["verdict"] == f["verdict"]:
            relation = "agree"
        elif {a["verdict"], f["verdict"]} == {"better", "worse"}:
            relation = "REVERSED"
        else:
            relation = "differ"
        rows.append(
            [
                variant,
                int(a["n_seeds"]),
                f"{a['mean_delta']:+.4f}",
                a["verdict"],
                int(f["n_seeds"]),
                f"{f['mean_delta']:+.4f}",
                f["verdict"],
                relation,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tiny version (smoke test)")
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--max-seeds", type=int, default=8)
    parser.add_argument(
        "--fixed-split", action="store_true", help="protocol.vary: {split: false} in both"
    )
    parser.add_argument(
        "--no-futility", action="store_true", help="adaptive seeds with futility: false"
    )
    args = parser.parse_args(argv)
    low, high = QUICK_SEEDS if args.quick else (args.min_seeds, args.max_seeds)
    futility = not args.no_futility
    split = ", split fixed" if args.fixed_split else ""
    rule = "futility stop" if futility else "no futility stop"
    print(
        machine_header(
            f"Adaptive seeds {{min: {low}, max: {high}}} ({rule}) vs {high} fixed seeds{split}"
        )
    )
    with tempfile.TemporaryDirectory(prefix="ablate-adaptive-") as scratch:
        folder = Path(scratch)
        changes = dict(QUICK) if args.quick else {}
        if args.fixed_split:
            changes["protocol.vary"] = {"split": False}
        grids = {
            "adaptive": {"protocol.seeds": {"min": low, "max": high, "futility": futility}},
            "fixed": {"protocol.seeds": high},
        }
        seconds, outputs, verdicts, runs = {}, {}, {}, {}
        for name in ("fixed", "adaptive"):
            grid = derived_grid("quickstart", folder, name, {}, {**changes, **grids[name]})
            seconds[name], outputs[name] = run_study(grid, folder / name)
            verdicts[name] = macro_verdicts(folder / name)
            runs[name] = len(pd.read_parquet(folder / name / "results" / "runs"))
    print("\n## Runs and time\n")
    print_table(
        ["study", "runs", "wall s (ablate run, Ray start and summary included)"],
        [[name, runs[name], seconds[name]] for name in ("fixed", "adaptive")],
    )
    rounds = [line for line in outputs["adaptive"].splitlines() if line.startswith("round ")]
    futile = sorted(
        {
            line.strip().split(": ", 1)[0]
            for line in outputs["adaptive"].splitlines()
            if "stopped for futility" in line
        }
    )
    print(f"\nadaptive rounds: {len(rounds)}; stopped for futility: {', '.join(futile) or 'none'}")
    for line in outputs["adaptive"].splitlines():
        if line.startswith(("round ", "  ", "adaptive seeds:")):
            print(f"    {line}")
    print("\n## Macro Dice verdicts\n")
    table = compare(verdicts["adaptive"], verdicts["fixed"])
    print_table(
        [
            "variant",
            "adaptive seeds",
            "adaptive delta",
            "adaptive verdict",
            "fixed seeds",
            "fixed delta",
            "fixed verdict",
            "",
        ],
        table,
    )
    reduction = 1 - runs["adaptive"] / runs["fixed"]
    reversed_ = sum(row[-1] == "REVERSED" for row in table)
    agree = sum(row[-1] == "agree" for row in table)
    print(
        f"\nruns: {runs['adaptive']} vs {runs['fixed']} ({reduction:.0%} fewer; target >= "
        f"{TARGET_REDUCTION:.0%}); time {seconds['adaptive'] / seconds['fixed']:.2f}x; "
        f"verdicts: {agree}/{len(table)} agree, {reversed_} reversed"
    )
    print(f"most_reduction={1 - low / high:.3f}")  # every variant stopping at min
    print(f"reversed={reversed_}")
    print(f"run_reduction={reduction:.3f}")
    return 0


if __name__ == "__main__":
    main_guard(main)
