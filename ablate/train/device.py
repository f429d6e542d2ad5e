"""Where and how a run computes: device, autocast precision, memory format, seeding.

One `DevicePlan` per run, resolved once from the TrainConfig: CUDA when present (bf16
autocast, channels_last, pinned memory and non-blocking copies), else CPU in fp32 with
deterministic kernels, so the same seed gives the same numbers on CPU.

Inside a Ray trial the GPUs Ray gave it decide (`trial_device`): none means the CPU, even
on a machine with GPUs (they belong to other trials); some, with CUDA unavailable to torch,
means the CPU too, said once in the progress output (`cpu_fallback_note`).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ablate.config import Precision, TrainConfig


@dataclass(frozen=True)
class DevicePlan:
    """How a run places and computes its tensors."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    """bf16 under autocast, or None for plain fp32."""
    channels_last: bool
    pin_memory: bool
    non_blocking: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def to_device(self, tensor: torch.Tensor, image: bool = False) -> torch.Tensor:
        """Move a batch tensor; images get the plan's memory format."""
        tensor = tensor.to(self.device, non_blocking=self.non_blocking)
        if image and self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def describe(self) -> str:
        """Device name for the runs table, e.g. "cpu" or "cuda:0 NVIDIA H100"."""
        if self.is_cuda:
            index = (
                self.device.index if self.device.index is not None else torch.cuda.current_device()
            )
            return f"cuda:{index} {torch.cuda.get_device_name(index)}"
        return "cpu"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
"""Set by Ray for each trial to the GPU ids it was given; torch sees only those."""


def visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES as this process has it; None when unset (every GPU visible)."""
    return os.environ.get(VISIBLE_DEVICES_ENV)


def trial_device(gpu_ids: Sequence[str] | None) -> str | None:
    """The device of a run inside a Ray trial that was given `gpu_ids`.

    Args:
        gpu_ids: the GPU ids Ray assigned to the trial; None outside Ray (a direct call).

    Returns:
        "cpu" for a trial given no GPU: Ray leaves CUDA_VISIBLE_DEVICES unset there, so
        torch would see (and take) GPUs that Ray gave to other trials. None otherwise:
        CUDA when torch can use it (only the given GPUs are visible), else the CPU.
    """
    if gpu_ids is not None and not gpu_ids:
        return "cpu"
    return None


def cuda_missing_reason() -> str:
    """Why torch cannot use CUDA in this process, in a few words."""
    if not torch.backends.cuda.is_built():
        return f"this torch build has no CUDA (torch {torch.__version__})"
    visible = visible_devices()
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    return f"torch finds no usable CUDA device{where}: no driver, or no such GPU here"


def cpu_fallback_note(gpu_ids: Sequence[str] | None) -> str:
    """One line when a trial was given GPUs but runs on the CPU, naming its host; else "".

    Example:
        >>> cpu_fallback_note(["0"])  # on host1, with torch's CPU build
        'host1: trials were given GPUs but this torch build has no CUDA (torch 2.13.0+cpu);
        they run on the CPU'
    """
    if not gpu_ids or torch.cuda.is_available():
        return ""
    return (
        f"{socket.gethostname()}: trials were given GPUs but {cuda_missing_reason()}; "
        "they run on the CPU"
    )


def autocast_dtype(
    precision: Precision | torch.dtype | None, device: torch.device
) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None means fp32 (no autocast).

    auto: bf16 on CUDA cards that support it, fp32 on CPU (CPU bf16 autocast is slower
    than fp32 on most CPUs and changes numerics, so it is only used when asked for).
    """
    if precision is None or isinstance(precision, torch.dtype):
        return precision
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def plan_device(train: TrainConfig, device: str | torch.device | None = None) -> DevicePlan:
    """The DevicePlan of a run with `train` settings (device None: automatic)."""
    resolved = resolve_device(device)
    cuda = resolved.type == "cuda"
    channels_last = cuda if train.channels_last is None else train.channels_last
    return DevicePlan(
        device=resolved,
        autocast_dtype=autocast_dtype(train.precision, resolved),
        channels_last=channels_last,
        pin_memory=cuda,
        non_blocking=cuda,
    )


def seed_everything(seed: int, cpus: int | None = None, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch; on CPU also fix the thread count and kernels.

    CPU runs are bit-for-bit repeatable for a seed (fixed threads, deterministic
    algorithms). CUDA runs favour speed (cuDNN autotuning, TF32): close, not identical.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if cpus is not None:
        torch.set_num_threads(max(1, int(cpus)))
    if device is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)


def available_cpus() -> int:
    """CPUs this process may use (affinity-aware where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
