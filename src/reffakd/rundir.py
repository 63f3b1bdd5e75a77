"""Run folders appear whole or not at all, one process at a time, and nothing a user made is deleted.

Work happens in ``<name>.partial`` next to the requested folder, renamed onto it when the command
succeeds; an existing run folder is never overwritten. Every ``.partial`` that reffakd creates holds
a marker file (``MARKER``: which command, pid and time), and a lock file (``LOCK``) that its run holds
with ``flock`` for as long as it lives, so a second run on the same folder is refused, naming the
first one's pid. The lock goes with the process: a killed run leaves a ``.partial`` that is free.
A ``.partial`` without the marker is not reffakd's and is never deleted or written into.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ReffAKDError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

RESUME_FILE = "resume.safetensors"  # a training loop's resume checkpoint (engine.resume), in a run folder or below
MARKER = ".reffakd-partial"  # JSON: command, pid, time; written into every .partial reffakd creates
LOCK = ".lock"  # flock'ed for the life of a run; holds the holder's pid


def check_new_run_dir(path: str | os.PathLike[str], *, empty_ok: bool = False, param: str = "out") -> Path:
    """Refuse a run folder that exists (``empty_ok``: unless it is an empty folder, which the finished run replaces) or
    that could not be created (``check_writable``); ``param``: the parameter that named it, for the message."""
    path = Path(path)
    if path.exists():
        if empty_ok and is_empty_folder(path):
            check_writable(path)
            return path
        if empty_ok:
            held = ", ".join(sorted(e.name for e in path.iterdir())[:3]) if path.is_dir() else ""
            raise ReffAKDError(
                f"{param} {path} already exists and is not {'empty' if path.is_dir() else 'a folder'}"
                + (f" (it holds {held}{', ...' if len(list(path.iterdir())) > 3 else ''})" if held else "")
                + f"; reffakd never writes over it: give a new or an empty folder as {param}",
                params=(param,),
            )
        raise ReffAKDError(
            f"run folder {path} already exists; choose a new {param} (reffakd never overwrites a run)", params=(param,)
        )
    check_writable(path)
    return path


def is_empty_folder(path: Path) -> bool:
    """A real folder (not a link to one) with nothing in it."""
    try:
        return path.is_dir() and not path.is_symlink() and next(os.scandir(path), None) is None
    except OSError:
        return False


def staged_folder(path: Path) -> Path | None:
    """The run folder reffakd staged (``OUT.partial``, with its ``MARKER``) that ``path`` is or lies inside, if any."""
    for folder in (path, *path.parents):
        if (folder / MARKER).is_file():
            return folder
    return None


def held_here(staging: Path) -> bool:
    """Whether this process holds the lock of the staged folder ``staging`` (a ``staged_run_dir`` it is inside)."""
    if fcntl is None:  # pragma: no cover - not POSIX: no locks to tell by
        return True
    try:
        fd = os.open(staging / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted: no run holds it (an interrupted run's folder)
        return False
    except BlockingIOError:
        return _holder(fd) == f"pid {os.getpid()}"
    finally:
        os.close(fd)


def check_writable(path: Path, suffix: str = ".partial") -> None:
    """Refuse, before any work, an output path the run could not create or rename into place at its end: a link
    (a dangling one fails only at the final rename), a name too long once ``suffix`` is added, a parent that is a
    file, a folder that cannot be written."""
    if path.is_symlink():
        raise ReffAKDError(
            f"out {path} is a symbolic link (to {os.readlink(path)}); a run folder is created, never written through "
            "a link: choose a new out",
            params=("out",),
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ReffAKDError(f"out {path} cannot be created: {ancestor} is a file, not a folder", params=("out",))
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in (*path.relative_to(ancestor).parts[:-1], path.name + suffix):
        if len(os.fsencode(part)) > limit:
            raise ReffAKDError(
                f"out {path} cannot be created: the name {part[:40]}... is {len(os.fsencode(part))} bytes "
                f"(with {suffix!r} for the run in progress), over this file system's {limit}",
                params=("out",),
            )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ReffAKDError(
            f"out {path} cannot be created: folder {ancestor} is not writable (permission denied or read-only)",
            params=("out",),
        )


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _holder(fd: int) -> str:
    try:
        pid = json.loads(os.pread(fd, 4096, 0).decode() or "{}").get("pid")
    except (OSError, ValueError, AttributeError):
        pid = None
    return f"pid {pid}" if pid else "another process"


def acquire_lock(lock: Path, what: str) -> int | None:
    """An exclusive ``flock`` on ``lock`` (created if absent) with this process's pid in it, or one error line
    naming the holder's pid when another process holds it. ``None`` where there is no ``flock`` (not POSIX)."""
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ReffAKDError(
            f"{what} is in use by another reffakd run ({holder}, lock {lock}); "
            "wait for it to end or choose another out",
            params=("out",),
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid()}).encode(), 0)
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def check_free(lock: Path, what: str) -> None:
    """One error line if another process holds ``lock``; nothing is created."""
    if lock.is_file():
        release_lock(acquire_lock(lock, what))


@contextlib.contextmanager
def locked(lock: Path, what: str) -> Iterator[None]:
    """Hold ``lock`` for the block (released on exceptions and signals too: it goes with the descriptor)."""
    fd = acquire_lock(lock, what)
    try:
        yield
    finally:
        release_lock(fd)


def check_partial(
    staging: Path, *, resume: bool = False, redo: bool = False, held: bool = False, kind: str | None = None,
    resumable: bool = True,
) -> None:  # fmt: skip
    """Refuse, in one line, an existing ``staging`` folder that this run may not take: one in use by another
    run, one reffakd did not make (no ``MARKER``; never deleted), an unfinished run that neither ``resume``
    (continue it) nor ``redo`` (the caller's own attempt, done again: a comparison's runs) lets it take, or one that
    another kind of command started (``kind``: this one's, e.g. ``run``; a ``softlabels`` folder is no ``run``).
    ``held``: this process holds the lock already; ``resumable``: the command has no resume (``export``), so any
    existing folder, another command's (an interrupted ``train`` with its resume checkpoint) or another run's, is
    refused whatever its marker says."""
    if not staging.exists():
        return
    if not held:
        check_free(staging / LOCK, str(staging))
    made = _marker_kind(staging)
    if not resumable:
        what = f"an unfinished `reffakd {made}`" if made else "a folder of another run"
        raise ReffAKDError(
            f"{staging} holds {what}, which is never removed or reused; continue or remove it yourself, or choose "
            "another out",
            params=("out",),
        )
    if kind is not None and made is not None and made != kind:
        raise ReffAKDError(
            f"{staging} holds an unfinished `reffakd {made}`, which `reffakd {kind}` cannot continue; continue it with "
            f"`reffakd {made} ... --resume`, or choose another out",
            params=("out",),
        )
    if resume:
        return
    if not (staging / MARKER).is_file():
        raise ReffAKDError(
            f"{staging} exists and was not made by this version of reffakd (no {MARKER} in it), so it is never "
            "deleted: move it away yourself or choose another out",
            params=("out",),
        )
    if not redo:
        raise ReffAKDError(
            f"{staging} holds an unfinished run; add resume to continue it, or remove {staging} to start over",
            params=("resume",),
        )


def _write_marker(staging: Path, kind: str | None = None) -> None:
    command = Path(sys.argv[0]).name + (f" {sys.argv[1]}" if len(sys.argv) > 1 else "")
    marker = {"made_by": "reffakd", "command": command, "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if kind is not None:  # which command's run this is: only that command continues it
        marker["kind"] = kind
    (staging / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")


def _marker_kind(staging: Path) -> str | None:
    """The kind of run ``staging``'s marker records (None: none recorded, or no readable marker)."""
    try:
        kind = json.loads((staging / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _clear(staging: Path) -> None:
    """Empty ``staging`` but its lock file (held by this run)."""
    for entry in staging.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _take(staging: Path, resume: bool, redo: bool, kind: str | None = None, resumable: bool = True) -> int | None:
    """Create or take ``staging`` for this run: lock it, then check it under the lock; returns the lock."""
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.mkdir()
        fresh = True
    except FileExistsError:
        fresh = False
        # a folder not ours gets no lock file either
        check_partial(staging, resume=resume, redo=redo, kind=kind, resumable=resumable)
    fd = acquire_lock(staging / LOCK, str(staging))
    try:
        if not fresh:
            # again, under the lock
            check_partial(staging, resume=resume, redo=redo, held=True, kind=kind, resumable=resumable)
            if not resume:
                _clear(staging)
        _write_marker(staging, kind)
    except BaseException:
        release_lock(fd)
        raise
    return fd


def _renameat2() -> Any:
    """glibc's ``renameat2`` (Linux 3.15+, glibc 2.28+), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def rename_no_replace(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` onto ``final`` only if nothing is there: a folder that appeared while the run
    worked is never replaced (``os.replace`` would replace an empty one). Atomic with ``RENAME_NOREPLACE`` where the
    system has it; elsewhere checked just before the rename."""
    import ctypes
    import errno

    renameat2 = _renameat2()
    taken = ReffAKDError(
        f"run folder {final} appeared while this run worked and is never overwritten; the finished run is in "
        f"{staging}: move it where you want it",
        params=("out",),
    )
    if renameat2 is not None:
        at_fdcwd, noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(staging), at_fdcwd, os.fsencode(final), noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise taken
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL/ENOSYS: this file system or kernel lacks the flag
            raise OSError(err, os.strerror(err), str(final))
    if os.path.lexists(final):
        raise taken
    os.rename(staging, final)


def resumable(staging: Path) -> bool:
    """Whether a staged folder holds a resume checkpoint (its own, or a stage's below it) to continue from."""
    return any(p.name == RESUME_FILE for p in staging.rglob(RESUME_FILE))


def _discard_unresumable(staging: Path) -> None:
    """A run that failed before any resume checkpoint (a full disk, a closed pipe, an error in its first epoch) leaves
    nothing half-written: its folder held only its config and log, and ``--resume`` would have nothing to continue
    from, so the same command is what runs it again. One with a checkpoint is kept, for ``--resume``."""
    with contextlib.suppress(OSError):
        if not resumable(staging):
            shutil.rmtree(staging)


@contextlib.contextmanager
def staged_run_dir(
    path: str | os.PathLike[str],
    *,
    resume: bool = False,
    main: bool = True,
    redo: bool = False,
    kind: str | None = None,
    resumable: bool = True,
    discard: bool = False,
    empty_ok: bool = False,
    param: str = "out",
) -> Iterator[Path]:
    """Yield ``<path>.partial`` to write into, locked for this run; rename it to ``path`` only if the block succeeds.

    A failed run leaves its ``.partial`` folder for ``resume``, which continues from the resume checkpoint inside it
    (one that failed before its first checkpoint is removed: ``_discard_unresumable``); without ``resume`` an
    existing one is refused (see ``check_partial``), unless ``redo``: a comparison redoes its own interrupted runs.
    Under torchrun only the main process (``main``) creates, locks and renames the folder; the others write nothing,
    so they are handed the same path. ``kind``: the command whose run this is (recorded; another command's unfinished
    run is refused). ``resumable=False``: any existing ``.partial`` is refused (``check_partial``); ``discard``: a
    failed block removes the folder it made (a command with nothing to resume, ``export``, leaves nothing
    half-written). ``empty_ok``: ``path`` may be an empty folder, replaced by the finished run (``param`` names
    ``path`` in the messages).
    """
    final = check_new_run_dir(path, empty_ok=empty_ok, param=param)
    staging = partial_path(final)
    if not main:
        yield staging
        return
    fd = _take(staging, resume, redo, kind, resumable)
    try:
        try:
            yield staging
        except BaseException:
            if discard:
                shutil.rmtree(staging, ignore_errors=True)
            else:
                _discard_unresumable(staging)
            raise
        if empty_ok and is_empty_folder(final):
            with contextlib.suppress(OSError):  # not empty any more: rename_no_replace refuses to replace it
                final.rmdir()
        rename_no_replace(staging, final)
        for name in (MARKER, LOCK):  # still locked: a run starting now finds the folder finished
            (final / name).unlink(missing_ok=True)
    finally:
        release_lock(fd)
