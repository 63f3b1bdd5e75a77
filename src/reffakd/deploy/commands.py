"""The commands that take a trained model out of the lab: ``evaluate``, ``export``, ``predict`` and ``bench``.

Each is one dataclass of ``opt`` fields (its flags, read by ``runconfig.COMMANDS``) and one function of it. They use
no run, spec or comparison, so they live beside what they call; the command line's parser reads the dataclasses, so
this module imports torch only inside the functions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReffAKDError
from ..io import strict_json, write_json_new
from ..settings import opt
from .kinds import INPUT_KINDS, MODEL_FILES, OUTPUT_KINDS

if TYPE_CHECKING:
    from ..data import DataConfig

MODEL_FILE = f"{MODEL_FILES} (required)"  # the --checkpoint of evaluate and predict


@dataclass
class EvaluateOptions:
    checkpoint: str | None = opt(None, MODEL_FILE, metavar="PATH")
    split: str = opt("test", "the split to evaluate", choices=("test", "val"))
    folder: str | None = opt(
        None, "score a labelled image folder instead (one sub-folder per class, named as the class, with / \\ : * ? "
        '" < > | and control characters as _)', metavar="DIR",
    )  # fmt: skip
    class_map: str | None = opt(
        None, "with --folder: a JSON file mapping each sub-folder's name to its class name", metavar="PATH"
    )


@dataclass
class ExportOutput:
    """``export`` takes no ``--config`` file, so its folder comes from the flag alone."""

    out: str | None = opt(None, "new folder for model.pt2, model.onnx and model.json (required)")


@dataclass
class ExportOptions:
    checkpoint: str | None = opt(
        None, "a .safetensors checkpoint: a student or teacher (reffakd train), or the autoencoder "
        "(softlabels/autoencoder.safetensors: its encoder) (required)", metavar="PATH",
    )  # fmt: skip
    input: str = opt("uint8", "pixels the exported model takes: uint8 (0..255) or float ([0, 1])", choices=INPUT_KINDS)
    output: str = opt("logits", "what it returns (the autoencoder: always its embedding)", choices=OUTPUT_KINDS)


@dataclass
class PredictOptions:
    checkpoint: str | None = opt(None, MODEL_FILE, metavar="PATH")
    images: list[str] = opt(None, "image files or folders (searched at any depth)", positional=True, metavar="IMAGE")
    top_k: int = opt(3, "classes listed per image")
    csv: str | None = opt(None, "also write the predictions to this new CSV file", metavar="PATH")


@dataclass
class BenchOptions:
    checkpoint: list[str] | None = opt(
        None, "a model to measure (repeat for more): a .safetensors checkpoint, a model.onnx or a model.pt2",
        metavar="PATH", append=True,
    )  # fmt: skip
    model: list[str] | None = opt(
        None, "an architecture to measure at its initial weights (repeat): a registry name or timm/NAME",
        metavar="NAME", append=True,
    )  # fmt: skip
    shape: list[int] | None = opt(None, "input C,H,W of --model (default: the first checkpoint's)")
    num_classes: int | None = opt(None, "classes of --model (default: the first checkpoint's)")
    batch_size: int = opt(256, "batch of the throughput measurement")
    latency_runs: int = opt(100, "timed batch-1 calls (after 10 untimed warm-up calls)")
    throughput_runs: int = opt(10, "timed large-batch calls (after 2 untimed warm-up calls)")
    threads: int | None = opt(None, "CPU threads of PyTorch and onnxruntime (default: PyTorch's)")
    onnx: bool = opt(True, "PyTorch only, not onnxruntime", flag="no-onnx", negate=True)
    json: str | None = opt(None, "also write the measurements to this new JSON file", metavar="PATH")


def evaluate(opts: EvaluateOptions, data: DataConfig, device: str) -> None:
    """Any model ``open_model`` reads, fed uint8 images at its input size: a dataset's split loaded at that size (the
    exported graph, and the checkpoint behind ``Deployable``, resize inside as the loader did) or a labelled folder's
    files."""
    from ..data import load_splits
    from ..engine.distributed import pick_device
    from ..models.checkpoint import check_fits, check_split
    from .model import open_model
    from .score import folder_batches, labelled_folder, score, tensor_batches

    path, split_name = opts.checkpoint, opts.split
    if opts.class_map is not None and opts.folder is None:
        raise ReffAKDError("class_map applies to folder only: give folder DIR too", params=("class_map",))
    model = open_model(path, pick_device(device))
    model.require_classes()
    if opts.folder is not None:
        files = labelled_folder(opts.folder, model.class_names, opts.class_map)
        scored, batches = {"folder": str(opts.folder)}, folder_batches(model, files)
    else:
        h, w = model.size
        splits = load_splits(replace(data, image_size=h) if h == w else data, log=lambda line: None)
        shape = [splits.in_channels, *splits.image_size]
        fits = {"class_names": model.class_names, "num_classes": len(model.class_names), "in_channels": model.channels,
                "image_size": list(model.size)}  # fmt: skip
        check_fits(fits, splits.class_names, shape, model.source, data.dataset)
        if split_name == "val":  # the split it was selected on, its fingerprint of the images at the network's size
            meta = model.meta
            net = meta.get("image_size") or [(meta.get("network_input") or {}).get(k) for k in ("height", "width")]
            same = list(net) == [h, w] or not (isinstance(net[0], int) and net[0] == net[1])
            ident = splits if same else load_splits(replace(data, image_size=int(net[0])), log=lambda line: None)
            check_split(model.meta, ident.identity, model.source)
        split = splits.test if split_name == "test" else splits.val
        scored, batches = {"split": split_name}, tensor_batches(split.images, split.labels)
    epoch = model.meta.get("epoch", model.meta.get("checkpoint_epoch"))
    print(strict_json({"checkpoint": str(path), "model_file": model.kind, **scored, "epoch": epoch,
                       **score(model, batches)}))  # fmt: skip


def export(opts: ExportOptions, out: str) -> None:
    """``model.pt2``, ``model.onnx`` and ``model.json`` in the new folder ``out``."""
    from .export import export_checkpoint

    info = export_checkpoint(opts.checkpoint, out, input_kind=opts.input, output=opts.output)
    pixels = info["input"]
    print(
        f"exported {info['model']} ({pixels['dtype']} {pixels['channels']}x{pixels['height']}x{pixels['width']} "
        f"pixels, dynamic batch -> {info['output']['name']}): {Path(out) / 'model.onnx'}, {Path(out) / 'model.pt2'}, "
        f"{Path(out) / 'model.json'}"
    )


def new_file(path: str | None, what: str) -> None:
    """A file reffakd writes for the user is new: an existing one is never replaced."""
    if path is not None and Path(path).exists():
        raise ReffAKDError(f"{what} {path} already exists; choose a new path (reffakd never overwrites it)",
                           params=(what,))  # fmt: skip


def predict(opts: PredictOptions, device: str) -> int:
    """Every readable image's top-k; each unreadable one is one error line, and the exit status says so."""
    from ..engine.distributed import pick_device
    from .model import open_model
    from .predict import format_prediction, predict_images, write_csv

    new_file(opts.csv, "csv")  # early, before any work; the write itself refuses a file created meanwhile
    model = open_model(opts.checkpoint, pick_device(device))
    model.require_classes()
    c, (h, w) = model.channels, model.size
    print(f"{model.source}: {len(model.class_names)} classes; images read as {'grayscale' if c == 1 else 'RGB'} "
          f"{h}x{w} (converted and bilinear-resized as at training where they differ)")  # fmt: skip
    report = lambda message: print(f"reffakd: error: {message}", file=sys.stderr, flush=True)  # noqa: E731
    results = predict_images(model, opts.images, opts.top_k, on_error=report)
    for pred in results:
        if pred.error is None:
            print(format_prediction(pred))
    if opts.csv:
        write_csv(opts.csv, results, opts.top_k)
        print(f"csv: {opts.csv}")
    return 1 if any(p.error for p in results) else 0


def bench(opts: BenchOptions, device: str) -> None:
    """Each model's inference cost as a table (and ``--json``), on ``device``."""
    import torch

    from ..engine.distributed import pick_device
    from .bench import bench_table, measure_subject, subjects

    new_file(opts.json, "json")
    for key in ("batch_size", "latency_runs", "throughput_runs", "threads"):
        value = getattr(opts, key)
        if value is not None and value < 1:
            raise ReffAKDError(f"{key} {value} is out of range: it must be at least 1", params=(key,))
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    on = pick_device(device)
    records: list[dict[str, Any]] = []
    for subject in subjects(opts.checkpoint or [], opts.model or [], opts.shape, opts.num_classes):
        records.append(measure_subject(subject, on, latency_runs=opts.latency_runs, batch_size=opts.batch_size,
                                       throughput_runs=opts.throughput_runs, onnx=opts.onnx))  # fmt: skip
        print(f"measured {subject.label}", flush=True)
    print(f"device {on}, {torch.get_num_threads()} threads")
    print(bench_table(records, opts.batch_size))
    if opts.json:
        write_json_new(opts.json, {"device": str(on), "batch_size": opts.batch_size, "models": records}, "json")
