"""VGG-8/11/13 with batch norm as in CRD's CIFAR zoo (VGG-13 teacher, VGG-8 student).

Five groups of 3x3 conv (with bias) + BN + ReLU; max-pooling 2x2 after the first three groups, a fourth
one before the last group only when the map is still at least 8x8 there (64x64 inputs; CRD pools there
only for 64-pixel TinyImageNet), and global average pooling after the last group, so a 32x32 image
reaches the last two groups at 4x4, exactly as in CRD, and any larger size works. The old 4096-wide
fully connected layers are gone: one linear layer 512 -> classes. VGG-13 at 100 classes: 9.46 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .resnet_cifar import _min_size_check

# Output channels of each conv, per group.
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def _group(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_channels = w
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, groups: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int) -> None:
        super().__init__()
        blocks = []
        for widths in groups:
            blocks.append(_group(in_channels, widths))
            in_channels = widths[-1]
        self.block0, self.block1, self.block2, self.block3, self.block4 = blocks
        self.classifier = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.block0(x), 2)
        x = F.max_pool2d(self.block1(x), 2)
        x = self.block3(F.max_pool2d(self.block2(x), 2))
        if min(x.shape[-2:]) >= 8:
            x = F.max_pool2d(x, 2)
        x = self.block4(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# Three max-pools before the last groups: 16x16 inputs leave them 2x2.
MIN_SIZE = 16


def _register(name: str) -> None:
    @register_model(name)
    def build(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> VGG:
        _min_size_check(name, image_size, MIN_SIZE)
        return VGG(CONFIGS[name], num_classes, in_channels)


for _name in CONFIGS:
    _register(_name)
