"""Atomic file writes and JSON helpers.

Every file reffakd writes goes through a temporary file in the same folder and ``os.replace``,
so an interrupted run never leaves a half-written artifact where a good one is expected.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ReffAKDError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # The mode a plainly created file gets, set after the writer: mkstemp's 0600, or a writer that replaces the
        # file with its own (safetensors writes a temporary file of its own, mode 0600), would make it private.
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_new(path: str | os.PathLike[str], writer: Callable[[Path], None], what: str) -> None:
    """Write a file that must be new: ``writer(tmp)``, then ``tmp`` hard-linked to ``path``, which fails if anything
    is there at that moment (a check before writing would let a file created meanwhile be replaced). Where the file
    system has no hard links, ``path`` is reserved with ``O_EXCL`` and the finished file renamed over the reservation.
    ``what``: the option that named it (``csv``), for the one-line refusal."""
    path = Path(path)
    taken = ReffAKDError(f"{what} {path} already exists; choose a new path (reffakd never overwrites it)",
                         params=(what,))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        try:
            os.link(tmp_path, path)
        except FileExistsError:
            raise taken from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:  # no hard links here: reserve the name, then move the finished file onto our own reservation
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                raise taken from None
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_new(path: str | os.PathLike[str], text: str, what: str) -> None:
    """``text`` to the new file ``path`` (``write_new``)."""
    write_new(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def write_json_new(path: str | os.PathLike[str], obj: Any, what: str) -> None:
    write_text_new(path, strict_json(obj, indent=2) + "\n", what)


def current_umask() -> int:
    """The process's umask (read by setting it, so set back at once): the mode a plainly created file gets."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8; a name the locale could not decode (``LC_ALL=C``: ``--out`` with an é) is written as its own bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


ESCAPE = "reffakd.escape"  # the error handler of the standard streams (``usable_streams``)


def _escape(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Text the stream's encoding cannot hold: a file name's undecodable bytes as those bytes (what ``ls`` shows),
    anything else as a backslash escape; never an error."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    if all(0xDC80 <= ord(ch) <= 0xDCFF for ch in chunk):
        return bytes(ord(ch) - 0xDC00 for ch in chunk), exc.end
    return codecs.backslashreplace_errors(exc)


codecs.register_error(ESCAPE, _escape)


class SafeStream:
    """A standard stream whose reader may be gone (``| head -1``, a closed terminal): the first write or flush that
    finds the pipe broken makes it a sink, its descriptor moved onto ``os.devnull`` (so the interpreter's last flush
    is quiet too). Logging and progress bars never stop a run; ``log.txt`` keeps every line."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _gone(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        self._stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the process's stream from now on

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF, errno.EIO):
                raise
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF, errno.EIO):
                raise
            self._gone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def usable_streams() -> None:
    """Standard streams that a command can always write to, called first by the command line: a descriptor closed
    at the start (``2>&-``) is opened on ``os.devnull`` (so no file the run opens takes descriptor 2, where a library
    writing to stderr would write into it) and gets a stream; text the locale cannot encode (``LC_ALL=C``) is escaped
    (``ESCAPE``), never an error; a broken pipe makes the stream a sink (``SafeStream``)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if isinstance(stream, SafeStream):
            continue
        if stream is None:
            stream = open(fd, "w", encoding="utf-8", errors=ESCAPE, closefd=False)  # noqa: SIM115
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors=ESCAPE)
        setattr(sys, name, SafeStream(stream))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, strict_json(obj, indent=2) + "\n")


def strict_json(obj: Any, **kwargs: Any) -> str:
    """JSON that strict parsers accept: a non-finite float (NaN, inf: not JSON) is written as null."""
    return json.dumps(_finite(obj), allow_nan=False, default=lambda o: _finite(_json_default(o)), **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def sidecar_json(path: Path) -> Path:
    """The JSON file kept beside a .safetensors file (``x.safetensors`` -> ``x.json``)."""
    return path.with_suffix(".json")


def read_safetensors(path: Path, what: str, made_by: str) -> dict[str, Any]:
    """Tensors of a safetensors file, or one clear error: the format cannot run code when loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ReffAKDError(f"{what} {path} does not exist; expected a .safetensors file written by {made_by}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ReffAKDError(
            f"{what} {path} is unreadable ({exc}); expected a safetensors file written by {made_by}"
        ) from None


def read_json(path: str | os.PathLike[str], what: str, made_by: str) -> Any:
    """The parsed JSON in ``path``, or one clear error naming the file, the reason and what writes it.

    ``what`` names the file for a user (``checkpoint metadata``), ``made_by`` what writes it
    (```reffakd train``` beside the weights).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, RecursionError):  # json recurses once per level: [[[[...]]]] 100,000 deep
            reason = "nested too deeply"
        raise ReffAKDError(f"{what} {path} is missing or malformed ({reason}); it is written by {made_by}") from None


class JsonlWriter:
    """Append-only JSON lines log; each line is flushed so a crash loses at most the line in flight."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(strict_json(record) + "\n")
            f.flush()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
