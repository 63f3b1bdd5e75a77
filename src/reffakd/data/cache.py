"""The cache folder: decompressed dataset copies, downloads and decoded image caches live here, never in the data.

Also the check of a folder a user names (``data_dir``, ``test_dir``): it is used or refused, never replaced by
another source.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ReffAKDError


def default_cache_dir() -> Path:
    """``$REFFAKD_CACHE`` or ``~/.cache/reffakd``."""
    return Path(os.environ.get("REFFAKD_CACHE", Path.home() / ".cache" / "reffakd"))


def given_folder(path: str | os.PathLike[str], param: str, *, file_ok: bool = False) -> Path:
    """``path`` as a readable folder (or, with ``file_ok``, a file such as an archive), else one error line naming
    ``param``: an explicit data folder that is not there is a mistake, not a reason to read data from elsewhere."""
    p = Path(path)
    if file_ok and p.is_file():
        return p
    if not p.exists():
        raise ReffAKDError(
            f"{param} {path} is not a folder: it does not exist; give the folder that holds the data", params=(param,)
        )
    if not p.is_dir():
        raise ReffAKDError(
            f"{param} {path} is not a folder: it is a file; give the folder that holds the data", params=(param,)
        )
    if not os.access(p, os.R_OK | os.X_OK):
        raise ReffAKDError(f"{param} {path} is not a readable folder (permission denied)", params=(param,))
    return p
