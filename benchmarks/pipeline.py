"""Input pipeline vs training step: can the loader keep the model busy?

For each config (quickstart; ebhi_small on the real sample when present, else synthetic
224 px tiles), with the engine's own pieces and settings:
  - decode: `load_data` (PNG decode once per process), images/s, reported once;
  - pipeline: `build_train_loader` with the config's augmentation, sampler and the worker
    count the engine picks from the grid's CPUs (`worker_count`), no model: images/s over
    whole epochs after the first (workers start once per run; the first epoch is shown too);
  - training: forward + backward + optimizer step of the config's model at its batch size
    and resolution, on a batch already in memory: images/s with the grid's CPUs as torch
    threads (what a run sets) and with one thread.
The ratio is pipeline / the faster of the two training rates; >= 3 means the input pipeline
costs at most a quarter of a step even when it runs on the training core. The last line is
the smallest ratio.

With --inputs, the same measurement for each input mode (augment.input) and stain
normalisation (augment.stain_norm), with the config's augmentation (whose colour ops make a
1-channel mode convert each item after augmenting it) and with geometric ops only (the
converted-once path); "prepare s" is what a run pays before its first batch: the stain fit
on the training split, normalising the split's images, the channel statistics and building
the train loader (a mode's first use in the process also converts the whole dataset once,
shown apart as "convert s").

    python benchmarks/pipeline.py          # both configs (about 1-2 min)
    python benchmarks/pipeline.py --quick  # quickstart only, few batches
    python benchmarks/pipeline.py --inputs # input modes and stain normalisation (~5 min)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from _common import SAMPLE_ROOT, grid_run_config, machine_header, print_table, timed

TARGET = 3.0


def load_config(name: str):
    """(grid, run config, data source text) for a benchmark config."""
    from ablate.config import DataConfig, SyntheticConfig

    if name != "ebhi_small":
        grid, config = grid_run_config(name)
        return grid, config, "synthetic (grid)"
    if SAMPLE_ROOT.is_dir():
        grid, config = grid_run_config(name, root=SAMPLE_ROOT)
        return grid, config, f"EBHI-Seg sample {SAMPLE_ROOT}"
    os.environ.setdefault("EBHI_SEG_ROOT", "/nonexistent")  # the grid needs the variable set
    grid, config = grid_run_config(name)
    synthetic = DataConfig(synthetic=SyntheticConfig(per_class=112, size=224))
    return grid, config.model_copy(update={"data": synthetic}), "synthetic 224 px (no sample)"


def pipeline_rate(loader, epochs: int, max_batches: int | None) -> tuple[float, float]:
    """(first-epoch images/s, later-epochs images/s) of iterating `loader`."""
    rates = []
    for _ in range(epochs):
        began, images = time.perf_counter(), 0
        for count, batch in enumerate(loader, start=1):
            images += batch["image"].shape[0]
            if max_batches is not None and count >= max_batches:
                break
        rates.append(images / (time.perf_counter() - began))
    later = rates[1:] or rates
    return rates[0], sum(later) / len(later)


def training_rate(config, batch, steps: int, threads: int, in_channels: int = 3) -> float:
    """images/s of forward + backward + step on one in-memory batch (engine loop semantics)."""
    torch.set_num_threads(threads)
    from ablate.models import build_model
    from ablate.train.losses import build_loss
    from ablate.train.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(config.model, out_channels=1, in_channels=in_channels)
    optimizer = build_optimizer(model.parameters(), config.train)
    loss_fn = build_loss(config.train.loss, "binary")
    images, target = batch["image"], batch["mask"].unsqueeze(1).float()

    def step() -> None:
        loss = loss_fn(model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return images.shape[0] * steps / (time.perf_counter() - began)


def measure(name: str, quick: bool) -> list[object]:
    from ablate.data.loader import build_train_loader, channel_stats
    from ablate.data.source import load_data
    from ablate.data.split import split_indices
    from ablate.train.run import worker_count

    grid, config, source = load_config(name)
    if quick:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"image_size": 32})}
        )
    cpus = max(1, int(grid.resources.cpu))
    torch.set_num_threads(cpus)  # what seed_everything does in a run
    began = time.perf_counter()
    data = load_data(config.data)
    decode_rate = len(data.images) / (time.perf_counter() - began)
    protocol = config.protocol
    split = split_indices(data.category_ids, 0, protocol.test_fraction, protocol.val_fraction)
    workers = worker_count(config.train.num_workers, cpus)
    stats = channel_stats(data.images[split.train]) if config.augment.normalize else None
    began = time.perf_counter()
    loader = build_train_loader(
        data, split.train, config.augment, config.train, 0, workers, False, stats
    )
    build_s = time.perf_counter() - began
    first, later = pipeline_rate(loader, 1 if quick else 3, 4 if quick else None)
    batch = next(iter(loader))
    steps = 2 if quick else 10
    train_rate = training_rate(config, batch, steps, cpus)
    one_thread = training_rate(config, batch, steps, 1) if cpus > 1 else train_rate
    # The pipeline must keep up with the faster of the two (conservative ratio).
    fastest = max(train_rate, one_thread)
    print(
        f"{name}: {source}; {len(data.images)} images, train split {len(split.train)}, "
        f"{config.train.image_size} px, batch {config.train.batch_size}, widths "
        f"{config.model.widths}, {cpus} CPU(s) -> {workers} loader worker(s), "
        f"ops {sorted(config.augment.ops)}",
        flush=True,
    )
    return [name, decode_rate, build_s, first, later, train_rate, one_thread, later / fastest]


def per_core_rate(batches: int) -> float:
    """Loader images/s on one core (no workers) for ebhi_base: 224 px, its augmentation.

    The GPU path needs the loader to keep up with the GPU: this says how many loader worker
    cores a trial needs per 1,200 training images/s (the H100 target).
    """
    from ablate.data.loader import build_train_loader
    from ablate.data.source import load_data
    from ablate.data.split import split_indices

    _, config, _ = load_config("ebhi_small")  # same data; ebhi_base's augmentation
    base, _ = grid_run_config("ebhi_base", root=os.environ.get("EBHI_SEG_ROOT"))
    torch.set_num_threads(1)
    data = load_data(config.data)
    split = split_indices(data.category_ids, 0, 0.2, 0.1)
    train = base.baseline.train.model_copy(update={"batch_size": 16})
    loader = build_train_loader(data, split.train, base.baseline.augment, train, 0, 0, False, None)
    return pipeline_rate(loader, 1, batches)[0]


INPUT_CASES = [
    ("rgb", "none"),
    ("gray", "none"),
    ("hematoxylin", "none"),
    ("eosin", "none"),
    ("rgb", "macenko"),
    ("rgb", "reinhard"),
    ("hematoxylin", "macenko"),
]
GEOMETRIC = {"rotate": 0.5, "hflip": 0.5, "vflip": 0.5, "blur": 0.2}


def measure_inputs(name: str, quick: bool) -> list[list[object]]:
    """Rows of the input table for one config: each (input, stain_norm, ops) case."""
    from ablate.data.inputs import converted_images
    from ablate.data.loader import build_train_loader
    from ablate.data.source import load_data
    from ablate.data.split import split_indices
    from ablate.train.run import run_inputs, worker_count

    grid, config, source = load_config(name)
    cpus = max(1, int(grid.resources.cpu))
    torch.set_num_threads(cpus)
    data = load_data(config.data)
    protocol = config.protocol
    split = split_indices(data.category_ids, 0, protocol.test_fraction, protocol.val_fraction)
    workers = worker_count(config.train.num_workers, cpus)
    print(
        f"{name}: {source}; {len(data.images)} images, train split {len(split.train)}, "
        f"{config.train.image_size} px, batch {config.train.batch_size}, {cpus} CPU(s) -> "
        f"{workers} loader worker(s); config ops {sorted(config.augment.ops)}",
        flush=True,
    )
    rows = []
    for mode, stain in INPUT_CASES:
        convert_s = timed(lambda mode=mode: converted_images(data.images, mode))[0]
        for label, ops in (("config", config.augment.ops), ("geometric", GEOMETRIC)):
            augment = config.augment.model_copy(
                update={"input": mode, "stain_norm": stain, "ops": ops}
            )
            run = config.model_copy(update={"augment": augment})

            def prepare(run=run, augment=augment):
                inputs = run_inputs(run, data, split)
                return build_train_loader(
                    data,
                    split.train,
                    augment,
                    run.train,
                    0,
                    workers,
                    False,
                    inputs.stats,
                    inputs.images,
                )

            prepare_s, loader = timed(prepare)
            _, later = pipeline_rate(loader, 1 if quick else 3, 4 if quick else None)
            batch = next(iter(loader))
            channels = batch["image"].shape[1]
            steps = 2 if quick else 8
            train_rate = training_rate(run, batch, steps, cpus, channels)
            if cpus > 1:  # the faster of the grid's threads and one: a conservative ratio
                train_rate = max(train_rate, training_rate(run, batch, steps, 1, channels))
            torch.set_num_threads(cpus)
            path = "per item" if loader.dataset.convert else "once"
            rows.append(
                [
                    name,
                    mode,
                    stain,
                    label,
                    path,
                    convert_s,
                    prepare_s,
                    later,
                    train_rate,
                    later / train_rate,
                ]
            )
            convert_s = 0.0  # converted once: later cases of the mode reuse it
    return rows


def inputs_table(names: list[str], quick: bool) -> float:
    """Print the input-mode table; returns the smallest ratio."""
    rows = [row for name in names for row in measure_inputs(name, quick)]
    print_table(
        [
            "config",
            "input",
            "stain_norm",
            "ops",
            "conversion",
            "convert s (once per mode)",
            "prepare s (per run)",
            "pipeline images/s",
            "train step images/s (faster of grid's CPUs, 1 thread)",
            "ratio",
        ],
        rows,
    )
    return min(row[-1] for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="quickstart,ebhi_small", help="comma-separated grids")
    parser.add_argument(
        "--quick", action="store_true", help="quickstart only at 32 px, few batches"
    )
    parser.add_argument(
        "--inputs", action="store_true", help="each input mode and stain normalisation"
    )
    args = parser.parse_args(argv)
    print(machine_header("Input pipeline vs training step"))
    names = ["quickstart"] if args.quick else args.configs.split(",")
    if args.inputs:
        ratio = inputs_table(names, args.quick)
        print(f"target >= {TARGET}: {'met' if ratio >= TARGET else 'not met'}")
        print(f"inputs_pipeline_ratio={ratio:.2f}")
        return 0
    rows = [measure(name, args.quick) for name in names]
    print_table(
        [
            "config",
            "decode images/s (once)",
            "loader build s (resize once)",
            "pipeline images/s, 1st epoch",
            "pipeline images/s, later epochs",
            "train step images/s (grid's CPUs as threads)",
            "train step images/s (1 thread)",
            "ratio (pipeline / faster training)",
        ],
        rows,
    )
    if not args.quick:
        core = per_core_rate(20)
        print(
            f"ebhi_base loader at 224 px (batch 16, its augmentation) on one core, no workers: "
            f"{core:.0f} images/s -> {1200 / core:.1f} loader cores per 1,200 GPU images/s"
        )
    ratio = min(row[-1] for row in rows)
    print(f"target >= {TARGET}: {'met' if ratio >= TARGET else 'not met'}")
    print(f"pipeline_ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
