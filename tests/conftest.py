"""Fixtures shared by the whole suite: the real data sample, a tiny synthetic dataset, Ray."""

from __future__ import annotations

import os
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
