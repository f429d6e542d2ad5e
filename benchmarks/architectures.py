"""Cost of each architecture option: parameters, forward GFLOPs at 224 px, CPU images/s.

The options are the variants of grids/components.yaml (each new component added on its own
to the plain U-Net, all of them at once, SegNet), whose baseline is grids/quickstart.yaml's
model and training; the first row is that model itself. For each:
  - parameters: every trainable parameter (deep supervision's auxiliary heads included);
  - GFLOPs: one 224 x 224 image through `model(x)` (inference: the main head only) and
    through `forward_with_aux(x)` (training), counted by torch.utils.flop_counter
    (convolutions and matrix products, 2 FLOPs per multiply-add; elementwise ops, pooling
    and interpolation are not counted);
  - images/s on the CPU at the quickstart's training size, batch size and thread count (its
    trials have cpu: 1, so one torch thread): training steps (forward, the loss the training
    loop uses, backward, Adam step) and inference (eval-mode `model(x)`, no grad). Options
    are timed in alternating rounds, so load from other processes spreads over all of them;
    the median and the fastest round are reported, and the ratios to the baseline use the
    fastest round (the one least disturbed by other processes on a shared machine).
The last line is the slowest training rate relative to the baseline's.

    python benchmarks/architectures.py          # about 2-4 min on 2 cores
    python benchmarks/architectures.py --quick  # one short round
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from _common import GRIDS, machine_header, median, print_table

FLOP_SIZE = 224


def options() -> tuple[object, list[tuple[str, object]]]:
    """(quickstart grid, [(name, Recipe)]): grids/components.yaml's variants, whose baseline
    is the quickstart's model and training (checked here, so the table stays true)."""
    from ablate.grid import expand_variants, load_grid

    quickstart = load_grid(GRIDS / "quickstart.yaml")
    components = load_grid(GRIDS / "components.yaml")
    same = (components.baseline.model, components.baseline.train)
    if same != (quickstart.baseline.model, quickstart.baseline.train):
        raise SystemExit("grids/components.yaml's baseline is no longer the quickstart's")
    return quickstart, [(v.name, v.recipe) for v in expand_variants(components)]


def count_gflops(model: torch.nn.Module, forward: Callable[[torch.Tensor], object]) -> float:
    """GFLOPs of one forward of a 224 x 224 image."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        forward(torch.zeros(1, 3, FLOP_SIZE, FLOP_SIZE))
    return counter.get_total_flops() / 1e9


class Timer:
    """Training and inference steps of one option on a fixed in-memory batch."""

    def __init__(self, recipe, batch: int, size: int) -> None:
        from ablate.models import build_model
        from ablate.train.losses import build_loss, deep_supervision_loss
        from ablate.train.optim import build_optimizer

        torch.manual_seed(0)
        self.model = build_model(recipe.model, out_channels=1)
        self.optimizer = build_optimizer(self.model.parameters(), recipe.train)
        self.loss = build_loss(recipe.train.loss, "binary")
        self.deep = deep_supervision_loss(self.model, self.loss, recipe.train)
        self.images = torch.rand(batch, 3, size, size)
        self.target = (torch.rand(batch, 1, size, size) > 0.5).float()

    def train_step(self) -> None:
        self.model.train()
        if self.deep is None:
            loss = self.loss(self.model(self.images), self.target)
        else:
            logits, aux = self.model.forward_with_aux(self.images)
            loss = self.deep(logits, aux, self.target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.images)

    def rate(self, step: Callable[[], None], seconds: float) -> float:
        """images/s of repeating `step` for about `seconds` (one warm-up step first)."""
        step()
        began, steps = time.perf_counter(), 0
        while True:
            step()
            steps += 1
            elapsed = time.perf_counter() - began
            if elapsed >= seconds:
                return steps * self.images.shape[0] / elapsed


def measure(rounds: int, seconds: float) -> list[list[object]]:
    """One table row per option: name, parameters, GFLOPs, median images/s."""
    grid, chosen = options()
    train = grid.baseline.train
    threads = max(1, int(grid.resources.cpu))
    torch.set_num_threads(threads)  # what a quickstart trial's run sets
    print(
        f"quickstart model {grid.baseline.model.widths}, {train.image_size} px, batch "
        f"{train.batch_size}, {threads} torch thread(s); {rounds} round(s) of {seconds:.1f} s "
        "per option and mode",
        flush=True,
    )
    timers = {name: Timer(recipe, train.batch_size, train.image_size) for name, recipe in chosen}
    for timer in timers.values():  # first-call costs (allocator, thread pool) out of round 1
        timer.train_step()
        timer.infer_step()
    rates: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            rates[name]["train"].append(timer.rate(timer.train_step, seconds))
            rates[name]["infer"].append(timer.rate(timer.infer_step, seconds))
    rows = []
    for name, timer in timers.items():
        model = timer.model.eval()
        rows.append(
            [
                name,
                sum(p.numel() for p in model.parameters()),
                count_gflops(model, model),
                count_gflops(model, model.forward_with_aux),
                median(rates[name]["train"]),
                max(rates[name]["train"]),
                median(rates[name]["infer"]),
                max(rates[name]["infer"]),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="per option, mode and round")
    parser.add_argument("--quick", action="store_true", help="one round of 0.2 s")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 0.2) if args.quick else (args.rounds, args.seconds)
    print(machine_header("Architecture options: parameters, GFLOPs, CPU images/s"))
    rows = measure(rounds, seconds)
    baseline = rows[0]
    for row in rows:
        row += [row[5] / baseline[5], row[7] / baseline[7]]
    print_table(
        [
            "option",
            "parameters",
            f"GFLOPs model(x) {FLOP_SIZE} px",
            f"GFLOPs training forward {FLOP_SIZE} px",
            "train images/s median",
            "train images/s best",
            "inference images/s median",
            "inference images/s best",
            "train vs baseline (best)",
            "inference vs baseline (best)",
        ],
        rows,
    )
    print(f"slowest_train_ratio={min(row[8] for row in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
