"""Typed configuration: what one run needs, and what a grid declares.

Configs hold names and numbers only (never classes), so they serialize into Ray, JSON and
Parquet unchanged. Every field says what it means; validation collects every problem, and the
grid loader reports each with its YAML key path and line.

A run's configuration is `RunConfig` (data, protocol, model, train, augment). A grid
(`GridConfig`) holds the same sections plus `study`, `ablations`, `resources`, `pruning`
and `analysis`; its `baseline` holds the three parts that variants change (model, train,
augment).
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ablate.plugins import load_plugins
from ablate.registry import plugin_names, unknown_name

Task = Literal["binary", "multiclass"]
Norm = Literal[
    "none", "batch", "batch-double", "instance", "instance-double", "group", "group-double"
]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu"]
Upsampling = Literal["transpose", "bilinear"]
Init = Literal["kaiming", "xavier", "default"]
Arch = Literal["unet", "segnet"]
"""Built-in architectures (plug-ins add more: `ArchName`)."""
Block = Literal["plain", "residual"]
Bottleneck = Literal["plain", "aspp"]
SKIPLESS_ARCHS = ("segnet",)
"""Architectures without skip connections: skips, attention gates and their removals do not
apply to them."""
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["none", "cosine", "poly", "plateau"]
Precision = Literal["auto", "fp32", "bf16"]
InputMode = Literal["rgb", "gray", "hematoxylin", "eosin"]
StainNorm = Literal["none", "macenko", "reinhard"]
AugmentOp = Literal["rotate", "hflip", "vflip", "rgb_shift", "blur", "color_jitter", "elastic"]
"""Built-in augmentation ops (plug-ins add more: `AugmentOpName`)."""
Reader = Literal["ebhi"]
"""Built-in dataset readers (plug-ins add more: `ReaderName`)."""
Metric = Literal["dice", "iou", "precision", "recall", "accuracy"]
"""The per-category scores a summary reports (every one higher-is-better)."""

# A loss is one term (`dice`) or a weighted sum (`0.7*dice+0.3*jaccard`); the term names are
# checked against the loss registry when the loss is built, the shape is checked here.
LOSS_PATTERN = re.compile(
    r"^\s*(\d*\.?\d+\s*\*\s*)?[a-z_]+(\s*\+\s*(\d*\.?\d+\s*\*\s*)?[a-z_]+)*\s*$"
)
LOSS_TERMS = ("dice", "jaccard", "bce", "focal", "tversky")
"""Built-in loss terms; plug-ins add more (`LOSS_NAMES.valid()`)."""


@dataclass(frozen=True)
class Names:
    """The names a field accepts: ablate's built-ins of a registry family, plus the names
    installed plug-ins added to it (`ablate.plugins`).

    The config stays torch-free: the plug-ins' names are read from `ablate.registry`, and a
    name that no built-in has makes the installed plug-ins load first (once per process), so
    any process that validates a config naming a plug-in's component has that plug-in.
    """

    family: str
    """The registry family: "architecture", "block", "loss"..."""
    builtins: tuple[str, ...]

    def valid(self) -> list[str]:
        """Every accepted name: built-ins first, then the plug-ins' (loaded so far)."""
        return [*self.builtins, *plugin_names(self.family)]

    def known(self, name: str) -> bool:
        """Whether `name` is a built-in or a plug-in's (plug-ins loaded when needed)."""
        if name in self.builtins:
            return True
        if name not in plugin_names(self.family):
            load_plugins()
        return name in plugin_names(self.family)

    def check(self, name: str) -> str:
        """Validator: `name` itself, or ValueError listing the valid names."""
        if not self.known(name):
            raise ValueError(unknown_name(self.family, name, self.valid()))
        return name


def _names(family: str, builtins: Any) -> Names:
    return Names(family, typing.get_args(builtins) or tuple(builtins))


ARCH = _names("architecture", Arch)
BLOCK = _names("block", Block)
BOTTLENECK = _names("bottleneck", Bottleneck)
AUGMENT_OP = _names("augmentation", AugmentOp)
READER = _names("reader", Reader)
LOSS_NAMES = _names("loss", LOSS_TERMS)
ArchName = Annotated[str, AfterValidator(ARCH.check), ARCH]
BlockName = Annotated[str, AfterValidator(BLOCK.check), BLOCK]
BottleneckName = Annotated[str, AfterValidator(BOTTLENECK.check), BOTTLENECK]
AugmentOpName = Annotated[str, AfterValidator(AUGMENT_OP.check), AUGMENT_OP]
ReaderName = Annotated[str, AfterValidator(READER.check), READER]


def _not_boolean(value: Any) -> Any:
    """Refuse a boolean where a number is expected: lax validation would read YAML's `true`
    as 1 (`epochs: true` one epoch, `lr: true` 1.0, `seeds: [true]` seed 1), and a boolean
    there is a typo, never a setting."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got the boolean {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_boolean)]
"""The int of every config field: `true` is refused, text such as '3' is read as lax
validation reads it."""
Float = Annotated[float, BeforeValidator(_not_boolean)]
"""The float of every config field: ints are accepted, booleans refused; text such as '1e-4'
(which YAML 1.1 reads as a string) is read as a number."""
PositiveInt = Annotated[Int, Field(ge=1)]
Probability = Annotated[Float, Field(ge=0.0, le=1.0)]

# Limits. Each bounds a size before any work depends on it, so a typo or a hostile grid is
# refused by `grid check` in milliseconds instead of failing (or exhausting the machine) in
# `run`, `train` or `prune`. The README lists them ("Limits").
MAX_SEEDS = 1000
"""Seeds of a study: more is almost surely a typo (`seeds: 1000000000`)."""
MAX_SEED = 2**31 - 1
"""Largest seed value: seeds feed numpy and torch generators as 32-bit integers."""
MAX_STUDY_NAME = 100
"""Characters of a study name: it becomes a folder name (runs/<study>)."""
MAX_PATH_BYTES = 4096
"""Bytes of data.root (PATH_MAX on Linux)."""
MAX_PATH_PART_BYTES = 255
"""Bytes of one folder name in data.root (NAME_MAX of common file systems)."""
MAX_TRIAL_CPUS = 1024
"""CPUs of one trial: a trial runs on one node, and no node has more."""
MAX_TRIAL_GPUS = 16
"""GPUs of one trial (one node's worth)."""
RESOURCE_STEP = 1e-4
"""Ray's resource granularity: a smaller non-zero share fails once Ray has started."""
MAX_WIDTH = 4096
"""Channels of one U-Net level."""
MAX_LEVELS = 11
"""Entries of model.widths: 10 halvings bring the largest image_size (1024) to one pixel."""
MAX_EPOCHS = 10_000
MAX_BATCH = 4096
MAX_COPIES = 100
"""Augmented views per training image and epoch."""
MAX_WORKERS = 64
"""DataLoader processes of one run."""
MAX_SYNTHETIC_PER_CLASS = 10_000
MAX_RETRIES = 100
MAX_CONCURRENT = 10_000
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
STUDY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _short(text: str, keep: int = 40) -> str:
    """`text` for a message: its start when long, so one line names it without flooding."""
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}... ({len(text)} characters)"


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable, and
    numbers are finite (a `.inf` learning rate or CPU count is a typo, never a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _whole_number(value: Any) -> Any:
    """Refuse what lax validation would turn into an int (`true`, `'3'`, `2.5` is left to
    the int check): a count written as text or a boolean is a typo."""
    if isinstance(value, bool | str):
        raise ValueError(f"must be a whole number, got {value!r}")
    return value


class SeedRange(Strict):
    """Adaptive seeds: every variant runs seeds 0..min-1, then variants still undecided get
    one more seed per round (the next index) until decided, max, or (futility) no number of
    seeds up to max could decide them (see README, "Statistics")."""

    min: Int
    """Seeds every variant runs before the first look (at least 2: one seed has no noise
    estimate)."""
    max: Int
    """Most seeds a variant may run (at most MAX_SEEDS)."""
    futility: bool = True
    """Stop giving seeds to an undecided variant that no number of seeds up to max would
    decide at 80% power, even with its data read one sigma in its favour (non-binding: the
    error rates stay bounded). False: seeds until decided or max. Fixed for a study's life."""

    @field_validator("min", "max", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        return _whole_number(value)

    @field_validator("min")
    @classmethod
    def _min_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"must be at least 2 (one seed gives no estimate of noise), got {value}"
            )
        return value

    @field_validator("max")
    @classmethod
    def _max_bounded(cls, value: int, info: ValidationInfo) -> int:
        if value > MAX_SEEDS:
            raise ValueError(f"{value} seeds; the limit is {MAX_SEEDS} (MAX_SEEDS)")
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"must be at least seeds.min ({low}), got {value}")
        return value


def _seeds_form(value: Any) -> str:
    """The tag of a seeds value, written (dict, list, int) or validated (SeedRange)."""
    if isinstance(value, list):
        return "list"
    return "range" if isinstance(value, dict | SeedRange) else "count"


Seeds = Annotated[
    Annotated[list[Int], Tag("list")]
    | Annotated[PositiveInt, Tag("count")]
    | Annotated[SeedRange, Tag("range")],
    Discriminator(_seeds_form),
]
"""A list of seeds, a count, or an adaptive {min, max}; validated as the form written, so a
bad list is not also reported as "not an integer"."""


class VaryConfig(Strict):
    """Which sources of randomness the seed sets; a fixed one takes the study's first seed
    (`ProtocolConfig.first_seed`) for every seed."""

    split: bool = True
    """A new stratified train/validation/test split per seed. False: one split for every
    seed, so the deltas answer a question about that split (plain paired t, no correction)."""
    init: bool = True
    """New initial weights per seed."""
    order: bool = True
    """New training stream per seed: data order, augmentation draws and dropout."""


class SyntheticConfig(Strict):
    """The built-in synthetic EBHI-like dataset, generated on first use into a cache folder."""

    per_class: Annotated[Int, Field(ge=1, le=MAX_SYNTHETIC_PER_CLASS)] = 24
    """Image/mask pairs written per category (six categories)."""
    size: Annotated[Int, Field(ge=32, le=1024)] = 224
    """Side of the square tiles in pixels."""
    seed: Int = 0
    """Generator seed: the same seed writes the same files."""


class DataConfig(Strict):
    """Where the images come from: an EBHI-Seg folder (`root`) or the synthetic generator."""

    root: str | None = None
    """Folder in the EBHI-Seg layout `<root>/<Category>/{image,label}/*.png`."""
    synthetic: SyntheticConfig | None = None
    """Generate a synthetic dataset instead of reading `root`."""
    reader: ReaderName = "ebhi"
    """How `root` is read: ebhi (`<Category>/{image,label}/*.png`), or a plug-in's reader."""

    @field_validator("root")
    @classmethod
    def _root_usable(cls, root: str | None) -> str | None:
        """A folder name the OS can open: checked here so `grid check` refuses what `run`
        and `train` would fail on (an empty root would silently mean the current folder)."""
        if root is None:
            return root
        if not root.strip():
            raise ValueError("is empty: name the dataset folder ('.' for the current folder)")
        if CONTROL_CHARACTERS.search(root):
            raise ValueError(f"contains a control character: {root!r}")
        if len(os.fsencode(root)) > MAX_PATH_BYTES:
            raise ValueError(f"is over {MAX_PATH_BYTES} bytes: {_short(root)}")
        for part in root.split("/"):
            if len(os.fsencode(part)) > MAX_PATH_PART_BYTES:
                raise ValueError(
                    f"has a folder name over {MAX_PATH_PART_BYTES} bytes: {_short(part)}"
                )
        return root

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.root is None) == (self.synthetic is None):
            raise ValueError("set exactly one of data.root or data.synthetic")
        if self.synthetic is not None and self.reader != "ebhi":
            raise ValueError(
                f"data.synthetic writes the EBHI layout: data.reader must be ebhi, "
                f"not {self.reader!r}"
            )
        return self


class ProtocolConfig(Strict):
    """How each seed splits the data and what the network predicts."""

    seeds: Seeds = 3
    """A list of seeds, a count n meaning seeds 0..n-1 (at most MAX_SEEDS seeds, each in
    0..MAX_SEED), or {min, max}: adaptive seeds 0..max-1, min of them for every variant."""
    test_fraction: Float = Field(0.2, gt=0.0, lt=1.0)
    """Share of each category held out for testing."""
    val_fraction: Float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the remaining pairs used for early stopping and model selection. 0 means
    early stopping watches the test split (the original study's protocol): optimistic."""
    task: Task = "binary"
    """binary: tissue vs background, reported per category; multiclass: background + one class
    per category."""
    vary: VaryConfig = VaryConfig()
    """The sources of randomness each seed changes (default: all three)."""

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_bounded(cls, seeds: Any) -> Any:
        """Bounds checked before the type: a count of 1e9 would otherwise become a list."""
        if isinstance(seeds, bool):
            raise ValueError(f"must be a count or a list of seeds, got {seeds!r}")
        if isinstance(seeds, int | float) and not 1 <= seeds <= MAX_SEEDS:
            raise ValueError(
                f"a count of seeds must be 1..{MAX_SEEDS} (limit MAX_SEEDS), got {seeds!r}"
            )
        if isinstance(seeds, list):
            if len(seeds) > MAX_SEEDS:
                raise ValueError(f"{len(seeds)} seeds listed; the limit is {MAX_SEEDS}")
            for index, seed in enumerate(seeds):
                number = isinstance(seed, int | float) and not isinstance(seed, bool)
                if number and not 0 <= seed <= MAX_SEED:
                    raise ValueError(
                        f"seed {seed!r} (item {index}) is outside 0..{MAX_SEED} (2**31 - 1)"
                    )
        return seeds

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

    @property
    def is_adaptive(self) -> bool:
        """True when seeds is {min, max}: variants get seeds in rounds until decided."""
        return isinstance(self.seeds, SeedRange)

    def max_seed_list(self) -> list[int]:
        """Every seed a variant may run, in the order they run: `3` -> [0, 1, 2], a list as
        written, {min: 3, max: 10} -> [0, ..., 9]."""
        if isinstance(self.seeds, SeedRange):
            return list(range(self.seeds.max))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def min_seed_list(self) -> list[int]:
        """The seeds every variant runs: all of them, or the first `min` when adaptive."""
        seeds = self.max_seed_list()
        return seeds[: self.seeds.min] if isinstance(self.seeds, SeedRange) else seeds

    def seed_list(self) -> list[int]:
        """The study's seeds as a list, `3` meaning [0, 1, 2]; for adaptive seeds every seed
        a variant may run (`max_seed_list`)."""
        return self.max_seed_list()

    @property
    def first_seed(self) -> int:
        """The seed whose split, weights or training stream a fixed source (`vary`) keeps."""
        return self.max_seed_list()[0]

    @property
    def early_stops_on_test(self) -> bool:
        """True when no validation split exists, so test numbers are optimistic."""
        return self.val_fraction == 0.0


class ModelConfig(Strict):
    """One configurable encoder-decoder network: a U-Net or a SegNet."""

    widths: Annotated[
        list[Annotated[Int, Field(ge=1, le=MAX_WIDTH)]], Field(max_length=MAX_LEVELS)
    ] = [16, 32, 64, 128]
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
    arch: ArchName = "unet"
    """unet: skip connections concatenate encoder features into the decoder; segnet: no
    skips, the decoder unpools with the encoder's max-pool indices (Badrinarayanan et al.)."""
    block: BlockName = "plain"
    """Conv block of every level: plain (conv-norm-act twice) or residual (the same two
    convs plus an identity or 1x1-projection shortcut, added before the last activation)."""
    se: bool = False
    """Squeeze-and-excitation (Hu et al.) at the end of every encoder and decoder block."""
    attention: bool = False
    """Additive attention gates on the skip connections that are on (Oktay et al. 2018):
    the coarser decoder features weight each skip pixel before the concatenation. U-Net only."""
    bottleneck: BottleneckName = "plain"
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
    """A loss name (dice, jaccard, bce, focal, tversky, or a plug-in's) or a weighted sum:
    0.7*dice+0.3*jaccard."""
    optimizer: Optimizer = "adam"
    lr: Float = Field(1e-3, gt=0.0)
    weight_decay: Float = Field(0.0, ge=0.0)
    momentum: Float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (ignored by adam/adamw)."""
    nesterov: bool = False
    schedule: Schedule = "none"
    batch_size: Annotated[Int, Field(ge=1, le=MAX_BATCH)] = 8
    epochs: Annotated[Int, Field(ge=1, le=MAX_EPOCHS)] = 10
    """Maximum epochs."""
    patience: Annotated[Int, Field(ge=1, le=MAX_EPOCHS)] | None = 3
    """Early stopping: epochs without validation-loss improvement before stopping; the best
    weights are restored. None: train every epoch and keep the last weights."""
    image_size: Annotated[Int, Field(ge=16, le=1024)] = 224
    """Training resolution; metrics are always computed at the native mask resolution."""
    balanced: bool = False
    """Sample training images with weight 1 / (their category's count)."""
    eval_batch_size: Annotated[Int, Field(ge=1, le=MAX_BATCH)] | None = None
    """Evaluation batch size; None means twice the training batch size."""
    precision: Precision = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU."""
    channels_last: bool | None = None
    """None: on for CUDA, off for CPU."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    num_workers: Int | None = Field(None, ge=0, le=MAX_WORKERS)
    """DataLoader workers; None sizes them from the trial's CPUs."""
    aux_weight: Float = Field(0.5, gt=0.0)
    """Deep supervision (model.deep_supervision): loss weight of the auxiliary head on
    decoder level 2; the main head weighs 1."""
    aux_decay: Float = Field(0.5, gt=0.0, le=1.0)
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
        unknown = [term for term in terms if not LOSS_NAMES.known(term)]
        if unknown:
            raise ValueError(unknown_name("loss term", unknown[0], LOSS_NAMES.valid()))
        # A zero weight trains on nothing (`0*dice` has no gradient): almost surely a typo.
        zero = [term.strip() for term in loss.split("+") if _weight(term) == 0.0]
        if zero:
            raise ValueError(
                f"loss term(s) {zero} have weight 0 and would train nothing; "
                "leave them out or give a positive weight"
            )
        return loss


def _weight(term: str) -> float:
    """The weight of one loss term: `0.7*dice` -> 0.7, `dice` -> 1."""
    weight, star, _ = term.partition("*")
    return float(weight) if star else 1.0


class AugmentConfig(Strict):
    """What the network sees: input mode, stain and input normalization, and training-time
    augmentation (albumentations)."""

    ops: dict[AugmentOpName, Probability] = {
        "rotate": 0.5,
        "hflip": 0.5,
        "vflip": 0.5,
        "rgb_shift": 0.3,
        "blur": 0.2,
        "color_jitter": 0.3,
    }
    """Each op switched on with its probability; an absent op is off."""
    copies: Annotated[Int, Field(ge=1, le=MAX_COPIES)] = 1
    """Augmented views of each training image per epoch."""
    normalize: bool = False
    """Standardise inputs with the training split's per-channel mean and std."""
    input: InputMode = "rgb"
    """The network's input: rgb (3 channels), gray (luma), hematoxylin or eosin (one stain
    channel of scikit-image's colour deconvolution, rgb2hed). Colour ops act on the RGB
    image before the conversion."""
    stain_norm: StainNorm = "none"
    """Stain normalisation of every image to a reference fitted on the run's training split
    only: macenko (stain vectors and concentrations, Macenko et al. 2009) or reinhard
    (l-alpha-beta mean and spread, Reinhard et al. 2001); applied before `input`."""


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

    cpu: Float = Field(1.0, gt=0.0, le=MAX_TRIAL_CPUS)
    """CPUs per trial (fractions allowed)."""
    gpu: Float | None = Field(None, ge=0.0, le=MAX_TRIAL_GPUS)
    """GPUs per trial, fractions allowed (0.25 packs four trials on a GPU). None: 1 where
    the cluster has GPUs, else 0."""
    max_concurrent: Annotated[Int, Field(ge=1, le=MAX_CONCURRENT)] | None = None
    """Trials running at once; None lets Ray fill the cluster."""
    max_failures: Int = Field(2, ge=0, le=MAX_RETRIES)
    """Retries of a trial whose worker failed."""

    @field_validator("cpu", "gpu")
    @classmethod
    def _ray_granularity(cls, amount: float | None) -> float | None:
        if amount is not None and 0 < amount < RESOURCE_STEP:
            raise ValueError(f"must be 0 or at least {RESOURCE_STEP} (Ray's smallest share)")
        return amount


PruneMethod = Literal[
    "l1_unstructured", "random_unstructured", "random_structured", "global_unstructured"
]
PruneScope = Literal["global", "modules", "groups", "layers"]


class PruningConfig(Strict):
    """Pruning sensitivity, run by `ablate run` after training when `enabled`."""

    enabled: bool = True
    methods: Annotated[list[PruneMethod], Field(min_length=1)] = [
        "l1_unstructured",
        "global_unstructured",
    ]
    scopes: Annotated[list[PruneScope], Field(min_length=1)] = ["global", "groups"]
    """global: every conv at once; modules: each block alone; groups: encoder level k,
    decoder level k, bottleneck, low- vs high-level; layers: each conv layer one by one."""
    amounts: Annotated[list[Annotated[Float, Field(ge=0.0, le=1.0)]], Field(min_length=1)] = [
        0.1,
        0.25,
        0.5,
        0.75,
    ]
    variants: Annotated[list[str], Field(min_length=1)] | None = None
    """Variants to analyse (each must be a variant of the grid); None: all."""


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


class AnalysisConfig(Strict):
    """How the summary decides a verdict per delta, and what adaptive seeds decide on."""

    metric: Metric = "dice"
    """The headline metric: the summary's plots, ranking and verdicts section, and (macro)
    what adaptive seeds decide on."""
    margin: Float = Field(0.01, gt=0.0)
    """The smallest change that matters, in the metric's units: within +-margin a component
    is `equivalent` (safe to remove)."""
    alpha: Float = Field(0.05, gt=0.0, lt=0.5)
    """Level of every test (Holm-adjusted significance; TOST at 1 - 2 alpha)."""

    @field_validator("margin", "alpha", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A number as written: `true` or `'0.01'` would pass lax validation as 1.0 / 0.01."""
        if isinstance(value, bool | str):
            raise ValueError(f"must be a number, got {value!r}")
        return value


class GridConfig(Strict):
    """A whole ablation study as declared in YAML."""

    study: str
    """Study name; the default study directory is runs/<study>."""
    data: DataConfig
    protocol: ProtocolConfig = ProtocolConfig()
    baseline: Recipe
    ablations: Ablations = Ablations()
    resources: Resources = Resources()
    pruning: PruningConfig | None = None
    analysis: AnalysisConfig = AnalysisConfig()

    @field_validator("study")
    @classmethod
    def _study_name(cls, study: str) -> str:
        """A name safe as one folder name (runs/<study>), checked before it is ever used."""
        if len(study) > MAX_STUDY_NAME:
            raise ValueError(f"study name {_short(study)} is over {MAX_STUDY_NAME} characters")
        if not STUDY_PATTERN.fullmatch(study):
            raise ValueError(
                f"study name {_short(study)} is not safe as a folder name; use letters, "
                "digits and _ . - (starting with a letter or digit)"
            )
        return study

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
