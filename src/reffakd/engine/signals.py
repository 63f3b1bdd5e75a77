"""Stop cleanly on SIGINT or SIGTERM: finish the step, write the resume checkpoint, then raise.

Clusters send SIGTERM before killing a job and people press Ctrl-C; either way the run should be
resumable from where it stopped, not from the last epoch. torchrun may deliver the same signal
twice (the terminal and the agent), so a repeat within ``REPEAT_GRACE_S`` is ignored; a later one
aborts at once (the previous checkpoint stays intact: every write is atomic).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_GRACE_S = 2.0


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing its resume checkpoint.

    A ``KeyboardInterrupt`` so that nothing catching ``Exception`` swallows it; ``exit_code`` is the
    shell convention 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int, checkpoint: Path | None, where: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        saved = f"resume checkpoint {checkpoint}" if checkpoint is not None else "no resume checkpoint yet"
        super().__init__(f"interrupted by {name} {where}; {saved}")

    def __str__(self) -> str:
        return str(self.args[0])


class StopSignals:
    """While active, SIGINT/SIGTERM set ``signum`` instead of killing the process; the previous handlers
    come back on exit. Outside the main thread (where Python allows no handlers) it does nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self._first_at = signum, time.monotonic()
        elif time.monotonic() - self._first_at > REPEAT_GRACE_S:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping without a checkpoint")

    def __enter__(self) -> StopSignals:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
