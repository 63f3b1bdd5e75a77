"""One loader for every model file ``evaluate``, ``predict`` and ``bench`` take: a reffakd checkpoint
(``.safetensors``), an exported ``model.onnx`` or an exported ``model.pt2`` (``torch.export``), each with what a
caller must know.

Whatever the file, the result is a ``DeployedModel``: uint8 pixels (N, C, H, W) at its input size in, its raw output
out (logits, probabilities or the encoder's embedding), with its class names, input size and normalisation. An
exported model's ``model.json`` is checked against the graph's own input/output signature and file hash, so a JSON that
belongs to another export is one line instead of wrong predictions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ReffAKDError, require_extra
from ..models.checkpoint import MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE
from .kinds import MODEL_FILES
from .network import import_onnxruntime, load_network


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256: what ``model.json`` records of the files it describes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DeployedModel:
    """A model as the commands use it: ``scores(uint8 pixels)`` and what to know about it.

    ``size`` is the (H, W) it takes: the dataset's own image size for a model exported by this version (the resize
    to the network's size is inside it), ``meta`` the checkpoint's metadata or the export's ``model.json``.
    """

    kind: str  # "checkpoint", "onnx" or "pt2"
    path: Path
    source: str  # how messages name it
    channels: int
    size: tuple[int, int]
    class_names: list[str]
    dataset: str | None  # the training data: which resize ``read_image_as_trained`` repeats
    input_dtype: str  # "uint8" or "float32" (pixels in [0, 1])
    output: str  # "logits", "probabilities" or "embedding"
    meta: dict[str, Any]

    @property
    def is_encoder(self) -> bool:
        return self.output == "embedding"

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's output (float32, on the CPU) for uint8 pixels (N, C, H, W), converted to its input dtype."""
        if pixels.dtype != torch.uint8 or tuple(pixels.shape[1:]) != (self.channels, *self.size):
            raise ReffAKDError(
                f"{self.source} takes uint8 images {self.channels}x{self.size[0]}x{self.size[1]}, "
                f"not {pixels.dtype} {'x'.join(map(str, pixels.shape[1:]))}"
            )
        x = pixels if self.input_dtype == "uint8" else pixels.to(torch.float32) / 255.0
        return self._run(x).float().cpu()

    def log_scores(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits, or the log of the probabilities a model exported with them gives: both rank and score alike."""
        out = self.scores(pixels)
        return torch.log(out.clamp_min(1e-45)) if self.output == "probabilities" else out

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        out = self.scores(pixels).double()
        return (out if self.output == "probabilities" else torch.softmax(out, dim=1)).numpy()

    def require_classes(self) -> None:
        if self.is_encoder:
            raise ReffAKDError(
                f"{self.source} is the autoencoder's encoder: it gives embeddings, not classes; give a student or "
                "teacher model (reffakd train)",
                params=("checkpoint",),
            )


class CheckpointModel(DeployedModel):
    """A reffakd checkpoint as the exported graph would compute it (``network.Deployable``: the same resize and
    normalisation inside), in PyTorch on ``device``."""

    def __init__(self, path: Path, device: torch.device) -> None:
        network = load_network(path)
        self.kind, self.path, self.network, self.device = "checkpoint", path, network, device
        self.source = f"checkpoint {path} ({network.meta['model']})"
        self.channels, self.size = network.input_shape[0], network.input_shape[1:]
        self.class_names = [str(n) for n in network.meta["class_names"]]
        self.dataset = network.meta.get("dataset")
        self.input_dtype = "uint8"
        self.output = "embedding" if network.is_encoder else "logits"
        self.meta = network.meta
        self.module = network.deployable("uint8", "logits").to(device)

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(pixels.to(self.device))


class ExportedModel(DeployedModel):
    """A ``model.onnx`` or ``model.pt2`` with its ``model.json``, checked against the graph it describes."""

    def _describe(self, path: Path, kind: str, info: dict[str, Any]) -> None:
        inp = info["input"]
        self.kind, self.path, self.meta = kind, path, info
        self.source = f"{'ONNX model' if kind == 'onnx' else 'torch.export program'} {path} ({info.get('model')})"
        self.channels, self.size = inp["channels"], (inp["height"], inp["width"])
        self.class_names = list(info["class_names"])
        self.dataset = info.get("dataset") if isinstance(info.get("dataset"), str) else None
        self.input_dtype = inp["dtype"]
        self.output = info["output"]["kind"]

    def check_signature(self, in_dtype: str, in_shape: list[Any], out_name: str, out_shape: list[Any]) -> None:
        """``model.json`` against the graph's own input (dtype, channels, size) and output (name, classes)."""
        info = self.meta
        problems = []
        if in_dtype != self.input_dtype:
            problems.append(f"input dtype {self.input_dtype} (graph: {in_dtype})")
        if len(in_shape) != 4 or [in_shape[1], in_shape[2], in_shape[3]] != [self.channels, *self.size]:
            problems.append(
                f"input {self.channels}x{self.size[0]}x{self.size[1]} (graph: {'x'.join(map(str, in_shape[1:]))})"
            )
        applied = info["output"].get("softmax_applied")
        softmax_disagrees = out_name != "embedding" and applied != (out_name == "probabilities")
        if out_name in ("logits", "probabilities", "embedding") and (
            out_name != info["output"].get("name") or softmax_disagrees
        ):
            problems.append(
                f"output {info['output'].get('name')!r} with softmax_applied {applied!r} (graph: {out_name!r})"
            )
        if not self.is_encoder and (len(out_shape) != 2 or out_shape[1] != len(self.class_names)):
            got = out_shape[1] if len(out_shape) == 2 else "x".join(map(str, out_shape))
            problems.append(f"{len(self.class_names)} classes (graph: {got} outputs)")
        if problems:
            raise ReffAKDError(
                f"export metadata {self.path.with_suffix('.json')} does not match the graph in {self.path.name}: it "
                f"says {'; '.join(problems)}; the two files do not belong together: export the checkpoint again"
            )


class OnnxModel(ExportedModel):
    """An ONNX file written by ``reffakd export``, run by onnxruntime."""

    def __init__(self, path: Path, device: torch.device) -> None:
        require_extra("export", ("onnxruntime",), f"a {path.name} model")
        ort = import_onnxruntime()
        self._describe(path, "onnx", read_info(path, "onnx"))
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.providers = providers
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ReffAKDError(f"ONNX model {path} is unreadable ({first}); expected a file written by "
                               "`reffakd export`") from None  # fmt: skip
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        dtypes = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}
        self.input_name = inp.name
        self.check_signature(dtypes.get(inp.type, inp.type), list(inp.shape), out.name, list(out.shape))

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: pixels.numpy()})[0])


# What a ``torch.export.save`` archive of a plain network holds (under its one top folder): JSON, raw tensor bytes,
# and the example inputs, a tensor-only pickle. ``torch.export.load`` would also unpickle weights marked
# ``use_pickle``, custom and opaque objects, legacy ``.pt`` weights, and example inputs that fail a tensor-only load
# (it retries them with ``weights_only=False``): a hostile file could run code, so anything else is refused first.
_PROGRAM_ENTRIES = re.compile(
    r"[^/]+/(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/[\w.-]+\.json"
    r"|data/(weights|constants)/[\w.-]+_config\.json|data/weights/weight_\d+|data/constants/tensor_\d+"
    r"|data/sample_inputs/[\w.-]+\.pt)"
)


def check_program_archive(path: Path) -> None:
    """Refuse a ``model.pt2`` whose loading could unpickle anything but tensors, before ``torch.export.load``."""

    def refuse(why: str) -> ReffAKDError:
        return ReffAKDError(f"torch.export program {path} {why}; reffakd reads only a model.pt2 of tensors and JSON, "
                            "as `reffakd export` writes it")  # fmt: skip

    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not _PROGRAM_ENTRIES.fullmatch(name):
                    raise refuse(f"holds {name[:100]!r}")
                if name.endswith("_config.json"):
                    config = json.loads(archive.read(name)).get("config", {})
                    for key, entry in config.items() if isinstance(config, dict) else []:
                        if (
                            not isinstance(entry, dict)
                            or entry.get("use_pickle")
                            or not re.fullmatch(r"(weight|tensor)_\d+", str(entry.get("path_name", "")))
                        ):
                            raise refuse(f"stores {str(key)[:100]!r} as a pickled object")
                elif name.endswith(".pt"):
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
    except ReffAKDError:
        raise
    except Exception as exc:  # not a zip, bad JSON, a pickle of more than tensors: many error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise refuse(f"is unreadable or unsafe ({first})") from None


class ProgramModel(ExportedModel):
    """A ``torch.export`` program written by ``reffakd export`` (``torch.export.load``: its weights are read as
    tensors only), run in PyTorch."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self._describe(path, "pt2", read_info(path, "torch_export"))
        check_program_archive(path)
        try:
            self.program = torch.export.load(str(path))
        except Exception as exc:  # a zip, JSON and tensor reader: many error types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ReffAKDError(f"torch.export program {path} is unreadable ({first}); expected a model.pt2 written "
                               "by `reffakd export`") from None  # fmt: skip
        self.device = device
        self.module = self.program.module().to(device)
        user = self.program.graph_signature.user_inputs
        nodes = {n.name: n for n in self.program.graph.nodes}
        val = nodes[user[0]].meta["val"]
        (out_node,) = [n for n in self.program.graph.nodes if n.op == "output"]
        producer = out_node.args[0][0]
        result = producer.meta["val"]
        dtypes = {torch.uint8: "uint8", torch.float32: "float32"}
        # a program's output has no name of its own: a softmax last is probabilities, else logits (or the embedding)
        if "softmax" in str(producer.target):
            out_name = "probabilities"
        else:
            out_name = "embedding" if self.meta["output"].get("name") == "embedding" else "logits"

        def dims(t: Any) -> list[Any]:
            return [d if isinstance(d, int) else None for d in t.shape]

        self.check_signature(dtypes.get(val.dtype, str(val.dtype)), dims(val), out_name, dims(result))

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(pixels.to(self.device))


def open_model(path: str | os.PathLike[str], device: torch.device) -> DeployedModel:
    """The model in ``path``, by its kind: ``.safetensors``, ``.onnx`` or ``.pt2``; anything else is one line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".onnx", ".pt2"):
        raise ReffAKDError(f"model {path} is not one reffakd reads: expected {MODEL_FILES}", params=("checkpoint",))
    if not path.is_file():
        raise ReffAKDError(f"model {path} does not exist; expected {MODEL_FILES}", params=("checkpoint",))
    if suffix == ".onnx":
        return OnnxModel(path, device)
    if suffix == ".pt2":
        return ProgramModel(path, device)
    return CheckpointModel(path, device)


def _int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def read_info(path: str | os.PathLike[str], file_key: str | None = None) -> dict[str, Any]:
    """The ``model.json`` beside an exported file, its values checked by type and range; with ``file_key`` (``onnx``
    or ``torch_export``), the SHA-256 it records of that file too (this version's exports record it)."""
    from ..io import read_json, sidecar_json

    path = Path(path)
    where = sidecar_json(path)
    info = read_json(where, "export metadata", "`reffakd export` beside the exported file")
    keys = ("input", "normalization", "output", "class_names")
    if not isinstance(info, dict) or any(k not in info for k in keys) or not isinstance(info["input"], dict) or not (
        isinstance(info["output"], dict)
    ):  # fmt: skip
        raise ReffAKDError(
            f"export metadata {where} is malformed: expected the keys {', '.join(keys)} written by `reffakd export`"
        )
    inp, out, names = info["input"], info["output"], info["class_names"]
    bad = [
        f"{key} {value!r}"
        for key, value, ok in (
            ("input.channels", inp.get("channels"), _int(inp.get("channels"), 1, MAX_CHANNELS)),
            ("input.height", inp.get("height"), _int(inp.get("height"), 1, MAX_IMAGE_SIDE)),
            ("input.width", inp.get("width"), _int(inp.get("width"), 1, MAX_IMAGE_SIDE)),
            ("input.dtype", inp.get("dtype"), inp.get("dtype") in ("uint8", "float32")),
            ("output.kind", out.get("kind"), out.get("kind") in ("logits", "probabilities", "embedding")),
            ("output.softmax_applied", out.get("softmax_applied"), isinstance(out.get("softmax_applied"), bool)),
            (
                "class_names",
                str(names)[:60],
                isinstance(names, list) and 1 <= len(names) <= MAX_CLASSES and all(isinstance(n, str) for n in names),
            ),
        )
        if not ok
    ]
    if bad:
        raise ReffAKDError(
            f"export metadata {where} has {', '.join(bad)}: expected channels 1 to {MAX_CHANNELS}, height and width "
            f"1 to {MAX_IMAGE_SIDE}, dtype uint8 or float32, output kind logits, probabilities or embedding, "
            "softmax_applied true or false, and a list of class names, as `reffakd export` writes them"
        )
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    entry = files.get(file_key) if file_key else None
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded is not None and recorded != file_sha256(path):
        raise ReffAKDError(
            f"export metadata {where} describes another {path.name} (its SHA-256 differs): the two files do not "
            "belong together; export the checkpoint again"
        )
    return info
