"""GPU fast path: full U-Net training throughput and peak memory, concurrent small trials.

Measures, on one CUDA GPU:
  1. the full U-Net (widths 64..1024) at 224 px, batch 16/32/64, fp32 vs bf16 autocast,
     channels_last on/off, torch.compile on/off: training images/s (forward, backward,
     Adam step; inputs already on the GPU, so the input pipeline is not measured here) and
     peak memory (torch.cuda.max_memory_allocated);
  2. 1, 2 and 4 concurrent small-config trials (ebhi_small's model at 112 px, batch 8) on
     the same GPU, one process each, as Ray places trials with gpu 1/N: total images/s;
  3. the projected time of the original study's training grid (35 configurations x 3 seeds,
     50 epochs at most, 2228 images) from the measured images/s.

Without CUDA it says so, runs a tiny CPU pass of the same code (so the script is known to
work) and prints `gpu_images_per_s=unmeasured`.

    python benchmarks/gpu.py            # on a GPU machine (about 10-15 min with compile)
    python benchmarks/gpu.py --no-compile --batches 32   # a few minutes
    python benchmarks/gpu.py --quick    # tiny sizes, any machine
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from _common import machine_header, print_table

FULL_WIDTHS = [64, 128, 256, 512, 1024]
SMALL_WIDTHS = [16, 32, 64, 128]  # grids/ebhi_small.yaml
SMALL_SIZE, SMALL_BATCH = 112, 8
# The original study: 35 training configurations x 3 seeds on EBHI-Seg (2228 images),
# 80/20 split then 10% of the rest for validation, at most 50 epochs (ebhi_base.yaml).
STUDY_CONFIGS, STUDY_SEEDS, STUDY_EPOCHS, STUDY_IMAGES = 35, 3, 50, 2228
TRAIN_SHARE, VAL_SHARE, TEST_SHARE = 0.8 * 0.9, 0.8 * 0.1, 0.2


@dataclass(frozen=True)
class Setting:
    """One cell of the throughput matrix."""

    batch: int
    precision: str  # "fp32" or "bf16"
    channels_last: bool
    compile: bool

    def label(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        return f"b{self.batch} {self.precision} {layout}{' compile' if self.compile else ''}"


def _model(widths: list[int], device: torch.device, channels_last: bool) -> torch.nn.Module:
    from ablate.config import ModelConfig
    from ablate.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=widths), out_channels=1).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _step_function(model, optimizer, loss_fn, precision: str, device: torch.device):
    """One training step exactly as ablate/train/loop.py does it (no host sync)."""
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if dtype is None:
            logits = model(images)
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                logits = model(images)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(batch: int, size: int, device: torch.device, channels_last: bool):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = (torch.rand(batch, 1, size, size, generator=generator) > 0.4).float().to(device)
    return images, target


def train_throughput(
    setting: Setting, widths: list[int], size: int, device: torch.device, warmup: int, steps: int
) -> dict[str, object]:
    """Training images/s and peak memory of one setting; "OOM" when it does not fit."""
    from ablate.config import TrainConfig
    from ablate.train.losses import build_loss
    from ablate.train.optim import build_optimizer

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        model = _model(widths, device, setting.channels_last)
        network = torch.compile(model) if setting.compile else model
        optimizer = build_optimizer(model.parameters(), TrainConfig(lr=1e-4))
        step = _step_function(
            network, optimizer, build_loss("dice", "binary"), setting.precision, device
        )
        images, target = _batch(setting.batch, size, device, setting.channels_last)
        began = time.perf_counter()
        for _ in range(warmup):  # cuDNN autotuning, compilation, allocator warm-up
            step(images, target)
        _synchronize(device)
        warm_s = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(steps):
            loss = step(images, target)
        _synchronize(device)
        seconds = time.perf_counter() - began
        finite = bool(torch.isfinite(loss).item())
    except torch.OutOfMemoryError:
        return {"images_s": "OOM", "peak_gib": "OOM", "warmup_s": "", "finite": ""}
    except Exception as error:  # e.g. torch.compile without a working Triton: report, go on
        print(f"  {setting.label()} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return {
            "images_s": f"error: {type(error).__name__}",
            "peak_gib": "",
            "warmup_s": "",
            "finite": "",
        }
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )
    return {
        "images_s": setting.batch * steps / seconds,
        "peak_gib": peak,
        "warmup_s": warm_s,
        "finite": finite,
    }


def eval_throughput(batch: int, size: int, device: torch.device) -> float:
    """Forward-only images/s of the full U-Net in bf16 + channels_last (evaluation)."""
    model = _model(FULL_WIDTHS, device, channels_last=True).eval()
    images, _ = _batch(batch, size, device, channels_last=True)
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        for _ in range(3):
            model(images)
        _synchronize(device)
        began = time.perf_counter()
        for _ in range(10):
            model(images)
        _synchronize(device)
    return batch * 10 / (time.perf_counter() - began)


def _settings(batches: list[int], compile_options: list[bool]) -> list[Setting]:
    return [
        Setting(batch, precision, channels_last, compiled)
        for batch, precision, channels_last, compiled in itertools.product(
            batches, ["fp32", "bf16"], [False, True], compile_options
        )
    ]


def measure_matrix(args: argparse.Namespace, device: torch.device, widths: list[int], size: int):
    rows, results = [], {}
    for setting in _settings(args.batches, [False, True] if args.compile else [False]):
        result = train_throughput(setting, widths, size, device, args.warmup, args.steps)
        results[setting] = result
        rows.append(
            [
                setting.label(),
                result["images_s"],
                result["peak_gib"],
                result["warmup_s"],
                result["finite"],
            ]
        )
        print(f"  {setting.label()}: {result['images_s']}", file=sys.stderr, flush=True)
    print_table(["setting", "train images/s", "peak GiB", "warm-up s", "finite loss"], rows)
    return results


# --- concurrent trials: one process per trial, as Ray's fractional GPUs place them -------


def worker(args: argparse.Namespace) -> int:
    """Child process: train the small config until `--stop-at`, counting from `--start-at`."""
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # as a trial on CUDA (ablate/train/device.py)
    setting = Setting(SMALL_BATCH, "bf16", True, False)
    from ablate.config import TrainConfig
    from ablate.train.losses import build_loss
    from ablate.train.optim import build_optimizer

    model = _model(SMALL_WIDTHS, device, channels_last=True)
    optimizer = build_optimizer(model.parameters(), TrainConfig())
    step = _step_function(model, optimizer, build_loss("dice", "binary"), setting.precision, device)
    images, target = _batch(SMALL_BATCH, SMALL_SIZE, device, channels_last=True)
    while time.time() < args.start_at:  # warm up until every process is ready
        step(images, target)
    _synchronize(device)
    began, steps = time.time(), 0
    while time.time() < args.stop_at:
        step(images, target)
        steps += 1
        if steps % 20 == 0:
            _synchronize(device)  # keep the queue short so the stop time is honest
    _synchronize(device)
    print(json.dumps({"images": steps * SMALL_BATCH, "seconds": time.time() - began}))
    return 0


def concurrent_throughput(count: int, seconds: float, warmup_s: float, device: str) -> float:
    """Total images/s of `count` processes training the small config at once on one GPU."""
    start_at = time.time() + warmup_s
    command = [
        sys.executable,
        __file__,
        "--worker",
        f"--device={device}",
        f"--start-at={start_at}",
        f"--stop-at={start_at + seconds}",
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    total = 0.0
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed with exit code {process.returncode}")
        report = json.loads(out.strip().splitlines()[-1])
        total += report["images"] / report["seconds"]
    return total


def project_study(train_images_s: float, eval_images_s: float) -> tuple[float, float]:
    """Hours of the original training grid at these rates: (every epoch run, 25 epochs)."""
    per_epoch = (
        STUDY_IMAGES * TRAIN_SHARE / train_images_s + STUDY_IMAGES * VAL_SHARE / eval_images_s
    )
    test = STUDY_IMAGES * TEST_SHARE / eval_images_s
    runs = STUDY_CONFIGS * STUDY_SEEDS

    def hours(epochs: int) -> float:
        return runs * (epochs * per_epoch + test) / 3600

    return hours(STUDY_EPOCHS), hours(STUDY_EPOCHS // 2)


def cpu_sanity() -> int:
    """No CUDA: run the same code on tiny sizes on the CPU, then say the GPU is unmeasured."""
    print("CUDA is not available: the GPU benchmarks are unmeasured on this machine.")
    print("Tiny CPU pass of the same code (widths 8..128, 32 px, batch 2), to check it runs:")
    device = torch.device("cpu")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for setting in [Setting(2, "fp32", False, False), Setting(2, "bf16", True, False)]:
        result = train_throughput(setting, [8, 16, 32, 64, 128], 32, device, warmup=1, steps=2)
        rows.append([setting.label(), result["images_s"], result["finite"]])
        if result["finite"] is not True:
            print(f"error: non-finite loss in {setting.label()}", file=sys.stderr)
            return 1
    print_table(["setting (CPU)", "train images/s", "finite loss"], rows)
    print(f"projection formula check at 1200/3600 images/s: {project_study(1200, 3600)[0]:.2f} h")
    print("gpu_images_per_s=unmeasured")
    return 0


def run_gpu(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    else:
        print(f"device {device} forced: the GPU code path on the CPU, numbers are not GPU numbers")
    torch.backends.cudnn.benchmark = True  # as ablate/train/device.py does on CUDA
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    size = args.size or (64 if args.quick else 224)
    print(f"\n## Full U-Net {FULL_WIDTHS} at {size} px: training throughput")
    results = measure_matrix(args, device, FULL_WIDTHS, size)
    fast = [
        (result["images_s"], setting)
        for setting, result in results.items()
        if setting.precision == "bf16"
        and setting.channels_last
        and isinstance(result["images_s"], float)
    ]
    best, best_setting = max(fast, key=lambda pair: pair[0]) if fast else (float("nan"), None)

    print(
        f"\n## Concurrent small-config trials ({SMALL_WIDTHS}, {SMALL_SIZE} px, "
        f"batch {SMALL_BATCH}, bf16)"
    )
    rows = []
    for count in args.concurrency:
        total = concurrent_throughput(count, args.seconds, args.worker_warmup, args.device)
        rows.append([count, f"1/{count}", total, total / count])
    print_table(["trials", "gpu per trial", "total images/s", "per trial images/s"], rows)

    eval_rate = eval_throughput(max(args.batches), size, device)
    every_epoch, half = project_study(best, eval_rate)
    print("\n## Projection: original training grid (35 configurations x 3 seeds, 2228 images)")
    print_table(
        [
            "train images/s (best bf16+CL)",
            "eval images/s",
            "hours, 50 epochs each",
            "hours, 25 epochs each",
        ],
        [[best, eval_rate, every_epoch, half]],
    )
    print(f"best setting: {best_setting.label() if best_setting else 'none'}")
    print(
        f"target: >= 1200 images/s: {'met' if best >= 1200 else 'not met'}; "
        f"projection <= 1 h: {'met' if every_epoch <= 1 else 'not met'} (50 epochs)"
    )
    print(f"gpu_images_per_s={best:.1f}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument(
        "--batches", type=lambda text: [int(v) for v in text.split(",")], default=[16, 32, 64]
    )
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip torch.compile"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="image side (default 224; 64 with --quick)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per setting")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument(
        "--concurrency", type=lambda text: [int(v) for v in text.split(",")], default=[1, 2, 4]
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="timed seconds per concurrency level"
    )
    parser.add_argument(
        "--worker-warmup", type=float, default=25.0, help="seconds for workers to start"
    )
    parser.add_argument(
        "--device", default=None, help="run the GPU code path on this device (cpu: test the script)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.compile, args.warmup, args.steps = [4], False, 1, 2
        args.concurrency, args.seconds, args.worker_warmup = [1, 2], 3.0, 15.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    print(machine_header("GPU fast path"))
    if args.device is None:
        if not torch.cuda.is_available():
            return cpu_sanity()
        args.device = "cuda"
    return run_gpu(args)


if __name__ == "__main__":
    sys.exit(main())
