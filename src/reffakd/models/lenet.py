"""LeNet-5 with batch norm, the paper's Fashion-MNIST student
(conv6-BN-ReLU-pool, conv16-BN-ReLU-pool, FC 400-120-84)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ReffAKDError
from .registry import register_model


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        h, w = (((s - 4) // 2 - 4) // 2 for s in image_size)
        if h < 1 or w < 1:
            raise ReffAKDError(f"lenet5 needs inputs of at least 16x16, got {image_size[0]}x{image_size[1]}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * h * w, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("lenet5")
def lenet5(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> LeNet5:
    return LeNet5(num_classes, in_channels, image_size)
