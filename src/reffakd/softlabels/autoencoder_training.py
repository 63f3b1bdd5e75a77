"""Train the autoencoder and embed images with it.

The autoencoder reconstructs [0, 1] pixels with MSE (what its Sigmoid can output); normalisation
is for the classifiers only. Embeddings come from un-augmented training images by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..engine.optim import OptimConfig, build_optimizer, build_scheduler
from ..models.autoencoder import ConvAutoencoder

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train_autoencoder(
    model: ConvAutoencoder,
    train_batches: Batches,
    cfg: OptimConfig,
    *,
    val_batches: Batches | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """SGD on pixel MSE; returns one record per epoch (train and validation MSE, lr, seconds)."""
    cfg.validate()
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total, n = 0.0, 0
        for images, _ in tqdm(
            train_batches, desc=f"autoencoder {epoch}/{cfg.epochs}", leave=False, disable=not progress, unit="batch"
        ):
            loss = F.mse_loss(model(images), images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * images.shape[0]
            n += images.shape[0]
        scheduler.step()
        record = {"epoch": epoch, "lr": lr, "train_mse": total / n}
        if val_batches is not None:
            record["val_mse"] = reconstruction_mse(model, val_batches)
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        val = f"  val mse {record['val_mse']:.5f}" if "val_mse" in record else ""
        log(
            f"autoencoder epoch {epoch:>3}/{cfg.epochs}  mse {record['train_mse']:.5f}{val}  lr {lr:.4g}  {record['seconds']:.1f}s"
        )
    return history


@torch.no_grad()
def reconstruction_mse(model: ConvAutoencoder, batches: Batches) -> float:
    model.eval()
    total, n = 0.0, 0
    for images, _ in batches:
        total += float(F.mse_loss(model(images), images, reduction="sum"))
        n += images.numel()
    return total / n


@torch.no_grad()
def embed(model: ConvAutoencoder, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features (N, 48 * H/8 * W/8) and labels, on the CPU, in the loader's order."""
    model.eval()
    feats, labels = [], []
    for images, y in batches:
        feats.append(model.encode(images).float().cpu())
        labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)
