"""Resume rules: what an existing study directory allows and which runs are left to do.

A study directory remembers the grid it was made from (grid.yaml). Running again with the
same grid, or one that only adds variants or seeds, continues the study; any other change
(a baseline hyperparameter, the data, the protocol, `protocol.vary`) would mix results of
two different studies, so it is refused with the changed keys named. `resources` may change
freely: it decides where runs execute, not what they compute; so may `pruning`, whose new
settings are analysed on top of the stored ones, and `analysis` (margin, alpha, metric),
which only changes how the summary reads the runs.

Adaptive seeds ({min, max}) grow by raising max. Their first look is at min, so min stays
as it was (a lower min would add looks the study never took); `futility` stays as it was
(the rounds are replayed from round 0 on the stored runs under one rule: under the other,
the replay would not be the rounds that ran: variants stopped for futility would be owed
seeds of rounds long past, or variants that ran on would have stored runs no round
scheduled); a fixed number of seeds may become adaptive, with either futility setting, when
its seeds are the adaptive study's first round (0..min-1); adaptive seeds never become fixed
(the looks already taken would be forgotten).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ablate.config import GridConfig, ProtocolConfig
from ablate.errors import UserError
from ablate.grid import Variant, expand_variants

FREE_SECTIONS = ("resources", "pruning", "analysis")
"""Top-level grid keys that may change between runs of one study: where runs execute, the
pruning analysis (new settings add rows to the stored ones; see ablate/prune/study.py) and
how the summary analyses the runs (margin, alpha, metric: no run changes)."""
FREE_NAMES = ", ".join(FREE_SECTIONS[:-1]) + " or " + FREE_SECTIONS[-1]
"""The free sections for the refusal message, from the tuple so the two never disagree."""
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
    problems = seed_problems(old.protocol, new.protocol)
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


def seed_problems(old: ProtocolConfig, new: ProtocolConfig) -> list[str]:
    """How `new`'s seeds fail to continue a study run with `old`'s (see the module's rules)."""
    removed = [seed for seed in old.max_seed_list() if seed not in set(new.max_seed_list())]
    if removed:
        return [f"protocol.seeds (seeds {removed} removed)"]
    if old.is_adaptive and not new.is_adaptive:
        return ["protocol.seeds (adaptive seeds made fixed: the looks taken would be lost)"]
    if old.is_adaptive and new.seeds.min != old.seeds.min:
        return [f"protocol.seeds.min ({old.seeds.min} -> {new.seeds.min}: the looks start there)"]
    if old.is_adaptive and new.seeds.futility != old.seeds.futility:
        return [
            f"protocol.seeds.futility ({old.seeds.futility} -> {new.seeds.futility}: the rounds "
            "run were decided with it, and the rounds are replayed from round 0 under one rule)"
        ]
    if new.is_adaptive and not old.is_adaptive and old.max_seed_list() != new.min_seed_list():
        return [
            f"protocol.seeds (seeds {old.max_seed_list()} made adaptive: they must be the "
            f"first round, seeds 0..{new.seeds.min - 1})"
        ]
    return []


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
            "A study continues when its grid only adds variants or seeds or changes "
            f"{FREE_NAMES}: restore those keys or use another study directory"
        )


@dataclass(frozen=True)
class Plan:
    """The runs of a study: all of them, the finished ones, and what is left per variant.

    With adaptive seeds, `seeds` are every seed a variant may run and `min_seeds` those of
    the first round; which runs the later rounds add is decided between rounds
    (`ablate.engine.rounds`), so `pending` is only meaningful for fixed seeds.
    """

    variants: list[str]
    seeds: list[int]
    finished: set[tuple[str, int]]
    min_seeds: int | None = None
    """Adaptive seeds: the seeds every variant runs first; None for a fixed number."""

    @property
    def adaptive(self) -> bool:
        return self.min_seeds is not None

    @property
    def total(self) -> int:
        """Runs of the study (with adaptive seeds, the most it may run)."""
        return len(self.variants) * len(self.seeds)

    @property
    def fewest(self) -> int:
        """Runs the study makes at least (every variant's first round when adaptive)."""
        return len(self.variants) * (self.min_seeds or len(self.seeds))

    @property
    def skipped(self) -> int:
        return sum((v, s) in self.finished for v in self.variants for s in self.seeds)

    def pending(self) -> dict[str, list[int]]:
        """variant -> seeds without a runs file, for variants with any left (grid order)."""
        left = {v: [s for s in self.seeds if (v, s) not in self.finished] for v in self.variants}
        return {variant: seeds for variant, seeds in left.items() if seeds}
