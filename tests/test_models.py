"""Models: shapes, parameter counts and FLOPs pinned against figures computed by hand."""

from __future__ import annotations

import pytest
import torch

from reffakd import ReffAKDError
from reffakd.models import ConvAutoencoder, available_models, create_model
from reffakd.resources import forward_flops, parameter_count


def test_autoencoder_shapes_and_size() -> None:
    ae = ConvAutoencoder(3, (32, 32))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y = ae(x)
    assert ae.encode(x).shape == (2, 768) and ae.embedding_dim == 768
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert ConvAutoencoder(3, (64, 64)).embedding_dim == 3072
    assert ConvAutoencoder(1, (32, 48)).encode(torch.rand(1, 1, 32, 48)).shape == (1, 48 * 4 * 6)
    # conv: 3*12*16+12, 12*24*16+24, 24*48*16+48; deconv mirrors with the output channel's bias
    assert (
        parameter_count(ae) == (576 + 12) + (4608 + 24) + (18432 + 48) + (18432 + 24) + (4608 + 12) + (576 + 3) == 47355
    )


def test_autoencoder_macs_match_hand_count() -> None:
    """Per 32x32 RGB image: each conv/deconv is (out pixels or in pixels) x k*k x C_in x C_out MACs."""
    ae = ConvAutoencoder(3, (32, 32))
    enc = 16 * 16 * 16 * 3 * 12 + 8 * 8 * 16 * 12 * 24 + 4 * 4 * 16 * 24 * 48
    dec = (
        4 * 4 * 16 * 48 * 24 + 8 * 8 * 16 * 24 * 12 + 16 * 16 * 16 * 12 * 3
    )  # transposed: input pixels x k^2 x Cin x Cout
    assert forward_flops(ae, (3, 32, 32)) == 2 * (enc + dec)
    assert 1.3e6 <= enc + dec <= 1.5e6  # method.md: 1.3 to 1.5 M MACs


@pytest.mark.parametrize("size", [(30, 32), (32, 4), (20, 20)])
def test_autoencoder_rejects_sizes_not_multiple_of_8(size: tuple[int, int]) -> None:
    with pytest.raises(ReffAKDError, match="multiples of 8"):
        ConvAutoencoder(1, size)


def test_lenet5() -> None:
    m = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    assert m(torch.zeros(3, 1, 32, 32)).shape == (3, 10)
    # conv 1*6*25+6, BN 12, conv 6*16*25+16, BN 32, FC 400*120+120, 120*84+84, 84*10+10
    assert parameter_count(m) == 156 + 12 + 2416 + 32 + 48120 + 10164 + 850 == 61750
    macs = 28 * 28 * 25 * 6 + 10 * 10 * 25 * 6 * 16 + 400 * 120 + 120 * 84 + 84 * 10
    assert forward_flops(m, (1, 32, 32)) == 2 * macs
    assert create_model("lenet5", num_classes=7, in_channels=3, image_size=(40, 40))(
        torch.zeros(2, 3, 40, 40)
    ).shape == (2, 7)


def test_registry_errors() -> None:
    assert "lenet5" in available_models()
    with pytest.raises(ReffAKDError, match="unknown model 'resnet9000'"):
        create_model("resnet9000", num_classes=10, in_channels=1, image_size=(32, 32))
    with pytest.raises(ReffAKDError, match="at least 16x16"):
        create_model("lenet5", num_classes=10, in_channels=1, image_size=(8, 8))
