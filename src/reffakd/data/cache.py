"""The cache folder: decompressed dataset copies, downloads and decoded image caches live here, never in the data."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$REFFAKD_CACHE`` or ``~/.cache/reffakd``."""
    return Path(os.environ.get("REFFAKD_CACHE", Path.home() / ".cache" / "reffakd"))
