"""Trial scaling: a 2-variant, 1-seed study, one CPU per trial, 1 vs 2 trials at once.

The study is the quickstart grid cut to two variants (baseline, loss=bce) and one seed,
with patience off so both variants train the same number of epochs (equal work), at 96 px
for 10 epochs so that a run (about 10-15 s) outweighs a trial's start. It runs
through the engine in this process (`prepare_study` + `train_pending`: real Tune trials on a
local Ray with 2 CPUs, started before timing), with max concurrency 1, then 2, alternating
for `--rounds` rounds. Timed: the Tune part (trial starts, runs, reports, Parquet writes), not
Ray's start (see ray_overhead.py) nor the summary. speedup = median time at 1 / median at 2.

    python benchmarks/scaling.py            # about 1-2 min
    python benchmarks/scaling.py --quick    # 2 epochs at 32 px
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    TrialCpuSampler,
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
# The same single-thread work as a bare process: what two processes gain on this machine now.
CALIBRATION = """
import time, torch
torch.set_num_threads(1)
from ablate.config import ModelConfig
from ablate.models import build_model
model = build_model(ModelConfig(widths=[8, 16, 32, 64]), 1)
x = torch.rand(8, 3, 96, 96)
for _ in range(STEPS):
    model(x).sum().backward()
"""


def machine_speedup(steps: int) -> list[float]:
    """A bare torch loop in two processes, one after the other then at once.

    No Ray, no engine: the ceiling this machine allows right now (other users included).
    Returns [sequential s, sequential CPU s, parallel s, parallel CPU s, speedup].
    """

    def wall(count: int) -> tuple[float, float]:
        code = CALIBRATION.replace("STEPS", str(steps))
        began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        processes = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
        if any(process.wait() != 0 for process in processes):
            raise RuntimeError("calibration process failed")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        return time.perf_counter() - began, used

    first, second, parallel = wall(1), wall(1), wall(2)
    sequential = first[0] + second[0]
    return [sequential, first[1] + second[1], parallel[0], parallel[1], sequential / parallel[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="(1, 2) pairs")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each run")
    parser.add_argument("--image-size", type=int, default=96, help="training resolution")
    parser.add_argument("--quick", action="store_true", help="2 epochs at 32 px")
    args = parser.parse_args(argv)
    print(machine_header("Trial scaling: max concurrency 1 vs 2 on 2 CPUs"))
    calibration = machine_speedup(5 if args.quick else 30)
    train = {"epochs": 2 if args.quick else args.epochs, "patience": None}
    train["image_size"] = 32 if args.quick else args.image_size
    if args.quick:
        args.rounds = 1
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
                with TrialCpuSampler() as sampler:
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
                        sampler.seconds,
                        load,
                        f"{busy:.0%}",
                    ]
                )
    import ray

    ray.shutdown()
    print_table(
        [
            "round",
            "max concurrent",
            "Tune s",
            "sum of run s",
            "runs",
            "trial processes CPU s",
            "load avg before",
            "machine CPU busy",
        ],
        rows,
    )
    speedup = median(times[1]) / median(times[2])
    print_table(
        [
            "bare torch processes (no Ray)",
            "2 one after the other s",
            "CPU s",
            "2 at once s",
            "CPU s ",
            "machine speedup",
        ],
        [["same work per process", *calibration]],
    )
    print(
        f"engine speedup / machine speedup = {speedup / calibration[-1]:.2f} "
        "(engine scaling efficiency)"
    )
    print(
        "trial processes CPU s: CPU time the trials' processes got; about equal at 1 and 2 "
        "means the engine adds no work when trials share the machine, and a slower wall time "
        "comes from CPU the trials did not get"
    )
    print(
        "machine CPU busy: share of both cores busy (any process) during the phase; near 100% "
        "at concurrency 1 means other users held the second core"
    )
    print(f"target >= {TARGET}: {'met' if speedup >= TARGET else 'not met'}")
    print(f"speedup={speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
