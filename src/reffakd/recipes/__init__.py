"""Recipes: the shipped comparison specs (the paper's settings, the CPU preset, the DKD CIFAR-100 protocol).

Each recipe is a YAML file of spec sections in the one grid syntax, its first comment line a
one-line description; ``reffakd compare --preset NAME`` starts from it, and the same file works as
``--spec``. They live only here, so a recipe is read the same way as a user's file.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from ..errors import ReffAKDError


def _files() -> dict[str, Any]:
    return {p.name[: -len(".yaml")]: p for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml")}


def recipe_names() -> list[str]:
    """Every shipped recipe, ``cpu`` first."""
    return sorted(_files(), key=lambda n: (n != "cpu", n))


def load_recipe(name: str) -> dict[str, Any]:
    """The recipe's spec sections (a mapping), read with ``yaml.safe_load``."""
    import yaml

    data = yaml.safe_load(_path(name).read_text(encoding="utf-8"))
    return dict(data or {})


def _path(name: str) -> Any:
    files = _files()
    if name not in files:
        raise ReffAKDError(f"unknown preset {name!r}; available: {', '.join(recipe_names())}", params=("preset",))
    return files[name]
