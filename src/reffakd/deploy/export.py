"""``reffakd export``: a checkpoint to ONNX and to a ``torch.export`` program, with its preprocessing in JSON.

The graph is captured once with ``torch.export`` (batch size dynamic); the ``.pt2`` program is that
capture saved, and the ONNX file is converted from the same capture by PyTorch's exporter, so the
two formats cannot disagree about what the model computes.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ReffAKDError, require_extra
from ..io import write_json
from .network import Deployable, load_network, preprocessing

ONNX_FILE, PROGRAM_FILE, INFO_FILE = "model.onnx", "model.pt2", "model.json"
INPUT_NAME = "pixels"
EXPORT_MODULES = ("onnx", "onnxscript")
EXPORT_KIND = "export"  # the staged folder's marker kind: no other command's OUT.partial is taken


def example_input(shape: tuple[int, int, int], input_kind: str, batch: int = 2) -> torch.Tensor:
    """A batch of the exported input type (batch 2: torch.export specialises sizes 0 and 1)."""
    if input_kind == "uint8":
        return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)
    return torch.rand((batch, *shape))


def capture(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` with a dynamic batch dimension; one line when the graph cannot be captured."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch raises many types (UserError, Unsupported, RuntimeError...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ReffAKDError(f"torch.export cannot capture this model: {first}") from None


def to_onnx(program: torch.export.ExportedProgram, example: torch.Tensor, output_name: str) -> Any:
    """The ONNX program converted from a captured program (quietly: the exporter prints its progress)."""
    require_extra("export", EXPORT_MODULES, "ONNX export")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            program, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[output_name], verbose=False
        )


def export_checkpoint(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, input_kind: str = "uint8",
    output: str = "logits",
) -> dict[str, Any]:  # fmt: skip
    """Write ``out/`` with ``model.onnx``, ``model.pt2`` and ``model.json``; the folder appears whole or not at all.

    The graph takes the dataset's own image size (``TrainedNetwork.input_shape``) and resizes inside. ``model.json``
    records each file's SHA-256, so a JSON beside another export's model is refused when read. ``OUT.partial`` is
    this export's alone: one left by another command or another run is refused, never removed or reused, and a
    failed export (a full disk) removes its own, so nothing half-written is left.
    """
    from ..rundir import check_new_run_dir, check_partial, partial_path, staged_run_dir
    from .model import file_sha256

    require_extra("export", EXPORT_MODULES, "reffakd export")
    check_new_run_dir(out)
    check_partial(partial_path(Path(out)), kind=EXPORT_KIND, resumable=False)
    network = load_network(checkpoint)
    module: Deployable = network.deployable(input_kind, output)
    example = example_input(network.input_shape, input_kind)
    program = capture(module, example)
    info = preprocessing(network.meta, input_kind, output, encoder=network.is_encoder)
    output_name = info["output"]["name"]
    onnx_program = to_onnx(program, example, output_name)
    opsets = {entry.domain or "ai.onnx": entry.version for entry in onnx_program.model_proto.opset_import}
    info["files"] = {
        "onnx": {"file": ONNX_FILE, "input": INPUT_NAME, "output": output_name, "opset": opsets.get("ai.onnx")},
        "torch_export": {"file": PROGRAM_FILE, "load": "torch.export.load(path).module()", "torch": torch.__version__},
    }
    info["source_checkpoint"] = str(Path(checkpoint))
    with staged_run_dir(out, kind=EXPORT_KIND, resumable=False, discard=True) as folder:
        onnx_program.save(str(folder / ONNX_FILE))
        torch.export.save(program, str(folder / PROGRAM_FILE))
        info["files"]["onnx"]["sha256"] = file_sha256(folder / ONNX_FILE)
        info["files"]["torch_export"]["sha256"] = file_sha256(folder / PROGRAM_FILE)
        write_json(folder / INFO_FILE, info)
    return info
