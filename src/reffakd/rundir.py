"""Run folders appear whole or not at all.

Work happens in ``<name>.partial`` next to the requested folder, renamed onto it when the command
succeeds; an existing run folder is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import ReffAKDError


def check_new_run_dir(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.exists():
        raise ReffAKDError(
            f"run folder {path} already exists; choose a new out (reffakd never overwrites a run)", params=("out",)
        )
    return path


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def staged_run_dir(path: str | os.PathLike[str], *, resume: bool = False, main: bool = True) -> Iterator[Path]:
    """Yield ``<path>.partial`` to write into; rename it to ``path`` only if the block succeeds.

    A failed run leaves its ``.partial`` folder for inspection; the next run with the same name
    replaces it, unless ``resume`` asks to continue from the resume checkpoint inside it. Under
    torchrun only the main process (``main``) creates and renames the folder; the others write
    nothing, so they are handed the same path.
    """
    final = check_new_run_dir(path)
    staging = partial_path(final)
    if main:
        if staging.exists() and not resume:
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
    yield staging
    if main:
        os.replace(staging, final)
