"""A package's names imported from their modules on first use (PEP 562), so that importing the package, or one of
its light modules (a configuration dataclass), imports no torch: the command line's parser, help and argument errors
need the configuration's names, not the training code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def exports(package: str, modules: dict[str, str], first: str | None = None) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and ``__getattr__`` of ``package`` from ``{module: "Name other_name"}``; ``first``: a module
    imported before any name is read (``distillers``: the one whose import registers the methods)."""
    home = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if first is not None:
            importlib.import_module(f"{package}.{first}")
        value = getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return sorted(home), __getattr__
