"""Memory: peak RSS of a quickstart study, and how many dataset copies the driver holds.

1. Study: `ablate run` on the quickstart grid (1 seed by default, `--seeds 3` for the whole
   grid) as a subprocess; every 0.5 s the process tree (driver, Ray's processes, trial
   workers, loader workers) is read from /proc: the peak of the summed RSS (shared pages
   counted once per process, so an over-count) and of the summed PSS (shared pages split
   between the processes sharing them: the physical total), and the driver's own peak RSS.

2. Driver copies: a fresh process builds a full-size dataset (2228 pairs at 224 px: the
   EBHI-Seg sample tiled to 2228, else synthetic tiles) and hands it to Tune exactly as the
   engine does (`ablate.engine.commands.ship_dataset`: put in the object store, the loaded
   arrays dropped, then `tune.with_parameters(train_variant, data=ref, ...)`). The growth of
   the driver's RSS (anonymous + shared memory, from /proc/self/status) divided by the
   dataset's nbytes is the number of copies the driver holds: RssAnon counts its own heap
   arrays, RssShmem the object store's pages it wrote. For comparison, "naive" hands the
   loaded arrays to `with_parameters` directly while the driver keeps them.

    python benchmarks/memory.py           # about 2-3 min
    python benchmarks/memory.py --quick   # small dataset, trivial study
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import SAMPLE_ROOT, derived_grid, descendants, machine_header, print_table

FULL_PAIRS = 2228
MIB = 2**20


# --- /proc readers -------------------------------------------------------------------------


def status_kib(pid: int | str, fields: tuple[str, ...]) -> dict[str, int]:
    """kB values of `fields` (e.g. VmRSS, RssAnon) from /proc/<pid>/status; {} if gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                found[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of a process (smaps_rollup), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree until stopped; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = self.peak_driver = 0
        self.peak_processes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            pids = descendants(self.root)
            rss = sum(status_kib(pid, ("VmRSS",)).get("VmRSS", 0) for pid in pids)
            pss = sum(pss_kib(pid) for pid in pids)
            driver = status_kib(self.root, ("VmRSS",)).get("VmRSS", 0)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_driver = max(self.peak_driver, driver)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.stopped.wait(self.interval)


# --- 1. a quickstart study ----------------------------------------------------------------


def study_peak(seeds: int, quick: bool) -> list[object]:
    """Peaks of `ablate run` on the quickstart grid with `seeds` seeds."""
    with tempfile.TemporaryDirectory(prefix="ablate-memory-") as folder:
        merge = {"baseline.train": {"epochs": 1, "image_size": 32}} if quick else {}
        replace: dict[str, object] = {"protocol.seeds": seeds}
        if quick:
            replace["ablations"] = {"swap": {"loss": ["bce"]}}
        grid = derived_grid("quickstart", Path(folder), "memory", merge=merge, replace=replace)
        command = [
            sys.executable,
            "-m",
            "ablate.cli",
            "run",
            str(grid),
            "--out",
            str(Path(folder, "study")),
        ]
        began = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = TreeSampler(process.pid)
        sampler.start()
        output, _ = process.communicate()
        sampler.stopped.set()
        sampler.join()
        seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise RuntimeError(f"ablate run failed ({process.returncode}):\n{output[-3000:]}")
    runs = [line for line in output.splitlines() if line.startswith("runs:")]
    return [
        f"quickstart, {seeds} seed(s)",
        runs[-1] if runs else "?",
        seconds,
        sampler.peak_processes,
        sampler.peak_rss / 1024,
        sampler.peak_pss / 1024,
        sampler.peak_driver / 1024,
    ]


# --- 2. dataset copies in the driver ------------------------------------------------------


def _full_size_data(pairs: int):
    """SegmentationData of `pairs` 224 px pairs: the sample (or synthetic tiles) tiled."""
    from ablate.config import DataConfig, SyntheticConfig
    from ablate.data.ebhi import SegmentationData, load_ebhi
    from ablate.data.source import load_data

    if SAMPLE_ROOT.is_dir():
        source = load_ebhi(SAMPLE_ROOT)
    else:
        source = load_data(DataConfig(synthetic=SyntheticConfig(per_class=24, size=224)))
    take = np.arange(pairs) % len(source.images)
    return SegmentationData(
        images=source.images[take],
        masks=source.masks[take],
        category_ids=source.category_ids[take],
        categories=source.categories,
        names=[f"{source.names[i]}#{n}" for n, i in enumerate(take)],
        report=source.report,
    )


def _driver_rss() -> tuple[int, int]:
    """(anonymous, shared-memory) resident kB of this process: heap copies, store mappings."""
    found = status_kib("self", ("RssAnon", "RssShmem"))
    return found.get("RssAnon", 0), found.get("RssShmem", 0)


def copies_probe(mode: str, pairs: int) -> dict[str, float]:
    """Child process: build the dataset, hand it to Tune (`mode` engine or naive)."""
    import logging

    import ray
    from ray import tune

    from ablate.engine.trainable import TrialSetup, train_variant

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    setup = TrialSetup(study="memory", study_uri="/tmp/unused", run_configs={}, seeds=[0])
    before = _driver_rss()
    data = _full_size_data(pairs)
    nbytes = data.images.nbytes + data.masks.nbytes
    loaded = _driver_rss()
    if mode == "engine":  # ablate/engine/run.py train_pending
        from types import SimpleNamespace

        from ablate.engine.study import ship_dataset

        holder = SimpleNamespace(data=data)  # ship_dataset reads and clears `study.data`
        del data
        trainable = tune.with_parameters(train_variant, data=ship_dataset(holder), setup=setup)
    else:  # naive: the loaded arrays handed over while the driver keeps them
        trainable = tune.with_parameters(train_variant, data=data, setup=setup)
    handed = _driver_rss()
    del trainable
    ray.shutdown()

    def copies(after: tuple[int, int], part: int | None = None) -> float:
        grown = [a - b for a, b in zip(after, before, strict=True)]
        return (sum(grown) if part is None else grown[part]) * 1024 / nbytes

    return {
        "nbytes": nbytes,
        "loaded_copies": copies(loaded),
        "handed_copies": copies(handed),
        "heap_copies": copies(handed, 0),
        "shm_copies": copies(handed, 1),
    }


def driver_copies(mode: str, pairs: int) -> dict[str, float]:
    """Run `copies_probe` in a fresh process (a clean RSS baseline)."""
    command = [sys.executable, __file__, f"--probe={mode}", f"--pairs={pairs}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"probe {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the quickstart study")
    parser.add_argument("--pairs", type=int, default=FULL_PAIRS, help="dataset size of part 2")
    parser.add_argument("--quick", action="store_true", help="trivial study, 300 pairs")
    parser.add_argument("--skip-study", action="store_true", help="part 2 only")
    parser.add_argument("--probe", choices=["engine", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(copies_probe(args.probe, args.pairs)))
        return 0
    if args.quick:
        args.pairs = 300
    print(machine_header("Memory: study peak RSS and dataset copies in the driver"))
    if not args.skip_study:
        row = study_peak(args.seeds, args.quick)
        print_table(
            [
                "study",
                "result",
                "wall s",
                "max processes",
                "peak RSS sum MiB",
                "peak PSS sum MiB",
                "driver peak RSS MiB",
            ],
            [row],
        )
    rows, copies = [], {}
    for mode in ("engine", "naive"):
        found = driver_copies(mode, args.pairs)
        copies[mode] = found["handed_copies"]
        rows.append(
            [
                mode,
                args.pairs,
                found["nbytes"] / MIB,
                found["loaded_copies"],
                found["handed_copies"],
                found["heap_copies"],
                found["shm_copies"],
            ]
        )
    print_table(
        [
            "path",
            "pairs",
            "dataset MiB",
            "copies after load",
            "copies after with_parameters",
            "of which heap (RssAnon)",
            "of which object store (RssShmem)",
        ],
        rows,
    )
    print(
        "engine: ablate.engine.commands.ship_dataset (ray.put, loaded arrays dropped) then "
        "with_parameters(data=ref); naive: with_parameters(data=data), the driver keeping it"
    )
    print(f"target: one copy in the driver: {'met' if copies['engine'] < 1.5 else 'not met'}")
    print(f"driver_copies={copies['engine']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
