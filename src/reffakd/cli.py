"""``reffakd`` command line: a thin layer over ``reffakd.pipeline``.

User mistakes (``ReffAKDError``) print one line and exit 1; argparse's own errors exit 2.
Everything is validated before anything is written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from .config import comma_list
from .data import DATASETS
from .distillers import DISTILLERS
from .engine.signals import TrainingInterrupted
from .errors import ReffAKDError

if TYPE_CHECKING:
    from .data import DataSplits

RUN_AE_EPOCHS, RUN_EPOCHS = 5, 15  # `reffakd run` finishes in about 5 minutes on 2 CPU cores


class RunLog:
    """Print each line and keep it in ``log.txt`` of the run folder once that folder exists."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        if self.path is None:
            self.lines.append(line)
        else:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def attach(self, run_dir: Path, args: argparse.Namespace) -> None:
        """Start the folder's log with the lines so far, and save the resolved config as ``config.yaml``."""
        from .io import write_text_atomic

        write_text_atomic(run_dir / "config.yaml", config_text(args))
        self.path = run_dir / "log.txt"
        self.path.write_text("".join(line + "\n" for line in self.lines), encoding="utf-8")


@comma_list
def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"milestones {text!r} must be comma-separated epochs, e.g. 60,120,160"
        ) from None


@comma_list
def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@comma_list
def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated integers, e.g. 0,1,2") from None


def _number_or_name(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _axis(text: str) -> tuple[str, list[Any]]:
    """``--vary alpha=0.1,0.5``: one grid key and its values."""
    key, sep, values = text.partition("=")
    items = [_number_or_name(v) for v in _names(values)]
    if not sep or not key.strip() or not items:
        raise argparse.ArgumentTypeError(f"{text!r} must be KEY=V1,V2,..., e.g. alpha=0.1,0.5,0.9")
    return key.strip().replace("-", "_"), items


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of options: keys are the long option names (epochs: 30, ae_epochs: 5); "
        "options given on the command line win (docs/CONFIG.md)",
    )


def _add_out(p: argparse.ArgumentParser, help: str) -> None:
    """``--out`` is required, but may come from ``--config``: checked after the file is read."""
    p.add_argument("--out", help=f"{help} (required: here or as out: in --config)")
    p.config_required = ("out",)  # type: ignore[attr-defined]


def _add_data(p: argparse.ArgumentParser, from_preset: bool = False) -> None:
    """``from_preset``: dataset, validation size and split seed default to the preset's (``reffakd compare``)."""
    preset = "the preset's, " if from_preset else ""
    dataset_default = "the preset's" if from_preset else "fashion-mnist"
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=None if from_preset else "fashion-mnist",
        help=f"one of {', '.join(sorted(DATASETS))} (default: {dataset_default})",
    )
    g.add_argument(
        "--data-dir",
        help="folder holding the dataset files (imagefolder: one sub-folder per class); else a known copy, else a download into the cache",
    )
    g.add_argument(
        "--image-size",
        type=int,
        help="resize images to this square size (default: the dataset's own, 32 for the MNISTs and CIFAR, 64 for Tiny ImageNet)",
    )
    g.add_argument("--test-dir", help="imagefolder: a separate folder of test images, one sub-folder per class")
    g.add_argument(
        "--test-fraction",
        type=float,
        help="imagefolder without a test folder: share of each class held out for testing (default: 0.2)",
    )
    g.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode images from disk batch by batch (default: only when they would not fit in memory)",
    )
    g.add_argument(
        "--val-size",
        type=int,
        default=None if from_preset else 5000,
        help=f"validation images carved from the training set (default: {preset}5000)",
    )
    g.add_argument(
        "--split-seed",
        type=int,
        default=None if from_preset else 0,
        help=f"seed of the train/validation split (default: {preset}0)",
    )
    g.add_argument("--no-download", action="store_true", help="never try the network")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_optim(p: argparse.ArgumentParser, prefix: str, epochs: int, what: str) -> None:
    g = p.add_argument_group(f"{what} optimisation")
    g.add_argument(f"--{prefix}epochs", type=int, default=epochs, help=f"epochs (default: {epochs})")
    g.add_argument(f"--{prefix}batch-size", type=int, default=128)
    g.add_argument(f"--{prefix}lr", type=float, default=0.1)
    g.add_argument(f"--{prefix}momentum", type=float, default=0.9)
    g.add_argument(f"--{prefix}weight-decay", type=float, default=5e-4)
    g.add_argument(f"--{prefix}schedule", choices=["multistep", "cosine"], default="multistep")
    g.add_argument(
        f"--{prefix}milestones",
        type=_milestones,
        default=None,
        help="LR milestones in epochs (default: 30/60/80%% of the epochs)",
    )
    g.add_argument(f"--{prefix}gamma", type=float, default=0.2, help="LR factor at each milestone (default: 0.2)")


def _add_softlabels(p: argparse.ArgumentParser, ae_epochs: int) -> None:
    g = p.add_argument_group("soft labels")
    g.add_argument(
        "--preset",
        choices=["calibrated", "paper"],
        default="paper",
        help="paper: the notebooks' boost and tau = 1 (default: best on validation, docs/RESULTS.md); "
        "calibrated: tau solved for a mean own-class probability of 0.3",
    )
    g.add_argument(
        "--boost", type=float, default=None, help="diagonal boost b (default: the notebook value for the dataset)"
    )
    cal = g.add_mutually_exclusive_group()
    cal.add_argument(
        "--soft-temperature", type=float, default=None, help="fixed softmax temperature tau of the soft labels"
    )
    cal.add_argument(
        "--target-own-prob", type=float, default=None, help="solve tau so the mean own-class probability is this"
    )
    g.add_argument(
        "--equalize-own-prob",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="give every class exactly the target own-class probability, the rest in the softmax's proportions (default: the preset's)",
    )
    g.add_argument(
        "--samples-per-class",
        type=int,
        default=None,
        help="similarity from k sampled images per class (notebooks: 40; default: all)",
    )
    g.add_argument("--augment-embeddings", action="store_true", help="embed augmented images, as the notebooks do")
    _add_optim(p, "ae-", ae_epochs, "autoencoder")


def _add_student(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--model", default="lenet5", help="student architecture (default: lenet5)")
    g.add_argument("--seed", type=int, default=0)
    m = p.add_argument_group("method parameters (default: the method's own, see docs/METHODS.md)")
    m.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="weight of the soft-target term: in [0, 1] for KD-style methods (default 0.5), DKD's TCKD weight (default 1)",
    )
    m.add_argument("-T", "--temperature", type=float, default=None, help="distillation temperature > 0 (default: 4)")
    m.add_argument("--beta", type=float, default=None, help="DKD: weight of the non-target term NCKD (default: 2)")
    m.add_argument("--ce-weight", type=float, default=None, help="DKD: weight of the cross-entropy term (default: 1)")
    m.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="DKD: epochs of linear warm-up of the KD weight (default: 1/12 of the epochs, DKD's 20 of 240)",
    )
    m.add_argument("--epsilon", type=float, default=None, help="ls: label-smoothing epsilon (default: 0.1)")
    m.add_argument(
        "--own-probability",
        type=float,
        default=None,
        help="tfkd-reg: the virtual teacher's own-class probability a (default: 0.9)",
    )
    _add_optim(p, "", epochs, "student")


def _add_resume(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the resume checkpoint in OUT.partial "
        "(same weights as an uninterrupted run)",
    )


def _add_engine(p: argparse.ArgumentParser, resumable: bool) -> None:
    r = p.add_argument_group("robustness and speed (docs/RESULTS.md has their measured effect)")
    if resumable:
        _add_resume(r)
    r.add_argument(
        "--amp",
        choices=["none", "bf16", "fp16"],
        default="none",
        help="mixed precision autocast (fp16 on CUDA only; default: none)",
    )
    r.add_argument(
        "--channels-last", action="store_true", help="channels_last memory format for the student and its inputs"
    )
    r.add_argument(
        "--compile", action="store_true", help="torch.compile the student (the first epoch includes compile time)"
    )
    r.add_argument(
        "--tensorboard", action="store_true", help="also log metrics to OUT/tensorboard (needs the tensorboard package)"
    )
    r.add_argument("--no-sync-bn", action="store_true", help="under torchrun, keep batch-norm statistics per process")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reffakd", description="Knowledge distillation with autoencoder soft labels (ReffAKD)."
    )
    parser.add_argument("--version", action="version", version=f"reffakd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="the whole pipeline: soft labels, a CE baseline and a ReffAKD student, one summary")
    _add_out(p, "new run folder")
    _add_config(p)
    _add_data(p)
    _add_softlabels(p, RUN_AE_EPOCHS)
    _add_student(p, RUN_EPOCHS)
    _add_engine(p, resumable=True)

    p = sub.add_parser("softlabels", help="train the autoencoder and build soft labels, diagnostics and plots")
    _add_out(p, "new output folder")
    _add_config(p)
    p.add_argument("--seed", type=int, default=0)
    _add_data(p)
    _add_softlabels(p, 10)
    _add_resume(p)

    p = sub.add_parser("train", help="train one student")
    _add_out(p, "new run folder")
    _add_config(p)
    p.add_argument(
        "--method",
        choices=sorted(DISTILLERS),
        default="ce",
        help="training method (default: ce); docs/METHODS.md defines each",
    )
    p.add_argument(
        "--soft-labels", help="soft_labels.safetensors made by `reffakd softlabels` (methods reffakd, dkd-aesl)"
    )
    p.add_argument(
        "--teacher", help="a checkpoint made by `reffakd train` (methods kd, dkd; tfkd-self: a trained student)"
    )
    _add_data(p)
    _add_student(p, 30)
    _add_engine(p, resumable=True)

    p = sub.add_parser("compare", help="methods x seeds side by side: accuracy and cost in one table (resumable)")
    _add_comparison(p, "comparison folder; run again with the same folder to resume")
    p = sub.add_parser(
        "sweep",
        help="a grid over any method parameter or optimiser key, one table sorted by validation accuracy (resumable)",
    )
    _add_comparison(p, "sweep folder; run again with the same folder to resume")

    p = sub.add_parser("evaluate", help="top-1/top-5 of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by `reffakd train`")
    p.add_argument("--split", choices=["test", "val"], default="test")
    _add_data(p)

    p = sub.add_parser("config", help="print a command's resolved config as YAML, without running it")
    p.add_argument("action", choices=["show"])
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        metavar="COMMAND [OPTIONS]",
        help=f"one of {', '.join(CONFIG_COMMANDS)} and its options, --config included",
    )
    return parser


def _add_comparison(p: argparse.ArgumentParser, out_help: str) -> None:
    """compare and sweep: the same options (sweep requires a grid and writes another table)."""
    from .compare import METHOD_GRID_KEYS, OPTIM_GRID_KEYS, PRESET_HELP, PRESETS

    _add_out(p, out_help)
    _add_config(p)
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="cpu",
        help="settings to start from (default: cpu; docs/DATASETS.md lists them): "
        + "; ".join(f"{name}: {PRESET_HELP[name]}" for name in PRESETS),
    )
    p.add_argument(
        "--spec", help="a JSON or YAML spec whose keys override the preset (docs/METHODS.md, docs/CONFIG.md)"
    )
    p.add_argument("--methods", type=_names, help=f"comma-separated, from: {', '.join(sorted(DISTILLERS))}")
    p.add_argument("--seeds", type=_ints, help="comma-separated student seeds, e.g. 0,1,2")
    p.add_argument("--epochs", type=int, help="student epochs")
    p.add_argument("--teacher", help="use this teacher checkpoint (made by `reffakd train`) instead of training one")
    p.add_argument("--teacher-model", help="architecture of the teacher trained for kd and dkd")
    p.add_argument("--teacher-epochs", type=int, help="epochs of the teacher trained for kd and dkd")
    p.add_argument("--soft-labels", help="use this soft_labels.safetensors instead of building one")
    p.add_argument("--ae-epochs", type=int, help="autoencoder epochs of the soft labels built for reffakd and dkd-aesl")
    p.add_argument(
        "--vary",
        type=_axis,
        action="append",
        metavar="KEY=V1,V2",
        help="a grid axis, e.g. alpha=0.1,0.5,0.9 (repeat for more): sets that key's values in the spec's grid, whose "
        f"methods default to the methods that run; keys: {', '.join((*METHOD_GRID_KEYS, *OPTIM_GRID_KEYS))}",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once, each in its own process with its share of the CPU "
        "threads, or its own GPU when several are visible (default: 1)",
    )
    _add_data(p, from_preset=True)


def _optim(args: argparse.Namespace, prefix: str = ""):
    from .engine import OptimConfig

    a = lambda name: getattr(args, prefix + name)  # noqa: E731
    cfg = OptimConfig(
        a("epochs"),
        a("batch_size"),
        a("lr"),
        a("momentum"),
        a("weight_decay"),
        a("schedule"),
        a("milestones"),
        a("gamma"),
    )
    cfg.validate()
    return cfg


def _data_cfg(args: argparse.Namespace):
    from .data import DataConfig

    return DataConfig(
        args.dataset,
        args.data_dir,
        args.val_size,
        args.split_seed,
        not args.no_download,
        image_size=args.image_size,
        test_dir=args.test_dir,
        test_fraction=args.test_fraction,
        streaming=args.streaming,
    )


def _soft_cfg(args: argparse.Namespace):
    from .softlabels import Calibration, SoftLabelConfig

    cal = Calibration.preset(args.preset, args.dataset)
    if args.boost is not None:
        cal.diagonal_boost = args.boost
    if args.soft_temperature is not None:
        cal.temperature, cal.target_own_probability, cal.equalize_own = args.soft_temperature, None, False
    if args.target_own_prob is not None:
        cal.temperature, cal.target_own_probability = None, args.target_own_prob
    if args.equalize_own_prob is not None:
        cal.equalize_own = args.equalize_own_prob
    cal.validate()
    if args.samples_per_class is not None and args.samples_per_class < 2:
        raise ReffAKDError(f"--samples-per-class {args.samples_per_class} is out of range: it must be at least 2")
    return SoftLabelConfig(
        cal, args.preset, _optim(args, "ae_"), args.samples_per_class, args.augment_embeddings, args.seed
    )


METHOD_FLAGS = ("beta", "ce_weight", "warmup_epochs", "epsilon", "own_probability")


def _student_cfg(args: argparse.Namespace, method: str, with_method_flags: bool = True):
    """The student's config; ``with_method_flags=False`` leaves the method at its defaults (run's CE baseline)."""
    from .models import available_models
    from .pipeline import StudentConfig

    if args.model not in available_models():
        raise ReffAKDError(f"unknown model {args.model!r}; available: {', '.join(available_models())}")
    flags = {k: getattr(args, k) for k in ("alpha", "temperature", *METHOD_FLAGS)} if with_method_flags else {}
    params = {k: v for k, v in flags.items() if k not in ("alpha", "temperature") and v is not None}
    cfg = StudentConfig(
        method, args.model, _optim(args), flags.get("alpha"), flags.get("temperature"), args.seed, params
    )
    cfg.validate()
    return cfg


def _check_input_size(
    models: Sequence[str],
    autoencoder: bool,
    dataset: str | None,
    image_size: int | None,
    splits: DataSplits | None = None,
) -> None:
    """Refuse a model (or the soft labels' autoencoder) that cannot take the input size, before any folder exists.

    Without ``splits`` (before loading) the size is ``--image-size`` or the dataset loader's default
    (unknown for imagefolder: checked after loading); with ``splits``, the data's own. The networks
    are built on the meta device: no memory, no weights, only their constructors' checks.
    """
    import inspect

    import torch

    from .models import ConvAutoencoder, create_model

    if splits is not None:
        channels, size, classes = splits.in_channels, tuple(splits.image_size), splits.num_classes
    else:
        default = inspect.signature(DATASETS[dataset]).parameters.get("image_size") if dataset in DATASETS else None
        side = image_size if image_size is not None else (default.default if default is not None else None)
        if not isinstance(side, int):
            return
        channels, size, classes = 3, (side, side), 2
    where = f"--image-size {image_size}" if image_size is not None else f"--dataset {dataset}"
    with torch.device("meta"):
        for name in models:
            try:
                create_model(name, num_classes=classes, in_channels=channels, image_size=size)
            except ReffAKDError as exc:
                raise ReffAKDError(f"{exc} ({where}); choose a larger --image-size or another model") from None
        if autoencoder:
            try:
                ConvAutoencoder(channels, size)
            except ReffAKDError as exc:
                raise ReffAKDError(
                    f"{exc} ({where}); the soft labels need it: choose an --image-size that is a multiple of 8"
                ) from None


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training engine's robustness and speed options (docs/CONFIG.md, docs/RESULTS.md for their measured effect)."""
    return {
        "resume": getattr(args, "resume", False),
        "amp": args.amp,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "tensorboard": args.tensorboard,
        "sync_batchnorm": not args.no_sync_bn,
    }


def _start_output(out: str, resume: bool) -> None:
    """A finished run is never overwritten; ``--resume`` needs an interrupted one to continue."""
    from .engine import RESUME_FILE
    from .rundir import check_new_run_dir, partial_path

    check_new_run_dir(out)
    # run: the checkpoint is in softlabels/ or a student's folder inside OUT.partial.
    if resume and not any(partial_path(Path(out)).rglob(RESUME_FILE)):
        raise ReffAKDError(
            f"--resume: no interrupted run to continue at {partial_path(Path(out))} (no {RESUME_FILE}); "
            "run without --resume to start it"
        )


def cmd_run(args: argparse.Namespace) -> None:
    from .engine.distributed import pick_device
    from .pipeline import run_pipeline
    from .rundir import staged_run_dir

    soft_cfg = _soft_cfg(args)
    students = {
        "ce": _student_cfg(args, "ce", with_method_flags=False),
        f"reffakd-{args.preset}": _student_cfg(args, "reffakd"),
    }
    device = pick_device(args.device)
    _start_output(args.out, args.resume)
    _check_input_size([args.model], True, args.dataset, args.image_size)
    from .data import load_splits

    log = RunLog()
    splits = load_splits(_data_cfg(args), log)
    _check_input_size([args.model], True, args.dataset, args.image_size, splits)
    with staged_run_dir(args.out, resume=args.resume) as run_dir:
        log.attach(run_dir, args)
        run_pipeline(
            splits,
            soft_cfg,
            students,
            run_dir,
            device=device,
            progress=not args.no_progress,
            log=log,
            **_engine_options(args),
        )
    print(f"run folder: {args.out}")


def cmd_softlabels(args: argparse.Namespace) -> None:
    from .data import load_splits
    from .engine.distributed import pick_device
    from .rundir import staged_run_dir
    from .softlabels import SOFT_LABELS_FILE, build_soft_labels

    cfg = _soft_cfg(args)
    device = pick_device(args.device)
    _start_output(args.out, args.resume)
    _check_input_size([], True, args.dataset, args.image_size)
    log = RunLog()
    splits = load_splits(_data_cfg(args), log)
    _check_input_size([], True, args.dataset, args.image_size, splits)
    with staged_run_dir(args.out, resume=args.resume) as out:
        log.attach(out, args)
        build_soft_labels(splits, cfg, out, device=device, progress=not args.no_progress, log=log, resume=args.resume)
    print(f"soft labels: {Path(args.out) / SOFT_LABELS_FILE}")


def cmd_train(args: argparse.Namespace) -> None:
    from .data import load_splits
    from .distillers import get_method
    from .engine import distributed
    from .engine.distributed import pick_device
    from .pipeline import train_student
    from .rundir import staged_run_dir
    from .softlabels import SoftLabels, read_soft_label_cost
    from .sources import load_teacher

    cfg = _student_cfg(args, args.method)
    needs = get_method(args.method).needs
    soft = soft_cost = None
    for flag, value, wanted in (
        ("--soft-labels", args.soft_labels, "soft_labels"),
        ("--teacher", args.teacher, "teacher"),
    ):
        if value and needs != wanted:
            users = ", ".join(sorted(n for n, m in DISTILLERS.items() if m.needs == wanted))
            raise ReffAKDError(f"{flag} is used only by methods {users}, not {args.method}")
        if not value and needs == wanted:
            raise ReffAKDError(f"--method {args.method} needs {flag} PATH")
    if args.soft_labels:
        soft = SoftLabels.load(args.soft_labels)
        soft_cost = read_soft_label_cost(Path(args.soft_labels))
    device = pick_device(args.device)
    if distributed.is_distributed():  # under torchrun: this rank's device; only rank 0 writes
        distributed.check_batch_size(args.batch_size)
        device = distributed.setup(device)
    main_process = distributed.is_main_process()
    if main_process:
        _start_output(args.out, args.resume)
    _check_input_size([args.model], False, args.dataset, args.image_size)
    log = RunLog() if main_process else (lambda line: None)
    splits = load_splits(_data_cfg(args), log)
    _check_input_size([args.model], False, args.dataset, args.image_size, splits)
    if soft is not None:
        soft.check_matches(splits.class_names, f"dataset {splits.dataset}")
    teacher = load_teacher(args.teacher, splits, device) if args.teacher else None
    distributed.barrier()  # every rank has checked its inputs before rank 0 creates the folder
    with staged_run_dir(args.out, resume=args.resume, main=main_process) as run_dir:
        if main_process:
            log.attach(run_dir, args)  # type: ignore[union-attr]
        distributed.barrier()
        train_student(
            splits,
            cfg,
            run_dir,
            device=device,
            soft_labels=soft,
            soft_target_cost=soft_cost,
            teacher=teacher,
            progress=not args.no_progress,
            log=log,
            **_engine_options(args),
        )
        distributed.barrier()
    if main_process:
        print(f"run folder: {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .data import load_splits, make_batches
    from .engine import evaluate
    from .engine.distributed import pick_device
    from .models import load_model
    from .pipeline import EVAL_BATCH_SIZE

    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint)
    splits = load_splits(_data_cfg(args), log=lambda line: None)
    if list(splits.class_names) != list(meta["class_names"]):
        raise ReffAKDError(
            f"checkpoint {args.checkpoint} was trained on classes {meta['class_names'][:4]}..., not on {args.dataset}'s {list(splits.class_names)[:4]}..."
        )
    if [splits.in_channels, *splits.image_size] != [meta["in_channels"], *meta["image_size"]]:
        raise ReffAKDError(
            f"checkpoint {args.checkpoint} expects {meta['in_channels']}x{meta['image_size'][0]}x{meta['image_size'][1]} inputs, the dataset gives {splits.in_channels}x{splits.image_size[0]}x{splits.image_size[1]}"
        )
    split = splits.test if args.split == "test" else splits.val
    result = evaluate(
        model.to(device), make_batches(split, EVAL_BATCH_SIZE, normalize=(meta["mean"], meta["std"]), device=device)
    )
    print(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "epoch": meta.get("epoch"), **result}))


def _merge_spec_section(key: str, current, value):
    """A spec file's section updates the preset's, key by key; a teacher checkpoint or a soft-label path replaces it."""
    if (
        not isinstance(value, dict)
        or not isinstance(current, dict)
        or key not in ("data", "student", "teacher", "soft_labels")
    ):
        return value
    if (key == "teacher" and "checkpoint" in value) or (key == "soft_labels" and "path" in value):
        return value
    return {**{k: v for k, v in current.items() if k not in ("checkpoint", "path")}, **value}


class ConfigSpec(NamedTuple):
    """The spec sections of a compare/sweep config file; ``after_spec``: --spec came from the command line, so it wins."""

    where: str
    sections: dict[str, Any]
    after_spec: bool


def compare_spec(args: argparse.Namespace):
    """Preset, then the spec file and the config file's spec sections, then the flags: each later one wins.

    A ``--spec`` typed on the command line is applied after the config file's sections; one named in
    the config file, before them.
    """
    from .compare import PRESETS, CompareSpec, grid_axes
    from .config import read_mapping, unknown_key

    spec = PRESETS[args.preset]().to_dict()
    layers: list[tuple[str, dict[str, Any]]] = []
    if args.spec:
        where = f"--spec {args.spec}"
        layers.append((where, read_mapping(args.spec, where)))
    cfg: ConfigSpec | None = getattr(args, "config_spec", None)
    if cfg is not None:
        layers.insert(0 if cfg.after_spec else len(layers), (cfg.where, cfg.sections))
    for where, overrides in layers:
        for key, value in overrides.items():
            if key not in spec:
                raise unknown_key(where, key, spec)
            spec[key] = _merge_spec_section(key, spec[key], value)
    # Data flags apply when given; otherwise the preset's (or the spec file's) data stays.
    flags = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "val_size": args.val_size,
        "split_seed": args.split_seed,
        "image_size": args.image_size,
        "test_dir": args.test_dir,
        "test_fraction": args.test_fraction,
        "streaming": args.streaming,
        "download": False if args.no_download else None,
    }
    spec["data"] = {**spec["data"], **{k: v for k, v in flags.items() if v is not None}}
    for key, value in (("methods", args.methods), ("seeds", args.seeds)):
        if value is not None:
            spec[key] = value
    if args.epochs is not None:
        spec["student"] = {**spec["student"], "epochs": args.epochs, "milestones": None}
    if args.teacher:
        spec["teacher"] = {"checkpoint": args.teacher}
    elif args.teacher_model or args.teacher_epochs is not None:
        spec["teacher"] = {
            **spec["teacher"],
            **({"model": args.teacher_model} if args.teacher_model else {}),
            **({"epochs": args.teacher_epochs, "milestones": None} if args.teacher_epochs is not None else {}),
        }
    if args.soft_labels:
        spec["soft_labels"] = {"path": args.soft_labels}
    elif args.ae_epochs is not None:
        spec["soft_labels"] = {
            **spec["soft_labels"],
            "autoencoder": {**spec["soft_labels"].get("autoencoder", {}), "epochs": args.ae_epochs, "milestones": None},
        }
    where = cfg.where if cfg is not None else f"--spec {args.spec}" if args.spec else f"preset {args.preset}"
    vary = getattr(args, "vary", None)
    if vary:
        keys = [k for k, _ in vary]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ReffAKDError(f"--vary {twice[0]} is given twice; give each key once with all its values")
        grid = spec.get("grid")
        valid_grid = (
            isinstance(grid, dict)
            and isinstance(grid.get("methods"), list)
            and (isinstance(grid.get("params"), dict) or {"alpha", "temperature"} <= set(grid))
        )
        methods, axes, _ = grid_axes(grid) if valid_grid else (list(spec["methods"]), {}, False)
        spec["grid"] = {"methods": methods, "params": {**axes, **dict(vary)}}
    return CompareSpec.from_dict(spec, where)


def _check_comparison(args: argparse.Namespace, spec: Any) -> None:
    """What compare and sweep refuse before anything is written, beyond the spec's own checks."""
    from .compare import grid_axes

    if args.jobs < 1:
        raise ReffAKDError(f"--jobs {args.jobs} is out of range: it must be at least 1")
    if args.command == "sweep":
        if spec.grid is None:
            raise ReffAKDError(
                "sweep needs a grid: give grid: {methods: [...], params: {KEY: [values]}} in --config or --spec, "
                "or --vary KEY=V1,V2 (docs/CONFIG.md)"
            )
        methods = grid_axes(spec.grid)[0]
        if not set(methods) & set(spec.methods):
            raise ReffAKDError(
                f"sweep: none of the grid's methods ({', '.join(methods)}) is among the methods that run "
                f"({', '.join(spec.methods)}); add them to methods"
            )


def cmd_compare(args: argparse.Namespace) -> None:
    """compare and sweep: one code path; sweep requires a grid and writes ``sweep.md``/``sweep.csv``."""
    from .compare import ALL_METHODS, check_resumable, compare_report, run_compare
    from .data import load_splits
    from .engine.distributed import pick_device
    from .reports.sweep_report import write_sweep_report

    spec = compare_spec(args)
    _check_comparison(args, spec)
    device = pick_device(args.device)
    check_resumable(Path(args.out), spec)
    data = spec.data_config()
    models = [spec.student.get("model", "lenet5")]
    if spec._needs("teacher") - {"tfkd-self"} and "checkpoint" not in spec.teacher:
        models.append(spec.teacher["model"])
    building_soft_labels = bool(spec._needs("soft_labels")) and "path" not in spec.soft_labels
    _check_input_size(models, building_soft_labels, data.dataset, data.image_size)
    splits = load_splits(data, print)
    _check_input_size(models, building_soft_labels, data.dataset, data.image_size, splits)
    sweep = args.command == "sweep"
    report = (lambda out: write_sweep_report(out, ALL_METHODS)) if sweep else compare_report
    run_compare(
        spec,
        args.out,
        splits,
        device=device,
        progress=not args.no_progress,
        log=print,
        jobs=args.jobs,
        report=report,
        config_yaml=config_text(args, spec),
    )
    print(
        f"{'sweep' if sweep else 'comparison'} folder: {args.out} "
        + ("(sweep.md, sweep.csv)" if sweep else "(results.md, results.csv, accuracy_vs_cost.png)")
    )


# --------------------------------------------------------------------------- config files

CONFIG_COMMANDS = ("run", "softlabels", "train", "compare", "sweep")
# compare/sweep options folded into the spec: the saved config holds the spec's sections instead.
SPEC_FLAGS = (
    "spec",
    "methods",
    "seeds",
    "epochs",
    "teacher",
    "teacher_model",
    "teacher_epochs",
    "soft_labels",
    "ae_epochs",
    "vary",
    "dataset",
    "data_dir",
    "image_size",
    "test_dir",
    "test_fraction",
    "streaming",
    "val_size",
    "split_seed",
    "no_download",
)


def _spec_sections() -> tuple[str, ...]:
    from .compare import CompareSpec

    return tuple(CompareSpec.__dataclass_fields__)


def apply_config_file(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Fill ``args`` from ``--config``: the file's values where the command line gave none.

    compare/sweep: a key naming a spec section (methods, seeds, data, student, teacher, soft_labels,
    method_params, grid) with a mapping or list value is a spec section, kept for ``compare_spec``;
    a plain value of a key that is also an option (``teacher: PATH``) is that option.
    """
    from .config import apply_config, check_values, given_dests, normalise_keys, read_mapping, schema, subparser

    sub = subparser(parser, args.command)
    where = f"config {args.config}"
    data = normalise_keys(read_mapping(args.config, where), where)
    given = given_dests(build_parser, argv)
    sections: dict[str, Any] = {}
    extra: tuple[str, ...] = ()
    if args.command in ("compare", "sweep"):
        options, extra = schema(sub), _spec_sections()
        sections = {k: v for k, v in data.items() if k in extra and (k not in options or isinstance(v, (dict, list)))}
        data = {k: v for k, v in data.items() if k not in sections}
    apply_config(args, sub, check_values(sub, data, where, extra), given, where)
    if sections:
        args.config_spec = ConfigSpec(where, sections, after_spec="spec" in given)


def resolved_config(args: argparse.Namespace, spec: Any = None) -> dict[str, Any]:
    """Every option's final value (compare, sweep: the options not folded into the spec, and the spec's sections)."""
    from .config import json_safe, schema, subparser

    values = {dest: getattr(args, dest, None) for dest in schema(subparser(build_parser(), args.command))}
    if args.command in ("compare", "sweep"):
        spec = spec if spec is not None else compare_spec(args)
        values = {**{k: v for k, v in values.items() if k not in SPEC_FLAGS}, **spec.to_dict()}
    return json_safe(values)


def config_text(args: argparse.Namespace, spec: Any = None) -> str:
    """The resolved config as YAML, headed by the command that produced it (comments: ignored when read back)."""
    from .config import to_yaml

    argv = getattr(args, "argv", None)
    argv = list(argv) if argv is not None else [args.command, *sys.argv[2:]]
    again = (
        "the same out: resumes"
        if args.command in ("compare", "sweep")
        else "give --out NEW: a run folder is never reused"
    )
    header = [
        f"reffakd {__version__}: resolved config of `reffakd {shlex.join(argv)}`",
        f"run it again with: reffakd {args.command} --config THIS_FILE ({again})",
    ]
    return to_yaml(resolved_config(args, spec), header)


def _check_command(args: argparse.Namespace) -> Any:
    """The checks a command makes before it touches the disk; returns the compare spec where there is one."""
    if args.command == "run":
        _soft_cfg(args)
        _student_cfg(args, "reffakd")
    elif args.command == "softlabels":
        _soft_cfg(args)
    elif args.command == "train":
        _student_cfg(args, args.method)
    elif args.command in ("compare", "sweep"):
        spec = compare_spec(args)
        _check_comparison(args, spec)
        return spec
    return None


def cmd_config(args: argparse.Namespace) -> None:
    """``reffakd config show COMMAND [OPTIONS]``: print what COMMAND would run with; writes nothing."""
    if not args.rest or args.rest[0] not in CONFIG_COMMANDS:
        got = f" {args.rest[0]!r}" if args.rest else ""
        raise ReffAKDError(
            f"config show needs a command{got}: one of {', '.join(CONFIG_COMMANDS)}, e.g. reffakd config show train --config my.yaml"
        )
    inner = parse_command(args.rest, require=False)
    spec = _check_command(inner)
    print(config_text(inner, spec), end="")


def parse_command(argv: Sequence[str], require: bool = True) -> argparse.Namespace:
    """Parse the command line, then fill in ``--config``; ``require``: the options the config may give must be there now."""
    from .config import subparser

    parser = build_parser()
    args = parser.parse_args(list(argv))
    args.argv = list(argv)
    if args.command == "config":
        return args
    args.config_spec = None
    if getattr(args, "config", None):
        apply_config_file(args, parser, argv)
    sub = subparser(parser, args.command)
    missing = [
        f"--{d.replace('_', '-')}" for d in getattr(sub, "config_required", ()) if getattr(args, d, None) is None
    ]
    if require and missing:
        sub.error(f"the following arguments are required: {', '.join(missing)} (on the command line or in --config)")
    return args


COMMANDS = {
    "run": cmd_run,
    "softlabels": cmd_softlabels,
    "train": cmd_train,
    "compare": cmd_compare,
    "sweep": cmd_compare,
    "evaluate": cmd_evaluate,
    "config": cmd_config,
}


def as_flags(exc: ReffAKDError) -> str:
    """The error's message with the library parameters it names written as their flags (val_size -> --val-size)."""
    import re

    text = str(exc)
    for param in exc.params:
        text = re.sub(rf"(?<![\w-]){re.escape(param)}\b", "--" + param.replace("_", "-"), text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_command(argv)
        COMMANDS[args.command](args)
    except ReffAKDError as exc:
        print(f"reffakd: error: {as_flags(exc)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:  # a signal during training: the resume checkpoint is written
        print(f"reffakd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("reffakd: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
