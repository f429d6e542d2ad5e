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
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
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
