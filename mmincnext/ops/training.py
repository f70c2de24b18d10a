"""The MLP of a MetaNeXt block with autograd on mmincnext's compiled CPU
kernels (training).

oneDNN and MKL run the six GEMMs of the MLP's forward and backward pass one
by one, with GELU and its derivative as passes of their own; at stage 0 and
1 widths (C = 96, 192) their kernels run at a fraction of their large-GEMM
rate and every ``[M, 4C]`` tensor makes round trips through memory. The
kernels ``mlp_forward`` / ``mlp_backward`` (``csrc/mlp_training.cpp``) do
the forward pass in row blocks whose hidden activations stay in L2 (keeping
the pre-activations for backward) and the whole backward pass per row block
and chunk of hidden units, so that only the inputs, output gradients and
pre-activations travel to and from memory. No library offers such a fused
training MLP for the CPU, hence the kernels.

:func:`mlp_training_applies` says where they run (the block's
``cpu_kernels``; float32 CPU tensors in dense channels-last memory; eager,
no autocast; the MLP's weights as for the fused inference MLP);
``MetaNeXtBlock.forward`` then calls :func:`mlp_training`. Gradients equal
PyTorch's within float32 rounding.
"""
import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from . import kernels
from .inference import (FUSED_MLP_MAX_WEIGHT_BYTES, _fused_mlp_fits,
                        _kernels_take)

__all__ = ['mlp_training', 'mlp_training_applies']


class _FusedMlp(torch.autograd.Function):
    """``[shortcut +] fc2(gelu(fc1(x)))`` on ``[M, C]`` rows."""

    @staticmethod
    def forward(ctx, x, shortcut, fc1_weight, fc1_bias, fc2_weight,
                fc2_bias):
        out, pre = kernels.mlp_forward(x, shortcut, fc1_weight, fc1_bias,
                                       fc2_weight, fc2_bias)
        ctx.save_for_backward(x, pre, fc1_weight, fc2_weight)
        ctx.with_shortcut = shortcut is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, pre, fc1_weight, fc2_weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x, grad_w1, grad_b1, grad_w2, grad_b2 = kernels.mlp_backward(
            grad_out, x, pre, fc1_weight, fc2_weight)
        return (grad_x, grad_out if ctx.with_shortcut else None, grad_w1,
                grad_b1, grad_w2, grad_b2)


def mlp_training_applies(
        block: nn.Module,
        x: torch.Tensor,
        max_weight_bytes: int = FUSED_MLP_MAX_WEIGHT_BYTES) -> bool:
    """Whether :func:`mlp_training` runs ``block``'s MLP on ``x`` (the normed
    token mixer output, ``[N, C, H, W]``): the block's ``cpu_kernels`` is on,
    the kernels are built and supported by the CPU, not under
    ``torch.compile``, tracing or CPU autocast, ``x`` is a float32 CPU
    tensor in dense channels-last memory, and the MLP fits the fused
    kernels (channels multiples of 16, weights of at most
    ``max_weight_bytes``: beyond that oneDNN is faster)."""
    return (block.cpu_kernels and _kernels_take(x)
            and not torch.is_autocast_enabled('cpu')
            and _fused_mlp_fits(block.mlp.fc1.weight.flatten(1),
                                max_weight_bytes))


def mlp_training(block: nn.Module, x: torch.Tensor,
                 shortcut: torch.Tensor) -> torch.Tensor:
    """``shortcut + drop_path(gamma * fc2(gelu(fc1(x))))`` with autograd on
    the fused kernels, where :func:`mlp_training_applies`.

    The layer scale is folded into ``fc2`` (``ConvMlp.fc2_params``); the
    residual sum is fused too unless stochastic depth is active (a
    ``drop_path`` in training mode).

    Args:
        block (MetaNeXtBlock): The block (``mlp``, ``gamma``,
            ``drop_path``).
        x (Tensor): The normed token mixer output ``[N, C, H, W]``, dense
            channels-last.
        shortcut (Tensor): The block input, like ``x``.

    Returns:
        Tensor: ``[N, C, H, W]`` in channels-last memory.
    """
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # views: dense channels-last
    fc1 = block.mlp.fc1
    w2, b2 = block.mlp.fc2_params(block.gamma)
    fused = isinstance(block.drop_path, nn.Identity) or not block.training
    out = _FusedMlp.apply(
        rows,
        shortcut.permute(0, 2, 3, 1).reshape(-1, c) if fused else None,
        fc1.weight.flatten(1), fc1.bias, w2.flatten(1), b2)
    out = out.view(n, h, w, c).permute(0, 3, 1, 2)
    return out if fused else shortcut + block.drop_path(out)
