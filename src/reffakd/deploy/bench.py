"""``reffakd bench``: what a model costs at inference, in PyTorch and in onnxruntime, beside the teacher it replaces.

Parameters, file size, forward FLOPs (``resources.forward_flops``), latency at batch 1 and throughput at a large
batch, each the median and interquartile range of repeated calls after untimed warm-up calls, with the input shape
each row was fed. The model measured is the deployed one (``model.open_model``): pixels at its input size in, the
resize and normalisation inside.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ReffAKDError, require_extra
from ..io import read_json
from ..models.checkpoint import MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE
from ..resources import forward_flops, parameter_count
from .export import capture, example_input, to_onnx
from .network import Deployable, import_onnxruntime


@dataclass
class Subject:
    """One model to measure: a checkpoint, an exported ``model.onnx`` or ``model.pt2`` (``model.open_model``), or an
    architecture at its initial weights (same cost). ``shape`` is the input it takes (C, H, W), ``net_shape`` the
    network's own (FLOPs are the network's); ``module`` a PyTorch module to time, ``onnx_path`` an ONNX file to time
    (else a checkpoint's module is exported in memory)."""

    label: str
    module: nn.Module | None
    shape: tuple[int, int, int]
    num_classes: int
    file_bytes: int
    test_top1: float | None = None
    net_shape: tuple[int, int, int] | None = None
    input_dtype: str = "uint8"
    onnx_path: Path | None = None
    parameters: int | None = None
    runtime: str = "pytorch"


def from_checkpoint(path: str | os.PathLike[str]) -> Subject:
    """Any file ``open_model`` reads; a checkpoint is timed in PyTorch and, exported in memory, in onnxruntime, an
    exported file in its own runtime only."""
    from .model import CheckpointModel, OnnxModel, ProgramModel, open_model

    model = open_model(path, torch.device("cpu"))
    summary = Path(path).parent / "summary.json"
    top1 = None
    if summary.is_file():
        data = read_json(summary, "run summary", "`reffakd train`")
        top1 = (data.get("test_best") or {}).get("top1") if isinstance(data, dict) else None
    label = f"{model.meta['model']} ({Path(path).parent.name}/{Path(path).name})"
    shape = (model.channels, *model.size)
    size = Path(path).stat().st_size
    common = {"label": label, "shape": shape, "num_classes": len(model.class_names), "file_bytes": size,
              "test_top1": top1, "input_dtype": model.input_dtype}  # fmt: skip
    if isinstance(model, CheckpointModel):
        module = model.module
        return Subject(module=module, net_shape=model.network.shape, parameters=parameter_count(module.net), **common)
    if isinstance(model, ProgramModel):
        params = sum(t.numel() for t in model.program.state_dict.values())
        return Subject(module=model.module, parameters=params, runtime="pytorch (torch.export)", **common)
    assert isinstance(model, OnnxModel)
    import onnx

    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path), load_external_data=False).graph.initializer)
    return Subject(module=None, onnx_path=Path(path), parameters=params, runtime="onnxruntime", **common)


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
    return Subject(f"{name} (architecture)", module, shape, num_classes, size, net_shape=shape,
                   parameters=parameter_count(net))  # fmt: skip


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


def _spread(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (25th, 75th percentile) of repeated measurements."""
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return float(p50), float(p25), float(p75)


def _summary(single: list[float], batched: list[float], batch: int) -> dict[str, float]:
    med, q1, q3 = _spread([1000 * t for t in single])
    rates = [batch / t for t in batched]
    r_med, r_q1, r_q3 = _spread(rates)
    return {
        "latency_ms_median": med,
        "latency_ms_p25": q1,
        "latency_ms_p75": q3,
        "latency_ms_p95": 1000 * float(np.percentile(single, 95)),
        "latency_runs": len(single),
        "throughput_images_per_s": r_med,
        "throughput_p25": r_q1,
        "throughput_p75": r_q3,
        "throughput_runs": len(batched),
    }


def measure_subject(
    subject: Subject, device: torch.device, *, latency_runs: int = 100, throughput_runs: int = 10,
    batch_size: int = 256, onnx: bool = True, onnx_model: bytes | None = None, warmup: int = 10,
) -> dict[str, Any]:  # fmt: skip
    """One subject's static costs and its timings per runtime, each after ``warmup`` untimed calls (2 at the large
    batch); ``onnx_model``: an export of a checkpoint already made (as ``reffakd export`` writes it), else it is
    exported here."""
    dtype = subject.input_dtype
    one = example_input(subject.shape, "uint8" if dtype == "uint8" else "float", 1)
    many = example_input(subject.shape, "uint8" if dtype == "uint8" else "float", batch_size)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    net = subject.module.net if isinstance(subject.module, Deployable) else None  # an exported program: not counted
    record: dict[str, Any] = {
        "model": subject.label,
        "input": {"shape": [1, *subject.shape], "batch_shape": [batch_size, *subject.shape], "dtype": dtype},
        "parameters": subject.parameters,
        "file_bytes": subject.file_bytes,
        "forward_flops_per_image": forward_flops(net, subject.net_shape or subject.shape) if net is not None else None,
        "test_top1": subject.test_top1,
        "threads": torch.get_num_threads(),
        "warmup_calls": {"latency": warmup, "throughput": 2},
        "runtimes": {},
    }
    if subject.module is not None:
        module = subject.module.to(device)
        x1, xn = one.to(device), many.to(device)
        with torch.inference_mode():
            single = _times(lambda: module(x1), latency_runs, warmup, sync)
            batched = _times(lambda: module(xn), throughput_runs, 2, sync)
        record["runtimes"][subject.runtime] = _summary(single, batched, batch_size)
        subject.module.to("cpu")
    if subject.onnx_path is not None or (onnx and isinstance(subject.module, Deployable)):
        require_extra("export", ("onnx", "onnxscript", "onnxruntime"), "bench in onnxruntime (or give no_onnx)")
        ort = import_onnxruntime()

        data = subject.onnx_path.read_bytes() if subject.onnx_path is not None else onnx_model
        if data is None:
            assert isinstance(subject.module, Deployable)
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
        x1n, xnn = one.numpy(), many.numpy()
        single = _times(lambda: session.run(None, {name: x1n}), latency_runs, warmup, lambda: None)
        batched = _times(lambda: session.run(None, {name: xnn}), throughput_runs, 2, lambda: None)
        record["runtimes"]["onnxruntime"] = {**_summary(single, batched, batch_size), "providers": providers[0]}
    return record


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def bench_table(records: Sequence[dict[str, Any]], batch_size: int) -> str:
    """Markdown: one row per model and runtime, with the input it was fed, and each timing's median and
    interquartile range over the repeated calls (after the warm-up calls)."""
    head = ["model", "input", "test top-1", "parameters", "file (model / ONNX)", "forward MFLOPs/image", "runtime",
            "latency b=1 median (ms)", "latency IQR (ms)", f"throughput b={batch_size} median (images/s)",
            "throughput IQR (images/s)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        files = _size(r["file_bytes"]) + (f" / {_size(r['onnx_bytes'])}" if "onnx_bytes" in r else "")
        top1 = f"{r['test_top1']:.2f}%" if r["test_top1"] is not None else "-"
        params = f"{r['parameters']:,}" if r["parameters"] is not None else "-"
        flops = r["forward_flops_per_image"]
        mflops = f"{flops / 1e6:,.2f}" if flops is not None else "-"
        shape = "x".join(map(str, r["input"]["shape"][1:])) + f" {r['input']['dtype']}"
        for runtime, t in r["runtimes"].items():
            lines.append(
                f"| {r['model']} | {shape} | {top1} | {params} | {files} | {mflops} | {runtime} "
                f"| {t['latency_ms_median']:.3f} | {t['latency_ms_p25']:.3f}-{t['latency_ms_p75']:.3f} "
                f"| {t['throughput_images_per_s']:,.0f} | {t['throughput_p25']:,.0f}-{t['throughput_p75']:,.0f} |"
            )
    return "\n".join(lines)


def subjects(
    checkpoints: Sequence[str], models: Sequence[str], shape: Sequence[int] | None, num_classes: int | None
) -> list[Subject]:
    """The checkpoints, then the architectures built for ``shape``/``num_classes`` (default: the first checkpoint's)."""
    found = [from_checkpoint(p) for p in checkpoints]
    if models:
        if shape is None and found:
            shape = found[0].net_shape or found[0].shape
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
