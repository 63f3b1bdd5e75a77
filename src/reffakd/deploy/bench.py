"""``reffakd bench``: what a model costs at inference, in PyTorch and in onnxruntime, beside the teacher it replaces.

Parameters, file size, forward FLOPs (``resources.forward_flops``), latency at batch 1 (median and 95th
percentile of single calls) and throughput at a large batch (images per second of the median batch).
The model measured is the deployed one, ``Deployable``: uint8 pixels in, normalisation inside.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ReffAKDError, require_extra
from ..io import read_json
from ..models.checkpoint import MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE
from ..resources import forward_flops, parameter_count
from .export import capture, example_input, to_onnx
from .network import Deployable, import_onnxruntime, load_network


@dataclass
class Subject:
    """One model to measure: from a checkpoint, or an architecture at its initial weights (same cost)."""

    label: str
    module: Deployable
    shape: tuple[int, int, int]
    num_classes: int
    file_bytes: int
    test_top1: float | None = None


def from_checkpoint(path: str | os.PathLike[str]) -> Subject:
    network = load_network(path)
    summary = Path(path).parent / "summary.json"
    top1 = None
    if summary.is_file():
        data = read_json(summary, "run summary", "`reffakd train`")
        top1 = (data.get("test_best") or {}).get("top1") if isinstance(data, dict) else None
    label = f"{network.meta['model']} ({Path(path).parent.name}/{Path(path).name})"
    classes = len(network.meta["class_names"])
    return Subject(label, network.deployable(), network.shape, classes, Path(path).stat().st_size, top1)


def from_architecture(name: str, shape: tuple[int, int, int], num_classes: int) -> Subject:
    """A registered (or timm/) architecture at its initial weights; its file size is that of its safetensors."""
    from safetensors.torch import save_file

    from ..models import create_model

    net = create_model(name, num_classes=num_classes, in_channels=shape[0], image_size=shape[1:])
    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(Path(tmp) / "w.safetensors"))
        size = (Path(tmp) / "w.safetensors").stat().st_size
    module = Deployable(net, [0.0] * shape[0], [1.0] * shape[0]).eval()
    return Subject(f"{name} (architecture)", module, shape, num_classes, size)


def _times(fn: Callable[[], object], runs: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _summary(single: list[float], batched: list[float], batch: int) -> dict[str, float]:
    return {
        "latency_ms_median": 1000 * statistics.median(single),
        "latency_ms_p95": 1000 * float(np.percentile(single, 95)),
        "throughput_images_per_s": batch / statistics.median(batched),
    }


def measure_subject(
    subject: Subject, device: torch.device, *, latency_runs: int = 100, throughput_runs: int = 10,
    batch_size: int = 256, onnx: bool = True, onnx_model: bytes | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One subject's static costs and its timings per runtime; ``onnx_model``: an export of it already made (uint8
    input, as ``reffakd export`` writes by default), else it is exported here."""
    module = subject.module.to(device)
    one = example_input(subject.shape, "uint8", 1).to(device)
    many = example_input(subject.shape, "uint8", batch_size).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    record: dict[str, Any] = {
        "model": subject.label,
        "parameters": parameter_count(module.net),
        "file_bytes": subject.file_bytes,
        "forward_flops_per_image": forward_flops(module.net, subject.shape),
        "test_top1": subject.test_top1,
        "threads": torch.get_num_threads(),
        "runtimes": {},
    }
    with torch.inference_mode():
        single = _times(lambda: module(one), latency_runs, 10, sync)
        batched = _times(lambda: module(many), throughput_runs, 2, sync)
    record["runtimes"]["pytorch"] = _summary(single, batched, batch_size)
    if onnx:
        require_extra("export", ("onnx", "onnxscript", "onnxruntime"), "bench in onnxruntime (or give no_onnx)")
        ort = import_onnxruntime()

        data = onnx_model
        if data is None:
            program = capture(subject.module.to("cpu"), example_input(subject.shape, "uint8"))
            data = to_onnx(program, example_input(subject.shape, "uint8"), "logits").model_proto.SerializeToString()
        record["onnx_bytes"] = len(data)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(data, options, providers=providers)
        name = session.get_inputs()[0].name
        x1, xn = one.cpu().numpy(), many.cpu().numpy()
        single = _times(lambda: session.run(None, {name: x1}), latency_runs, 10, lambda: None)
        batched = _times(lambda: session.run(None, {name: xn}), throughput_runs, 2, lambda: None)
        record["runtimes"]["onnxruntime"] = {**_summary(single, batched, batch_size), "providers": providers[0]}
    subject.module.to("cpu")
    return record


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def bench_table(records: Sequence[dict[str, Any]], batch_size: int) -> str:
    """Markdown: one row per model and runtime."""
    head = ["model", "test top-1", "parameters", "file (safetensors / ONNX)", "forward MFLOPs/image", "runtime",
            "latency b=1 median (ms)", "p95 (ms)", f"throughput b={batch_size} (images/s)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        files = _size(r["file_bytes"]) + (f" / {_size(r['onnx_bytes'])}" if "onnx_bytes" in r else "")
        top1 = f"{r['test_top1']:.2f}%" if r["test_top1"] is not None else "-"
        for runtime, t in r["runtimes"].items():
            lines.append(
                f"| {r['model']} | {top1} | {r['parameters']:,} | {files} | {r['forward_flops_per_image'] / 1e6:,.2f} "
                f"| {runtime} | {t['latency_ms_median']:.3f} | {t['latency_ms_p95']:.3f} "
                f"| {t['throughput_images_per_s']:,.0f} |"
            )
    return "\n".join(lines)


def subjects(
    checkpoints: Sequence[str], models: Sequence[str], shape: Sequence[int] | None, num_classes: int | None
) -> list[Subject]:
    """The checkpoints, then the architectures built for ``shape``/``num_classes`` (default: the first checkpoint's)."""
    found = [from_checkpoint(p) for p in checkpoints]
    if models:
        if shape is None and found:
            shape = found[0].shape
        if num_classes is None and found:
            num_classes = found[0].num_classes
        if shape is None or num_classes is None:
            raise ReffAKDError(
                "bench of an architecture needs its input: give shape C,H,W and num_classes, or a checkpoint to take "
                "them from",
                params=("shape", "num_classes"),
            )
        if len(shape) != 3 or not (
            1 <= shape[0] <= MAX_CHANNELS and all(1 <= s <= MAX_IMAGE_SIDE for s in shape[1:])
            and 1 <= num_classes <= MAX_CLASSES
        ):  # fmt: skip
            raise ReffAKDError(
                f"shape {','.join(map(str, shape))} and num_classes {num_classes}: expected C,H,W with C from 1 to "
                f"{MAX_CHANNELS} and H, W from 1 to {MAX_IMAGE_SIDE} (what a checkpoint may hold), and 1 to "
                f"{MAX_CLASSES:,} classes",
                params=("shape", "num_classes"),
            )
        found += [from_architecture(m, (int(shape[0]), int(shape[1]), int(shape[2])), num_classes) for m in models]
    if not found:
        raise ReffAKDError(
            "bench needs something to measure: give checkpoint PATH or model NAME", params=("checkpoint", "model")
        )
    return found
