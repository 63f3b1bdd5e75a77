"""What the runs of a comparison share, each made once into its own folder: the soft labels, the teacher, and the
semi-supervised methods' soft labels (their autoencoder also trained on the images a labelled budget withholds).

A given ``soft_labels: {path}`` or ``teacher: {checkpoint}`` is loaded instead of made. With ``--jobs`` on an
accelerator, the ones still to make are made at once in worker processes (``pool``), then loaded in the parent.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import torch

from .data import load_splits
from .engine import TrainOptions
from .pipeline import StudentConfig, check_soft_labels_fit, train_student
from .pool import quiet_worker, run_in_workers, until_stopped, worker_devices, worker_threads
from .runner import Comparison, Shared, staged
from .softlabels import SOFT_LABELS_FILE, SoftLabels, build_soft_labels
from .sources import TeacherNetwork, load_teacher
from .spec import NetworkSpec, RunSpec, TeacherCheckpoint

SOFT, TEACHER, SEMI = "soft labels", "teacher", "semi-supervised soft labels"
# Each one's folder; they are independent of one another: with --jobs they may be made at once.
FOLDERS = {SOFT: "softlabels", TEACHER: "teacher", SEMI: "softlabels-semi"}


def shared_inputs(cmp: Comparison, jobs: int = 1, pending: Collection[str] | None = None) -> Shared:
    """Each input of the comparison, made if missing. ``pending``: the methods with a trial or run still to train
    (``None``: every method); an input none of them needs is neither made nor loaded, so that resuming a finished
    comparison (or a study's finished budget) does not train its teacher again. With ``jobs > 1``, made at once
    (the autoencoder and the teacher otherwise queue up on the GPU before the students: GPU.md)."""
    if pending is not None:
        cmp = replace(cmp, spec=replace(cmp.spec, methods=[m for m in cmp.spec.methods if m in pending]))
    todo = [kind for kind in FOLDERS if _to_make(cmp.spec, cmp.out, kind)]
    if jobs > 1 and len(todo) > 1 and _concurrent_prerequisites(cmp.options.device):
        _make_parallel(cmp, todo, jobs)
    return Shared(_soft_labels(cmp, SOFT), _teacher(cmp), _soft_labels(cmp, SEMI))


def _concurrent_prerequisites(device: torch.device) -> bool:
    """Whether to make the prerequisites at once: not on a CPU, where the workers would split its threads and the
    longest one (a teacher on every labelled image, for one) would run on fewer threads for all of its time."""
    return device.type != "cpu"


def _to_make(spec: RunSpec, out: Path, kind: str) -> bool:
    """Whether the comparison needs ``kind`` (one of ``FOLDERS``) made, not given, and its folder does not hold it."""
    if kind == TEACHER:
        needed = bool(spec.teacher_methods()) and isinstance(spec.teacher, NetworkSpec)
    else:
        needed = bool(spec.soft_label_methods(semi=kind == SEMI)) and spec.soft_labels.path is None
    made = out / FOLDERS[kind] / ("summary.json" if kind == TEACHER else SOFT_LABELS_FILE)
    return needed and not made.is_file()


def _soft_labels(cmp: Comparison, kind: str) -> SoftLabels | None:
    """The comparison's soft labels (``SOFT``), or the semi-supervised methods' (``SEMI``: their autoencoder also
    trained on the images a labelled budget withholds), each built once into its folder."""
    spec, splits, semi = cmp.spec, cmp.splits, kind == SEMI
    if not spec.soft_label_methods(semi=semi):
        return None
    folder = cmp.out / FOLDERS[kind]
    if _to_make(spec, cmp.out, kind):
        cfg = replace(spec.soft_label_config(), budget_unlabelled=True) if semi else spec.soft_label_config()
        with staged(cmp, folder) as (tmp, options):
            build_soft_labels(splits, cfg, tmp, options)
    given = spec.soft_labels.path
    soft = SoftLabels.load(Path(given) if given is not None else folder / SOFT_LABELS_FILE)
    check_soft_labels_fit(soft, splits)
    return soft


def _teacher(cmp: Comparison) -> TeacherNetwork | None:
    spec, splits, device = cmp.spec, cmp.splits, cmp.options.device
    if not spec.teacher_methods():
        return None
    if isinstance(spec.teacher, TeacherCheckpoint):
        return load_teacher(spec.teacher.checkpoint, splits, device)
    folder = cmp.out / FOLDERS[TEACHER]
    if _to_make(spec, cmp.out, TEACHER):
        cfg = StudentConfig("ce", spec.teacher.model, spec.teacher.optim, seed=spec.teacher.seed)
        with staged(cmp, folder) as (tmp, options):
            train_student(splits, cfg, tmp, options, summary={"name": "teacher"})
    return load_teacher(folder / "best.safetensors", splits, device)


def _make_parallel(cmp: Comparison, kinds: list[str], jobs: int) -> None:
    """Each of ``kinds`` made in its own spawned worker, ``jobs`` at a time, with its share of the CPU threads (its
    own GPU when several are visible); an error in one stops the others, whose folders stay ``.partial``."""
    jobs = min(jobs, len(kinds))
    threads = worker_threads(jobs)
    devices = worker_devices(cmp.options.device, len(kinds))
    cmp.options.log(f"jobs: {', '.join(kinds)} made at once in {jobs} worker processes, {threads} CPU thread(s) each")
    tasks = [(_make_in_worker, (kind, cmp.spec, str(cmp.out), devices[k])) for k, kind in enumerate(kinds)]
    run_in_workers(jobs, quiet_worker, (threads,), [tasks], lambda: None)


def _make_in_worker(kind: str, spec: RunSpec, out: str, device: str) -> None:
    log = lambda line: print(f"[{kind}] {line}", flush=True)  # noqa: E731
    splits = load_splits(spec.data, lambda line: None)
    cmp = Comparison(spec, Path(out), splits, TrainOptions(torch.device(device), progress=False, log=log))
    until_stopped(lambda: _teacher(cmp) if kind == TEACHER else _soft_labels(cmp, kind))
