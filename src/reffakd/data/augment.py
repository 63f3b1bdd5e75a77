"""Augmentation on whole uint8 batches: random crop with zero padding, horizontal flip, rotation.

Per-sample PIL transforms cost about 15 s per Fashion-MNIST epoch on two cores, twice LeNet-5's own
compute; the same augmentation as tensor indexing over a whole batch costs well under a second.
Rotation is one ``affine_grid``/``grid_sample`` over the batch, so it stays cheap on CPU and GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .transfer import to_device


@dataclass(frozen=True)
class BatchAugment:
    """Random crop (zero padding ``pad`` on each side), horizontal flip with probability 0.5, then a
    random rotation by an angle uniform in [-``rotation``, ``rotation``] degrees (0: none).

    The frozen instance doubles as the per-dataset augmentation spec carried by ``ImageDataset``.
    Random draws come from the caller's generator in a fixed order (crop, flip, rotation), so with
    ``rotation=0`` the batches are exactly those of crop-and-flip alone.
    """

    pad: int = 4
    flip: bool = True
    rotation: float = 0.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        draws = self.draw(images.shape[0], generator)
        return self.apply(images, tuple(to_device(d, images.device) for d in draws))

    def draw(self, b: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A batch of ``b`` images' random draws, on the host, in the fixed order: crop offsets (2, B), flips (B,),
        rotation angles (B,) in radians, each only when that augmentation is on. Drawn apart from ``apply`` so that a
        recorded CUDA graph can apply them (``data.loader``)."""
        draws = []
        if self.pad > 0:
            draws.append(torch.randint(0, 2 * self.pad + 1, (2, b), generator=generator))
        if self.flip:
            draws.append(torch.rand(b, generator=generator) < 0.5)
        if self.rotation > 0:
            u = torch.rand(b, generator=generator, dtype=torch.float64)
            draws.append((u * 2 - 1) * math.radians(self.rotation))
        return tuple(draws)

    def apply(self, images: torch.Tensor, draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``images`` augmented by ``draws`` (``draw``'s, on the images' device): device work alone."""
        b, c, h, w = images.shape
        out = images
        pending = iter(draws)
        if self.pad > 0:
            padded = F.pad(images, (self.pad, self.pad, self.pad, self.pad))
            offsets = next(pending)
            rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H)
            cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W)
            batch_idx = torch.arange(b, device=images.device)[:, None, None, None]
            chan_idx = torch.arange(c, device=images.device)[None, :, None, None]
            out = padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]
        if self.flip:
            flip = next(pending)
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        if self.rotation > 0:
            out = rotate(out, next(pending))
        return out


def rotate(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each uint8 image by its angle (radians, counter-clockwise as displayed) about its centre.

    An angle of pi/2 gives ``torch.rot90(images, 1, (2, 3))``, torchvision's sign convention.

    Bilinear, zero fill outside the image (like torchvision's ``RandomRotation`` with ``fill=0``
    but interpolated). ``affine_grid`` works in [-1, 1] coordinates on both axes, so for a
    non-square image the off-diagonal terms carry the aspect ratio to keep it a true rotation.
    """
    b, c, h, w = images.shape
    cos, sin = torch.cos(angles), torch.sin(angles)
    zeros = torch.zeros_like(cos)
    # Output pixel -> input pixel: the inverse rotation, in normalised coordinates.
    theta = torch.stack((torch.stack((cos, -sin * h / w, zeros), 1), torch.stack((sin * w / h, cos, zeros), 1)), 1).to(
        torch.float32
    )
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)
