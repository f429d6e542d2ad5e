"""Helpers shared by test modules (importable by name: pyproject's pytest `pythonpath`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent


def load_conftest(relative: str) -> ModuleType:
    """A conftest.py below tests/ as a plain module, for its builders and tables.

    Test modules cannot import a conftest by name under --import-mode=importlib. The module
    is registered in sys.modules (its dataclasses look their module up there) under a name
    made from its path, so loading it twice gives the same module.
    """
    name = "conftest_" + relative.removesuffix("/conftest.py").replace("/", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
