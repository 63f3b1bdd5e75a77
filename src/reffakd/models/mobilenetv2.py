"""``mobilenetv2``: the CIFAR MobileNetV2 of CRD's zoo, which is CRD's ``mobile_half`` (width 0.5, expansion 6).

What KD papers call "MobileNetV2" in their CIFAR-100 tables (CRD, DKD, ...) is this half-width network, not
the full-width ImageNet one. Its differences from Sandler et al. (2018), kept so published figures match:
width multiplier 0.5 on every stage (16 -> 8, ..., 320 -> 160 channels) but the last 1x1 conv stays
1280 wide; a stride-2 3x3 stem and stride 1 in the 24-channel stage (total stride 16, so 32x32 ends at
2x2); and the first block (t = 1) keeps its 1x1 expansion conv. No dropout before the classifier.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .resnet_cifar import _min_size_check

# (expansion t, output channels c, blocks n, first stride s), before the width multiplier.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(
    in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise (strided), linear 1x1 project; identity shortcut when the shape is kept."""

    def __init__(self, in_c: int, out_c: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_c * expansion
        self.residual = stride == 1 and in_c == out_c
        self.conv = nn.Sequential(
            *_conv_bn(in_c, mid, 1), *_conv_bn(mid, mid, 3, stride, groups=mid), *_conv_bn(mid, out_c, 1, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int, width: float = 0.5, expansion: int = 6, last_channels: int = 1280
    ) -> None:
        super().__init__()
        c = int(32 * width)
        self.conv1 = nn.Sequential(*_conv_bn(in_channels, c, 3, stride=2))
        blocks = []
        for t, out, n, s in SETTINGS:
            out = int(out * width)
            t = expansion if t != 1 else 1
            blocks.append(
                nn.Sequential(*(InvertedResidual(c if i == 0 else out, out, s if i == 0 else 1, t) for i in range(n)))
            )
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = nn.Sequential(*_conv_bn(c, last_channels, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.blocks(self.conv1(x)))
        return self.classifier(torch.flatten(self.pool(out), 1))


# Total stride 16: 32x32 inputs (CRD requires a multiple of 32) leave the last stage 2x2.
MIN_SIZE = 32


@register_model("mobilenetv2")
def mobilenetv2(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> MobileNetV2:
    _min_size_check("mobilenetv2", image_size, MIN_SIZE)
    return MobileNetV2(num_classes, in_channels)
