"""The paper's convolutional autoencoder: three stride-2 convs down to 48 x H/8 x W/8 and back.

It reconstructs pixels in [0, 1] (its Sigmoid's range), not normalised images: the authors'
notebooks compare the Sigmoid output with mean/std-normalised inputs, which it cannot reach.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ReffAKDError

EMBED_CHANNELS = 48


class ConvAutoencoder(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        h, w = image_size
        if h % 8 or w % 8 or h < 8 or w < 8:
            raise ReffAKDError(f"the autoencoder needs height and width that are multiples of 8, got {h}x{w}")
        self.in_channels = in_channels
        self.image_size = (h, w)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 12, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(12, 24, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(24, EMBED_CHANNELS, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(EMBED_CHANNELS, 24, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(24, 12, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(12, in_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    @property
    def embedding_dim(self) -> int:
        return EMBED_CHANNELS * (self.image_size[0] // 8) * (self.image_size[1] // 8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened encoder output, the embedding the class similarity is computed from."""
        return torch.flatten(self.encoder(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
