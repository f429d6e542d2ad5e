"""Trial scaling: a 2-variant, 1-seed study, one CPU per trial, 1 vs 2 trials at once.

The study is the quickstart grid cut to two variants (baseline, loss=bce) and one seed,
with patience off so both variants train the same number of epochs (equal work). It runs
through the engine in this process (`prepare_study` + `train_pending`: real Tune trials on a
local Ray with 2 CPUs, started before timing), with max concurrency 1, then 2, alternating
for `--rounds` rounds. Timed: the Tune part (trial starts, runs, reports, Parquet writes), not
Ray's start (see ray_overhead.py) nor the summary. speedup = median time at 1 / median at 2.

    python benchmarks/scaling.py            # about 1-2 min
    python benchmarks/scaling.py --quick    # 2 epochs at 32 px
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    busy_share,
    cpu_counters,
    derived_grid,
    load_average,
    machine_header,
    median,
    print_table,
    run_study,
    start_ray,
)

TARGET = 1.7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="(1, 2) pairs")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each run")
    parser.add_argument("--quick", action="store_true", help="2 epochs at 32 px")
    args = parser.parse_args(argv)
    print(machine_header("Trial scaling: max concurrency 1 vs 2 on 2 CPUs"))
    train = {"epochs": 2 if args.quick else args.epochs, "patience": None}
    if args.quick:
        train["image_size"] = 32
    start_ray(num_cpus=2)
    rows, times = [], {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="ablate-scaling-") as folder:
        grid = derived_grid(
            "quickstart",
            Path(folder),
            "scaling",
            merge={"baseline.train": train},
            replace={
                "protocol.seeds": 1,
                "ablations": {"swap": {"loss": ["bce"]}},
                "resources": {"cpu": 1, "gpu": 0},
                "pruning": None,
            },
        )
        for round_index in range(args.rounds):
            for concurrency in (1, 2):
                out = Path(folder, f"study-{round_index}-{concurrency}")
                load, counters = load_average(), cpu_counters()
                result = run_study(grid, out, max_concurrent=concurrency)
                busy = busy_share(counters, cpu_counters())
                runs = result["runs"]
                seconds = result["seconds"]
                times[concurrency].append(seconds)
                rows.append(
                    [
                        round_index + 1,
                        concurrency,
                        seconds,
                        float(runs["duration_s"].sum()),
                        len(runs),
                        load,
                        f"{busy:.0%}",
                    ]
                )
    import ray

    ray.shutdown()
    print_table(["round", "max concurrent", "Tune s", "sum of run s", "runs", "load avg before", "machine CPU busy"], rows)
    speedup = median(times[1]) / median(times[2])
    print(
        "machine CPU busy: share of both cores busy (any process) during the phase; near 100% "
        "at concurrency 1 means other users held the second core"
    )
    print(f"target >= {TARGET}: {'met' if speedup >= TARGET else 'not met'}")
    print(f"speedup={speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
