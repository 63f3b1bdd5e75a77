"""``reffakd compare``: methods x seeds from one spec, resumable, one table of accuracy and cost.

One teacher and one soft-label artifact serve every run; a method whose source kind is "a run of
the same seed" (tfkd-self: the CE student; Tf-KD trains the student once, then distils it into a
fresh copy) runs after that run. Each run is written whole or not at all
(``rundir.staged_run_dir``), so a killed comparison resumes by skipping the runs whose folders exist.

An optional ``grid`` runs chosen methods once per combination of values of any method parameter
or student optimiser key, each combination a *variant* (``reffakd[alpha=0.5,lr=0.05]``, folder
``runs/reffakd_alpha0.5_lr0.05/seed<k>``); the report picks one variant per method by its mean
validation top-1, never by test accuracy. ``reffakd sweep`` is this with a required grid and its
own table.

``jobs > 1`` trains that many runs at once in spawned worker processes (each with its share of the
CPU threads, or its own GPU when several are visible); the teacher and the soft labels are made
once beforehand (on a GPU, at once in workers when more than one is to be made), and only the parent writes
reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .data import DataSplits
from .distillers import baseline_method, cost_reference_method, get_method, method_names, network_sourced_methods
from .engine import TrainOptions
from .errors import ReffAKDError
from .io import read_json, read_jsonl, write_json, write_text_atomic
from .pipeline import StudentConfig, check_cuda_graph, stand_in_inputs, train_student, trains_per_image
from .reports import plot_training_curves, summary_table
from .reports.compare_report import write_compare_report
from .reports.plots import plots_enabled, set_plots_enabled
from .rundir import LOCK, locked, staged_run_dir
from .softlabels import SOFT_LABELS_FILE, SoftLabels, build_soft_labels
from .sources import TeacherNetwork, load_teacher
from .spec import RunItem, RunSpec
from .tuning import choose, item_path, write_tuning_report

SPEC_FILE = "spec.json"
CONFIG_FILE = "config.yaml"  # the command line's resolved config (reffakd.cli.config_text)
# Keys that may change between invocations on the same folder: adding methods or seeds resumes and extends.
GROWABLE = ("methods", "seeds")


def _without_unset(value: Any) -> Any:
    """A section with its ``None`` ("unset") entries dropped: a folder started before a new option existed resumes."""
    if isinstance(value, dict):
        return {k: _without_unset(v) for k, v in value.items() if v is not None}
    return value


def check_resumable(out: Path, spec: RunSpec) -> None:
    """A folder started with one spec continues only with the same spec (methods and seeds may grow)."""
    saved_path = out / SPEC_FILE
    if not saved_path.is_file():
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
            raise ReffAKDError(
                f"{out} exists and is not a comparison folder (no {SPEC_FILE}); choose a new out", params=("out",)
            )
        return
    saved = read_json(saved_path, "comparison spec", "`reffakd compare`")
    now = json.loads(json.dumps(spec.to_dict()))
    for key in now:
        if key not in GROWABLE and _without_unset(saved.get(key)) != _without_unset(now[key]):
            raise ReffAKDError(
                f"{out} was started with another {key!r} ({json.dumps(saved.get(key))[:120]}); "
                "resume with the same settings (only methods and seeds may change) or choose a new out",
                params=("out",),
            )


def check_speed(spec: RunSpec, splits: DataSplits, device: torch.device) -> None:
    """The spec's speed options on ``device``, and with cuda_graph, that every method of the spec (each tuning point
    and final setting) records its step: refused in one line before the soft labels or the teacher are made, the
    methods built around stand-ins for them (``pipeline.stand_in_inputs``)."""
    speed = spec.speed_options()
    speed.validate(device)
    if not speed.cuda_graph:
        return
    items = {(i.method, i.point): i for i in [*spec.tuning_items(), *spec.run_items()]}  # one per setting
    soft, teacher = stand_in_inputs(splits, any(map(trains_per_image, spec.method_order())))
    for item in items.values():
        instead = f"leave {item.method} out of the methods, or compare without cuda_graph"
        check_cuda_graph(spec.student_config(item.method, item.seed, point=item.params), splits, soft, teacher, instead)


def compare_report(out: Path, final: bool = True) -> str:
    """``results.md``, ``results.csv`` and, when ``final``, ``accuracy_vs_cost.png``: `reffakd compare`'s report.

    The tables are rewritten after every run, so a stopped comparison shows what has finished; the plot,
    which costs about a second, is drawn once all runs are done.
    """
    return write_compare_report(out, method_names(), final, baseline_method(), cost_reference_method(),
                                network_sourced_methods())  # fmt: skip


def run_compare(
    spec: RunSpec,
    out: str | Path,
    splits: DataSplits,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    report: Callable[[Path, bool], str] = compare_report,
    config_yaml: str | None = None,
) -> str:
    """Run what is missing, then (re)write the ``report`` (by default compare's); returns its Markdown.

    ``jobs > 1`` trains that many runs at once in worker processes, which load the data again from
    ``spec.data`` (``splits`` serves the shared teacher and soft labels). ``config_yaml``, the
    command line's resolved config, is saved as ``config.yaml`` beside ``spec.json``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ReffAKDError(f"jobs {jobs} is out of range: it must be at least 1", params=("jobs",))
    out = Path(out)
    check_speed(spec, splits, device)
    check_resumable(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"comparison folder {out}"):  # the parent alone: --jobs workers are its children
        return _run_compare(spec, out, splits, device, progress, log, jobs, report, config_yaml)


def _run_compare(
    spec: RunSpec,
    out: Path,
    splits: DataSplits,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    jobs: int,
    report: Callable[[Path, bool], str],
    config_yaml: str | None,
) -> str:
    check_resumable(out, spec)  # again, under the lock
    saved = read_json(out / SPEC_FILE, "comparison spec", "`reffakd compare`") if (out / SPEC_FILE).is_file() else {}
    merged = spec.to_dict()
    for key in GROWABLE:  # keep what an earlier invocation ran, so the table covers it
        merged[key] = list(dict.fromkeys([*saved.get(key, []), *merged[key]]))
    write_json(out / SPEC_FILE, merged)
    if config_yaml is not None:
        write_text_atomic(out / CONFIG_FILE, config_yaml)

    shared = shared_inputs(spec, out, splits, device, progress, log, jobs)
    tuned = None
    if spec.tune is not None:  # equal tuning first: each method's trials, then its choice (``tuning.py``)
        progress_report = lambda folder, final: write_tuning_report(folder, spec)  # noqa: E731
        _run_items(spec, spec.tuning_items(), out, splits, shared, device, progress, log, jobs, progress_report)
        tuned = choose(out, spec)
        log(write_tuning_report(out, spec))
    _run_items(spec, spec.run_items(tuned), out, splits, shared, device, progress, log, jobs, report)
    md = report(out, True)
    log(md)
    return md


def _run_items(
    spec: RunSpec,
    items: list[RunItem],
    out: Path,
    splits: DataSplits,
    shared: Shared,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    jobs: int,
    report: Callable[[Path, bool], str],
) -> None:
    """Train the ``items`` not finished yet (one after another, or in ``jobs`` workers), rewriting the report."""
    todo = []
    for item in items:
        run_dir = item_path(out, item)
        if (run_dir / "summary.json").is_file():
            log(f"skip {item.variant} seed {item.seed}: finished ({run_dir})")
        else:
            todo.append(item)
    if jobs == 1 or len(todo) < 2:
        for item in todo:
            train_item(spec, item, out, splits, shared, device=device, progress=progress, log=log)
            report(out, False)
    else:
        _run_parallel(spec, todo, out, device, jobs, log, report)


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


def run_one(
    spec: RunSpec,
    item: RunItem,
    run_dir: Path,
    splits: DataSplits,
    shared: Shared,
    *,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    name: str | None = None,
    **engine: Any,
) -> dict[str, Any]:
    """Train one run of a spec into ``run_dir`` (staged by the caller): the one place where a spec's run becomes a
    student, for ``train``, ``run``, ``compare`` and ``sweep`` alike. Its method takes the shared soft labels or
    teacher as its source kind says, with the spec's speed options; ``engine``: resume, logging and torchrun options
    (``pipeline.train_student``)."""
    method = get_method(item.method)
    teacher = shared.teacher if method.needs == "teacher" else None
    if teacher is not None:
        teacher.seconds = 0.0  # each run counts its own teacher forward passes
    # The report groups runs by variant and selects among a method's variants; a tuned run records its setting.
    variant = {"variant": item.variant, "grid": item.params} if item.is_grid else None
    if not item.is_grid and item.point:
        variant = {"tuned": item.params}
    if item.is_trial:  # a tuning trial never sees the test split (``tuning.py``)
        splits = replace(splits, test=None)
        variant = {**(variant or {}), "trial": True}
    return train_student(
        splits,
        spec.student_config(item.method, item.seed, point=item.params),
        run_dir,
        TrainOptions(device, spec.speed_options(), progress, log, **engine),
        soft_labels=shared.soft_for(item.method),
        teacher=teacher,
        summary={"name": name or item.method, **(variant or {})},
    )


def train_item(
    spec: RunSpec,
    item: RunItem,
    out: Path,
    splits: DataSplits,
    shared: Shared,
    *,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Train one run of a comparison into its folder, which appears whole or not at all; a method whose teacher
    is another run of its seed (tfkd-self) gets that run's student."""
    run = get_method(item.method).source.same_seed_run
    if run is not None:
        teacher = load_teacher(run_path(out, run, item.seed) / "best.safetensors", splits, device)
        shared = Shared(shared.soft, teacher, shared.soft_semi)
    folder = item_path(out, item)
    resume = interrupted(folder)
    with staged_run_dir(folder, redo=True, resume=resume) as tmp:
        run_one(spec, item, tmp, splits, shared, device=device, progress=progress, log=log,
                name=f"{item.variant}-s{item.seed}", resume=resume)  # fmt: skip


def interrupted(folder: Path) -> bool:
    """Whether ``folder``'s ``.partial`` is an interrupted run of reffakd's with a resume checkpoint to continue
    from: running a comparison again continues it (the spec is the same: ``check_resumable``), and the run's own
    identity check refuses a checkpoint of anything else."""
    from .engine import RESUME_FILE
    from .rundir import MARKER, partial_path

    staging = partial_path(folder)
    return (staging / MARKER).is_file() and any(staging.rglob(RESUME_FILE))


def run_pipeline(
    spec: RunSpec,
    folders: dict[str, str],
    splits: DataSplits,
    run_dir: Path,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: bool = False,
    **engine: Any,
) -> list[dict[str, Any]]:
    """``reffakd run``: a one-seed spec whose soft labels are built into ``run_dir/softlabels``, then each method's
    run into ``run_dir/<folders[method]>``; ``summary.md`` and ``curves.png`` compare them.

    ``resume``: continue a stopped run in ``run_dir``: the autoencoder and each student from its resume
    checkpoint (a finished one trains no further; one not started starts), to the results, bit for bit,
    of a run never stopped. The spec's speed options apply to every student (and cuda_graph to the autoencoder);
    ``engine``: logging options.
    """
    soft, soft_cost = build_soft_labels(
        splits, spec.soft_label_config(), run_dir / "softlabels",
        TrainOptions(device, spec.speed_options(), progress, log, resume),
    )  # fmt: skip
    shared = Shared(soft, None)
    summaries = [
        run_one(
            spec,
            item,
            run_dir / folders[item.method],
            splits,
            shared,
            device=device,
            progress=progress,
            log=log,
            name=folders[item.method],
            resume=resume,
            **engine,
        )  # fmt: skip
        for item in spec.run_items()
    ]
    table = summary_table(summaries)
    write_text_atomic(run_dir / "summary.md", table + "\n")
    write_json(
        run_dir / "summary.json",
        {
            "runs": summaries,
            "soft_labels_cost": soft_cost,
            "dataset": splits.dataset,
            "train_images": len(splits.train),
            "val_images": len(splits.val),
            "test_images": len(splits.test),
        },
    )
    plot_training_curves(
        {s["name"]: read_jsonl(run_dir / s["name"] / "metrics.jsonl") for s in summaries}, run_dir / "curves.png"
    )
    log("\n" + table)
    return summaries


# --------------------------------------------------------------------------- several runs at once


def worker_devices(device: torch.device, jobs: int) -> list[str]:
    """One device per worker: each its own GPU, round robin, when several are visible and none was named."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [f"cuda:{k % torch.cuda.device_count()}" for k in range(jobs)]
    return [str(device)] * jobs


def _run_parallel(
    spec: RunSpec,
    items: list[RunItem],
    out: Path,
    device: torch.device,
    jobs: int,
    log: Callable[[str], None],
    report: Callable[[Path, bool], str],
) -> None:
    """``jobs`` spawned workers (fork is unsafe once torch has started threads); a method that distils another run
    of its seed (tfkd-self) after the runs it distils.

    On Ctrl-C, SIGTERM or any error the parent stops the workers (``_stop``): their unfinished runs stay
    ``.partial`` folders with resume checkpoints, which the next invocation continues.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = min(jobs, len(items))
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")
    devices = ctx.Queue()
    for k, name in enumerate(worker_devices(device, jobs), 1):
        devices.put((k, name))
    log(
        f"jobs: {jobs} worker processes, {threads} CPU thread(s) each, "
        f"on {', '.join(dict.fromkeys(worker_devices(device, jobs)))}"
    )
    stopping = ctx.Event()
    pool = ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init,
        initargs=(spec, str(out), devices, threads, stopping, plots_enabled()),
    )  # fmt: skip
    try:
        later = {i for i in items if get_method(i.method).source.same_seed_run is not None}
        for phase in ([i for i in items if i not in later], [i for i in items if i in later]):
            _finish(pool, stopping, [(_worker_run, (item,)) for item in phase], lambda: report(out, False))
    finally:
        devices.close()
        devices.join_thread()
    pool.shutdown()


def _finish(
    pool: Any, stopping: Any, tasks: list[tuple[Callable[..., None], tuple[Any, ...]]], after_each: Callable[[], object]
) -> None:
    """Submit ``tasks`` to ``pool`` and wait for them all, calling ``after_each`` as each ends; a worker's error is
    raised here, and any error or signal stops the workers first (``_stop``; ``stopping``: the workers' event)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pending: set[Any] = set()
    try:
        pending = {pool.submit(fn, *args) for fn, args in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # re-raises a worker's error here
                after_each()
    except BaseException:
        _stop(pool, stopping, pending)
        raise


def _make_parallel(
    spec: RunSpec, out: Path, device: torch.device, kinds: list[str], jobs: int, log: Callable[[str], None]
) -> None:
    """Each of ``kinds`` made in its own spawned worker, ``jobs`` at a time, with its share of the CPU threads (its
    own GPU when several are visible); an error in one stops the others, whose folders stay ``.partial``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = min(jobs, len(kinds))
    threads = max(1, torch.get_num_threads() // jobs)
    devices = worker_devices(device, len(kinds))
    log(f"jobs: {', '.join(kinds)} made at once in {jobs} worker processes, {threads} CPU thread(s) each")
    ctx = multiprocessing.get_context("spawn")
    stopping = ctx.Event()
    pool = ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_quiet_worker, initargs=(threads, stopping, plots_enabled())
    )
    _finish(pool, stopping, [(_make_in_worker, (kind, spec, str(out), devices[k])) for k, kind in enumerate(kinds)],
            lambda: None)  # fmt: skip
    pool.shutdown()


def _make_in_worker(kind: str, spec: RunSpec, out: str, device: str) -> None:
    from .data import load_splits

    log = lambda line: print(f"[{kind}] {line}", flush=True)  # noqa: E731
    splits = load_splits(spec.data_config(), lambda line: None)
    if kind == "teacher":
        _until_stopped(lambda: _teacher(spec, Path(out), splits, torch.device(device), False, log))
    else:
        semi = kind != "soft labels"
        _until_stopped(lambda: _soft_labels(spec, Path(out), splits, torch.device(device), False, log, semi=semi))


def _stop(pool: Any, stopping: Any, running: set[Any], grace: float = 60.0) -> None:
    """Stop the workers so that they end normally: ``stopping`` keeps them from starting another task
    (``_until_stopped``), SIGTERM makes one inside a run write its resume checkpoint and stop (outside a run they
    ignore it: ``_quiet_worker``), and the pool shuts down; a worker still there after ``grace`` seconds is killed."""
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


def _quiet_worker(threads: int, stopping: Any = None, plots: bool = True) -> None:
    """A worker's signals, threads, stop event and the parent's ``--no-plots``: the parent stops it (``_stop``), so
    SIGINT and SIGTERM are ignored except inside a run, where training turns them into a resume checkpoint and a
    stop."""
    import signal

    set_plots_enabled(plots)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER["stopping"] = stopping


def _until_stopped(work: Callable[[], object]) -> None:
    """Run a worker's task, unless the comparison is stopping (a task queued behind a stopped one, or picked up by a
    worker that was still starting when the parent's SIGTERM came). The stop reaches the parent as a plain
    ``KeyboardInterrupt`` carrying the run's message (a ``TrainingInterrupted`` does not unpickle)."""
    stopping = _WORKER.get("stopping")
    if _WORKER.get("stopped") or (stopping is not None and stopping.is_set()):
        raise KeyboardInterrupt("not started: the comparison is stopping")
    try:
        work()
    except KeyboardInterrupt as exc:
        _WORKER["stopped"] = True
        raise KeyboardInterrupt(str(exc)) from None


_WORKER: dict[str, Any] = {}


def _worker_init(spec: RunSpec, out: str, devices: Any, threads: int, stopping: Any = None, plots: bool = True) -> None:
    """Once per worker: its device and threads, the data, the shared soft labels and teacher (made by the parent)."""
    from .data import load_splits

    _quiet_worker(threads, stopping, plots)
    k, name = devices.get()
    device = torch.device(name)
    quiet = lambda line: None  # noqa: E731
    splits = load_splits(spec.data_config(), quiet)
    shared = shared_inputs(spec, Path(out), splits, device, False, quiet)
    _WORKER.update(spec=spec, out=Path(out), splits=splits, shared=shared, device=device, prefix=f"[job {k}] ")


def _worker_run(item: RunItem) -> None:
    w = _WORKER
    log = lambda line: print(w["prefix"] + line, flush=True)  # noqa: E731
    _until_stopped(
        lambda: train_item(
            w["spec"], item, w["out"], w["splits"], w["shared"], device=w["device"], progress=False, log=log
        )
    )


def run_path(out: Path, variant: str, seed: int) -> Path:
    """``out/runs/<method or variant folder>/seed<k>``: a final run's folder (``tuning.item_path``)."""
    return item_path(out, RunItem(variant, variant, seed))


# What the runs of a comparison share, each made once into its own folder: independent of one another.
PREREQUISITES = ("soft labels", "teacher", "semi-supervised soft labels")


def shared_inputs(
    spec: RunSpec,
    out: Path,
    splits: DataSplits,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    jobs: int = 1,
) -> Shared:
    """The soft labels, the teacher and the semi-supervised soft labels of a comparison, each made if missing.

    With ``jobs > 1`` on an accelerator and more than one of them still to make, they are made at once in worker
    processes (the autoencoder and the teacher otherwise queue up on the GPU before the students: GPU.md), then
    loaded here."""
    todo = [kind for kind in PREREQUISITES if _to_make(spec, out, kind)]
    if jobs > 1 and len(todo) > 1 and _concurrent_prerequisites(device):
        _make_parallel(spec, out, device, todo, jobs, log)
    return Shared(
        _soft_labels(spec, out, splits, device, progress, log),
        _teacher(spec, out, splits, device, progress, log),
        _soft_labels(spec, out, splits, device, progress, log, semi=True),
    )


def _concurrent_prerequisites(device: torch.device) -> bool:
    """Whether to make the prerequisites at once: not on a CPU, where the workers would split its threads and the
    longest one (a teacher on every labelled image, for one) would run on fewer threads for all of its time."""
    return device.type != "cpu"


def _to_make(spec: RunSpec, out: Path, kind: str) -> bool:
    """Whether the comparison needs ``kind`` (one of ``PREREQUISITES``) and its folder does not hold it yet."""
    if kind == "teacher":
        return bool(spec.teacher_methods()) and "checkpoint" not in spec.teacher and not (
            out / "teacher" / "summary.json"
        ).is_file()  # fmt: skip
    semi = kind != "soft labels"
    return (
        bool(spec.soft_label_methods(semi=semi))
        and "path" not in spec.soft_labels
        and not (_soft_labels_folder(out, semi) / SOFT_LABELS_FILE).is_file()
    )


def _soft_labels_folder(out: Path, semi: bool) -> Path:
    return out / ("softlabels-semi" if semi else "softlabels")


def _soft_labels(
    spec: RunSpec,
    out: Path,
    splits: DataSplits,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    semi: bool = False,
) -> SoftLabels | None:
    """The comparison's soft labels, built once into ``softlabels/`` (``semi``: for the semi-supervised methods,
    into ``softlabels-semi/``, the autoencoder also trained on the images a labelled budget withholds)."""
    if not spec.soft_label_methods(semi=semi):
        return None
    folder = _soft_labels_folder(out, semi)
    if _to_make(spec, out, PREREQUISITES[2] if semi else PREREQUISITES[0]):
        cfg = replace(spec.soft_label_config(), budget_unlabelled=True) if semi else spec.soft_label_config()
        resume = interrupted(folder)
        with staged_run_dir(folder, redo=True, resume=resume) as tmp:
            build_soft_labels(splits, cfg, tmp, TrainOptions(device, spec.speed_options(), progress, log, resume))
    soft = SoftLabels.load(Path(spec.soft_labels["path"]) if "path" in spec.soft_labels else folder / SOFT_LABELS_FILE)
    soft.check_matches(splits.class_names, f"dataset {splits.dataset}")
    soft.check_labelled(splits.budget)
    return soft


def _teacher(
    spec: RunSpec, out: Path, splits: DataSplits, device: torch.device, progress: bool, log: Callable[[str], None]
) -> TeacherNetwork | None:
    if not spec.teacher_methods():
        return None
    if "checkpoint" in spec.teacher:
        return load_teacher(spec.teacher["checkpoint"], splits, device)
    folder = out / "teacher"
    if _to_make(spec, out, "teacher"):
        optim = spec.optim(spec.teacher, "teacher")
        cfg = StudentConfig("ce", spec.teacher["model"], optim, seed=int(spec.teacher.get("seed", 0)))
        resume = interrupted(folder)
        with staged_run_dir(folder, redo=True, resume=resume) as tmp:
            train_student(splits, cfg, tmp, TrainOptions(device, spec.speed_options(), progress, log, resume),
                          summary={"name": "teacher"})  # fmt: skip
    return load_teacher(folder / "best.safetensors", splits, device)
