"""The CIFAR ResNet family of the KD literature (He et al. 2016, section 4.2; CRD/mdistiller's zoo).

Three stages of basic blocks at stride 1, 2, 2 after a 3x3 stem; depth 6n + 2. ``resnet8x4`` and
``resnet32x4`` widen the stages four times (32/64/128 -> 64/128/256 after a 32-wide stem), as in CRD.
Shortcuts are 1x1 convolutions with batch norm where the shape changes (option B), as in CRD's code,
so published parameter counts (resnet20: 0.27 M at 100 classes) line up.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError
from .registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Depth 6n + 2: a stem conv, three stages of n basic blocks, global average pooling, one linear layer."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_planes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(torch.flatten(out, 1))


def _min_size_check(name: str, image_size: tuple[int, int], minimum: int) -> None:
    if min(image_size) < minimum:
        raise ReffAKDError(
            f"model {name} needs inputs of at least {minimum}x{minimum}, got {image_size[0]}x{image_size[1]}"
        )


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    @register_model(name)
    def build(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> CifarResNet:
        _min_size_check(name, image_size, 8)  # two stride-2 stages: 8x8 leaves 2x2 before pooling
        return CifarResNet(depth, widths, num_classes, in_channels)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))
