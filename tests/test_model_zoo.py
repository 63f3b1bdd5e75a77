"""Every registered classifier: pinned size and cost, shapes on grayscale and larger inputs, and clear size errors.

The table pins the exact parameter count and MACs per 3x32x32 image (one MAC = 2 FLOPs of PyTorch's
FlopCounterMode) at 100 classes, and the smallest input side each builder accepts. A change to any
architecture shows up here; the published figures are checked separately, within 1 %.
"""

from __future__ import annotations

import re

import pytest
import torch

from reffakd import ReffAKDError
from reffakd.models import available_models, create_model
from reffakd.resources import forward_flops, parameter_count

# name: (parameters, MACs per 3x32x32 image, smallest input side), all at 100 classes.
ZOO: dict[str, tuple[int, int, int]] = {
    "lenet5": (69_700, 659_280, 16),
    "resnet8": (83_892, 12_507_392, 8),
    "resnet14": (181_108, 26_663_168, 8),
    "resnet20": (278_324, 40_818_944, 8),
    "resnet32": (472_756, 69_130_496, 8),
    "resnet44": (667_188, 97_442_048, 8),
    "resnet56": (861_620, 125_753_600, 8),
    "resnet110": (1_736_564, 253_155_584, 8),
    "resnet8x4": (1_233_540, 177_071_104, 8),
    "resnet32x4": (7_433_860, 1_083_040_768, 8),
    "resnet18": (11_220_132, 555_468_800, 16),
    "resnet34": (21_328_292, 1_159_448_576, 16),
    "resnet50": (23_705_252, 1_298_014_208, 16),
    "resnet101": (42_697_380, 2_510_168_064, 16),
    "wrn_16_1": (180_916, 26_663_168, 8),
    "wrn_16_2": (703_284, 101_118_464, 8),
    "wrn_40_1": (569_780, 83_286_272, 8),
    "wrn_40_2": (2_255_156, 327_610_880, 8),
    "vgg8": (3_965_028, 96_192_512, 16),
    "vgg11": (9_277_284, 209_438_720, 16),
    "vgg13": (9_462_180, 284_936_192, 16),
    "mobilenetv2": (812_836, 6_523_648, 32),
    "shufflenetv1": (949_258, 38_691_456, 16),
    "shufflenetv2": (1_355_528, 44_504_448, 16),
}

# Published figures at 100 classes (CRD's table; ResNet-18/50 from the CIFAR ResNet literature): (params, MACs or None).
PUBLISHED: dict[str, tuple[float, float | None]] = {
    "resnet18": (11.22e6, 0.56e9),
    "resnet50": (23.7e6, 1.3e9),
    "resnet8x4": (1.23e6, None),
    "resnet32x4": (7.43e6, None),
    "resnet56": (0.86e6, None),
    "resnet110": (1.73e6, None),
    "wrn_40_2": (2.26e6, None),
    "vgg13": (9.46e6, None),
}


def build(name: str, num_classes: int = 100, in_channels: int = 3, size: tuple[int, int] = (32, 32)) -> torch.nn.Module:
    return create_model(name, num_classes=num_classes, in_channels=in_channels, image_size=size)


def test_table_covers_every_registered_model() -> None:
    assert sorted(ZOO) == available_models()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_parameters_and_macs_pinned(name: str) -> None:
    model = build(name)
    params, macs, _ = ZOO[name]
    assert parameter_count(model) == params
    flops = forward_flops(model, (3, 32, 32))
    assert flops % 2 == 0 and flops // 2 == macs


def test_resnet18_macs_by_hand() -> None:
    """Per 32x32 image: output pixels x k^2 x C_in x C_out for each conv, plus the linear layer."""
    stem = 32 * 32 * 9 * 3 * 64
    layer1 = 4 * 32 * 32 * 9 * 64 * 64
    # later stages: strided first conv, three convs at full width, a 1x1 projection; each stage costs the same
    later = sum(s * s * (9 * c * 2 * c + 3 * 9 * 4 * c * c + c * 2 * c) for s, c in ((16, 64), (8, 128), (4, 256)))
    assert stem + layer1 + later + 512 * 100 == ZOO["resnet18"][1]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures_within_one_percent(name: str) -> None:
    params, macs, _ = ZOO[name]
    want_params, want_macs = PUBLISHED[name]
    assert params == pytest.approx(want_params, rel=0.01)
    if want_macs is not None:
        assert macs == pytest.approx(want_macs, rel=0.01)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_forward_grayscale_32_and_rgb_64(name: str) -> None:
    with torch.no_grad():
        assert build(name, 10, 1).eval()(torch.rand(2, 1, 32, 32)).shape == (2, 10)
        assert build(name, 100, 3, (64, 64)).eval()(torch.rand(2, 3, 64, 64)).shape == (2, 100)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_smallest_input_runs_and_one_less_is_refused(name: str) -> None:
    side = ZOO[name][2]
    model = build(name, 5, 1, (side, side + 3)).train()  # batch norm in training mode needs >1 value per channel
    with torch.no_grad():
        assert model(torch.rand(2, 1, side, side + 3)).shape == (2, 5)
    with pytest.raises(
        ReffAKDError, match=rf"{re.escape(name)} needs inputs of at least {side}x{side}, got {side - 1}x40"
    ):
        build(name, 5, 1, (side - 1, 40))
