"""What a grid may remove or swap, and what each removal means as config changes.

Removable components live in the `REMOVABLE` registry: each one turns the baseline recipe into
the dotted-key changes of its variant (`{"model.norm": "none"}`) and states what removing it
means. `skip-K` is a family, one member per encoder level of the baseline (1 = shallowest).

Swappable keys are every field of the recipe sections (model, train, augment), addressed by a
short alias (`lr`, `norm`) or a dotted path (`train.lr`, `augment.ops.rotate`). Their allowed
values are read from the config types, so `ablate grid components` never goes stale.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ablate.config import AUGMENT_OP, LOSS_NAMES, SKIPLESS_ARCHS, Names, Recipe
from ablate.plugins import describe_source
from ablate.registry import BUILTIN, Registry, plugin_names, unknown_name

SECTIONS: tuple[str, ...] = ("model", "train", "augment")
"""Recipe sections a variant may change; data and protocol stay shared so deltas are paired."""

SKIP_PATTERN = re.compile(r"^skip-(\d+)$")
AUG_PREFIX = "aug-"

Changes = dict[str, Any]


class ComponentError(ValueError):
    """A component or key that does not exist, or a removal that would change nothing."""


@dataclass(frozen=True)
class Removal:
    """One removable component: its name in `ablations.remove` and what removing it means."""

    name: str
    meaning: str
    changes: Callable[[Recipe], Changes]
    """baseline -> dotted-key changes; raises ComponentError when nothing would change."""


def _check_removal(name: str, removal: Removal) -> None:
    """A plug-in's removal: a `Removal` of that name whose `changes` changes something on
    the default baseline (or says, with ComponentError, that it cannot apply there)."""
    if not isinstance(removal, Removal) or removal.name != name or not callable(removal.changes):
        raise TypeError(f"must be Removal({name!r}, meaning, changes) with a callable changes")
    try:
        changes = removal.changes(Recipe())
    except ComponentError:
        return  # nothing to remove from the default baseline: judged when a grid uses it
    _check_changes(name, changes, Recipe())


def _check_changes(name: str, changes: Any, baseline: Recipe) -> None:
    """Changes must be a non-empty mapping of recipe keys that differ from the baseline."""
    if not isinstance(changes, dict) or not changes:
        raise ComponentError(f"removal {name!r} changes nothing (returned {changes!r})")
    for key in changes:
        resolve_key(str(key))
    if all(_baseline_value(baseline, key) == value for key, value in changes.items()):
        raise ComponentError(f"removal {name!r} changes nothing: every value is the baseline's")


def _baseline_value(recipe: Recipe, path: str) -> Any:
    value: Any = recipe
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


REMOVABLE: Registry[Removal] = Registry("removable component", check=_check_removal)


def _removable(name: str, meaning: str) -> Callable[[Callable[[Recipe], Changes]], Removal]:
    """Register a removal function under `name` with its stated meaning."""

    def wrap(changes: Callable[[Recipe], Changes]) -> Removal:
        removal = Removal(name, meaning, changes)
        REMOVABLE.register(name)(removal)
        return removal

    return wrap


def _unchanged(name: str, why: str) -> ComponentError:
    return ComponentError(f"cannot remove {name!r}: {why}, so the variant would equal the baseline")


def _no_skips_in(recipe: Recipe, name: str) -> ComponentError | None:
    """Why `name` cannot be removed from an architecture without skip connections."""
    if recipe.model.arch not in SKIPLESS_ARCHS:
        return None
    return ComponentError(
        f"cannot remove {name!r}: arch {recipe.model.arch} has no skip connections "
        "(SegNet reuses the encoder's pooling indices instead)"
    )


@_removable(
    "skips",
    "every skip connection off: the decoder sees only upsampled features (attention gates go "
    "with them). U-Net only",
)
def _remove_skips(recipe: Recipe) -> Changes:
    refused = _no_skips_in(recipe, "skips")
    if refused:
        raise refused
    if not recipe.model.skips:
        raise _unchanged("skips", "the baseline has skips: false")
    return {"model.skips": False, **_gates_without_skips(recipe, [])}


def _gates_without_skips(recipe: Recipe, kept: list[int]) -> Changes:
    """Attention gates live on skips: with no skip left they go too (else the config is
    invalid), and the variant's name says what it removed."""
    return {"model.attention": False} if recipe.model.attention and not kept else {}


@_removable("norm", "no normalization layers (model.norm: none)")
def _remove_norm(recipe: Recipe) -> Changes:
    if recipe.model.norm == "none":
        raise _unchanged("norm", "the baseline has norm: none")
    return {"model.norm": "none"}


@_removable("dropout", "no dropout layers (model.dropout: 0)")
def _remove_dropout(recipe: Recipe) -> Changes:
    if recipe.model.dropout == 0.0:
        raise _unchanged("dropout", "the baseline has dropout: 0")
    return {"model.dropout": 0.0}


@_removable("init", "PyTorch's default weight initialisation (model.init: default)")
def _remove_init(recipe: Recipe) -> Changes:
    if recipe.model.init == "default":
        raise _unchanged("init", "the baseline has init: default")
    return {"model.init": "default"}


@_removable(
    "deepest-level",
    "one level fewer (depth - 1): the last width dropped, its skip with it",
)
def _remove_deepest_level(recipe: Recipe) -> Changes:
    model = recipe.model
    if model.depth < 2:
        raise ComponentError("cannot remove 'deepest-level': the baseline has a single level")
    if model.deep_supervision and model.depth == 2:
        raise ComponentError(
            "cannot remove 'deepest-level': deep supervision needs depth >= 2; declare a named "
            "variant that also sets deep_supervision: false"
        )
    changes: Changes = {"model.widths": list(model.widths[:-1])}
    kept = [level for level in model.disabled_skips if level < model.depth]
    if kept != list(model.disabled_skips):
        changes["model.disabled_skips"] = kept
    remaining = [level for level in model.skip_levels() if level < model.depth]
    return {**changes, **_gates_without_skips(recipe, remaining)}


@_removable("attention", "plain skip concatenation, no attention gates (model.attention: false)")
def _remove_attention(recipe: Recipe) -> Changes:
    refused = _no_skips_in(recipe, "attention")
    if refused:
        raise refused
    if not recipe.model.attention:
        raise _unchanged("attention", "the baseline has attention: false")
    return {"model.attention": False}


@_removable("se", "no squeeze-and-excitation in the blocks (model.se: false)")
def _remove_se(recipe: Recipe) -> Changes:
    if not recipe.model.se:
        raise _unchanged("se", "the baseline has se: false")
    return {"model.se": False}


@_removable(
    "deep-supervision",
    "main head only: no auxiliary heads, no auxiliary loss terms (model.deep_supervision: false)",
)
def _remove_deep_supervision(recipe: Recipe) -> Changes:
    if not recipe.model.deep_supervision:
        raise _unchanged("deep-supervision", "the baseline has deep_supervision: false")
    return {"model.deep_supervision": False}


@_removable("residual", "plain conv blocks, no shortcut (model.block: plain)")
def _remove_residual(recipe: Recipe) -> Changes:
    if recipe.model.block != "residual":
        raise _unchanged("residual", f"the baseline has block: {recipe.model.block}")
    return {"model.block": "plain"}


@_removable("aspp", "a plain conv block as bottleneck instead of ASPP (model.bottleneck: plain)")
def _remove_aspp(recipe: Recipe) -> Changes:
    if recipe.model.bottleneck != "aspp":
        raise _unchanged("aspp", f"the baseline has bottleneck: {recipe.model.bottleneck}")
    return {"model.bottleneck": "plain"}


@_removable("augmentation", "every augmentation op off (augment.ops: {}); copies kept")
def _remove_augmentation(recipe: Recipe) -> Changes:
    if not _active_ops(recipe):
        raise _unchanged("augmentation", "the baseline has no augmentation op on")
    return {"augment.ops": {}}


@_removable("balanced", "plain shuffling instead of balanced sampling (train.balanced: false)")
def _remove_balanced(recipe: Recipe) -> Changes:
    if not recipe.train.balanced:
        raise _unchanged("balanced", "the baseline has balanced: false")
    return {"train.balanced": False}


@_removable(
    "input-norm", "raw [0, 1] inputs, no per-channel standardisation (augment.normalize: false)"
)
def _remove_input_norm(recipe: Recipe) -> Changes:
    if not recipe.augment.normalize:
        raise _unchanged("input-norm", "the baseline has normalize: false")
    return {"augment.normalize": False}


@_removable(
    "stain-norm",
    "no stain normalisation: each image keeps its own colours (augment.stain_norm: none)",
)
def _remove_stain_norm(recipe: Recipe) -> Changes:
    if recipe.augment.stain_norm == "none":
        raise _unchanged("stain-norm", "the baseline has stain_norm: none")
    return {"augment.stain_norm": "none"}


@_removable("early-stopping", "train every epoch and keep the last weights (train.patience: null)")
def _remove_early_stopping(recipe: Recipe) -> Changes:
    if recipe.train.patience is None:
        raise _unchanged("early-stopping", "the baseline has patience: null")
    return {"train.patience": None}


@_removable("schedule", "constant learning rate (train.schedule: none)")
def _remove_schedule(recipe: Recipe) -> Changes:
    if recipe.train.schedule == "none":
        raise _unchanged("schedule", "the baseline has schedule: none")
    return {"train.schedule": "none"}


def _active_ops(recipe: Recipe) -> dict[str, float]:
    """Augmentation ops that can fire (probability > 0)."""
    return {op: p for op, p in recipe.augment.ops.items() if p > 0}


def _register_augment_op(op: str) -> None:
    name = f"{AUG_PREFIX}{op}"

    def changes(recipe: Recipe) -> Changes:
        if op not in _active_ops(recipe):
            raise _unchanged(name, f"the baseline's augment.ops has no {op!r}")
        return {"augment.ops": {key: p for key, p in recipe.augment.ops.items() if key != op}}

    _removable(name, f"augmentation op {op!r} off, the other ops kept")(changes)


for _op in AUGMENT_OP.builtins:
    _register_augment_op(_op)


def _augment_removal(op: str) -> Removal:
    """`aug-<op>` of a plug-in's augmentation op (built-ins are registered above)."""
    name = f"{AUG_PREFIX}{op}"

    def changes(recipe: Recipe) -> Changes:
        if op not in _active_ops(recipe):
            raise _unchanged(name, f"the baseline's augment.ops has no {op!r}")
        return {"augment.ops": {key: p for key, p in recipe.augment.ops.items() if key != op}}

    return Removal(name, f"augmentation op {op!r} off, the other ops kept", changes)


def _skip_removal(level: int) -> Removal:
    name = f"skip-{level}"

    def changes(recipe: Recipe) -> Changes:
        refused = _no_skips_in(recipe, name)
        if refused:
            raise refused
        if not recipe.model.skip_enabled(level):
            raise _unchanged(name, f"the baseline's skip connection {level} is already off")
        kept = [other for other in recipe.model.skip_levels() if other != level]
        return {
            "model.disabled_skips": sorted({*recipe.model.disabled_skips, level}),
            **_gates_without_skips(recipe, kept),
        }

    return Removal(name, f"skip connection of encoder level {level} off (1 = shallowest)", changes)


def removals_for(baseline: Recipe) -> list[Removal]:
    """Every component `baseline` can lose: skip-1..skip-depth, the registered ones (plug-ins'
    included), then aug-<op> of the plug-ins' augmentation ops."""
    skips = [_skip_removal(level) for level in range(1, baseline.model.depth + 1)]
    registered = [REMOVABLE.get(name) for name in REMOVABLE.names()]
    ops = [_augment_removal(op) for op in plugin_names("augmentation")]
    return skips + registered + [op for op in ops if op.name not in REMOVABLE]


def removal_source(name: str) -> str:
    """The package a removal comes from: `ablate`, or the plug-in that added it (or its op)."""
    if name in REMOVABLE:
        return REMOVABLE.source(name)
    op = name.removeprefix(AUG_PREFIX)
    return plugin_names("augmentation").get(op, BUILTIN)


def removal_changes(name: str, baseline: Recipe) -> Changes:
    """The dotted-key changes that remove component `name` from `baseline`.

    Example:
        >>> removal_changes("norm", Recipe())
        {'model.norm': 'none'}

    Raises:
        ComponentError: unknown name (with the valid ones), or nothing to remove.
    """
    valid = {removal.name: removal for removal in removals_for(baseline)}
    if name not in valid:
        raise ComponentError(unknown_name("component", name, list(valid)))
    source = removal_source(name)
    if source == BUILTIN:
        return valid[name].changes(baseline)
    return _plugin_changes(valid[name], baseline, source)


def _plugin_changes(removal: Removal, baseline: Recipe, source: str) -> Changes:
    """A plug-in's removal applied to `baseline`, its contract checked (a mapping of recipe
    keys that changes something); a failure names the plug-in."""
    try:
        changes = removal.changes(baseline)
        _check_changes(removal.name, changes, baseline)
    except ComponentError as error:
        raise ComponentError(f"{error} ({describe_source(source)})") from None
    except Exception as error:
        raise ComponentError(
            f"removal {removal.name!r} of {describe_source(source)} failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    return changes


def _section_fields() -> dict[str, FieldInfo]:
    """dotted path -> field info for every field of the recipe sections."""
    fields: dict[str, FieldInfo] = {}
    for section in SECTIONS:
        model: type[BaseModel] = Recipe.model_fields[section].annotation  # type: ignore[assignment]
        for name, info in model.model_fields.items():
            fields[f"{section}.{name}"] = info
    return fields


FIELDS: dict[str, FieldInfo] = _section_fields()
SWAPPABLE: dict[str, str] = {path.split(".", 1)[1]: path for path in FIELDS}
"""alias -> dotted path; the aliases are the field names, unique across the sections."""
if len(SWAPPABLE) != len(FIELDS):  # a new field name repeated across sections needs a dotted path
    raise RuntimeError("recipe field names must be unique across model/train/augment")


def resolve_key(key: str) -> str:
    """The dotted path of a swap/variant key: an alias (`lr`) or a dotted path (`train.lr`).

    A dotted path may go one level into a mapping field: `augment.ops.rotate`.

    Raises:
        ComponentError: the key names no recipe field (a close match is suggested).
    """
    if key in SWAPPABLE:
        return SWAPPABLE[key]
    if key in FIELDS:
        return key
    parent, _, leaf = key.rpartition(".")
    if parent in FIELDS and leaf and _is_mapping(FIELDS[parent].annotation):
        return key
    close = difflib.get_close_matches(key, [*SWAPPABLE, *FIELDS], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ComponentError(
        f"unknown key {key!r}{hint}; valid: {', '.join(SWAPPABLE)} (or a dotted path: train.lr)"
    )


def short_key(path: str) -> str:
    """The name a variant uses for a dotted path: the path below its section (`lr`)."""
    return path.split(".", 1)[1]


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def allowed_values(path: str) -> str:
    """Human description of what `path` accepts, from its config type: 'one of: a, b'."""
    if path == "train.loss":
        return f"a loss ({_named(LOSS_NAMES)}) or a weighted sum like 0.7*dice+0.3*jaccard"
    if path == "train.image_size":
        sizes = _describe(FIELDS[path].annotation, FIELDS[path].metadata)
        return f"{sizes}, a multiple of 2**depth (one halving per encoder level)"
    if path in FIELDS:
        info = FIELDS[path]
        return _describe(info.annotation, info.metadata)
    parent = path.rpartition(".")[0]
    value_type = typing.get_args(FIELDS[parent].annotation)[1]
    return _describe(value_type, [])


def _named(names: Names) -> str:
    """'plain, residual, ghost (from my-plugin)': the valid names, a plug-in's marked."""
    sources = plugin_names(names.family)
    return ", ".join(
        f"{name} (from {sources[name]})" if name in sources else name for name in names.valid()
    )


def _describe(annotation: Any, metadata: list[Any]) -> str:
    """Describe a type annotation plus its pydantic/annotated-types constraints."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    names = [item for item in [*args[1:], *metadata] if isinstance(item, Names)]
    if names:
        return "one of: " + _named(names[0])
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(arg) for arg in args)
    if origin is typing.Annotated:
        inner = [item for extra in args[1:] for item in getattr(extra, "metadata", [extra])]
        return _describe(args[0], [*inner, *metadata])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg, metadata) for arg in args)
    if origin is list:
        return f"list of {_describe(args[0], [])}"
    if origin is dict:
        keys = _describe(args[0], []).removeprefix("one of: ")
        return f"mapping of ({keys}) to {_describe(args[1], [])}"
    if annotation is type(None):
        return "null"
    name = {bool: "true/false", int: "int", float: "number", str: "text"}.get(
        annotation, str(annotation)
    )
    bounds = [_bound(item) for item in metadata if _bound(item)]
    return f"{name} {' and '.join(bounds)}" if bounds else name


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def _bound(item: Any) -> str:
    """'> 0.0' for a Gt(0.0) constraint; '' for anything that is not a bound."""
    for kind, attribute, symbol in _BOUNDS:
        if isinstance(item, kind):
            return f"{symbol} {getattr(item, attribute)}"
    return ""
