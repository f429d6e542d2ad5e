"""Pruning sensitivity of one trained run: every (method, target, amount) on its test split.

The run's model is rebuilt from its stored RunConfig, loaded from best.pt and evaluated on
the run's own test split (recomputed from its seed), first unpruned, then once per pruning
step on a pruned deep copy. One run's work is one function (`analyse_run`), so it ships to a
Ray task unchanged.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ablate.config import PruningConfig, RunConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.loader import build_eval_loader, build_train_loader
from ablate.data.split import Split
from ablate.prune.methods import method_seed, prune_copy, sparsity
from ablate.prune.scopes import Target, conv_layers, scope_targets
from ablate.prune.summary import UNPRUNED_METHOD, UNPRUNED_SCOPE, UNPRUNED_TARGET
from ablate.prune.weights import grad_norms, weight_distance
from ablate.store import StudyDir, parse_run_config, run_file_name
from ablate.store.parquet import RESULTS
from ablate.train.device import resolve_device
from ablate.train.evaluate import predict_counts
from ablate.train.losses import build_loss
from ablate.train.metrics import class_metrics
from ablate.train.restore import INITIAL, read_state, restore_model
from ablate.train.run import RunInputs, run_inputs, run_split  # what training used

PRUNING = "pruning"
WEIGHT_DISTANCE = "weight_distance"
GRAD_NORMS = "grad_norms"
PRUNE_TABLES = (PRUNING, WEIGHT_DISTANCE, GRAD_NORMS)
STEP_COLUMNS = ["method", "scope", "amount"]
SCORE_COLUMNS = ["tp", "fp", "fn", "tn", "dice", "iou", "precision", "recall", "accuracy"]


Step = tuple[str, str, float]
"""One pruning setting of a run: (method, scope, amount)."""


def requested_steps(pruning: PruningConfig) -> set[Step]:
    """Every (method, scope, amount) a pruning configuration asks for."""
    return set(itertools.product(pruning.methods, pruning.scopes, map(float, pruning.amounts)))


@dataclass(frozen=True)
class RunSpec:
    """One completed run to analyse; plain data so it pickles into a Ray task."""

    study_uri: str
    study: str
    variant: str
    seed: int
    config_json: str
    tables: tuple[str, ...] = PRUNE_TABLES
    """Tables still missing for this run (resume skips the others)."""
    stored_steps: frozenset[Step] = frozenset()
    """(method, scope, amount) already in the run's pruning table: only the others run, and
    their rows are added to the stored ones."""

    @property
    def config(self) -> RunConfig:
        runs_file = StudyDir.open(self.study_uri).path(
            RESULTS, "runs", run_file_name(self.variant, self.seed)
        )
        return parse_run_config(self.config_json, f"{runs_file} ({self.variant} seed {self.seed})")


def evaluate_classes(
    model: nn.Module,
    loader: DataLoader,
    config: RunConfig,
    data: SegmentationData,
    device: torch.device,
) -> pd.DataFrame:
    """Per-category (binary) or per-class (multiclass) counts and scores of `model` on `loader`."""
    task = config.protocol.task
    rows = predict_counts(
        model, loader, task, data.categories, device, config.train.precision, names=data.names
    )
    return class_metrics(rows, data.categories, task)[["category", *SCORE_COLUMNS]]


def _step_rows(
    scores: pd.DataFrame, method: str, scope: str, target: str, amount: float, reached: float
) -> pd.DataFrame:
    step = pd.DataFrame(
        {
            "method": method,
            "scope": scope,
            "target": target,
            "amount": float(amount),
            "sparsity": reached,
        },
        index=scores.index,
    )
    return pd.concat([step, scores], axis=1)


def pruning_table(
    model: nn.Module,
    loader: DataLoader,
    config: RunConfig,
    data: SegmentationData,
    pruning: PruningConfig,
    seed: int,
    device: torch.device,
    stored: frozenset[Step] = frozenset(),
) -> pd.DataFrame:
    """Rows of the pruning table for one run: the unpruned model, then every pruning step.

    Columns: method, scope, target, amount, sparsity, category, tp, fp, fn, tn and scores.
    The unpruned rows carry method `none`, target `unpruned`, amount 0 and the natural
    sparsity of all conv weights. A target of the same name and layers in two scopes (a
    block is in both `modules` and `groups`) is evaluated once. Steps in `stored` are
    skipped, and so are the unpruned rows when anything is stored (the table has them).
    """
    model = model.to(device)
    frames = [] if stored else [_unpruned_rows(model, loader, config, data, device)]
    done: dict[tuple, tuple[pd.DataFrame, float]] = {}
    targets: list[Target] = scope_targets(model, list(pruning.scopes))
    for method in pruning.methods:
        for target in targets:
            for amount in pruning.amounts:
                if (method, target.scope, float(amount)) in stored:
                    continue
                key = (method, target.name, target.layers, float(amount))
                if key not in done:
                    done[key] = _prune_and_score(
                        model, loader, config, data, method, target, amount, seed, device
                    )
                scores, reached = done[key]
                frames.append(
                    _step_rows(scores, method, target.scope, target.name, amount, reached)
                )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _unpruned_rows(
    model: nn.Module,
    loader: DataLoader,
    config: RunConfig,
    data: SegmentationData,
    device: torch.device,
) -> pd.DataFrame:
    return _step_rows(
        evaluate_classes(model, loader, config, data, device),
        UNPRUNED_METHOD,
        UNPRUNED_SCOPE,
        UNPRUNED_TARGET,
        0.0,
        sparsity(list(conv_layers(model).values())),
    )


def _prune_and_score(
    model: nn.Module,
    loader: DataLoader,
    config: RunConfig,
    data: SegmentationData,
    method: str,
    target: Target,
    amount: float,
    seed: int,
    device: torch.device,
) -> tuple[pd.DataFrame, float]:
    """Scores of a pruned copy and the sparsity reached over the target's weights."""
    pruned = prune_copy(
        model, target.layers, method, amount, method_seed(seed, method, target.name, amount)
    )
    modules = dict(pruned.named_modules())
    reached = sparsity([modules[name] for name in target.layers])
    return evaluate_classes(pruned, loader, config, data, device), reached


def _grad_norm_rows(
    model: nn.Module,
    states: dict[str, dict[str, torch.Tensor]],
    spec: RunSpec,
    data: SegmentationData,
    split: Split,
    inputs: RunInputs,
    device: torch.device,
) -> pd.DataFrame:
    """Gradient norms over one training epoch at each state in `states` (initial, trained)."""
    config = spec.config
    loss_fn = build_loss(config.train.loss, config.protocol.task)
    frames = []
    for label, state in states.items():
        # A fresh loader per state so both see the same batches and augmentations.
        loader = build_train_loader(
            data,
            split.train,
            config.augment,
            config.train,
            spec.seed,
            num_workers=0,
            pin_memory=False,
            stats=inputs.stats,
            images=inputs.images,
        )
        probe = copy.deepcopy(model)
        probe.load_state_dict(state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)  # dropout masks and augmentation draws
            frame = grad_norms(probe, loader, loss_fn, config.protocol.task, device)
        frame.insert(2, "weights", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def analyse_run(
    spec: RunSpec,
    data: SegmentationData,
    pruning: PruningConfig,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> list[str]:
    """Analyse one run and write its missing tables; returns the tables written.

    Order: weight_distance, grad_norms, then pruning (the longest), each file complete on
    its own, so an interrupted analysis resumes at the first missing table.

    Args:
        spec: the run (study location, variant, seed, RunConfig JSON, tables to write).
        data: the dataset the run trained on (loaded once by the caller).
        pruning: methods, scopes and amounts.
        device: None picks CUDA when available, else CPU.
        threads: torch CPU threads (a Ray task sets it to its CPU share).
    """
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    device = resolve_device(device)
    config = spec.config
    study = StudyDir.open(spec.study_uri)
    store = study.results(spec.study)
    model = restore_model(study, config, spec.variant, spec.seed, data.categories)
    trained = {name: value.clone() for name, value in model.state_dict().items()}
    split = run_split(config, data, spec.seed)
    inputs = run_inputs(config, data, split)
    # initial.pt feeds the weight tables only; pruning needs the trained weights alone.
    initial = read_state(study, spec.variant, spec.seed, INITIAL)
    written = []
    if WEIGHT_DISTANCE in spec.tables and initial is not None:
        store.write(
            WEIGHT_DISTANCE, spec.variant, spec.seed, weight_distance(model, initial, trained)
        )
        written.append(WEIGHT_DISTANCE)
    if GRAD_NORMS in spec.tables:
        states = (
            {"initial": initial, "trained": trained}
            if initial is not None
            else {"trained": trained}
        )
        rows = _grad_norm_rows(model, states, spec, data, split, inputs, device)
        store.write(GRAD_NORMS, spec.variant, spec.seed, rows)
        written.append(GRAD_NORMS)
    if PRUNING in spec.tables:
        loader = build_eval_loader(
            data, split.test, config.train, 0, False, stats=inputs.stats, images=inputs.images
        )
        rows = pruning_table(
            model, loader, config, data, pruning, spec.seed, device, spec.stored_steps
        )
        if spec.stored_steps:  # new steps join the stored rows; nothing stored is lost
            stored = store.read_run(PRUNING, spec.variant, spec.seed)
            rows = pd.concat([stored, rows], ignore_index=True)
        store.write(PRUNING, spec.variant, spec.seed, rows)
        written.append(PRUNING)
    return written
