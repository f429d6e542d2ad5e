"""Device plans: CPU defaults here, the CUDA path on a real GPU only (marked gpu)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.config import TrainConfig
from ablate.data.ebhi import SegmentationData
from ablate.train.device import autocast_dtype, plan_device, seed_everything
from ablate.train.run import execute_run

from .conftest import tiny_config


def test_cpu_plan_is_plain_fp32() -> None:
    plan = plan_device(TrainConfig(), "cpu")
    assert plan.autocast_dtype is None
    assert not plan.channels_last and not plan.pin_memory and not plan.non_blocking
    assert plan.describe() == "cpu"


def test_explicit_settings_win_over_auto() -> None:
    plan = plan_device(TrainConfig(precision="bf16", channels_last=True), "cpu")
    assert plan.autocast_dtype is torch.bfloat16 and plan.channels_last
    image = plan.to_device(torch.zeros(1, 3, 4, 4), image=True)
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    assert autocast_dtype(torch.float16, torch.device("cpu")) is torch.float16


def test_seeding_repeats_random_streams() -> None:
    seed_everything(7, cpus=1)
    first = torch.rand(3)
    seed_everything(7, cpus=1)
    assert torch.equal(first, torch.rand(3))
    assert torch.get_num_threads() == 1


def test_bf16_autocast_run_on_cpu(synthetic_root: Path, synthetic_data: SegmentationData) -> None:
    config = tiny_config(synthetic_root, train={"precision": "bf16", "epochs": 1})
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "ok", result.error


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_uses_bf16_and_channels_last(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(synthetic_root, train={"epochs": 2})
    plan = plan_device(config.train)
    assert plan.device.type == "cuda" and plan.channels_last and plan.pin_memory
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "ok", result.error
    assert result.device.startswith("cuda:")
    assert len(result.class_metrics) == len(synthetic_data.categories)
