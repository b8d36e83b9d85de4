"""The curated public surface is exactly what the README and docstrings promise."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import mgsim

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_exist_and_are_sorted() -> None:
    for name in mgsim.__all__:
        assert hasattr(mgsim, name), name
    assert mgsim.__all__ == sorted(mgsim.__all__, key=lambda n: (n.startswith("_"), n))


def test_readme_imports_only_public_names() -> None:
    readme = (ROOT / "README.md").read_text()
    for names in re.findall(r"^from mgsim import (.+)$", readme, flags=re.M):
        for name in names.split(","):
            assert name.strip() in mgsim.__all__, name


MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mgsim.__path__, "mgsim.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
