"""Helpers every benchmark script shares: machine description, timing, tables, configs.

The scripts are run as `python benchmarks/<name>.py`; this file sits beside them and is
imported as `_common` (the script's folder is on sys.path).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRIDS = REPO / "grids"
SAMPLE_ROOT = Path(
    os.environ.get("EBHI_SAMPLE_ROOT", REPO.parent / "shared" / "data" / "EBHI-SEG-sample")
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def total_ram_gib() -> float:
    """Physical memory in GiB (MemTotal of /proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def load_average() -> str:
    """1, 5 and 15 minute load averages: other users of the CPU skew every number."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def versions() -> dict[str, str]:
    """torch and ray versions (ray "absent" where it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "ray"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


def machine_header(title: str) -> str:
    """A header block naming the benchmark, the machine, the versions and the load."""
    info = versions()
    lines = [
        f"# {title}",
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), {total_ram_gib():.1f} GiB RAM",
        f"python {info['python']}, torch {info['torch']}, ray {info['ray']}",
        f"load average at start: {load_average()}",
    ]
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A markdown table (pasteable into RESULTS.md)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def timed(function: Callable[[], object]) -> tuple[float, object]:
    """(wall seconds, return value) of one call."""
    began = time.perf_counter()
    value = function()
    return time.perf_counter() - began, value


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def grid_run_config(name: str, root: Path | None = None):
    """The baseline RunConfig of grids/<name>.yaml; EBHI_SEG_ROOT points at `root` if given.

    Returns (GridConfig, RunConfig).
    """
    from ablate.grid import load_grid

    if root is not None:
        os.environ["EBHI_SEG_ROOT"] = str(root)
    grid = load_grid(GRIDS / f"{name}.yaml")
    return grid, grid.run_config()


def main_guard(run: Callable[[], int]) -> None:
    """Run a benchmark's main and exit with its code."""
    sys.exit(run())


def derived_grid(base: str, folder: Path, study: str, merge: dict, replace: dict) -> Path:
    """Write grids/<base>.yaml, changed, as `folder`/<study>.yaml; returns its path.

    Keys are dotted paths ("baseline.train", "protocol"). `merge`: mappings merged into the
    existing mapping there. `replace`: values put there as they are (None removes the key).
    """
    import yaml

    grid = yaml.safe_load((GRIDS / f"{base}.yaml").read_text())
    grid["study"] = study
    for key, value in [*merge.items(), *replace.items()]:
        *parents, last = key.split(".")
        node = grid
        for part in parents:
            node = node.setdefault(part, {})
        if key in merge:
            node[last] = {**node.get(last, {}), **value}
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def start_ray(num_cpus: int = 2) -> None:
    """A local Ray like the engine's embedded one, started outside any timed section."""
    import logging

    import ray

    ray.init(
        num_cpus=num_cpus,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )


def run_study(grid_path: Path, out: Path, max_concurrent: int | None) -> dict[str, object]:
    """Train a grid's runs through the engine (Ray already up); time and read its runs table.

    Uses the engine's own steps (prepare_study, write_study_files, train_pending), so the
    time covers every Tune trial (start, runs, reports, Parquet writes) and nothing else:
    no Ray start, no summary.
    """
    from ablate.engine.run import train_pending
    from ablate.engine.study import prepare_study, write_study_files
    from ablate.store import ResultStore

    study = prepare_study(str(grid_path), str(out), resume=False)
    write_study_files(study)
    began = time.perf_counter()
    errors = train_pending(study, address=None, max_concurrent=max_concurrent)
    seconds = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"trials failed: {errors}")
    runs = ResultStore(str(out), study=study.grid.study).read("runs")
    if set(runs["status"]) != {"ok"}:
        raise RuntimeError(f"runs not ok: {runs[['variant', 'seed', 'status', 'error']]}")
    return {"seconds": seconds, "runs": runs}


def cpu_counters() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat; (0, 0) elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the machine's CPU time that was busy (anyone's) between two cpu_counters()."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cpu_ticks(pid: int) -> int:
    """utime + stime clock ticks of a process so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


class TrialCpuSampler:
    """CPU seconds used by Ray trial processes (ray::ImplicitFunc) below this process.

    Samples every `interval` s in a thread and keeps each process's last value, so trials that
    exit between samples lose at most one interval of their CPU time. Processes alive before
    the block (Ray keeps idle workers for reuse) count only what they used during it.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval = interval
        self.ticks: dict[int, int] = {}
        self.before = {pid: cpu_ticks(pid) for pid in descendants(os.getpid())}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            for pid in descendants(os.getpid()):
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"ImplicitFunc" in name:
                    self.ticks[pid] = max(self.ticks.get(pid, 0), cpu_ticks(pid))
            self.stopped.wait(self.interval)

    def __enter__(self) -> TrialCpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        used = sum(ticks - self.before.get(pid, 0) for pid, ticks in self.ticks.items())
        return used / os.sysconf("SC_CLK_TCK")
