"""Ray start time and the engine's per-trial overhead, on trivial runs.

Ray start: in a fresh Python process (repeated), `ray.init` with the engine's arguments until
it returns, and until a first remote task has run (the cluster is ready for trials).

Per-trial overhead: a study of trivial runs (24 synthetic 32 px images, widths [4, 8],
1 epoch, 1 seed, 4 variants) through the engine on a local Ray started before timing, one
trial at a time. Overhead per trial = (Tune time - the runs' own training time) / trials: trial
start (worker process, imports, dataset from the object store), the Tune report and
checkpoint, checkpoint files and Parquet writes. The table splits it into the part inside
`run_seed` (files and Parquet, from the runs table's started_at/finished_at) and the rest.

    python benchmarks/ray_overhead.py          # about 1 min
    python benchmarks/ray_overhead.py --quick  # 1 Ray start, 2 trials
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import derived_grid, machine_header, median, print_table, run_study, start_ray

START_TARGET_S, TRIAL_TARGET_S = 8.0, 2.0

START_PROBE = """
import json, logging, time
began = time.perf_counter()
import ray
imported = time.perf_counter()
ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
         logging_level=logging.ERROR)
initialised = time.perf_counter()
ray.get(ray.remote(lambda: 1).remote())
ready = time.perf_counter()
ray.shutdown()
print(json.dumps({"import_s": imported - began, "init_s": initialised - imported,
                  "first_task_s": ready - initialised, "shutdown_s": time.perf_counter() - ready}))
"""


def ray_start_times(repeats: int) -> list[dict[str, float]]:
    """Timings of `repeats` fresh processes starting a local Ray."""
    results = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", START_PROBE], capture_output=True, text=True, check=True
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def trivial_grid(folder: Path, variants: int) -> Path:
    """quickstart cut to trivial runs: `variants` variants of 1 seed, 1 epoch, tiny model."""
    swaps = {"loss": ["bce", "jaccard"], "optimizer": ["sgd"], "activation": ["elu", "gelu"]}
    chosen, count = {}, 1
    for key, values in swaps.items():
        for value in values:
            if count < variants:
                chosen.setdefault(key, []).append(value)
                count += 1
    return derived_grid(
        "quickstart",
        folder,
        "ray-overhead",
        merge={
            "baseline.train": {"epochs": 1, "image_size": 32, "patience": None},
            "baseline.model": {"widths": [4, 8]},
        },
        replace={
            "data": {"synthetic": {"per_class": 4, "size": 32, "seed": 0}},
            "protocol.seeds": 1,
            "ablations": {"swap": chosen},
            "resources": {"cpu": 1, "gpu": 0},
            "pruning": None,
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=3, help="fresh Ray starts to time")
    parser.add_argument("--variants", type=int, default=4, help="trials of the trivial study")
    parser.add_argument("--quick", action="store_true", help="1 start, 2 trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.starts, args.variants = 1, 2
    print(machine_header("Ray start and per-trial overhead"))

    starts = ray_start_times(args.starts)
    rows = [
        [
            i + 1,
            s["import_s"],
            s["init_s"],
            s["first_task_s"],
            s["init_s"] + s["first_task_s"],
            s["shutdown_s"],
        ]
        for i, s in enumerate(starts)
    ]
    print_table(
        ["start", "import ray s", "ray.init s", "first task s", "init to ready s", "shutdown s"],
        rows,
    )
    ray_start = median([row[4] for row in rows])

    start_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(prefix="ablate-ray-overhead-") as folder:
        grid = trivial_grid(Path(folder), args.variants)
        result = run_study(grid, Path(folder, "study"), max_concurrent=1)
    import ray

    ray.shutdown()
    runs = result["runs"]
    trials = len(runs)
    training = float(runs["duration_s"].sum())
    in_run_seed = float((runs["finished_at"] - runs["started_at"]).dt.total_seconds().sum())
    per_trial = (result["seconds"] - training) / trials
    files = (in_run_seed - training) / trials
    print_table(
        [
            "trials",
            "Tune s",
            "training s (sum)",
            "per trial overhead s",
            "of which files + Parquet s",
            "of which start + report s",
        ],
        [[trials, result["seconds"], training, per_trial, files, per_trial - files]],
    )
    print(
        f"target ray start <= {START_TARGET_S} s: "
        f"{'met' if ray_start <= START_TARGET_S else 'not met'}; "
        f"per trial <= {TRIAL_TARGET_S} s: {'met' if per_trial <= TRIAL_TARGET_S else 'not met'}"
    )
    print(f"ray_start_s={ray_start:.2f}")
    print(f"per_trial_overhead_s={per_trial:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
