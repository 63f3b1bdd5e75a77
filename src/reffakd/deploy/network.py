"""A trained network as it leaves reffakd: pixels in, normalisation inside, logits or probabilities out.

A deployed model should not depend on the user repeating reffakd's preprocessing: the mean/std
normalisation (and the uint8 -> [0, 1] scaling) are part of the module that is exported, benchmarked
and run by ``predict``, so the ONNX file, the ``torch.export`` program and the PyTorch checkpoint give
the same outputs for the same pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..data.dataset import interpolation_matrix, native_size, resize_method
from ..errors import ReffAKDError
from ..models import ConvAutoencoder, load_checkpoint
from ..models.checkpoint import build_model, check_state
from ..version import __version__
from .kinds import INPUT_KINDS, OUTPUT_KINDS


def import_onnxruntime() -> Any:
    """onnxruntime, imported with its telemetry off: left on, importing it writes a device id and an event database
    under ``$HOME/.cache/Microsoft/DeveloperTools``, outside ``--out`` and reffakd's cache. A user's own
    ``ORT_DISABLE_TELEMETRY`` is kept; it is read once, when onnxruntime is first imported."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


PREPROCESSING_VERSION = 2


class Encoder(nn.Module):
    """The autoencoder's encoder as a module of its own: the flattened embedding the soft labels come from."""

    def __init__(self, autoencoder: ConvAutoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(x)


class Deployable(nn.Module):
    """``net`` behind its own preprocessing: (N, C, H, W) pixels as ``input_kind`` -> ``output``.

    ``input_size``: the size a client's images have (the dataset's files', 28 x 28 for Fashion-MNIST); when it is not
    the network's, the loader's resize runs inside (``data.dataset.interpolation_matrix``: its bilinear weights,
    then rounded to uint8 levels as the loader stores them), so a client feeds raw images. The scale, the resize
    weights and the mean/std are buffers, so they travel in every exported format as constants.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: list[float],
        std: list[float],
        input_kind: str = "uint8",
        output: str = "logits",
        input_size: tuple[int, int] | None = None,
        net_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ReffAKDError(f"input {input_kind!r} is not one of {', '.join(INPUT_KINDS)}", params=("input",))
        if output not in OUTPUT_KINDS:
            raise ReffAKDError(f"output {output!r} is not one of {', '.join(OUTPUT_KINDS)}", params=("output",))
        self.net = net
        self.input_kind, self.output = input_kind, output
        self.resizes = input_size is not None and net_size is not None and tuple(input_size) != tuple(net_size)
        if self.resizes:
            assert input_size is not None and net_size is not None
            self.register_buffer("rows", interpolation_matrix(int(input_size[0]), int(net_size[0])))
            self.register_buffer("cols", interpolation_matrix(int(input_size[1]), int(net_size[1])).t().contiguous())
        # float input is brought to the 0..255 levels the loader resized and rounded; uint8 input already is
        self.pre = 255.0 if self.resizes and input_kind == "float" else 1.0
        scale = 1.0 / 255.0 if input_kind == "uint8" or self.resizes else 1.0
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x * scale - mean) / std as one multiply-add: x * (scale / std) + (-mean / std)
        self.register_buffer("gain", scale / std_t)
        self.register_buffer("offset", -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float32)
        if self.resizes:  # rows @ (x @ cols): the loader's order (width, then height), rounded as it stores uint8
            x = torch.matmul(self.rows, torch.matmul(x * self.pre if self.pre != 1.0 else x, self.cols))
            x = torch.clamp(torch.round(x), 0.0, 255.0)
        out = self.net(x * self.gain + self.offset)
        return torch.softmax(out, dim=1) if self.output == "probabilities" else out


@dataclass
class TrainedNetwork:
    """A network rebuilt from a reffakd checkpoint: a classifier (student, teacher) or the autoencoder's encoder."""

    net: nn.Module
    meta: dict[str, Any]
    path: Path

    @property
    def is_encoder(self) -> bool:
        return self.meta["model"] == "autoencoder"

    @property
    def shape(self) -> tuple[int, int, int]:
        """The network's own input (C, H, W): the training images' size."""
        return (int(self.meta["in_channels"]), *(int(s) for s in self.meta["image_size"]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """What the deployed model takes (C, H, W): the dataset's own image size (``data.dataset.native_size``)."""
        c, h, w = self.shape
        return (c, *native_size(self.meta.get("dataset"), (h, w)))

    def deployable(self, input_kind: str = "uint8", output: str = "logits") -> Deployable:
        if self.is_encoder and output != "logits":
            raise ReffAKDError(
                f"{self.path} is the autoencoder: its output is the embedding, not class scores; "
                "give output logits (the embedding) or export a student or teacher checkpoint",
                params=("output",),
            )
        return Deployable(
            self.net, self.meta["mean"], self.meta["std"], input_kind, output, self.input_shape[1:], self.shape[1:]
        ).eval()


def load_network(path: str | os.PathLike[str]) -> TrainedNetwork:
    """A student/teacher checkpoint (``reffakd train``) or the autoencoder (``reffakd softlabels``), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ReffAKDError(
            f"checkpoint {path} does not exist; expected a .safetensors file written by `reffakd train` "
            "or `reffakd softlabels`",
            params=("checkpoint",),
        )
    state, meta = load_checkpoint(path)
    if meta["model"] != "autoencoder":
        return TrainedNetwork(build_model(state, meta, path).eval(), meta, path)
    ae = ConvAutoencoder(int(meta["in_channels"]), tuple(meta["image_size"]))
    try:
        ae.load_state_dict(state)
    except RuntimeError:
        raise ReffAKDError(f"checkpoint {path} does not fit the autoencoder its metadata names") from None
    check_state(state, ae, path)
    return TrainedNetwork(Encoder(ae).eval(), meta, path)


def preprocessing(meta: dict[str, Any], input_kind: str, output: str, encoder: bool = False) -> dict[str, Any]:
    """What a user of the exported model must know, written beside it as JSON (and read back by ``open_model``)."""
    c, (h, w) = int(meta["in_channels"]), meta["image_size"]
    ih, iw = native_size(meta.get("dataset"), (int(h), int(w)))
    resized = (ih, iw) != (int(h), int(w))
    method = resize_method(meta.get("dataset"))
    return {
        "format_version": PREPROCESSING_VERSION,
        "made_by": f"reffakd {__version__} export",
        "model": meta["model"],
        "dataset": meta.get("dataset"),
        "input": {
            "name": "pixels",
            "layout": "NCHW",
            "shape": ["batch", c, ih, iw],
            "dtype": "uint8" if input_kind == "uint8" else "float32",
            "range": [0, 255] if input_kind == "uint8" else [0.0, 1.0],
            "channels": c,
            "color": "grayscale (PIL mode L)" if c == 1 else "RGB",
            "height": ih,
            "width": iw,
            "batch": "dynamic",
            "resize": (
                f"inside the graph, {ih}x{iw} -> {int(h)}x{int(w)} as at training: {method}"
                if resized
                else f"none inside; images of another size: to height x width as at training: {method}"
            ),
        },
        "network_input": {"height": int(h), "width": int(w), "resized_inside": resized},
        "normalization": {"baked_in": True, "mean": list(meta["mean"]), "std": list(meta["std"])},
        "output": {
            "name": "embedding" if encoder else output,
            "kind": "embedding" if encoder else output,
            "softmax_applied": output == "probabilities",
        },
        "class_names": list(meta["class_names"]),
        "checkpoint_epoch": meta.get("epoch"),
        "data": meta.get("data"),  # the split it was selected on: ``evaluate --split val`` checks it
    }
