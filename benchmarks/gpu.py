"""GPU check: the full U-Net's training speed, trials packed on one GPU, the fraction to ask.

The one command to run on a CUDA machine (from the repository root, `pip install -e .` done):

    python benchmarks/gpu.py                # estimated 6-8 min on an H100 (3 torch.compile cells)
    python benchmarks/gpu.py --no-compile   # eager only, estimated 3 min
    python benchmarks/gpu.py --quick        # tiny sizes, any machine: checks the script runs

It measures, on one GPU:
  1. The baseline model of grids/ebhi_base.yaml (the full U-Net, widths 64..1024, batch
     norm, transposed convs) at the grid's image size (224 px): training images/s and peak
     memory per batch size, in fp32, bf16 autocast and bf16 + channels_last, eager and
     under torch.compile. A step is the training loop's (autocast forward, loss, backward,
     optimizer step); the batch already sits on the GPU, so the input pipeline is not in
     it (benchmarks/pipeline.py measures that: about 2,600 images/s per CPU core at 224 px).
  2. 1, 2 and 4 trials packed on the GPU: one process each, as Ray places trials asking
     `gpu: 1/N`, each training the same model at the grid's batch size with a run's device
     plan (bf16 + channels_last on CUDA). Images/s of each and together, and each
     process's peak memory (torch.cuda.max_memory_allocated and max_memory_reserved) and
     the GPU memory in use with one trial alone (its whole footprint, CUDA context included).
  3. The `gpu:` fraction to ask: how many such trials fit the card's memory, and how many
     packed trials gave the most images/s.
  4. A projection of the shipped studies' time on one GPU from the measured rates.

The last section is a Markdown table for benchmarks/RESULTS.md; the last line is
`gpu_images_per_s=` (best bf16 + channels_last training rate) or `unmeasured` without CUDA,
where the script says so and runs a tiny CPU pass of the same code instead.
`--device cpu` forces the whole GPU code path onto the CPU (to test the script; the
numbers are then CPU numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import GRIDS, grid_run_config, machine_header, print_table

from ablate.config import RunConfig
from ablate.grid import load_grid, runs_count
from ablate.models import build_model, output_channels
from ablate.train.device import DevicePlan, plan_device
from ablate.train.losses import build_loss
from ablate.train.optim import build_optimizer

TARGET_IMAGES_S = 1200.0
"""The full U-Net at 224 px, bf16 + channels_last, on an H100-class card."""
CATEGORIES = [
    "Adenocarcinoma",
    "High-grade IN",
    "Low-grade IN",
    "Normal",
    "Polyp",
    "Serrated adenoma",
]
DATASET_IMAGES = 2228
"""EBHI-Seg: image/label pairs of the full release."""
TRAIN_SHARE, VAL_SHARE, TEST_SHARE = 0.8 * 0.9, 0.8 * 0.1, 0.2
STUDY_GRIDS = ("ebhi_training", "ebhi_architecture", "ebhi_data")
ORIGINAL_STUDY_RUNS = 35 * 3
"""The original study: 35 variants x 3 seeds, the target being one hour."""
MEMORY_HEADROOM = 0.9
"""Share of the card's memory that packed trials may plan to use (fragmentation, peaks)."""
GIB = 2**30


@dataclass(frozen=True)
class Setting:
    """One cell of the throughput matrix."""

    batch: int
    precision: str  # "fp32" or "bf16"
    channels_last: bool
    compile: bool

    def label(self) -> str:
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.precision}{layout}{', compiled' if self.compile else ''}"


SETTINGS = [("fp32", False), ("bf16", False), ("bf16", True)]
"""(precision, channels_last) pairs the matrix measures."""


# --- the model and one training step, as a run of the grid makes them ----------------------


def load_config(grid: str, quick: bool) -> RunConfig:
    """The baseline RunConfig of grids/<grid>.yaml (quick: the same U-Net, 1/8 the widths).

    Only the model and train sections are used: the dataset is never read, so a dataset
    path the grid names need not exist here.
    """
    root = Path(os.environ.get("EBHI_SEG_ROOT") or "unused-by-gpu-benchmark")
    _, config = grid_run_config(grid, root)
    if quick:
        widths = [max(4, width // 8) for width in config.model.widths]
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"widths": widths})}
        )
    return config


def device_plan(config: RunConfig, setting: Setting | None, device: torch.device) -> DevicePlan:
    """A run's DevicePlan: the grid's own train settings (None) or the setting's."""
    train = config.train
    if setting is not None:
        train = train.model_copy(
            update={"precision": setting.precision, "channels_last": setting.channels_last}
        )
    return plan_device(train, device)


def build_step(config: RunConfig, plan: DevicePlan, compile_model: bool):
    """(step(images, target) -> loss, model): one optimizer step of the training loop."""
    torch.manual_seed(0)
    model = build_model(config.model, output_channels(config.protocol.task, CATEGORIES))
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if compile_model else model
    optimizer = build_optimizer(model.parameters(), config.train)
    loss_fn = build_loss(config.train.loss, config.protocol.task)

    def step(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with plan.autocast():
            logits = network(images)  # (B, C, h, w)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, network


def synthetic_batch(
    config: RunConfig, batch: int, size: int, plan: DevicePlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (images, target) batch on the plan's device, in the loss's target format."""
    generator = torch.Generator().manual_seed(0)
    images = plan.to_device(torch.rand(batch, 3, size, size, generator=generator), image=True)
    if config.protocol.task == "binary":
        target = (torch.rand(batch, 1, size, size, generator=generator) > 0.4).float()
    else:
        target = torch.randint(0, 1 + len(CATEGORIES), (batch, size, size), generator=generator)
    return images, plan.to_device(target)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> tuple[float, float]:
    """(max allocated, max reserved) GiB since the last reset; NaN off CUDA."""
    if device.type != "cuda":
        return math.nan, math.nan
    return (
        torch.cuda.max_memory_allocated(device) / GIB,
        torch.cuda.max_memory_reserved(device) / GIB,
    )


def reset_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --- 1. the throughput matrix --------------------------------------------------------------


def train_throughput(
    config: RunConfig, setting: Setting, size: int, device: torch.device, warmup: int, steps: int
) -> dict[str, object]:
    """Training images/s and peak memory of one setting; "OOM" when it does not fit."""
    reset_peaks(device)
    try:
        plan = device_plan(config, setting, device)
        step, _ = build_step(config, plan, setting.compile)
        images, target = synthetic_batch(config, setting.batch, size, plan)
        began = time.perf_counter()
        for _ in range(warmup):  # cuDNN autotuning, compilation, allocator warm-up
            step(images, target)
        synchronize(device)
        warm_s = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(steps):
            loss = step(images, target)
        synchronize(device)
        seconds = time.perf_counter() - began
        finite = bool(torch.isfinite(loss).item())
    except torch.cuda.OutOfMemoryError:
        return {"images_s": "OOM", "allocated": "OOM", "reserved": "", "warmup_s": "", "finite": ""}
    except Exception as error:  # e.g. torch.compile without a working Triton: report, go on
        print(f"  {setting.label()} failed: {type(error).__name__}: {error}", file=sys.stderr)
        text = f"error: {type(error).__name__}"
        return {"images_s": text, "allocated": "", "reserved": "", "warmup_s": "", "finite": ""}
    allocated, reserved = peak_gib(device)
    return {
        "images_s": setting.batch * steps / seconds,
        "allocated": allocated,
        "reserved": reserved,
        "warmup_s": warm_s,
        "finite": finite,
    }


def matrix_settings(batches: list[int], compile_batches: list[int]) -> list[Setting]:
    """Every batch x SETTINGS eager, and compiled for the batches in `compile_batches`."""
    eager = [Setting(b, p, cl, False) for b in batches for p, cl in SETTINGS]
    compiled = [Setting(b, p, cl, True) for b in compile_batches for p, cl in SETTINGS]
    return eager + compiled


def measure_matrix(
    config: RunConfig, args: argparse.Namespace, device: torch.device
) -> dict[Setting, dict]:
    """Section 1: the table of every setting; returns the results by setting."""
    results = {}
    for setting in matrix_settings(args.batches, args.compile_batches):
        results[setting] = train_throughput(
            config, setting, args.size, device, args.warmup, args.steps
        )
        rate = results[setting]["images_s"]
        text = f"{rate:.1f} images/s" if isinstance(rate, float) else rate
        print(f"  batch {setting.batch}, {setting.label()}: {text}", file=sys.stderr, flush=True)
    rows = [
        [
            s.batch,
            s.label(),
            r["images_s"],
            r["allocated"],
            r["reserved"],
            r["warmup_s"],
            r["finite"],
        ]
        for s, r in results.items()
    ]
    headers = ["batch", "setting", "train images/s", "peak allocated GiB", "peak reserved GiB"]
    print_table([*headers, "warm-up s", "finite loss"], rows)
    return results


def best_fast(results: dict[Setting, dict]) -> tuple[float, Setting | None]:
    """The highest bf16 + channels_last training rate and its setting (NaN, None if none)."""
    fast = [
        (result["images_s"], setting)
        for setting, result in results.items()
        if setting.precision == "bf16"
        and setting.channels_last
        and isinstance(result["images_s"], float)
    ]
    return max(fast, key=lambda pair: pair[0]) if fast else (math.nan, None)


def eval_throughput(config: RunConfig, batch: int, size: int, device: torch.device) -> float:
    """Forward-only images/s under the grid's device plan (evaluation, no gradients)."""
    plan = device_plan(config, None, device)
    _, model = build_step(config, plan, compile_model=False)
    model.eval()
    images, _ = synthetic_batch(config, batch, size, plan)
    with torch.inference_mode(), plan.autocast():
        for _ in range(3):
            model(images)
        synchronize(device)
        began = time.perf_counter()
        for _ in range(10):
            model(images)
        synchronize(device)
    return batch * 10 / (time.perf_counter() - began)


# --- 2. trials packed on one GPU: one process each -------------------------------------------


def worker(args: argparse.Namespace) -> int:
    """Child process: one packed trial. Warms up, says ready, trains from "go" for --seconds.

    Prints JSON lines: {"ready": true}, then the result (or {"error": ...}).
    """
    device = torch.device(args.device)
    config = load_config(args.grid, args.quick)
    try:
        plan = device_plan(config, None, device)  # what a trial of this grid resolves
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as seed_everything does on CUDA
        step, _ = build_step(config, plan, compile_model=False)
        images, target = synthetic_batch(config, args.pack_batch, args.size, plan)
        for _ in range(max(args.warmup, 1)):
            step(images, target)
        synchronize(device)
    except torch.cuda.OutOfMemoryError:
        print(json.dumps({"error": "OOM"}), flush=True)
        return 0
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # "go": every trial starts timing at once
    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < args.seconds:
        step(images, target)
        steps += 1
        if steps % 10 == 0:
            synchronize(device)  # keep the queue short, so the stop time is honest
    synchronize(device)
    seconds = time.perf_counter() - began
    allocated, reserved = peak_gib(device)
    free, total = torch.cuda.mem_get_info(device) if device.type == "cuda" else (0, math.nan)
    in_use = (total - free) / GIB  # with one trial alone: its footprint plus the parent's
    report = {"images_s": steps * args.pack_batch / seconds, "allocated": allocated}
    print(json.dumps({**report, "reserved": reserved, "gpu_in_use": in_use}), flush=True)
    return 0


def _worker_command(args: argparse.Namespace) -> list[str]:
    options = [f"--device={args.device}", f"--grid={args.grid}", f"--size={args.size}"]
    options += [f"--pack-batch={args.pack_batch}", f"--seconds={args.seconds}"]
    options += [f"--warmup={args.warmup}"] + (["--quick"] if args.quick else [])
    return [sys.executable, __file__, "--worker", *options]


def _read_json(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"a packed trial exited early (code {process.wait()})")
    return json.loads(line)


def packed(count: int, args: argparse.Namespace) -> list[dict]:
    """`count` trial processes on one GPU, timed together; one result dict per process
    (each {"error": ...} when one of them ran out of memory or failed)."""
    command = _worker_command(args)
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        ready = [_read_json(process) for process in processes]
        if any("error" in message for message in ready):
            return [{"error": "OOM"}] * count
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        return [_read_json(process) for process in processes]
    except RuntimeError as error:
        print(f"  {count} packed trials: {error}", file=sys.stderr)
        return [{"error": "failed"}] * count
    finally:
        for process in processes:
            process.stdin.close()
            process.wait(timeout=120)


def measure_packing(args: argparse.Namespace) -> dict[int, list[dict]]:
    """Section 2: the table of 1, 2, 4 packed trials; returns each level's results."""
    levels = {count: packed(count, args) for count in args.concurrency}
    rows = []
    for count, results in levels.items():
        if "error" in results[0]:
            rows.append([count, f"{1 / count:.4g}", results[0]["error"], "", "", "", ""])
            continue
        total = sum(r["images_s"] for r in results)
        alone = sum(r["images_s"] for r in levels[min(levels)]) / min(levels)
        rows.append(
            [
                count,
                f"{1 / count:.4g}",
                total,
                total / count,
                total / alone,
                max(r["allocated"] for r in results),
                max(r["reserved"] for r in results),
            ]
        )
    headers = ["trials", "gpu per trial", "total images/s", "per trial images/s"]
    more = ["vs 1 trial", "peak allocated GiB per trial", "peak reserved GiB per trial"]
    print_table([*headers, *more], rows)
    return levels


# --- 3. the fraction to ask, 4. the projection ----------------------------------------------


def fraction_advice(card_gib: float, footprint_gib: float, totals: dict[int, float]) -> dict:
    """How many trials to pack per GPU: what fits the memory, capped by what pays off.

    Args:
        card_gib: the GPU's memory.
        footprint_gib: one trial's whole GPU memory (context, caches, peak tensors).
        totals: packed trials -> total images/s measured.

    Returns:
        fit (trials that fit MEMORY_HEADROOM of the card), best (the measured count with the
        most images/s), per_gpu (the measured count that fits with the most images/s) and
        gpu (1 / per_gpu: the grid's `resources.gpu`).

    Example:
        >>> fraction_advice(80.0, 6.0, {1: 300.0, 2: 520.0, 4: 560.0})["gpu"]
        0.25
        >>> fraction_advice(16.0, 6.0, {1: 300.0, 2: 520.0, 4: 560.0})["gpu"]  # 2 fit
        0.5
    """
    fit = max(1, math.floor(MEMORY_HEADROOM * card_gib / footprint_gib))
    best = max(totals, key=totals.get)
    fitting = [count for count in totals if count <= fit] or [1]
    per_gpu = max(fitting, key=lambda count: totals.get(count, 0.0))
    return {"fit": fit, "best": best, "per_gpu": per_gpu, "gpu": round(1 / per_gpu, 4)}


def run_hours(runs: int, epochs: int, train_images_s: float, eval_images_s: float) -> float:
    """Hours of `runs` runs on EBHI-Seg at these rates (epochs of train + validation, then
    one test pass), one after the other at the given total rates."""
    per_epoch = DATASET_IMAGES * (TRAIN_SHARE / train_images_s + VAL_SHARE / eval_images_s)
    test = DATASET_IMAGES * TEST_SHARE / eval_images_s
    return runs * (epochs * per_epoch + test) / 3600


def study_runs() -> dict[str, int]:
    """Runs of each shipped study grid (variants x seeds), and of the original study."""
    os.environ.setdefault("EBHI_SEG_ROOT", "unused-by-gpu-benchmark")
    runs = {name: runs_count(load_grid(GRIDS / f"{name}.yaml")) for name in STUDY_GRIDS}
    return {**runs, "original study (35 x 3)": ORIGINAL_STUDY_RUNS}


def print_projection(
    train_images_s: float, eval_images_s: float, per_gpu: int, epochs: int
) -> None:
    """Section 4: hours per study on one GPU with `per_gpu` trials packed."""
    rows = [
        [
            name,
            runs,
            run_hours(runs, epochs, train_images_s, eval_images_s),
            run_hours(runs, epochs // 2, train_images_s, eval_images_s),
        ]
        for name, runs in study_runs().items()
    ]
    print(
        f"(one GPU, {per_gpu} packed trials, {train_images_s:.0f} training and "
        f"{eval_images_s:.0f} evaluation images/s in total; every variant at the baseline's rate)"
    )
    print_table(
        ["study", "runs", f"hours, {epochs} epochs each", f"hours, {epochs // 2} epochs each"], rows
    )


# --- the sections together -------------------------------------------------------------------


def gpu_description(device: torch.device) -> tuple[str, float]:
    """(name, memory GiB) of the device; ("cpu", NaN) off CUDA."""
    if device.type != "cuda":
        return "cpu (forced: not GPU numbers)", math.nan
    properties = torch.cuda.get_device_properties(device)
    return properties.name, properties.total_memory / GIB


def gpu_in_use(device: torch.device) -> float:
    """GiB in use on the whole GPU (every process), after emptying this process's cache."""
    if device.type != "cuda":
        return math.nan
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / GIB


def print_fraction(levels: dict[int, list[dict]], card_gib: float, before_gib: float) -> dict:
    """Section 3: one trial's footprint and the fraction to ask; {} when not measurable."""
    totals = packed_totals(levels)
    alone = levels.get(1, [{}])[0]
    footprint = alone.get("gpu_in_use", math.nan) - before_gib
    if not (math.isfinite(footprint) and footprint > 0 and totals):
        print("no GPU memory measured here (not CUDA, or no single-trial level)")
        return {}
    advice = fraction_advice(card_gib, footprint, totals)
    print(
        f"one trial alone: {footprint:.2f} GiB of the GPU (its peak reserved "
        f"{alone['reserved']:.2f} GiB + CUDA context and kernels); {advice['fit']} such trials "
        f"fit in {MEMORY_HEADROOM:.0%} of {card_gib:.0f} GiB; the most images/s came with "
        f"{advice['best']} packed -> resources: {{gpu: {advice['gpu']}}}"
    )
    return {**advice, "footprint": footprint}


def packed_totals(levels: dict[int, list[dict]]) -> dict[int, float]:
    """Packed trials -> their total images/s, for the levels that ran."""
    return {n: sum(r["images_s"] for r in rs) for n, rs in levels.items() if "error" not in rs[0]}


def print_summary(rows: list[list[object]]) -> None:
    print("\n## For benchmarks/RESULTS.md")
    print_table(["what", "measured"], rows)


def run_gpu(args: argparse.Namespace) -> int:
    """Every section on `args.device` (CUDA, or the CPU to test the script)."""
    device = torch.device(args.device)
    config = load_config(args.grid, args.quick)
    name, card_gib = gpu_description(device)
    print(
        f"device: {name}, {card_gib:.1f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
    if device.type == "cuda":  # as seed_everything sets a CUDA run up
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = config.model
    print(
        f"\n## 1. {args.grid} model (widths {model.widths}, {model.norm}, {model.upsampling}) "
        f"at {args.size} px: training throughput, eager and compiled"
    )
    best, best_setting = best_fast(measure_matrix(config, args, device))
    eval_rate = eval_throughput(config, max(args.batches), args.size, device)

    print(
        f"\n## 2. Trials packed on one GPU, one process each ({args.grid}: batch "
        f"{args.pack_batch}, {args.size} px, a run's device plan)"
    )
    before = gpu_in_use(device)
    levels = measure_packing(args)
    totals = packed_totals(levels)

    print("\n## 3. The fraction to ask")
    advice = print_fraction(levels, card_gib, before)

    if totals:
        per_gpu = advice.get("per_gpu") or max(totals, key=totals.get)
        # Sharing the GPU slows evaluation as much as training.
        eval_total = eval_rate * totals[per_gpu] / totals.get(1, totals[per_gpu] / per_gpu)
        print("\n## 4. Projection (arithmetic on the rates above; early stopping not modelled)")
        print_projection(totals[per_gpu], eval_total, per_gpu, config.train.epochs)

    best_text = (
        f"{best:.0f} ({best_setting.label()}, batch {best_setting.batch})"
        if best_setting
        else "none"
    )
    print_summary(
        [
            ["GPU", f"{name}, {card_gib:.0f} GiB, torch {torch.__version__}"],
            [f"training images/s, best bf16 + channels_last, {args.size} px", best_text],
            [
                f"target >= {TARGET_IMAGES_S:.0f} images/s",
                "met" if best >= TARGET_IMAGES_S else "not met",
            ],
            [
                f"packed trials (batch {args.pack_batch}): total images/s",
                ", ".join(f"{n}: {t:.0f}" for n, t in totals.items()) or "none ran",
            ],
            [
                "one trial's GPU memory",
                f"{advice['footprint']:.2f} GiB" if advice else "unmeasured",
            ],
            ["suggested `resources.gpu`", str(advice["gpu"]) if advice else "unmeasured"],
            ["evaluation images/s (one process)", f"{eval_rate:.0f}"],
        ]
    )
    print(f"gpu_images_per_s={best:.1f}")
    return 0


def cpu_sanity(args: argparse.Namespace) -> int:
    """No CUDA: the matrix's code on tiny sizes on the CPU, then say the GPU is unmeasured."""
    print("CUDA is not available: the GPU benchmarks are unmeasured on this machine.")
    config = load_config(args.grid, quick=True)
    device = torch.device("cpu")
    print(
        f"Tiny CPU pass of the same code ({args.grid} model at 1/8 width "
        f"{config.model.widths}, 32 px, batch 2), to check it runs:"
    )
    rows = []
    for precision, channels_last in SETTINGS:
        setting = Setting(2, precision, channels_last, False)
        result = train_throughput(config, setting, 32, device, warmup=1, steps=2)
        rows.append([setting.label(), result["images_s"], result["finite"]])
        if result["finite"] is not True:
            print(f"error: no finite loss in {setting.label()}: {result}", file=sys.stderr)
            return 1
    print_table(["setting (CPU)", "train images/s", "finite loss"], rows)
    advice = fraction_advice(80.0, 6.0, {1: 300.0, 2: 520.0, 4: 560.0})
    print(f"fraction rule check (80 GiB card, 6 GiB trial, best at 4): gpu {advice['gpu']}")
    hours = run_hours(ORIGINAL_STUDY_RUNS, 50, 1200.0, 3600.0)
    print(f"projection check at 1200/3600 images/s, 50 epochs: original study {hours:.2f} h")
    print("gpu_images_per_s=unmeasured")
    return 0


def _ints(text: str) -> list[int]:
    return [int(value) for value in text.split(",") if value]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--grid", default="ebhi_base", help="grid under grids/ (default ebhi_base)")
    parser.add_argument(
        "--batches", type=_ints, default=None, help="matrix batches (default: the grid's, 32)"
    )
    parser.add_argument(
        "--compile-batches",
        type=_ints,
        default=None,
        help="batches also measured under torch.compile (default: the largest)",
    )
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip torch.compile"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="image side (default: the grid's; 32 with --quick)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per setting")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument(
        "--concurrency", type=_ints, default=[1, 2, 4], help="packed trials to measure"
    )
    parser.add_argument(
        "--pack-batch", type=int, default=None, help="packed trials' batch (default: the grid's)"
    )
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="timed seconds per packing level"
    )
    parser.add_argument(
        "--device", default=None, help="run the GPU code path here (cpu: test the script)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return _fill_defaults(args)


def _fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults that come from the grid; --quick shrinks everything."""
    train = load_config(args.grid, quick=False).train
    if args.quick:
        args.batches, args.warmup, args.steps, args.compile = [2], 1, 2, False
        args.seconds = min(args.seconds, 2.0)
        args.pack_batch = args.pack_batch or 2
    args.size = args.size or (32 if args.quick else train.image_size)
    args.batches = args.batches or sorted({train.batch_size, 32})
    args.pack_batch = args.pack_batch or train.batch_size
    if not args.compile:
        args.compile_batches = []
    elif args.compile_batches is None:
        args.compile_batches = [max(args.batches)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    print(machine_header("GPU check: full U-Net throughput, packed trials, the fraction to ask"))
    if args.device is None:
        if not torch.cuda.is_available():
            return cpu_sanity(args)
        args.device = "cuda"
    return run_gpu(args)


if __name__ == "__main__":
    sys.exit(main())
