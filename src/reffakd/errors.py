"""The one exception type for mistakes a user can fix.

The CLI prints a ``ReffAKDError`` as a single line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


class ReffAKDError(Exception):
    """A user-facing error: the message names the bad value and what is allowed."""
