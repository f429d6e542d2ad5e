"""Typed configuration: what one run needs, and what a grid declares.

Configs hold names and numbers only (never classes), so they serialize into Ray, JSON and
Parquet unchanged. Every field says what it means; validation collects every problem, and the
grid loader reports each with its YAML key path and line.

A run's configuration is `RunConfig` (data, protocol, model, train, augment). A grid
(`GridConfig`) holds the same sections plus `study`, `ablations`, `resources` and `pruning`;
its `baseline` holds the three parts that variants change (model, train, augment).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["binary", "multiclass"]
Norm = Literal[
    "none", "batch", "batch-double", "instance", "instance-double", "group", "group-double"
]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu"]
Upsampling = Literal["transpose", "bilinear"]
Init = Literal["kaiming", "xavier", "default"]
Arch = Literal["unet", "segnet"]
Block = Literal["plain", "residual"]
Bottleneck = Literal["plain", "aspp"]
SKIPLESS_ARCHS = ("segnet",)
"""Architectures without skip connections: skips, attention gates and their removals do not
apply to them."""
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["none", "cosine", "poly", "plateau"]
Precision = Literal["auto", "fp32", "bf16"]
AugmentOp = Literal["rotate", "hflip", "vflip", "rgb_shift", "blur", "color_jitter", "elastic"]

# A loss is one term (`dice`) or a weighted sum (`0.7*dice+0.3*jaccard`); the term names are
# checked against the loss registry when the loss is built, the shape is checked here.
LOSS_PATTERN = re.compile(
    r"^\s*(\d*\.?\d+\s*\*\s*)?[a-z_]+(\s*\+\s*(\d*\.?\d+\s*\*\s*)?[a-z_]+)*\s*$"
)
LOSS_TERMS = ("dice", "jaccard", "bce", "focal", "tversky")

PositiveInt = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(Strict):
    """The built-in synthetic EBHI-like dataset, generated on first use into a cache folder."""

    per_class: PositiveInt = 24
    """Image/mask pairs written per category (six categories)."""
    size: Annotated[int, Field(ge=32, le=1024)] = 224
    """Side of the square tiles in pixels."""
    seed: int = 0
    """Generator seed: the same seed writes the same files."""


class DataConfig(Strict):
    """Where the images come from: an EBHI-Seg folder (`root`) or the synthetic generator."""

    root: str | None = None
    """Folder in the EBHI-Seg layout `<root>/<Category>/{image,label}/*.png`."""
    synthetic: SyntheticConfig | None = None
    """Generate a synthetic dataset instead of reading `root`."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.root is None) == (self.synthetic is None):
            raise ValueError("set exactly one of data.root or data.synthetic")
        return self


class ProtocolConfig(Strict):
    """How each seed splits the data and what the network predicts."""

    seeds: list[int] | PositiveInt = 3
    """A list of seeds, or a count n meaning seeds 0..n-1."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of each category held out for testing."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the remaining pairs used for early stopping and model selection. 0 means
    early stopping watches the test split (the original study's protocol): optimistic."""
    task: Task = "binary"
    """binary: tissue vs background, reported per category; multiclass: background + one class
    per category."""

    @field_validator("seeds")
    @classmethod
    def _seeds_not_empty(cls, seeds: list[int] | int) -> list[int] | int:
        if isinstance(seeds, list):
            if not seeds:
                raise ValueError("seeds must not be empty")
            if len(set(seeds)) != len(seeds):
                raise ValueError("seeds must not repeat")
        return seeds

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> ProtocolConfig:
        train_share = (1 - self.test_fraction) * (1 - self.val_fraction)
        if train_share <= 0.05:
            raise ValueError("test_fraction and val_fraction leave almost nothing to train on")
        return self

    def seed_list(self) -> list[int]:
        """The seeds as a list, `3` meaning [0, 1, 2]."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def early_stops_on_test(self) -> bool:
        """True when no validation split exists, so test numbers are optimistic."""
        return self.val_fraction == 0.0


class ModelConfig(Strict):
    """One configurable encoder-decoder network: a U-Net or a SegNet."""

    widths: list[PositiveInt] = [16, 32, 64, 128]
    """Channels per level, shallow to deep; the last entry is the bottleneck, so the number
    of encoder levels (and skip connections) is len(widths) - 1."""
    norm: Norm = "batch-double"
    """Normalization: none, batch, instance, group; `-double` puts it after both convs of a
    block, plain after the first conv only."""
    activation: Activation = "relu"
    upsampling: Upsampling = "transpose"
    """transpose: 2x2 transposed conv; bilinear: bilinear resize then 1x1 conv. U-Net only:
    SegNet upsamples with the pooling indices."""
    skips: bool = True
    """All skip connections on (True) or off (False). U-Net only."""
    disabled_skips: list[PositiveInt] = []
    """Skip connections switched off, by level: 1 is the shallowest. U-Net only."""
    dropout: Probability = 0.0
    """Dropout probability in the bottleneck and decoder blocks; 0 means no dropout layer."""
    init: Init = "kaiming"
    """Weight initialisation; `default` keeps PyTorch's own."""
    arch: Arch = "unet"
    """unet: skip connections concatenate encoder features into the decoder; segnet: no
    skips, the decoder unpools with the encoder's max-pool indices (Badrinarayanan et al.)."""
    block: Block = "plain"
    """Conv block of every level: plain (conv-norm-act twice) or residual (the same two
    convs plus an identity or 1x1-projection shortcut, added before the last activation)."""
    se: bool = False
    """Squeeze-and-excitation (Hu et al.) at the end of every encoder and decoder block."""
    attention: bool = False
    """Additive attention gates on the skip connections that are on (Oktay et al. 2018):
    the coarser decoder features weight each skip pixel before the concatenation. U-Net only."""
    bottleneck: Bottleneck = "plain"
    """plain: a conv block; aspp: atrous spatial pyramid pooling (DeepLabv3: 1x1 conv, three
    dilated 3x3 convs, image pooling, then a 1x1 projection)."""
    deep_supervision: bool = False
    """Auxiliary 1x1 heads on decoder levels 2..depth whose upsampled logits add weighted
    loss terms in training (train.aux_weight, train.aux_decay); predictions use the main
    head only. Needs depth >= 2."""

    @model_validator(mode="after")
    def _parts_fit(self) -> ModelConfig:
        if len(self.widths) < 2:
            raise ValueError("widths needs at least two levels (one encoder level + bottleneck)")
        levels = len(self.widths) - 1
        unknown = [level for level in self.disabled_skips if level > levels]
        if unknown:
            raise ValueError(f"disabled_skips {unknown} exceed the {levels} encoder levels")
        problems = self._segnet_problems() if self.arch == "segnet" else []
        if self.arch not in SKIPLESS_ARCHS and self.attention and not self.skip_levels():
            problems.append("attention gates act on skip connections, and every skip is off")
        if self.deep_supervision and levels < 2:
            problems.append(
                "deep_supervision puts heads on decoder levels 2..depth and needs depth >= 2 "
                f"(widths {self.widths} have depth {levels})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _segnet_problems(self) -> list[str]:
        """Settings that mean nothing for SegNet: refused rather than silently ignored."""
        problems = []
        if not self.skips or self.disabled_skips:
            problems.append(
                "arch segnet has no skip connections (it reuses the encoder's pooling "
                "indices): leave skips and disabled_skips at their defaults"
            )
        if self.attention:
            problems.append(
                "arch segnet has no skip connections for attention gates: set attention: false"
            )
        if self.upsampling != "transpose":
            problems.append(
                "arch segnet upsamples with the encoder's pooling indices, so upsampling does "
                "not apply: leave it at its default (transpose)"
            )
        return problems

    @property
    def depth(self) -> int:
        """Encoder levels, i.e. skip connections."""
        return len(self.widths) - 1

    def skip_enabled(self, level: int) -> bool:
        """Whether the skip connection of encoder level `level` (1 = shallowest) is on.

        Always False for an architecture without skip connections (SegNet).
        """
        return self.arch not in SKIPLESS_ARCHS and self.skips and level not in self.disabled_skips

    def skip_levels(self) -> list[int]:
        """Levels whose skip connection is on (1 = shallowest); [] for SegNet."""
        return [level for level in range(1, self.depth + 1) if self.skip_enabled(level)]


class TrainConfig(Strict):
    """The optimisation of one run."""

    loss: str = "dice"
    """A loss name (dice, jaccard, bce, focal, tversky) or a weighted sum: 0.7*dice+0.3*jaccard."""
    optimizer: Optimizer = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (ignored by adam/adamw)."""
    nesterov: bool = False
    schedule: Schedule = "none"
    batch_size: PositiveInt = 8
    epochs: PositiveInt = 10
    """Maximum epochs."""
    patience: PositiveInt | None = 3
    """Early stopping: epochs without validation-loss improvement before stopping; the best
    weights are restored. None: train every epoch and keep the last weights."""
    image_size: Annotated[int, Field(ge=16, le=1024)] = 224
    """Training resolution; metrics are always computed at the native mask resolution."""
    balanced: bool = False
    """Sample training images with weight 1 / (their category's count)."""
    eval_batch_size: PositiveInt | None = None
    """Evaluation batch size; None means twice the training batch size."""
    precision: Precision = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU."""
    channels_last: bool | None = None
    """None: on for CUDA, off for CPU."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    num_workers: int | None = Field(None, ge=0)
    """DataLoader workers; None sizes them from the trial's CPUs."""
    aux_weight: float = Field(0.5, gt=0.0)
    """Deep supervision (model.deep_supervision): loss weight of the auxiliary head on
    decoder level 2; the main head weighs 1."""
    aux_decay: float = Field(0.5, gt=0.0, le=1.0)
    """Deep supervision: each deeper auxiliary head weighs `aux_decay` times the one above,
    so level k weighs aux_weight * aux_decay**(k - 2) (defaults: 0.5, 0.25, 0.125...). The
    training loss is the weighted mean of the heads' losses."""

    @field_validator("loss")
    @classmethod
    def _loss_shape(cls, loss: str) -> str:
        if not LOSS_PATTERN.match(loss):
            raise ValueError(
                f"loss {loss!r} is not a name or a weighted sum like 0.7*dice+0.3*jaccard"
            )
        terms = re.findall(r"[a-z_]+", loss)
        unknown = [term for term in terms if term not in LOSS_TERMS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; valid: {', '.join(LOSS_TERMS)}")
        return loss


class AugmentConfig(Strict):
    """Training-time augmentation (albumentations) and input normalization."""

    ops: dict[AugmentOp, Probability] = {
        "rotate": 0.5,
        "hflip": 0.5,
        "vflip": 0.5,
        "rgb_shift": 0.3,
        "blur": 0.2,
        "color_jitter": 0.3,
    }
    """Each op switched on with its probability; an absent op is off."""
    copies: PositiveInt = 1
    """Augmented views of each training image per epoch."""
    normalize: bool = False
    """Standardise inputs with the training split's per-channel mean and std."""


class Recipe(Strict):
    """The parts of a run that variants change: the grid's `baseline`."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()


class RunConfig(Strict):
    """Everything one run (one variant, one seed) needs, as shipped to a Ray trial."""

    data: DataConfig
    protocol: ProtocolConfig = ProtocolConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()


class Resources(Strict):
    """Resources of one Ray Tune trial (one variant)."""

    cpu: float = Field(1.0, gt=0.0)
    gpu: float | None = Field(None, ge=0.0)
    """GPUs per trial, fractions allowed (0.25 packs four trials on a GPU). None: 1 where
    the cluster has GPUs, else 0."""
    max_concurrent: PositiveInt | None = None
    """Trials running at once; None lets Ray fill the cluster."""
    max_failures: int = Field(2, ge=0)
    """Retries of a trial whose worker failed."""


PruneMethod = Literal[
    "l1_unstructured", "random_unstructured", "random_structured", "global_unstructured"
]
PruneScope = Literal["global", "modules", "groups", "layers"]


class PruningConfig(Strict):
    """Pruning sensitivity, run by `ablate run` after training when `enabled`."""

    enabled: bool = True
    methods: list[PruneMethod] = ["l1_unstructured", "global_unstructured"]
    scopes: list[PruneScope] = ["global", "groups"]
    """global: every conv at once; modules: each block alone; groups: encoder level k,
    decoder level k, bottleneck, low- vs high-level; layers: each conv layer one by one."""
    amounts: list[Annotated[float, Field(ge=0.0, le=1.0)]] = [0.1, 0.25, 0.5, 0.75]
    variants: list[str] | None = None
    """Variants to analyse; None: all."""


class Ablations(Strict):
    """The variants of a study, each the baseline with a change."""

    remove: list[str] = []
    """Components to remove, one variant each (see `ablate grid components`)."""
    swap: dict[str, list] = {}
    """key -> values, one variant per value."""
    variants: dict[str, dict] = {}
    """name -> {key: value, ...}: named variants that change several keys."""
    factorial: dict[str, list] = {}
    """key -> values: every combination, for interactions."""


class GridConfig(Strict):
    """A whole ablation study as declared in YAML."""

    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Study name; the default study directory is runs/<study>."""
    data: DataConfig
    protocol: ProtocolConfig = ProtocolConfig()
    baseline: Recipe
    ablations: Ablations = Ablations()
    resources: Resources = Resources()
    pruning: PruningConfig | None = None

    def run_config(self, recipe: Recipe | None = None) -> RunConfig:
        """The RunConfig of `recipe` (default: the baseline) under this grid's data/protocol."""
        recipe = recipe or self.baseline
        return RunConfig(
            data=self.data,
            protocol=self.protocol,
            model=recipe.model,
            train=recipe.train,
            augment=recipe.augment,
        )
