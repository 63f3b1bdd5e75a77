"""``reffakd compare``: methods x seeds from one spec, resumable, one table of accuracy and cost.

Each run is written whole or not at all, so a killed comparison resumes by skipping the finished runs; the report picks
a grid method's variant by its mean validation top-1, never by test accuracy. Only the parent process writes reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .data import DataSplits, load_splits
from .distillers import baseline_method, cost_reference_method, get_method, method_names, network_sourced_methods
from .engine import TrainOptions
from .engine.speed import SPEED_KEYS, SpeedOptions
from .errors import ReffAKDError
from .io import read_json, write_json, write_text_atomic
from .pipeline import check_cuda_graph, stand_in_inputs, trains_per_image
from .pool import WORKER, quiet_worker, run_in_workers, until_stopped, worker_devices, worker_threads
from .reports.compare_report import write_compare_report
from .rundir import LOCK, locked
from .runner import Comparison, Shared, train_item
from .shared_inputs import shared_inputs
from .softlabels.options import SoftLabelSpec
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


def check_resumable(out: Path, spec: RunSpec) -> dict[str, Any]:
    """A folder started with one spec continues only with the same spec (methods and seeds may grow); returns the
    saved spec (empty for a new folder)."""
    saved_path = out / SPEC_FILE
    if not saved_path.is_file():
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
            raise ReffAKDError(
                f"{out} exists and is not a comparison folder (no {SPEC_FILE}); choose a new out", params=("out",)
            )
        return {}
    saved = read_json(saved_path, "comparison spec", "`reffakd compare`")
    if isinstance(saved.get("soft_labels"), dict):  # a folder started when the section's keys had other names
        saved["soft_labels"] = SoftLabelSpec.read(saved["soft_labels"], str(saved_path), note=False).to_dict()
    if isinstance(saved.get("speed"), dict) and set(saved["speed"]) <= set(SPEED_KEYS):  # an option at its default
        saved["speed"] = SpeedOptions(**saved["speed"]).switched_on() or None  # was written then, and is not now
    now = json.loads(json.dumps(spec.to_dict()))
    for key in now:
        if key not in GROWABLE and _without_unset(saved.get(key)) != _without_unset(now[key]):
            raise ReffAKDError(
                f"{out} was started with another {key!r} ({json.dumps(saved.get(key))[:120]}); "
                "resume with the same settings (only methods and seeds may change) or choose a new out",
                params=("out",),
            )
    return saved


def check_speed(spec: RunSpec, splits: DataSplits, device: torch.device) -> None:
    """The spec's speed options on ``device`` and, with cuda_graph, that every setting of every method records its step,
    refused before the soft labels or the teacher are made (the methods are built around stand-ins for them)."""
    speed = spec.speed
    speed.validate(device)
    if not speed.cuda_graph:
        return
    items = {(i.method, i.point): i for i in [*spec.tuning_items(), *spec.run_items()]}  # one per setting
    soft, teacher = stand_in_inputs(splits, any(map(trains_per_image, spec.method_order())))
    for item in items.values():
        instead = f"leave {item.method} out of the methods, or compare without cuda_graph"
        check_cuda_graph(spec.student_config(item.method, item.seed, point=item.params), splits, soft, teacher, instead)


def compare_report(out: Path, final: bool = True) -> str:
    """``results.md``, ``results.csv`` (after every run) and, when ``final``, ``accuracy_vs_cost.png`` (about a
    second)."""
    return write_compare_report(out, method_names(), final, baseline_method(), cost_reference_method(),
                                network_sourced_methods())  # fmt: skip


def run_compare(
    spec: RunSpec,
    out: str | Path,
    splits: DataSplits,
    options: TrainOptions | None = None,
    *,
    jobs: int = 1,
    report: Callable[[Path, bool], str] = compare_report,
    config_yaml: str | None = None,
) -> str:
    """Run what is missing, then (re)write the ``report``; returns its Markdown. ``options``: how the runs train (the
    device, progress and log; None: the defaults, on the CPU). ``jobs > 1``: that many runs at once in worker
    processes, which load the data again; ``config_yaml`` is saved beside ``spec.json``."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ReffAKDError(f"jobs {jobs} is out of range: it must be at least 1", params=("jobs",))
    out, options = Path(out), options or TrainOptions()
    check_speed(spec, splits, options.device)
    with locked_folder(out, spec, "comparison"):
        return _run_compare(Comparison(spec, out, splits, options), jobs, report, config_yaml)


@contextmanager
def locked_folder(out: Path, spec: RunSpec, what: str) -> Iterator[None]:
    """A comparison's or a study's folder, made and locked by this process alone (``--jobs`` workers are its
    children), its ``spec.json`` checked again under the lock and rewritten, with the methods and seeds an earlier
    invocation ran too, so that the reports cover them."""
    check_resumable(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"{what} folder {out}"):
        saved = check_resumable(out, spec)
        merged = spec.to_dict()
        for key in GROWABLE:
            merged[key] = list(dict.fromkeys([*saved.get(key, []), *merged[key]]))
        write_json(out / SPEC_FILE, merged)
        yield


def _run_compare(cmp: Comparison, jobs: int, report: Callable[[Path, bool], str], config_yaml: str | None) -> str:
    spec, out = cmp.spec, cmp.out
    if config_yaml is not None:
        write_text_atomic(out / CONFIG_FILE, config_yaml)
    shared = shared_inputs(cmp, jobs, _pending_methods(out, spec))
    tuned = None
    if spec.tune is not None:  # equal tuning first: each method's trials, then its choice (``tuning.py``)
        progress_report = lambda folder, final: write_tuning_report(folder, spec)  # noqa: E731
        _run_items(cmp, spec.tuning_items(), shared, jobs, progress_report)
        tuned = choose(out, spec)
        cmp.options.log(write_tuning_report(out, spec))
    _run_items(cmp, spec.run_items(tuned), shared, jobs, report)
    md = report(out, True)
    cmp.options.log(md)
    return md


def _pending_methods(out: Path, spec: RunSpec) -> set[str]:
    """The methods with a tuning trial or a final run (whose folder is the same whatever tuning chose) to finish."""
    items = [*spec.tuning_items(), *spec.run_items()]
    return {item.method for item in items if not (item_path(out, item) / "summary.json").is_file()}


def _run_items(
    cmp: Comparison, items: list[RunItem], shared: Shared, jobs: int, report: Callable[[Path, bool], str]
) -> None:
    """Train the ``items`` not finished yet (one after another, or in ``jobs`` workers), rewriting the report."""
    todo = []
    for item in items:
        run_dir = item_path(cmp.out, item)
        if (run_dir / "summary.json").is_file():
            cmp.options.log(f"skip {item.variant} seed {item.seed}: finished ({run_dir})")
        else:
            todo.append(item)
    if jobs == 1 or len(todo) < 2:
        for item in todo:
            train_item(cmp, item, shared)
            report(cmp.out, False)
    else:
        _run_parallel(cmp, todo, jobs, report)


def _run_parallel(cmp: Comparison, items: list[RunItem], jobs: int, report: Callable[[Path, bool], str]) -> None:
    """``jobs`` spawned workers (``pool``), the methods that distil another run of their seed after the others. On
    Ctrl-C, SIGTERM or an error the workers stop, their runs resumable."""
    import multiprocessing

    jobs = min(jobs, len(items))
    threads = worker_threads(jobs)
    devices = multiprocessing.get_context("spawn").Queue()
    names = worker_devices(cmp.options.device, jobs)
    for k, name in enumerate(names, 1):
        devices.put((k, name))
    cmp.options.log(
        f"jobs: {jobs} worker processes, {threads} CPU thread(s) each, on {', '.join(dict.fromkeys(names))}"
    )
    later = {i for i in items if get_method(i.method).source.same_seed_run is not None}
    phases = [[(_worker_run, (i,)) for i in items if (i in later) == last] for last in (False, True)]
    initargs = (cmp.spec, str(cmp.out), sorted({item.method for item in items}), devices, threads)
    try:
        run_in_workers(jobs, _worker_init, initargs, phases, lambda: report(cmp.out, False))
    finally:
        devices.close()
        devices.join_thread()


def _worker_init(
    spec: RunSpec, out: str, methods: list[str], devices: Any, threads: int, stopping: Any = None, plots: bool = True
) -> None:
    """Once per worker: its device and threads, the data, and the shared inputs (made by the parent) of ``methods``."""
    quiet_worker(threads, stopping, plots)
    k, name = devices.get()
    quiet = lambda line: None  # noqa: E731
    splits = load_splits(spec.data, quiet)
    cmp = Comparison(spec, Path(out), splits, TrainOptions(torch.device(name), progress=False, log=quiet))
    WORKER.update(cmp=cmp, shared=shared_inputs(cmp, pending=methods), prefix=f"[job {k}] ")


def _worker_run(item: RunItem) -> None:
    log = lambda line: print(WORKER["prefix"] + line, flush=True)  # noqa: E731
    cmp = WORKER["cmp"]
    until_stopped(lambda: train_item(replace(cmp, options=replace(cmp.options, log=log)), item, WORKER["shared"]))
