"""Batch norm over the global batch in distributed runs, on CUDA (NCCL) and on CPU (gloo).

With plain batch norm each rank normalises by its own shard's statistics, so a DDP run is not the
single-process run with the same global batch. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only;
``CPUSyncBatchNorm`` does the same with two small all-reduces (forward: sums; backward: gradient
sums), so the CPU/gloo test of DDP matches one process, and CPU clusters train like GPUs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def _dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


class _SyncBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        eps: float,
        momentum: float,
    ) -> torch.Tensor:
        c = x.shape[1]
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32  # a float64 run stays float64
        xf = x.to(compute)
        dims = _dims(x)
        stats = torch.cat(
            [
                xf.sum(dims, dtype=torch.float64),
                (xf * xf).sum(dims, dtype=torch.float64),
                torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device),
            ]
        )
        dist.all_reduce(stats)
        n = float(stats[2 * c])
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                unbiased = var * (n / max(n - 1.0, 1.0))
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        invstd = (var + eps).rsqrt().to(compute).view(shape)
        xhat = (xf - mean.to(compute).view(shape)) * invstd
        y = xhat
        if weight is not None:
            y = y * weight.to(compute).view(shape)
        if bias is not None:
            y = y + bias.to(compute).view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.n = n
        ctx.has_bias = bias is not None
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        xhat, weight, invstd = ctx.saved_tensors
        c = xhat.shape[1]
        g = gy.to(xhat.dtype)
        dims = _dims(g)
        sum_dy = g.sum(dims)
        sum_dy_xhat = (g * xhat).sum(dims)
        grad_w = sum_dy_xhat.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = sum_dy.to(gy.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            red = torch.cat([sum_dy, sum_dy_xhat]).double()
            dist.all_reduce(red)
            shape = [1, c] + [1] * (g.dim() - 2)
            mean_dy = (red[:c] / ctx.n).to(g.dtype).view(shape)
            mean_dy_xhat = (red[c:] / ctx.n).to(g.dtype).view(shape)
            scale = invstd if weight is None else invstd * weight.to(g.dtype).view(shape)
            grad_x = (scale * (g - mean_dy - xhat * mean_dy_xhat)).to(gy.dtype)
        return grad_x, grad_w, grad_b, None, None, None, None


class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics span all ranks (any device, any backend); plain BN otherwise."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats
        return _SyncBatchNormFn.apply(
            input,
            self.weight,
            self.bias,
            self.running_mean if running else None,
            self.running_var if running else None,
            self.eps,
            momentum,
        )


Swap = tuple[nn.Module, str, nn.Module]


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> list[Swap]:
    """Replace every batch-norm layer below ``module`` by a synchronised one sharing its parameters and buffers.

    Returns what ``revert_sync_batchnorm`` needs to put the original layers back, so the caller's
    model leaves ``fit`` as it came in. The optimiser keeps working: the parameters are the same objects.
    """
    swaps: list[Swap] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, _BatchNorm) or isinstance(child, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
                continue
            cls = nn.SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var, new.num_batches_tracked = (
                child.running_mean,
                child.running_var,
                child.num_batches_tracked,
            )
            new.train(child.training)
            setattr(parent, name, new)
            swaps.append((parent, name, child))
    return swaps


def revert_sync_batchnorm(swaps: list[Swap]) -> None:
    for parent, name, original in reversed(swaps):
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)
