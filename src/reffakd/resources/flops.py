"""FLOP counts from PyTorch's own ``FlopCounterMode``.

It counts ConvTranspose2d correctly (thop, torchinfo and torchscan count it 4x too high), and it
counts the backward pass of a real training step instead of assuming "backward = 2 x forward".
Only matmuls and convolutions are counted; elementwise work (BN, ReLU, softmax) is left out, as in
the usual published MAC figures. One MAC = 2 FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def _count_without_importing_dynamo() -> None:
    """``FlopCounterMode``'s dispatch handler is wrapped by ``torch._disable_dynamo``, whose first call imports
    ``torch._dynamo`` (1.4 to 1.7 s measured on 2 CPU cores, at every command's start) only to exempt the handler
    from compilation. Counting here runs eagerly, before any ``torch.compile``, so the exemption is filled in with
    the handler itself. Where torch's internals differ, nothing changes and torch imports ``torch._dynamo`` as
    before; the counts are the same either way (``tests/test_model_zoo.py`` pins them)."""
    from torch.utils import flop_counter

    handler = getattr(getattr(flop_counter, "_FlopCounterMode", None), "__torch_dispatch__", None)
    raw = getattr(handler, "__wrapped__", None)
    if raw is not None and getattr(raw, "__dynamo_disable", None) is None:
        raw.__dynamo_disable = raw


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything ``fn`` runs (forward and, if it calls it, backward)."""
    _count_without_importing_dynamo()
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops(
    model: nn.Module, input_shape: tuple[int, ...], forward: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> int:
    """FLOPs of one forward pass per image (eval mode, no grad), measured on a batch of 2."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros((2, *input_shape), device=device)
    fn = forward or model
    with torch.no_grad():
        total = count_flops(lambda: fn(x))
    model.train(was_training)
    return total // 2


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
