"""Fixtures shared by the whole suite: the real data sample, a tiny synthetic dataset, Ray."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

# Before any test module imports torch: see ablate/__init__.py for why.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = Path(
    os.environ.get("EBHI_SAMPLE_ROOT", REPO.parent / "shared" / "data" / "EBHI-SEG-sample")
)


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The shared 30% EBHI-Seg sample; tests that need it skip, with the reason, without it."""
    if not SAMPLE_ROOT.is_dir():
        pytest.skip(f"EBHI-Seg sample not found at {SAMPLE_ROOT} (set EBHI_SAMPLE_ROOT)")
    return SAMPLE_ROOT


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset on disk in the EBHI layout (6 categories x 8 pairs, 64 px)."""
    from ablate.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, per_class=8, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray instance for the whole test session (starting Ray costs seconds).

    Two CPUs are declared whatever the machine has, so scheduling behaves as on CI.
    """
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """`small_disk(mib)`: a real tmpfs of `mib` MiB under tmp_path, unmounted afterwards.

    A full disk is a real condition here, not a mock; mounting needs root, so the test skips
    (with the reason) where it cannot mount.
    """
    mounted: list[Path] = []

    def mount(mib: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(folder)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def fill_disk() -> Callable[[Path], Path]:
    """`fill_disk(folder)`: a ballast file that takes every free byte of the folder's disk."""

    def fill(folder: Path) -> Path:
        ballast = folder / "ballast"
        handle = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 1 << 12, 1):  # big writes first, then the last crumbs
                with contextlib.suppress(OSError):
                    while True:
                        os.write(handle, b"\0" * size)
        finally:
            os.close(handle)
        return ballast

    return fill
