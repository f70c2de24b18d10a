"""The token mixer and the MLP of a MetaNeXt block with autograd on
mmincnext's compiled CPU kernels (training).

The token mixer: PyTorch runs the three depthwise convs on copies of strided
channel slices and a cat, forward and backward. :func:`mixer_training` runs
the forward pass as the inference kernel ``inception_mixer`` (one pass over
the pixels) and the backward pass as ``mixer_backward``
(``csrc/mixer_training.cpp``): the input gradient as the mixer with flipped
kernels over the output gradient, the weight and bias gradients as sums
over the conv branches' channels. It saves the mixer's input, not copies of
its slices. No library has a fused depthwise Inception mixer, hence the
kernels.

The MLP: oneDNN and MKL run the six GEMMs of the MLP's forward and backward
pass one by one, with GELU and its derivative as passes of their own; at
stage 0 and 1 widths (C = 96, 192) their kernels run at a fraction of their
large-GEMM rate and every ``[M, 4C]`` tensor makes round trips through
memory. The kernels ``mlp_forward`` / ``mlp_backward``
(``csrc/mlp_training.cpp``) do the forward pass in row blocks whose hidden
activations stay in L2 (keeping the pre-activations for backward) and the
whole backward pass per row block and chunk of hidden units, so that only
the inputs, output gradients and pre-activations travel to and from memory.
No library offers such a fused training MLP for the CPU, hence the kernels.

:func:`mixer_training_applies` and :func:`mlp_training_applies` say where
they run (the block's ``cpu_kernels``; float32 CPU tensors in dense
channels-last memory; eager, no autocast; for the MLP, weights as for the
fused inference MLP, and the kernels the faster path at its width on this
CPU); ``MetaNeXtBlock.forward`` then calls
:func:`mixer_training` and :func:`mlp_training`. Gradients equal PyTorch's
within float32 rounding. The backward passes are not differentiable again
(``once_differentiable``): for second derivatives (``create_graph=True``)
build the backbone with ``cpu_kernels=False``.

The downsampling convs (2x2, stride 2) with autograd: oneDNN's strided
convolution is slow in backward at small maps and wide channels. Each 2x2
patch of the input is a row of ``4C`` values, so the conv equals a GEMM of
those rows with the weight in the same ``(kh, kw, c)`` order: one copy of
the input into patches (PyTorch's reshape), the GEMM on the machine's
library (:func:`mmincnext.ops.gemm_library`), and in backward the copy of
the patches' gradient back. :func:`downsample_training` runs it where it is
the faster of the two at that width and size on the machine
(:func:`mmincnext.ops.gemm_library.training_downsample_path`): at small
maps the patches stay in cache; at large ones with few channels their
copies cost more than the strided conv loses. It is plain PyTorch, so it
needs no kernels and stays differentiable.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import kernels
from .gemm_library import (gemm_library, training_downsample_path,
                           training_mlp_path)
from .inference import (FUSED_MLP_MAX_WEIGHT_BYTES, _eager_nhwc_float32,
                        _fused_mlp_fits, _kernels_take)

__all__ = [
    'downsample_training', 'downsample_training_applies', 'mixer_training',
    'mixer_training_applies', 'mlp_training', 'mlp_training_applies'
]


class _InceptionMixer(torch.autograd.Function):
    """The token mixer ``mixer`` on ``x``, its parameters given as inputs
    for autograd."""

    @staticmethod
    def forward(ctx, x, mixer, w_hw, b_hw, w_w, b_w, w_h, b_h):
        ctx.save_for_backward(x, w_hw, w_w, w_h)
        return kernels.inception_mixer(x, mixer)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, w_hw, w_w, w_h = ctx.saved_tensors
        grad_y = grad_y.contiguous(memory_format=torch.channels_last)
        grad_x, *grad_params = kernels.mixer_backward(grad_y, x, w_hw, w_w,
                                                      w_h)
        return (grad_x, None, *grad_params)


def _training_kernels_take(block: nn.Module, x: torch.Tensor) -> bool:
    """The block's ``cpu_kernels`` is on and the kernels can take ``x``
    outside CPU autocast."""
    return (block.cpu_kernels and _kernels_take(x)
            and not torch.is_autocast_enabled('cpu'))


def mixer_training_applies(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`mixer_training` runs ``block``'s token mixer on the
    block input ``x`` (``[N, C, H, W]``): the block's ``cpu_kernels`` is
    on, the kernels are built and supported by the CPU, not under
    ``torch.compile``, tracing or CPU autocast, and ``x`` is a float32 CPU
    tensor in dense channels-last memory."""
    return _training_kernels_take(block, x)


def mixer_training(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``mixer(x)`` with autograd on the compiled kernels, where
    :func:`mixer_training_applies`.

    Args:
        mixer (InceptionDWConv2d): The token mixer.
        x (Tensor): ``[N, C, H, W]``, dense channels-last.

    Returns:
        Tensor: ``[N, C, H, W]`` in channels-last memory.
    """
    return _InceptionMixer.apply(x, mixer, *kernels._mixer_args(mixer))


class _FusedMlp(torch.autograd.Function):
    """``[shortcut +] [scale *] fc2(gelu(fc1(x)))`` on ``[M, C]`` rows."""

    @staticmethod
    def forward(ctx, x, shortcut, fc1_weight, fc1_bias, fc2_weight,
                fc2_bias, scale):
        out, pre = kernels.mlp_forward(x, shortcut, fc1_weight, fc1_bias,
                                       fc2_weight, fc2_bias, scale)
        ctx.save_for_backward(x, pre, fc1_weight, fc2_weight, fc2_bias,
                              scale)
        ctx.with_shortcut = shortcut is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, pre, fc1_weight, fc2_weight, fc2_bias, scale = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grads = kernels.mlp_backward(grad_out, x, pre, fc1_weight,
                                     fc2_weight, scale=scale,
                                     fc2_bias=fc2_bias)
        grad_x, *grad_params = grads if scale is not None else (*grads,
                                                                None)
        return (grad_x, grad_out if ctx.with_shortcut else None,
                *grad_params)


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
    ``max_weight_bytes``: beyond that oneDNN is faster) and they are the
    faster path at this width on this CPU
    (:func:`mmincnext.ops.gemm_library.training_mlp_path`)."""
    fc1_weight = block.mlp.fc1.weight.flatten(1)
    return (_training_kernels_take(block, x)
            and _fused_mlp_fits(fc1_weight, max_weight_bytes)
            and training_mlp_path(fc1_weight.shape[1],
                                  fc1_weight.shape[0]) == 'kernels')


def mlp_training(block: nn.Module, x: torch.Tensor,
                 shortcut: torch.Tensor) -> torch.Tensor:
    """``shortcut + drop_path(gamma * fc2(gelu(fc1(x))))`` with autograd on
    the fused kernels, where :func:`mlp_training_applies`.

    The kernels multiply the layer scale into ``fc2``'s weight and bias as
    they pack them, and turn ``fc2``'s gradients into those of ``fc2`` and
    the scale in one pass over them; the residual sum is fused too unless
    stochastic depth is active (a ``drop_path`` in training mode).

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
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    fused = isinstance(block.drop_path, nn.Identity) or not block.training
    out = _FusedMlp.apply(
        rows,
        shortcut.permute(0, 2, 3, 1).reshape(-1, c) if fused else None,
        fc1.weight.flatten(1), fc1.bias, fc2.weight.flatten(1), fc2.bias,
        block.gamma)
    out = out.view(n, h, w, c).permute(0, 3, 1, 2)
    return out if fused else shortcut + block.drop_path(out)


def patches_2x2(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` (H and W even) -> ``[N, H/2, W/2, 4C]``: each
    output pixel's 2x2 patch, in ``(kh, kw, c)`` order, as a copy."""
    n, c, h, w = x.shape
    split = x.permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)
    return split.permute(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)


def patches_to_map(patches: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`patches_2x2`: ``[N, H/2, W/2, 4C]`` ->
    ``[N, H, W, C]`` (an NHWC buffer), as a copy."""
    n, h, w, c4 = patches.shape
    c = c4 // 4
    split = patches.reshape(n, h, w, 2, 2, c)
    return split.permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)


def patch_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 2x2 conv weight ``[C_out, C, 2, 2]`` as ``[C_out, 4C]`` in the
    ``(kh, kw, c)`` order of :func:`patches_2x2`."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def downsample_training_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether :func:`downsample_training` runs ``conv`` (2x2, stride 2, no
    padding, dilation or groups) on ``x`` (``[N, C, H, W]``): a float32 CPU
    tensor in dense channels-last memory with autograd on, not under
    ``torch.compile``, tracing or CPU autocast, and the patch GEMM the
    faster path at this width and size on this CPU."""
    return (_eager_nhwc_float32(x) and torch.is_grad_enabled()
            and not torch.is_autocast_enabled('cpu')
            and conv.kernel_size == (2, 2) and conv.stride == (2, 2)
            and conv.padding == (0, 0) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.padding_mode == 'zeros'
            and training_downsample_path(
                conv.in_channels, conv.out_channels,
                x.shape[0] * (x.shape[2] // 2) * (x.shape[3] // 2))
            == 'patches')


def downsample_training(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` as the GEMM over the conv's 2x2 patches with autograd,
    where :func:`downsample_training_applies`. An odd last row or column,
    which the strided conv does not reach, is left out alike.

    Args:
        conv (nn.Conv2d): A 2x2 stride-2 conv.
        x (Tensor): ``[N, C, H, W]``, dense channels-last.

    Returns:
        Tensor: ``[N, C_out, H // 2, W // 2]`` in channels-last memory.
    """
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    patches = patches_2x2(x[:, :, :h, :w])
    weight = patch_weight(conv.weight)
    if gemm_library() == 'onednn':  # a 1x1 conv on the patches
        return F.conv2d(patches.permute(0, 3, 1, 2), weight[:, :, None, None],
                        conv.bias)
    return F.linear(patches, weight, conv.bias).permute(0, 3, 1, 2)
