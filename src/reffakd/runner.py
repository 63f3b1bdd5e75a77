"""The runner: one run of a spec becomes a trained student, for ``train``, ``run``, ``compare`` and ``sweep``.

``run_one`` is the one place a spec's run reaches ``pipeline.train_student``, with what the runs share (``Shared``:
the soft labels, the teacher) as the method's source kind says. ``train_item`` is one run of a comparison, staged
in its own folder so it appears whole or not at all, and continued from its resume checkpoint when interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .data import DataSplits
from .distillers import get_method
from .engine import RESUME_FILE, TrainOptions
from .pipeline import train_student
from .rundir import MARKER, partial_path, staged_run_dir
from .softlabels import SoftLabels
from .sources import TeacherNetwork, load_teacher
from .spec import RunItem, RunSpec
from .tuning import item_path


@dataclass
class Shared:
    """What the runs of a spec share: one soft-label artifact (carrying its cost), one teacher network, and the
    semi-supervised methods' artifact (its autoencoder also trained on unlabelled images)."""

    soft: SoftLabels | None
    teacher: TeacherNetwork | None
    soft_semi: SoftLabels | None = None

    def soft_for(self, method: str) -> SoftLabels | None:
        """The artifact ``method`` trains against (``None`` for a method without soft labels)."""
        kind = get_method(method).source
        if kind.input != "soft_labels":
            return None
        return self.soft_semi if kind.semi else self.soft


@dataclass
class Comparison:
    """A comparison being run: its spec, its folder, its data, and how its runs train (``options``: the device,
    progress and log; the spec's speed options replace its own, and each run resumes when it can)."""

    spec: RunSpec
    out: Path
    splits: DataSplits
    options: TrainOptions


def run_one(
    spec: RunSpec,
    item: RunItem,
    run_dir: Path,
    splits: DataSplits,
    shared: Shared,
    options: TrainOptions,
    name: str | None = None,
) -> dict[str, Any]:
    """Train one run of a spec into ``run_dir`` (staged by the caller), as ``options`` say (built by the command,
    with the spec's speed options)."""
    teacher = shared.teacher if get_method(item.method).needs == "teacher" else None
    if teacher is not None:
        teacher.seconds = 0.0  # each run counts its own teacher forward passes
    # The report groups runs by variant and selects among a method's variants; a tuned run records its setting.
    summary: dict[str, Any] = {"name": name or item.method}
    if item.is_grid:
        summary |= {"variant": item.variant, "grid": item.params}
    elif item.point:
        summary["tuned"] = item.params
    if item.stage == "tuning":  # a tuning trial never sees the test split (``tuning.py``)
        splits = replace(splits, test=None)
        summary["trial"] = True
    return train_student(
        splits,
        spec.student_config(item.method, item.seed, point=item.params),
        run_dir,
        options,
        soft_labels=shared.soft_for(item.method),
        teacher=teacher,
        summary=summary,
    )


def train_item(cmp: Comparison, item: RunItem, shared: Shared) -> None:
    """Train one run of a comparison into its folder; a method whose teacher is another run of its seed (tfkd-self)
    gets that run's student."""
    run = get_method(item.method).source.same_seed_run
    if run is not None:
        best = item_path(cmp.out, RunItem(run, run, item.seed)) / "best.safetensors"
        shared = Shared(shared.soft, load_teacher(best, cmp.splits, cmp.options.device), shared.soft_semi)
    with staged(cmp, item_path(cmp.out, item)) as (tmp, options):
        run_one(cmp.spec, item, tmp, cmp.splits, shared, options, name=f"{item.variant}-s{item.seed}")


@contextmanager
def staged(cmp: Comparison, folder: Path) -> Iterator[tuple[Path, TrainOptions]]:
    """A comparison's ``folder`` (a run, its soft labels, its teacher) staged to appear whole or not at all, with the
    options to train in it: continued from its resume checkpoint when its ``.partial`` is an interrupted run of
    reffakd's (the spec is the same: ``compare.check_resumable``; the run's own identity check refuses a checkpoint
    of anything else)."""
    staging = partial_path(folder)
    resume = (staging / MARKER).is_file() and any(staging.rglob(RESUME_FILE))
    with staged_run_dir(folder, redo=True, resume=resume) as tmp:
        yield tmp, replace(cmp.options, speed=cmp.spec.speed, resume=resume)
