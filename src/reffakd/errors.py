"""The one exception type for mistakes a user can fix.

The CLI prints a ``ReffAKDError`` as a single line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback. The library names its own parameters
(``val_size 0 is out of range``); ``params`` lists those the message names, so the command line
can show each as the flag a user typed (``--val-size 0 is out of range``).
"""

from __future__ import annotations


class ReffAKDError(Exception):
    """A user-facing error: the message names the bad value and what is allowed."""

    def __init__(self, message: str, *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = params


def require_extra(extra: str, modules: tuple[str, ...], purpose: str) -> None:
    """One line naming the optional extra to install when a feature's packages are absent (checked, not imported)."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ReffAKDError(
            f"{purpose} needs the package{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
            f"pip install 'reffakd[{extra}]'"
        )
