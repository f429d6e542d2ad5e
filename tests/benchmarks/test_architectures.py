"""benchmarks/architectures.py --quick runs as a user runs it and reports every option of
grids/components.yaml with its parameters, FLOPs and rates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ablate.grid import expand_variants, load_grid

REPO = Path(__file__).resolve().parents[2]


def test_architectures_quick_reports_every_option() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "architectures.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    key, _, value = lines[-1].partition("=")
    assert key == "slowest_train_ratio" and 0 < float(value) <= 1.0
    rows = {
        cells[0]: cells[1:]
        for line in lines
        if line.startswith("| ") and not line.startswith("| option") and "---" not in line
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    names = [v.name for v in expand_variants(load_grid(REPO / "grids" / "components.yaml"))]
    assert list(rows) == names
    for cells in rows.values():
        parameters, flops, train_flops, *rates = map(float, cells[:7])
        assert parameters > 0 and 0 < flops <= train_flops and all(rate > 0 for rate in rates)
    # Counted, not guessed: SegNet (no concatenation) is cheaper than the U-Net, ASPP dearer.
    assert float(rows["arch=segnet"][1]) < float(rows["baseline"][1])
    assert float(rows["bottleneck=aspp"][0]) > float(rows["baseline"][0])
    assert rows["deep_supervision=true"][1] == rows["baseline"][1]  # model(x): main head only
