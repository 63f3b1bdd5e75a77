"""Wide ResNets WRN-d-k (Zagoruyko and Komodakis 2016) as in CRD's zoo: WRN-40-2 teacher,
WRN-16-2 / 40-1 / 16-1 students.

Depth 6n + 4: a 3x3 stem with 16 channels, three stages of n pre-activation blocks (BN-ReLU-conv twice)
with 16k, 32k, 64k channels at strides 1, 2, 2, then BN-ReLU, global average pooling and one linear
layer. Where a block changes the width, its 1x1 shortcut convolution (no BN, as in the paper) reads the
pre-activated input, so both paths share the first BN-ReLU. Dropout is 0, as in CRD, so it is left out.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .resnet_cifar import _min_size_check


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_planes != planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"wide ResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        in_planes, stages = 16, []
        for planes, stride in zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# Two stride-2 stages, as in the CIFAR ResNets: 8x8 inputs leave the last stage 2x2.
MIN_SIZE = 8


def _register(depth: int, widen: int) -> None:
    name = f"wrn_{depth}_{widen}"

    @register_model(name)
    def build(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> WideResNet:
        _min_size_check(name, image_size, MIN_SIZE)
        return WideResNet(depth, widen, num_classes, in_channels)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen)
