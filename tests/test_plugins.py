"""Plug-ins through the entry-point group `ablate.plugins`: real packages written into tmp
folders (a module and a .dist-info with entry_points.txt, which importlib.metadata reads),
loaded by the real command line in-process. Each broken plug-in gives exit 2 naming its
package and entry point."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ablate import cli
from ablate.config import (
    ARCH,
    AUGMENT_OP,
    BLOCK,
    BOTTLENECK,
    LOSS_NAMES,
    READER,
    ModelConfig,
    TrainConfig,
)
from ablate.data.augment import AUGMENTATIONS
from ablate.data.source import READERS
from ablate.models.blocks import BLOCKS
from ablate.models.bottlenecks import BOTTLENECKS
from ablate.models.build import ARCHS
from ablate.plugins import PluginError, load_plugins, loaded_plugins, unload_plugins
from ablate.registry import plugin_names
from ablate.train.losses import LOSSES

GOOD = """
from torch import nn
from ablate.grid.components import REMOVABLE, ComponentError, Removal
from ablate.models.blocks import BLOCKS, ConvBlock
from ablate.train.losses import LOSSES, dice_loss

def twice_dice(logits, target, task):
    return 2 * dice_loss(logits, target, task)

def no_dropout(recipe):
    if recipe.model.dropout == 0:
        raise ComponentError("the baseline has dropout: 0")
    return {"model.dropout": 0.0}

def register(plugin):
    plugin.add(BLOCKS, "ghost", ConvBlock)
    plugin.add(LOSSES, "twice_dice", twice_dice)
    plugin.add(REMOVABLE, "drop", Removal("drop", "dropout off", no_dropout))
"""


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """`install(package, code, entry="register")`: a plug-in package in a folder on sys.path
    with its .dist-info, as pip would leave it. Plug-ins are unloaded before and after."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(package: str, code: str, entry: str = "register") -> str:
        module = package.replace("-", "_")
        (site / module).mkdir()
        (site / module / "__init__.py").write_text(textwrap.dedent(code))
        info = site / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[ablate.plugins]\nparts = {module}:{entry}\n")
        modules.append(module)
        return f"{module}:{entry}"

    unload_plugins()
    yield install
    unload_plugins()
    for module in modules:
        sys.modules.pop(module, None)


def _exit_2_naming(argv: list[str], package: str, capsys: pytest.CaptureFixture) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"plug-in {package!r} (entry point parts = " in err, err
    assert "Traceback" not in err
    return err


def _grid(tmp_path: Path, baseline: str, ablations: str = "remove: [norm]") -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(
        "study: p\ndata: {synthetic: {per_class: 4, size: 32}}\n"
        f"baseline:\n{textwrap.indent(baseline, '  ')}\nablations: {{{ablations}}}\n"
    )
    return str(path)


def test_a_plugins_parts_are_named_like_builtins(plugin_site, tmp_path, capsys) -> None:
    plugin_site("good-parts", GOOD)
    baseline = "model: {block: ghost, dropout: 0.2}\ntrain: {loss: 0.5*twice_dice+0.5*dice}"
    assert cli.main(["grid", "check", _grid(tmp_path, baseline, "remove: [drop]")]) == 0
    assert "baseline, no-drop" in capsys.readouterr().out
    assert cli.main(["grid", "components"]) == 0
    out = capsys.readouterr().out
    assert "ghost (from good-parts)" in out and "twice_dice (from good-parts)" in out
    assert any(line.split()[:2] == ["drop", "good-parts"] for line in out.splitlines())
    assert [plugin.package for plugin in loaded_plugins()] == ["good-parts"]
    assert BLOCKS.source("ghost") == "good-parts" and BLOCKS.source("plain") == "ablate"


def test_a_config_naming_a_plugin_part_loads_the_plugins_itself(plugin_site) -> None:
    # A Ray worker validates RunConfig JSON: a name no built-in has loads the plug-ins.
    plugin_site("good-parts", GOOD)
    assert plugin_names("block") == {}
    assert ModelConfig(block="ghost").block == "ghost"
    assert plugin_names("block") == {"ghost": "good-parts"}
    assert TrainConfig(loss="twice_dice").loss == "twice_dice"


def test_unknown_names_list_the_plugins_names(plugin_site) -> None:
    plugin_site("good-parts", GOOD)
    with pytest.raises(ValueError, match=r"did you mean 'ghost'.*valid: plain, residual, ghost"):
        ModelConfig(block="ghots")


def test_load_is_idempotent(plugin_site) -> None:
    plugin_site("good-parts", GOOD)
    assert load_plugins() == load_plugins()
    assert BLOCKS.names().count("ghost") == 1


def test_a_plugin_that_fails_to_import(plugin_site, capsys) -> None:
    plugin_site("no-import", "import not_installed_anywhere\n")
    err = _exit_2_naming(["grid", "components"], "no-import", capsys)
    assert "cannot be imported: ModuleNotFoundError" in err


def test_a_register_function_that_fails(plugin_site, capsys) -> None:
    plugin_site("bad-register", "def register(plugin):\n    raise RuntimeError('boom')\n")
    assert "register() failed: RuntimeError: boom" in _exit_2_naming(
        ["grid", "components"], "bad-register", capsys
    )


def test_an_entry_point_that_is_not_a_function(plugin_site, capsys) -> None:
    plugin_site("not-callable", "register = 3\n")
    assert "must name a function register(plugin)" in _exit_2_naming(
        ["grid", "components"], "not-callable", capsys
    )


def test_a_builtins_name_registered_again(plugin_site, capsys) -> None:
    plugin_site(
        "steals-name",
        "from ablate.models.blocks import BLOCKS, ConvBlock\n"
        "def register(plugin):\n    plugin.add(BLOCKS, 'residual', ConvBlock)\n",
    )
    err = _exit_2_naming(["grid", "components"], "steals-name", capsys)
    assert "block 'residual' is registered already (by ablate)" in err
    assert BLOCKS.source("residual") == "ablate"


def test_two_plugins_registering_one_name(plugin_site, capsys) -> None:
    code = (
        "from ablate.models.blocks import BLOCKS, ConvBlock\n"
        "def register(plugin):\n    plugin.add(BLOCKS, 'twin', ConvBlock)\n"
    )
    plugin_site("aa-first", code)
    plugin_site("bb-second", code)
    err = _exit_2_naming(["grid", "components"], "bb-second", capsys)
    assert "block 'twin' is registered already (by aa-first)" in err
    # the failed state sticks: no command of this process runs with half the plug-ins
    with pytest.raises(PluginError, match="bb-second"):
        load_plugins()


BROKEN_CONTRACTS = {
    "block-shape": (
        "from torch import nn\nfrom ablate.models.blocks import BLOCKS\n"
        "def block(i, o, **kw):\n    return nn.Conv2d(i, o + 1, 3, padding=1)\n"
        "def register(plugin):\n    plugin.add(BLOCKS, 'fat', block)\n",
        "block 'fat': ValueError: maps an input (2, 4, 8, 8) to (2, 7, 8, 8)",
    ),
    "bottleneck-shape": (
        "from torch import nn\nfrom ablate.models.bottlenecks import BOTTLENECKS\n"
        "def neck(i, o, *, kit, dropout=0.0):\n    return nn.MaxPool2d(2)\n"
        "def register(plugin):\n    plugin.add(BOTTLENECKS, 'pool', neck)\n",
        "bottleneck 'pool': ValueError: maps an input (2, 8, 4, 4) to (2, 8, 2, 2)",
    ),
    "arch-shape": (
        "from torch import nn\nfrom ablate.models.build import ARCHS\n"
        "def arch(config, out_channels, in_channels):\n"
        "    return nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)\n"
        "def register(plugin):\n    plugin.add(ARCHS, 'tiny', arch)\n",
        "architecture 'tiny': ValueError: maps an input (2, 3, 32, 32) to (2, 2, 16, 16)",
    ),
    "loss-not-scalar": (
        "from ablate.train.losses import LOSSES\n"
        "def loss(logits, target, task):\n    return (logits - 1).abs()\n"
        "def register(plugin):\n    plugin.add(LOSSES, 'pixelwise', loss)\n",
        "loss 'pixelwise': ValueError: must return a scalar tensor for task binary",
    ),
    "augmentation-shape": (
        "import albumentations as A\nfrom ablate.data.augment import AUGMENTATIONS\n"
        "def crop(p, size):\n    return A.CenterCrop(size // 2, size // 2, p=p)\n"
        "def register(plugin):\n    plugin.add(AUGMENTATIONS, 'crop', crop)\n",
        "augmentation 'crop': ValueError: turns a (32, 32, 3) uint8 image into (16, 16, 3)",
    ),
    "removal-changes-nothing": (
        "from ablate.grid.components import REMOVABLE, Removal\n"
        "def register(plugin):\n"
        "    plugin.add(REMOVABLE, 'noop', Removal('noop', 'nothing', lambda recipe: {}))\n",
        "removable component 'noop': ComponentError: removal 'noop' changes nothing",
    ),
    "removal-sets-the-baseline": (
        "from ablate.grid.components import REMOVABLE, Removal\n"
        "def same(recipe):\n    return {'model.norm': recipe.model.norm}\n"
        "def register(plugin):\n    plugin.add(REMOVABLE, 'same', Removal('same', 'x', same))\n",
        "removal 'same' changes nothing: every value is the baseline's",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_CONTRACTS))
def test_a_part_that_breaks_its_contract(plugin_site, capsys, case: str) -> None:
    code, says = BROKEN_CONTRACTS[case]
    plugin_site(f"broken-{case}", code)
    err = _exit_2_naming(["grid", "components"], f"broken-{case}", capsys)
    assert says in err, err
    assert not any(plugin_names(family) for family in ("block", "loss", "augmentation"))


def test_a_removal_that_changes_nothing_for_this_grids_baseline(
    plugin_site, tmp_path, capsys
) -> None:
    # Fine on the default baseline, a no-op on this grid's: refused by grid check.
    plugin_site(
        "norm-off",
        "from ablate.grid.components import REMOVABLE, Removal\n"
        "def off(recipe):\n    return {'model.norm': 'none'}\n"
        "def register(plugin):\n"
        "    plugin.add(REMOVABLE, 'normless', Removal('normless', 'x', off))\n",
    )
    grid = _grid(tmp_path, "model: {norm: none}", "remove: [normless]")
    assert cli.main(["grid", "check", grid]) == 2
    err = capsys.readouterr().err
    assert "ablations.remove[0] (line" in err and "removal 'normless' changes nothing" in err
    assert "plug-in 'norm-off' (entry point parts = norm_off:register)" in err


def test_a_reader_whose_data_breaks_the_contract(plugin_site, tmp_path, capsys) -> None:
    plugin_site(
        "bad-reader",
        "from ablate.data.source import READERS\n"
        "def read(root):\n    return {'images': []}\n"
        "def register(plugin):\n    plugin.add(READERS, 'folders', read)\n",
    )
    (tmp_path / "data").mkdir()
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"study: p\ndata: {{root: {tmp_path / 'data'}, reader: folders}}\n"
        "baseline: {train: {epochs: 1}}\n"
    )
    assert cli.main(["train", str(grid), "--seed", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "reader 'folders' of plug-in 'bad-reader'" in err
    assert "returned a dict, not a SegmentationData" in err
    assert not (tmp_path / "out").exists()


def test_the_configs_builtin_names_are_the_registries_builtins() -> None:
    # The config holds the built-in names torch-free; they must be what the registries hold.
    pairs = [
        (ARCH, ARCHS),
        (BLOCK, BLOCKS),
        (BOTTLENECK, BOTTLENECKS),
        (LOSS_NAMES, LOSSES),
        (AUGMENT_OP, AUGMENTATIONS),
        (READER, READERS),
    ]
    for names, registry in pairs:
        builtins = {name for name in registry.names() if registry.source(name) == "ablate"}
        assert builtins == set(names.builtins), registry.family
        assert registry.family == names.family
