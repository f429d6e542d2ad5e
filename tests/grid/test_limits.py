"""Limits of a grid (issue 14): every size is bounded before the work, each refusal names the
limit and the key or line, and values that would fail later in run, train or prune are
refused by the loader (so by `grid check`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.config import MAX_SEED, MAX_SEEDS, MAX_STUDY_NAME
from ablate.errors import GridError
from ablate.grid import load, yaml_file
from ablate.grid.expand import MAX_VARIANTS
from ablate.grid.load import MAX_EXTENDS, load_grid, load_grid_variants
from ablate.grid.yaml_file import (
    MAX_GRID_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
)

WriteGrid = Callable[..., Path]


def _refused(path: Path) -> str:
    began = time.monotonic()
    with pytest.raises(GridError) as caught:
        load_grid(path)
    assert time.monotonic() - began < 10, "a bounded refusal must take seconds at most"
    return str(caught.value)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs': each level lists the previous one `width` times (9**9 leaves)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


# --- the YAML itself ----------------------------------------------------------------------


def test_alias_bomb_is_refused_without_expanding_it(write_grid: WriteGrid, minimal: str) -> None:
    message = _refused(write_grid(alias_bomb() + minimal))
    assert f"more than {MAX_YAML_VALUES:,} keys, values and list items" in message
    assert "(aliases expanded)" in message and "MAX_YAML_VALUES" in message


def test_recursive_alias_is_refused(write_grid: WriteGrid, minimal: str) -> None:
    message = _refused(write_grid(minimal + "pruning: &p {variants: [*p]}\n"))
    assert "line 11: an alias refers to a node that contains it" in message


def test_deep_nesting_is_refused_before_python_recursion(
    write_grid: WriteGrid, minimal: str
) -> None:
    message = _refused(write_grid(minimal + "x: " + "[" * 600 + "]" * 600 + "\n"))
    assert f"nested deeper than {MAX_YAML_DEPTH} levels" in message
    assert "line 11" in message


def test_nesting_through_aliases_counts(write_grid: WriteGrid, minimal: str) -> None:
    """Each anchor is 20 deep, legal alone; nested through aliases it is 40 deep."""
    deep = "[" * 20 + "]" * 20
    text = f"a: &a {deep}\nb: &b {'[' * 20}*a{']' * 20}\n" + minimal
    assert f"nested deeper than {MAX_YAML_DEPTH} levels" in _refused(write_grid(text))


def test_too_many_aliases(write_grid: WriteGrid, minimal: str) -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n" + minimal
    assert f"more than {MAX_YAML_ALIASES} aliases" in _refused(write_grid(text))


def test_file_over_the_size_limit_is_refused_unread(write_grid: WriteGrid, minimal: str) -> None:
    path = write_grid(minimal + "#" * (3 * MAX_GRID_BYTES) + "\n")
    assert f"over {MAX_GRID_BYTES:,} bytes (1 MiB)" in _refused(path)


def test_legitimate_anchors_and_merge_keys_still_load(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal + (
        "ablations:\n"
        "  variants:\n"
        "    small: &small {widths: [4, 8], batch_size: 4}\n"
        "    small-bce: {<<: *small, loss: bce}\n"
    )
    _, variants = load_grid_variants(write_grid(text))
    assert [variant.name for variant in variants] == ["baseline", "small", "small-bce"]
    assert variants[2].recipe.train.loss == "bce" and variants[2].recipe.model.widths == [4, 8]


def test_values_python_cannot_convert_are_yaml_errors(write_grid: WriteGrid, minimal: str) -> None:
    date = _refused(write_grid(minimal.replace("study: tiny", "study: 2001-13-45")))
    assert "line 1, column 8: YAML error: cannot read this value: month must be in 1..12" in date
    digits = _refused(write_grid(minimal.replace("seeds: 2", "seeds: " + "9" * 5000)))
    assert "a number written with 5,000 characters; the limit is 100" in digits


def test_grid_is_parsed_once(
    write_grid: WriteGrid, minimal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    compose = yaml_file.BoundedLoader.get_single_node

    def counted(self):
        calls.append(1)
        return compose(self)

    monkeypatch.setattr(yaml_file.BoundedLoader, "get_single_node", counted)
    load_grid_variants(write_grid(minimal))
    assert len(calls) == 1


# --- extends ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        (".", "'.' is a folder, not a grid file"),
        ("../g.yaml", "'../g.yaml' leads out of this file's folder"),
        ("/etc/hostname", "must be a path relative to this file's folder, got '/etc/hostname'"),
        ("~/grid.yaml", "must be a path relative to this file's folder"),
        ('"a\\0b.yaml"', "contains a control character: 'a\\x00b.yaml'"),
        ("a" * 300 + ".yaml", "cannot open"),
    ],
    ids=["folder", "up-a-folder", "absolute", "home", "nul", "name-too-long"],
)
def test_unusable_extends(write_grid: WriteGrid, minimal: str, reference: str, says: str) -> None:
    message = _refused(write_grid(f"extends: {reference}\n{minimal}"))
    assert "extends (line 1): " in message and says in message


def test_extends_chain_is_bounded(write_grid: WriteGrid, minimal: str) -> None:
    write_grid(minimal, name="g0.yaml")
    for index in range(1, MAX_EXTENDS + 1):
        write_grid(f"extends: g{index - 1}.yaml\n", name=f"g{index}.yaml")
    assert load_grid(Path(write_grid("extends: g6.yaml\n", name="ok.yaml")))
    message = _refused(Path(write_grid(f"extends: g{MAX_EXTENDS}.yaml\n", name="long.yaml")))
    assert f"more than {MAX_EXTENDS} files in the extends chain" in message


# --- values that would fail later in run, train or prune -----------------------------------

CASES = [
    ("seeds-count", "seeds: 2", "seeds: 1000000000", "protocol.seeds (line", f"1..{MAX_SEEDS}"),
    ("seeds-list", "seeds: 2", f"seeds: {list(range(MAX_SEEDS + 1))}", None, "1001 seeds listed"),
    ("seed-value", "seeds: 2", "seeds: [1.0e+23]", "protocol.seeds (line", f"0..{MAX_SEED}"),
    ("seed-big-int", "seeds: 2", "seeds: [0, 100000000000000000000000]", "(item 1)", "2**31"),
    ("seed-negative", "seeds: 2", "seeds: [-1]", "protocol.seeds", "outside 0.."),
    ("seeds-bool", "seeds: 2", "seeds: yes", "protocol.seeds", "got True"),
    ("root-nul", "synthetic: {per_class: 4, size: 32}", 'root: "a\\0b"', "data.root", "control"),
    ("root-empty", "synthetic: {per_class: 4, size: 32}", "root: ''", "data.root", "is empty"),
    ("root-part", "synthetic: {per_class: 4, size: 32}", "root: /" + "x" * 300, "data.root", "255"),
    ("study-long", "study: tiny", "study: " + "a" * 5000, "study (line 1)", "over 100"),
    ("study-newline", "study: tiny", 'study: "tiny\\n"', "study (line 1)", "not safe"),
    ("lr-inf", "epochs: 1", "epochs: 1\n    lr: .inf", "baseline.train.lr", "finite"),
    ("wd-nan", "epochs: 1", "epochs: 1\n    weight_decay: .nan", "weight_decay", "finite"),
    ("loss-zero", "epochs: 1", "epochs: 1\n    loss: 0*dice", "baseline.train.loss", "weight 0"),
    ("loss-zero-term", "epochs: 1", "epochs: 1\n    loss: dice+0.0*bce", "loss", "'0.0*bce'"),
    ("epochs", "epochs: 1", "epochs: 1000000000", "baseline.train.epochs", "10000"),
    ("batch", "epochs: 1", "epochs: 1\n    batch_size: 100000", "batch_size", "4096"),
    ("widths", "[8, 16, 32]", "[" + ", ".join(["8"] * 100) + "]", "widths", "at most 11"),
    ("width", "[8, 16, 32]", "[8, 16, 100000000]", "widths[2]", "4096"),
]
RESOURCE_CASES = [
    ("cpu-inf", "cpu: .inf", "resources.cpu", "finite"),
    ("gpu-inf", "gpu: .inf", "resources.gpu", "finite"),
    ("cpu-huge", "cpu: 1000000", "resources.cpu", "1024"),
    ("gpu-tiny", "gpu: 0.00001", "resources.gpu", "at least 0.0001"),
    ("retries", "max_failures: 1000000000000", "resources.max_failures", "100"),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_values_that_would_fail_later_are_refused(
    write_grid: WriteGrid, minimal: str, old: str, new: str, key: str | None, says: str | None
) -> None:
    message = _refused(write_grid(minimal.replace(old, new)))
    assert "Traceback" not in message and "\n  - " in message
    for word in (key, says):
        assert word is None or word in message, message
    assert all(line.startswith(("  - ", "error", "/")) for line in message.splitlines()[1:])


@pytest.mark.parametrize(
    ("setting", "key", "says"), [c[1:] for c in RESOURCE_CASES], ids=[c[0] for c in RESOURCE_CASES]
)
def test_resources_are_finite_and_bounded(
    write_grid: WriteGrid, minimal: str, setting: str, key: str, says: str
) -> None:
    message = _refused(write_grid(minimal + f"resources: {{{setting}}}\n"))
    assert key in message and says in message


def test_study_name_of_a_single_run_config_is_cut_to_the_limit(write_grid: WriteGrid) -> None:
    text = "data: {synthetic: {per_class: 4, size: 32}}\ntrain: {epochs: 1}\n"
    grid = load_grid(write_grid(text, name="r" * 200 + ".yaml"))
    assert grid.study == "r" * MAX_STUDY_NAME


# --- ablations and pruning -----------------------------------------------------------------


def test_variants_over_the_limit_are_counted_not_built(write_grid: WriteGrid, minimal: str) -> None:
    values = ", ".join(f"{index + 1}.0e-6" for index in range(MAX_VARIANTS + 5))
    message = _refused(write_grid(minimal + f"ablations:\n  swap:\n    lr: [{values}]\n"))
    assert f"{MAX_VARIANTS + 6} variants with the baseline, over the limit of {MAX_VARIANTS}" in (
        message
    )


def test_variant_name_with_a_final_newline_is_refused(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal + 'ablations:\n  variants:\n    "tiny\\n": {lr: 0.01}\n'
    message = _refused(write_grid(text))
    assert "ablations.variants['tiny\\n'] (line 13): variant name 'tiny\\n' is not safe" in message
    assert len(message.splitlines()) == 2  # the key is quoted: one line per problem


def test_variant_name_length_counts_escaped_stars(write_grid: WriteGrid, minimal: str) -> None:
    name = "a" + "*" * 50  # 51 characters, 151 in file names
    text = minimal + f'ablations:\n  variants:\n    "{name}": {{lr: 0.01}}\n'
    message = _refused(write_grid(text))
    assert "is over 120 characters (each * counts 3" in message


def test_pruning_variants_must_be_variants_of_the_grid(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal + "ablations:\n  remove: [skips]\npruning:\n  variants: [baseline, no-skip]\n"
    message = _refused(write_grid(text))
    assert "pruning.variants[1] (line 14): no variant named 'no-skip'" in message
    assert "did you mean 'no-skips'?" in message
    empty = _refused(write_grid(minimal + "pruning:\n  variants: []\n"))
    assert "pruning.variants (line 12): List should have at least 1 item" in empty


def test_pruning_variants_naming_variants_load(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal + "ablations:\n  remove: [skips]\npruning:\n  variants: [no-skips]\n"
    assert load_grid(write_grid(text)).pruning.variants == ["no-skips"]


def test_problems_listed_are_bounded(write_grid: WriteGrid, minimal: str) -> None:
    values = ", ".join(["-1.0"] * 200)
    message = _refused(write_grid(minimal + f"ablations:\n  swap:\n    lr: [{values}]\n"))
    assert message.count("\n  - ") == load.MAX_PROBLEMS_SHOWN + 1
    assert "... and" in message and "more problem(s)" in message
