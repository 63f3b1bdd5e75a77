"""The autoencoder as a task of the training loop, and embedding images with it.

The autoencoder trains through ``engine.fit`` like every student (resume, signals, DDP, the same
checkpoints), so ``AutoencoderTask`` says only what differs: the loss is pixel MSE against the
input, there is no accuracy, and the selection metric is validation MSE, lower is better.

The autoencoder reconstructs [0, 1] pixels with MSE (what its Sigmoid can output); normalisation
is for the classifiers only. Embeddings come from un-augmented training images by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine.speed import SpeedOptions
from ..engine.task import Selection, Step, unwrapped, wrapped
from ..models.autoencoder import ConvAutoencoder

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class AutoencoderTask(nn.Module):
    """``engine.Task`` of a ``ConvAutoencoder``: SGD on pixel MSE, ``best`` by validation MSE."""

    selection = Selection("val_mse", higher_is_better=False)
    log_prefix = "autoencoder "
    checkpoint_keys = ("val_mse",)

    def __init__(self, model: ConvAutoencoder) -> None:
        super().__init__()
        self.model: nn.Module = model

    def trainable(self) -> nn.Module:
        return unwrapped(self.model)

    def training_step(self, images: torch.Tensor, targets: torch.Tensor, progress: float) -> Step:
        reconstruction = self.model(images)
        return Step(reconstruction, {"mse": F.mse_loss(reconstruction, images)})

    def cuda_graph_blocker(self) -> str | None:
        return None  # a reconstruction loss: device work alone

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        return {}

    def evaluate(self, batches: Batches, speed: SpeedOptions, device: torch.device) -> dict[str, float]:
        return reconstruction_sums(self.trainable(), batches, speed, device)

    def val_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"mse": sums["squared_error"] / sums["values"], "images": int(sums["images"])}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> AbstractContextManager[None]:
        return wrapped(self, "model", wrap)

    def epoch_summary(self, record: dict[str, Any], best: float | None) -> str:
        return f"mse {record['train_mse']:.5f}  val mse {record['val_mse']:.5f}"


@torch.no_grad()
def reconstruction_sums(
    model: nn.Module, batches: Batches, speed: SpeedOptions | None = None, device: torch.device | None = None
) -> dict[str, float]:
    """Summed squared error, pixel values and images over ``batches`` (sums: ranks holding shards add them up)."""
    was_training = model.training
    model.eval()
    total: torch.Tensor | float = 0.0  # on the device, read once at the end (a read per batch waits for a GPU)
    values, images_seen = 0, 0
    for images, _ in batches:
        if speed is not None and device is not None:
            images = speed.prepare_input(images)
            with speed.autocast(device):
                reconstruction = model(images)
        else:
            reconstruction = model(images)
        total = total + F.mse_loss(reconstruction.float(), images.float(), reduction="sum").double()
        values += images.numel()
        images_seen += images.shape[0]
    model.train(was_training)
    return {"squared_error": float(total), "values": values, "images": images_seen}


def reconstruction_mse(model: ConvAutoencoder, batches: Batches) -> float:
    """Mean squared error per pixel value over ``batches``."""
    sums = reconstruction_sums(model, batches)
    return sums["squared_error"] / sums["values"]


def embed_batches(model: ConvAutoencoder, batches: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Encoder features (B, 48 * H/8 * W/8) and labels, batch by batch, on the model's device, in the loader's order.

    A stream, so soft-label building never holds the (N, D) embeddings: each batch goes to a
    ``SimilarityAccumulator`` and is dropped.
    """
    was_training = model.training
    model.eval()
    try:
        for images, y in batches:
            with torch.no_grad():
                feats = model.encode(images)
            yield feats, y
    finally:
        model.train(was_training)


def embed(model: ConvAutoencoder, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
    """All features (N, D) and labels on the CPU, for inspecting embeddings; soft labels stream them instead."""
    feats, labels = [], []
    for f, y in embed_batches(model, batches):
        feats.append(f.float().cpu())
        labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)
