"""ShuffleNet V1 (g = 3) and V2 (1x) in the CIFAR form of CRD's zoo, the usual students of VGG/ResNet teachers.

Both keep CRD's CIFAR stem, a 1x1 conv to 24 channels at full resolution with no max-pool, followed by
three stages that each halve the resolution (total stride 8, so 32x32 ends at 4x4), global average
pooling and one linear layer.

- ``shufflenetv1``: stages of 240/480/960 channels with 4/8/4 bottleneck units, 3 groups. A unit is a
  grouped 1x1 conv to a quarter of its output width, a channel shuffle, a 3x3 depthwise conv and a grouped
  1x1 conv; a strided unit concatenates a 3x3 average-pooled shortcut instead of adding it, so its conv
  path only produces the missing channels. The very first 1x1 conv is not grouped (24 input channels).
- ``shufflenetv2``: stages of 116/232/464 channels, each one down-sampling unit then 3/7/3 basic units,
  and a final 1x1 conv to 1024. A basic unit splits the channels in half, transforms one half
  (1x1, 3x3 depthwise, 1x1) and shuffles the two back together; a down-sampling unit runs both halves
  through strided depthwise branches. As in CRD, a stage is 1 + (3, 7, 3) units, i.e. the paper's (4, 8, 4).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .resnet_cifar import _min_size_check


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups, so the next grouped conv mixes information across them."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _bn_conv(in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_c)
    )


class ShuffleUnitV1(nn.Module):
    def __init__(self, in_c: int, out_c: int, stride: int, groups: int, group_first: bool = True) -> None:
        super().__init__()
        self.stride = stride
        branch_c = out_c - in_c if stride == 2 else out_c  # strided units concatenate the input
        mid = branch_c // 4
        self.groups1 = groups if group_first else 1
        self.conv1 = _bn_conv(in_c, mid, 1, groups=self.groups1)
        self.conv2 = _bn_conv(mid, mid, 3, stride, groups=mid)
        self.conv3 = _bn_conv(mid, branch_c, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(F.relu(self.conv1(x)), self.groups1)
        out = self.conv3(F.relu(self.conv2(out)))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1))
        return F.relu(out + x)


class ShuffleNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: tuple[int, ...] = (240, 480, 960),
        units: tuple[int, ...] = (4, 8, 4),
        groups: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_bn_conv(in_channels, 24, 1), nn.ReLU(inplace=True))
        c, stages = 24, []
        for s, (width, n) in enumerate(zip(widths, units)):
            stage = []
            for i in range(n):
                stage.append(ShuffleUnitV1(c, width, 2 if i == 0 else 1, groups, group_first=not (s == 0 and i == 0)))
                c = width
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class BasicUnitV2(nn.Module):
    """Keep half the channels, transform the other half, shuffle them together."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            *_bn_conv(half, half, 1),
            nn.ReLU(inplace=True),
            *_bn_conv(half, half, 3, groups=half),
            *_bn_conv(half, half, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, change = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(change)], 1), 2)


class DownUnitV2(nn.Module):
    """Both branches see the whole input at stride 2, each gives half of the output channels."""

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        half = out_c // 2
        self.left = nn.Sequential(
            *_bn_conv(in_c, in_c, 3, 2, groups=in_c), *_bn_conv(in_c, half, 1), nn.ReLU(inplace=True)
        )
        self.right = nn.Sequential(
            *_bn_conv(in_c, half, 1),
            nn.ReLU(inplace=True),
            *_bn_conv(half, half, 3, 2, groups=half),
            *_bn_conv(half, half, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: tuple[int, ...] = (116, 232, 464),
        units: tuple[int, ...] = (3, 7, 3),
        last_channels: int = 1024,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_bn_conv(in_channels, 24, 1), nn.ReLU(inplace=True))
        c, stages = 24, []
        for width, n in zip(widths, units):
            stages.append(nn.Sequential(DownUnitV2(c, width), *(BasicUnitV2(width) for _ in range(n))))
            c = width
        self.layer1, self.layer2, self.layer3 = stages
        self.head = nn.Sequential(*_bn_conv(c, last_channels, 1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# Three stride-2 stages: 16x16 inputs leave the last stage 2x2.
MIN_SIZE = 16


@register_model("shufflenetv1")
def shufflenetv1(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> ShuffleNetV1:
    _min_size_check("shufflenetv1", image_size, MIN_SIZE)
    return ShuffleNetV1(num_classes, in_channels)


@register_model("shufflenetv2")
def shufflenetv2(*, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> ShuffleNetV2:
    _min_size_check("shufflenetv2", image_size, MIN_SIZE)
    return ShuffleNetV2(num_classes, in_channels)
