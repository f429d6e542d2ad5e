"""Engine overhead: one run through the engine path against a bare PyTorch loop.

Engine side: `ablate.engine.trainable.run_seed`, the function a Tune trial calls for each
seed, in this process: `execute_run` (loaders with per-draw reseeded augmentation, early
stopping with best-weight copies, native-resolution metrics, TensorBoard, checkpoints) and the
Parquet writes of the run. Tune's own report is measured by ray_overhead.py.

Bare side: a minimal loop written here with plain PyTorch and the same albumentations ops,
on the same decoded images, split, model, initial weights, batch size, loss, optimizer, thread
count and number of epochs (the engine's epochs after early stopping, so both take the same
optimizer steps). Both sides do TRAINING + EVALUATION: each epoch the validation loss and
Dice at the native mask resolution, and the test split's confusion counts at the end.

The two alternate in one process (engine, bare, engine, bare, ...) after an untimed warm-up
pair, so load from other users of the machine hits both alike; the ratio is the median over
rounds of engine s / bare s.

    python benchmarks/overhead.py             # quickstart config, 5 rounds (about 2 min)
    python benchmarks/overhead.py --quick     # 1 round, 2 epochs on 32 px
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import grid_run_config, machine_header, median, print_table
from torch.nn import functional as F

TARGET = 1.05


def engine_run(config, data, seed: int, study_dir: Path, cpus: int) -> tuple[float, float, int]:
    """(seconds, execute_run's own seconds, epochs) of one run_seed call, as a trial makes it."""
    from ablate.engine.trainable import TrialSetup, run_seed
    from ablate.store import StudyDir

    setup = TrialSetup(
        study="overhead",
        study_uri=str(study_dir),
        run_configs={"baseline": config.model_dump_json()},
        seeds=[seed],
        cpus=cpus,
    )
    study = StudyDir.open(study_dir)
    store = study.results("overhead")
    began = time.perf_counter()
    status, _ = run_seed(study, setup, data, "baseline", seed)
    seconds = time.perf_counter() - began
    if status != "ok":
        raise RuntimeError(f"engine run ended with status {status}")
    runs = store.read("runs")
    return seconds, float(runs["duration_s"].iloc[-1]), int(runs["epochs"].iloc[-1])


def _resized(images: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    return np.stack(
        [cv2.resize(image, (size, size), interpolation=interpolation) for image in images]
    )


def _dice_counts(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, 3) tp, fp, fn per image at the native mask size."""
    pred, truth = logits[:, 0] > 0, masks.bool()
    return torch.stack(
        [(pred & truth).sum((1, 2)), (pred & ~truth).sum((1, 2)), (~pred & truth).sum((1, 2))], 1
    )


def bare_run(config, data, seed: int, epochs: int, cpus: int) -> float:
    """Seconds of a minimal train + evaluate loop doing the same work as one engine run."""
    from ablate.data.augment import build_augmentation
    from ablate.data.split import split_indices
    from ablate.models import build_model
    from ablate.train.losses import build_loss
    from ablate.train.optim import build_optimizer

    began = time.perf_counter()
    torch.set_num_threads(cpus)
    train, size = config.train, config.train.image_size
    split = split_indices(
        data.category_ids, seed, config.protocol.test_fraction, config.protocol.val_fraction
    )
    images = _resized(data.images[split.train], size, cv2.INTER_AREA)  # (N, h, w, 3) uint8
    masks = _resized(data.masks[split.train], size, cv2.INTER_NEAREST)  # (N, h, w)
    eval_sets = {
        name: (
            torch.from_numpy(_resized(data.images[idx], size, cv2.INTER_AREA))
            .permute(0, 3, 1, 2)
            .contiguous()
            .float()
            / 255,
            torch.from_numpy(data.masks[idx]).long(),
        )
        for name, idx in (("val", split.val), ("test", split.test))
    }
    compose = build_augmentation(config.augment, size)
    compose.set_random_seed(seed)
    torch.manual_seed(seed)
    model = build_model(config.model, out_channels=1)
    optimizer = build_optimizer(model.parameters(), train)
    loss_fn = build_loss(train.loss, "binary")
    rng = np.random.default_rng(seed)
    eval_batch = train.eval_batch_size or 2 * train.batch_size

    def evaluate(name: str) -> torch.Tensor:
        inputs, targets = eval_sets[name]
        model.eval()
        counts, losses = [], []
        with torch.inference_mode():
            for start in range(0, len(inputs), eval_batch):
                logits = model(inputs[start : start + eval_batch])
                truth = targets[start : start + eval_batch]
                logits = F.interpolate(logits, size=truth.shape[-2:], mode="bilinear")
                losses.append(loss_fn(logits, truth.unsqueeze(1).float()))
                counts.append(_dice_counts(logits, truth))
        model.train()
        return torch.cat(counts)

    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), train.batch_size):
            batch = [
                compose(image=images[i], mask=masks[i])
                for i in order[start : start + train.batch_size]
            ]
            x = torch.from_numpy(np.stack([b["image"] for b in batch])).permute(0, 3, 1, 2)
            # NCHW-contiguous like the engine's batches: a permuted NHWC batch would run the
            # network in channels_last, which is a different (on CPU faster) kernel choice.
            x = x.contiguous().float() / 255
            y = torch.from_numpy(np.stack([b["mask"] for b in batch])).unsqueeze(1).float()
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        evaluate("val")
    evaluate("test").sum(0).tolist()
    return time.perf_counter() - began


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default="quickstart", help="grid under grids/ (its baseline)")
    parser.add_argument("--rounds", type=int, default=5, help="engine/bare pairs")
    parser.add_argument("--quick", action="store_true", help="1 round, 2 epochs at 32 px")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train exactly this many epochs (early stopping off): shows how the engine's "
        "fixed per-run costs (checkpoints, TensorBoard) amortise over a longer run",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ablate.data.source import load_data

    print(machine_header("Engine overhead: run_seed vs a bare PyTorch loop"))
    grid, config = grid_run_config(args.grid)
    if args.quick:
        args.rounds = 1
        train = config.train.model_copy(update={"epochs": 2, "image_size": 32})
        config = config.model_copy(update={"train": train})
    if args.epochs is not None:
        train = config.train.model_copy(update={"epochs": args.epochs, "patience": None})
        config = config.model_copy(update={"train": train})
    cpus = max(1, int(grid.resources.cpu))
    data = load_data(config.data)
    import ray

    # A trial runs inside a connected Ray worker; outside Ray, run_seed's node lookup would
    # start a local Ray instance in the middle of the timed run.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(
        f"config: {args.grid} baseline, {len(data.images)} images, widths {config.model.widths}, "
        f"{config.train.image_size} px, batch {config.train.batch_size}, up to "
        f"{config.train.epochs} epochs, {cpus} CPU thread(s); both sides train + evaluate"
    )
    rows, engine_times, bare_times = [], [], []
    with tempfile.TemporaryDirectory(prefix="ablate-overhead-") as folder:
        # Untimed: one-time costs of a process (lazy imports, allocator, first kernels) are
        # a trial's start, which ray_overhead.py measures; the rounds compare steady runs.
        warm = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 1})})
        engine_run(warm, data, 0, Path(folder, "warm-up"), cpus)
        bare_run(warm, data, 0, 1, cpus)
        for round_index in range(args.rounds):
            seed = 0
            study = Path(folder, f"study{round_index}")
            engine_s, run_s, epochs = engine_run(config, data, seed, study, cpus)
            bare_s = bare_run(config, data, seed, epochs, cpus)
            engine_times.append(engine_s)
            bare_times.append(bare_s)
            rows.append(
                [
                    round_index + 1,
                    epochs,
                    engine_s,
                    run_s,
                    engine_s - run_s,
                    bare_s,
                    engine_s / bare_s,
                ]
            )
            print(
                f"  round {round_index + 1}: engine {engine_s:.2f} s, bare {bare_s:.2f} s",
                file=sys.stderr,
            )
    from ablate.data.split import split_indices

    split = split_indices(
        data.category_ids, 0, config.protocol.test_fraction, config.protocol.val_fraction
    )
    trained = len(split.train) * rows[-1][1] * config.augment.copies
    headers = [
        "round",
        "epochs",
        "engine s",
        "of which execute_run s",
        "store + files s",
        "bare s",
        "ratio",
    ]
    print_table(headers, rows)
    engine_s, bare_s = median(engine_times), median(bare_times)
    # Each round's pair ran back to back, so its ratio saw the same load: take their median.
    ratio = median([row[-1] for row in rows])
    print_table(
        ["side", "median s", "train images/s (incl. evaluation time)"],
        [
            ["engine (run_seed)", engine_s, trained / engine_s],
            ["bare loop", bare_s, trained / bare_s],
        ],
    )
    ray.shutdown()
    print(f"ratio of the fastest runs (least disturbed): {min(engine_times) / min(bare_times):.3f}")
    print(f"overhead ratio = median over rounds of engine s / bare s: {ratio:.3f}")
    print(f"target <= {TARGET}: {'met' if ratio <= TARGET else 'not met'}")
    print(f"overhead_ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
