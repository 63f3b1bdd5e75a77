"""Spawned worker processes that train or make one thing each, and stop cleanly: a comparison's ``--jobs``.

Workers are spawned (fork is unsafe once torch has started threads), each with its share of the CPU threads or
its own GPU when several are visible. The parent alone stops them (``run_in_workers``): on Ctrl-C, SIGTERM or any error
their unfinished runs stay ``.partial`` folders with resume checkpoints, which the next invocation continues.
A parent killed outright cannot stop them: each worker then stops itself (``_end_with_parent``). What a worker
does is the caller's (``compare``: runs; ``shared_inputs``: the teacher and the soft labels).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from .reports.plots import plots_enabled, set_plots_enabled

# This worker process's state: set by the initializer, read by its tasks (``compare``'s runs).
WORKER: dict[str, Any] = {}


def worker_devices(device: torch.device, jobs: int) -> list[str]:
    """One device per worker: each its own GPU, round robin, when several are visible and none was named."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [f"cuda:{k % torch.cuda.device_count()}" for k in range(jobs)]
    return [str(device)] * jobs


def worker_threads(jobs: int) -> int:
    """Each worker's share of the CPU threads."""
    return max(1, torch.get_num_threads() // jobs)


def run_in_workers(
    jobs: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    phases: list[list[tuple[Callable[..., None], tuple[Any, ...]]]],
    after_each: Callable[[], object],
) -> None:
    """Each phase's tasks in ``jobs`` spawned workers, a phase once the one before has ended, calling ``after_each`` as
    each task ends; ``initializer(*initargs, stopping, plots)`` runs once in each worker (``stopping``: the workers'
    stop event; ``plots``: the parent's ``--no-plots``). A worker's error is raised here, and any error or signal
    stops the workers first (``_stop``)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    stopping = ctx.Event()
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=initializer,
                               initargs=(*initargs, stopping, plots_enabled()))  # fmt: skip
    pending: set[Any] = set()
    try:
        for tasks in phases:
            pending = {pool.submit(fn, *args) for fn, args in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # re-raises a worker's error here
                    after_each()
    except BaseException:
        _stop(pool, stopping, pending)
        raise
    pool.shutdown()


def _stop(pool: Any, stopping: Any, running: set[Any], grace: float = 60.0) -> None:
    """Stop the workers so that they end normally: ``stopping`` keeps them from starting another task
    (``until_stopped``), SIGTERM makes one inside a run write its resume checkpoint and stop (outside a run they
    ignore it: ``quiet_worker``), and the pool shuts down; a worker still there after ``grace`` seconds is killed."""
    from concurrent.futures import wait

    stopping.set()
    processes = [p for p in (getattr(pool, "_processes", None) or {}).values() if p.is_alive()]
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    wait(running, timeout=grace)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True)


def quiet_worker(threads: int, stopping: Any = None, plots: bool = True) -> None:
    """A worker's signals, threads, stop event and the parent's ``--no-plots``: the parent stops it (``_stop``), so
    SIGINT and SIGTERM are ignored except inside a run, where training turns them into a resume checkpoint and a
    stop."""
    import signal

    set_plots_enabled(plots)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)
    WORKER["stopping"] = stopping
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()


def _end_with_parent(parent: int, poll: float = 1.0, grace: float = 120.0) -> None:
    """A worker's watch on its parent: a parent killed outright (SIGKILL) cannot stop its workers, so each worker
    stops itself when it is gone: SIGTERM to itself (inside a run: the resume checkpoint, then the run stops), then
    it exits once no run is under way (at the latest after ``grace`` seconds), releasing its run folder's lock."""
    import signal

    while os.getppid() == parent:
        time.sleep(poll)
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while WORKER.get("busy") and time.monotonic() < deadline:
        time.sleep(poll / 10)
    os._exit(1)


def until_stopped(work: Callable[[], object]) -> None:
    """Run a worker's task, unless the comparison is stopping (a task queued behind a stopped one, or picked up by a
    worker that was still starting when the parent's SIGTERM came). The stop reaches the parent as a plain
    ``KeyboardInterrupt`` carrying the run's message (a ``TrainingInterrupted`` does not unpickle)."""
    stopping = WORKER.get("stopping")
    if WORKER.get("stopped") or (stopping is not None and stopping.is_set()):
        raise KeyboardInterrupt("not started: the comparison is stopping")
    WORKER["busy"] = True
    try:
        work()
    except KeyboardInterrupt as exc:
        WORKER["stopped"] = True
        raise KeyboardInterrupt(str(exc)) from None
    finally:
        WORKER["busy"] = False
