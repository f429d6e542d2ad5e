"""Resume rules: what an existing study directory allows and which runs are left to do.

A study directory remembers the grid it was made from (grid.yaml). Running again with the
same grid, or one that only adds variants or seeds, continues the study; any other change
(a baseline hyperparameter, the data, the protocol) would mix results of two different
studies, so it is refused with the changed keys named. `resources` may change freely: it
decides where runs execute, not what they compute; so may `pruning`, whose new settings are
analysed on top of the stored ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ablate.config import GridConfig
from ablate.errors import UserError
from ablate.grid import Variant, expand_variants

FREE_SECTIONS = ("resources", "pruning")
"""Top-level grid keys that may change between runs of one study: where runs execute, and
the pruning analysis (new settings add rows to the stored ones; see ablate/prune/study.py)."""
GROWABLE_KEYS = ("ablations", "protocol.seeds")
"""Keys that may change as long as variants and seeds are only added."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to {"a.b.c": leaf}; lists stay leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _growable(key: str) -> bool:
    return any(key == grown or key.startswith(grown + ".") for grown in GROWABLE_KEYS)


def _free(key: str) -> bool:
    return key.split(".", 1)[0] in FREE_SECTIONS


def changed_keys(old: GridConfig, new: GridConfig) -> list[str]:
    """Keys whose values differ between two grids, outside `resources` and the growable keys."""
    before = flatten(old.model_dump(mode="json"))
    after = flatten(new.model_dump(mode="json"))
    changes = []
    for key in sorted(set(before) | set(after)):
        if _free(key) or _growable(key):
            continue
        if before.get(key, "<unset>") != after.get(key, "<unset>"):
            changes.append(
                f"{key} ({before.get(key, '<unset>')!r} -> {after.get(key, '<unset>')!r})"
            )
    return changes


def shrunk_keys(old: GridConfig, new: GridConfig, new_variants: list[Variant]) -> list[str]:
    """Variants or seeds of the old grid that the new one (with `new_variants`) drops or
    redefines."""
    problems = []
    old_seeds, new_seeds = old.protocol.seed_list(), set(new.protocol.seed_list())
    removed = [seed for seed in old_seeds if seed not in new_seeds]
    if removed:
        problems.append(f"protocol.seeds (seeds {removed} removed)")
    by_name = {variant.name: variant for variant in new_variants}
    for variant in expand_variants(old):
        current = by_name.get(variant.name)
        if current is None:
            problems.append(f"ablations (variant {variant.name!r} removed)")
        elif current.changes != variant.changes:
            # A changed baseline changes every variant's recipe too; changed_keys names it
            # once, so only a variant whose own changes differ is listed here.
            problems.append(f"ablations (variant {variant.name!r} now changes {current.changes})")
    return problems


def check_compatible(
    old: GridConfig, new: GridConfig, new_variants: list[Variant], study_uri: str
) -> None:
    """Refuse to continue a study whose grid changed other than by added variants or seeds.

    Raises:
        UserError: naming every changed key.
    """
    problems = changed_keys(old, new) + shrunk_keys(old, new, new_variants)
    if problems:
        listed = "; ".join(problems)
        raise UserError(
            f"study directory {study_uri} was made from another grid; changed: {listed}. "
            "Only adding variants or seeds can continue a study: restore those keys or use "
            "another --out"
        )


@dataclass(frozen=True)
class Plan:
    """The runs of a study: all of them, the finished ones, and what is left per variant."""

    variants: list[str]
    seeds: list[int]
    finished: set[tuple[str, int]]

    @property
    def total(self) -> int:
        return len(self.variants) * len(self.seeds)

    @property
    def skipped(self) -> int:
        return sum((v, s) in self.finished for v in self.variants for s in self.seeds)

    def pending(self) -> dict[str, list[int]]:
        """variant -> seeds without a runs file, for variants with any left (grid order)."""
        left = {v: [s for s in self.seeds if (v, s) not in self.finished] for v in self.variants}
        return {variant: seeds for variant, seeds in left.items() if seeds}
