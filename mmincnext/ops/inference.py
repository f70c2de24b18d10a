"""How a MetaNeXt block runs in inference: every speed decision in one place.

``MetaNeXtBlock.forward`` hands each call without autograd in eval mode to
:func:`metanext_inference`, which picks, per block and input:

1. mmincnext's compiled kernels (:mod:`mmincnext.ops.kernels`; CPU, float32,
   channels-last, eager): the token mixer and the block norm (a BatchNorm's
   running statistics, as a per-channel affine) in one pass
   (``inception_mixer``); where the MLP fits the fused kernel (channel counts
   that are multiples of 16, weights of at most
   :data:`FUSED_MLP_MAX_WEIGHT_BYTES`), the whole block as one
   ``metanext_block`` call, whose mixer output never leaves L2.
2. Otherwise on CPU, the MLP as ``fused_mlp`` where it fits, else oneDNN's
   linear ops with fused epilogues (bias and GELU into ``fc1``; bias and,
   once ``switch_to_deploy`` has folded ``gamma`` into ``fc2``, the residual
   sum into ``fc2``), over row blocks of about :data:`MLP_BLOCK_BYTES` of
   hidden activations that stay in the last-level cache between the GEMMs.
   Under CPU autocast to bfloat16 this path runs in bfloat16, the MLP's
   inputs and weights cast once per call.
3. Elsewhere (GPU, ``torch.compile``, tracing, other dtypes), PyTorch's
   modules with the residual sum as the GEMM's accumulator (``addmm``) or an
   ``addcmul``.

All paths compute ``x + gamma * fc2(gelu(fc1(norm(token_mixer(x)))))`` and
agree within float32 rounding. The block is duck-typed (``token_mixer``,
``norm``, ``mlp.fc1``, ``mlp.act``, ``mlp.fc2``, ``mlp.fc2_params``,
``gamma``, ``cpu_kernels``), so this module does not import the model.
"""
import contextlib
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmincnext.utils import bn_scale_shift
from . import kernels

# Hidden activations per row block of the oneDNN MLP path: sized for the
# last-level cache, so they are read by fc2 from cache instead of memory.
# Inputs of at most two blocks go in one piece.
MLP_BLOCK_BYTES = 8 * 2**20

# Largest MLP (fc1 + fc2 weights) for which the compiled kernels replace
# oneDNN: up to here the kernels stream row blocks through fc1, GELU and fc2
# with the hidden activations in L2 (all hidden units where both weights fit
# in L2, else 384 at a time); for larger weights oneDNN's blocking of the
# weights is the faster choice. docs/speed.md has the measurements.
FUSED_MLP_MAX_WEIGHT_BYTES = 6 * 2**20


class InferencePlan(NamedTuple):
    """What the compiled kernels do for one block call.

    Attributes:
        norm: The block norm as the kernels take it, ``(scale, shift)``
            (``(None, None)`` for a deployed block without norm), or None
            where the kernels do not run the token mixer.
        whole: Whether :func:`mmincnext.ops.metanext_block` runs the whole
            block.
    """
    norm: Optional[tuple]
    whole: bool


def metanext_inference(
        block: nn.Module,
        x: torch.Tensor,
        *,
        fused_mlp_max_weight_bytes: int = FUSED_MLP_MAX_WEIGHT_BYTES,
        mlp_block_bytes: int = MLP_BLOCK_BYTES) -> torch.Tensor:
    """``block(x)`` without autograd, for a block in eval mode.

    Args:
        block (MetaNeXtBlock): The block.
        x (Tensor): Its ``[N, C, H, W]`` input.
        fused_mlp_max_weight_bytes (int): See
            :data:`FUSED_MLP_MAX_WEIGHT_BYTES`.
        mlp_block_bytes (int): See :data:`MLP_BLOCK_BYTES`.

    Returns:
        Tensor: ``[N, C, H, W]`` in the memory format of the path taken
        (channels-last for channels-last inputs).
    """
    plan = inference_plan(block, x, fused_mlp_max_weight_bytes)
    if plan.whole:
        fc1 = block.mlp.fc1
        w2, b2 = block.mlp.fc2_params(block.gamma)  # gamma folded
        return kernels.metanext_block(x, block.token_mixer, *plan.norm,
                                      fc1.weight.flatten(1), fc1.bias,
                                      w2.flatten(1), b2)
    return mlp_inference(
        block, mixer_inference(block, x, plan.norm), x,
        fused_mlp_max_weight_bytes=fused_mlp_max_weight_bytes,
        mlp_block_bytes=mlp_block_bytes)


def inference_plan(
        block: nn.Module,
        x: torch.Tensor,
        fused_mlp_max_weight_bytes: int = FUSED_MLP_MAX_WEIGHT_BYTES
) -> InferencePlan:
    """Which compiled kernels take the block input ``x``
    (:class:`InferencePlan`)."""
    if not (block.cpu_kernels and _cpu_kernels_apply(x)):
        return InferencePlan(None, False)
    norm = _norm_affine(block.norm)
    return InferencePlan(
        norm, norm is not None and _fused_mlp_fits(
            block.mlp.fc1.weight.flatten(1), fused_mlp_max_weight_bytes))


def mixer_inference(block: nn.Module, x: torch.Tensor,
                    norm: Optional[tuple]) -> torch.Tensor:
    """``block.norm(block.token_mixer(x))``: one kernel call where ``norm``
    (from :func:`inference_plan`) is given, else PyTorch's modules."""
    if norm is None:
        return block.norm(block.token_mixer(x))
    return kernels.inception_mixer(x, block.token_mixer, *norm)


def mlp_inference(
        block: nn.Module,
        x: torch.Tensor,
        shortcut: torch.Tensor,
        *,
        fused_mlp_max_weight_bytes: int = FUSED_MLP_MAX_WEIGHT_BYTES,
        mlp_block_bytes: int = MLP_BLOCK_BYTES) -> torch.Tensor:
    """``shortcut + gamma * fc2(gelu(fc1(x)))`` without autograd, ``x``
    being the normed token mixer output (paths 2 and 3 of this module).

    Under CPU autocast to bfloat16 the MLP runs in bfloat16 on oneDNN's
    fused ops, with the weights cast once per call (autocast would send
    the unfused ``F.linear`` / ``addmm`` path through the same casts)."""
    x, shortcut = x.permute(0, 2, 3, 1), shortcut.permute(0, 2, 3, 1)
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    weights = (fc1.weight.flatten(1), fc1.bias, fc2.weight.flatten(1),
               fc2.bias, block.gamma)
    context = contextlib.nullcontext()
    if _cpu_autocast_bf16(x):
        x, shortcut = x.to(torch.bfloat16), shortcut.to(torch.bfloat16)
        weights = tuple(None if t is None else t.to(torch.bfloat16)
                        for t in weights)
        context = torch.autocast('cpu', enabled=False)
    with context:
        return _mlp(block, x, shortcut, *weights, fused_mlp_max_weight_bytes,
                    mlp_block_bytes).permute(0, 3, 1, 2)


def _mlp(block, x, shortcut, w1, b1, w2, b2, gamma,
         fused_mlp_max_weight_bytes, mlp_block_bytes):
    """:func:`mlp_inference` on the ``(N, H, W, C)`` views, with the
    weights given in the dtype of the computation."""
    if block.cpu_kernels and _fused_mlp_applies(x, shortcut, w1, w2,
                                                fused_mlp_max_weight_bytes):
        if gamma is not None:  # the kernel takes the layer scale folded
            w2, b2 = w2 * gamma[:, None], b2 * gamma
        n, h, w, c = x.shape
        return kernels.fused_mlp(x.reshape(-1, c), shortcut.reshape(-1, c),
                                 w1, b1, w2, b2).view(n, h, w, c)
    if _onednn_fusion_applies(x, shortcut, w1, w2):
        rows = max(1, mlp_block_bytes // (w1.shape[0] * x.element_size()))
        if x.shape[:-1].numel() <= 2 * rows:
            return _mlp_onednn(x, shortcut, w1, b1, w2, b2, gamma)
        # row blocks that keep the hidden activations in cache
        n, h, w, c = x.shape
        x, shortcut = x.reshape(-1, c), shortcut.reshape(-1, c)
        out = torch.empty_like(shortcut)
        for i in range(0, x.shape[0], rows):
            out[i:i + rows] = _mlp_onednn(x[i:i + rows], shortcut[i:i + rows],
                                          w1, b1, w2, b2, gamma)
        return out.view(n, h, w, c)
    x = block.mlp.act(F.linear(x, w1, b1))
    if gamma is None:
        n, h, w, c = shortcut.shape
        x = torch.addmm(shortcut.reshape(n * h * w, c),
                        x.reshape(n * h * w, -1), w2.t())
        return x.add_(b2).view(n, h, w, c)
    return torch.addcmul(shortcut, F.linear(x, w2, b2), gamma)


def _mlp_onednn(x: torch.Tensor, shortcut: torch.Tensor, w1: torch.Tensor,
                b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                gamma: Optional[torch.Tensor]) -> torch.Tensor:
    """``shortcut + gamma * fc2(gelu(fc1(x)))`` with oneDNN's fused
    epilogues (contiguous CPU tensors, channels last)."""
    linear = torch.ops.mkldnn._linear_pointwise
    x = linear(x, w1, b1, 'gelu', [], 'none')
    if gamma is None:
        return linear.binary(x, shortcut, w2, b2, 'add')
    return torch.addcmul(shortcut, linear(x, w2, b2, 'none', [], ''), gamma)


def _eager() -> bool:
    """Not under ``torch.compile`` or tracing, which do their own fusion
    and autocast (checked first: no graph break)."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def _cpu_autocast_bf16(x: torch.Tensor) -> bool:
    """Whether ``x`` is computed eagerly under CPU autocast to bfloat16."""
    return (_eager() and x.device.type == 'cpu'
            and torch.is_autocast_enabled('cpu')
            and torch.get_autocast_dtype('cpu') == torch.bfloat16)


def _norm_affine(norm: nn.Module) -> Optional[tuple]:
    """``(scale, shift)`` of the block norm as a per-channel affine,
    ``(None, None)`` without one (deploy), ``None`` if it is not an affine
    (a BatchNorm in training mode or without running statistics, another
    norm)."""
    if isinstance(norm, nn.Identity):
        return None, None
    if isinstance(norm, _BatchNorm) and not norm.training \
            and norm.running_mean is not None:
        return bn_scale_shift(norm)
    return None


def _onednn_fusion_applies(*tensors: torch.Tensor) -> bool:
    """Whether the fused oneDNN linear ops (``torch.ops.mkldnn``, also used
    by inductor on CPU) can replace plain ops: contiguous fp32/bf16 CPU
    tensors, no autograd, not under ``torch.compile`` / tracing (where the
    compiler does its own fusion)."""
    return (_eager() and not torch.is_grad_enabled()
            and hasattr(torch.ops.mkldnn, '_linear_pointwise')
            and torch.backends.mkldnn.is_available()
            and all(t.device.type == 'cpu' and t.is_contiguous()
                    and t.dtype in (torch.float32, torch.bfloat16)
                    and t.dtype == tensors[0].dtype for t in tensors)
            # oneDNN has no bf16 primitives on CPUs without bf16 instructions
            and (tensors[0].dtype != torch.bfloat16
                 or torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def _eager_nhwc_float32(x: torch.Tensor) -> bool:
    """Not under ``torch.compile`` / tracing (checked first), and ``x`` is
    an ``[N, C, H, W]`` float32 CPU tensor in dense channels-last memory."""
    if not _eager() or x.dim() != 4:
        return False
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and x.permute(0, 2, 3, 1).is_contiguous())  # an NHWC buffer


def _kernels_take(x: torch.Tensor) -> bool:
    """Whether the compiled kernels can take ``x``: they are built and
    supported by the CPU, and :func:`_eager_nhwc_float32`."""
    return _eager_nhwc_float32(x) and kernels.cpu_kernels_available()


def _cpu_kernels_apply(x: torch.Tensor) -> bool:
    """Whether the inference kernels can take the block input ``x``
    (:func:`_kernels_take`, and no autograd)."""
    return _kernels_take(x) and not torch.is_grad_enabled()


def _fused_mlp_fits(w1: torch.Tensor, max_weight_bytes: int) -> bool:
    """Whether :func:`mmincnext.ops.fused_mlp` takes this MLP (``fc1``'s
    weight ``[H, C]``) and is the faster choice: channel counts that are
    multiples of 16, weights of at most ``max_weight_bytes``."""
    hidden, channels = w1.shape
    return (w1.dtype == torch.float32
            and channels % 16 == 0 and hidden % 16 == 0
            and 2 * w1.numel() * w1.element_size() <= max_weight_bytes)


def _fused_mlp_applies(x: torch.Tensor, shortcut: torch.Tensor,
                       w1: torch.Tensor, w2: torch.Tensor,
                       max_weight_bytes: int) -> bool:
    """Whether :func:`mmincnext.ops.fused_mlp` can run this MLP on the
    ``(N, H, W, C)`` views ``x`` and ``shortcut``: the tensors qualify for
    oneDNN's fused ops in float32, the kernel is built and supported by the
    CPU, and the weights fit (:func:`_fused_mlp_fits`)."""
    return (_onednn_fusion_applies(x, shortcut, w1, w2)  # first: compiling
            and kernels.cpu_kernels_available()
            and x.dtype == torch.float32
            and _fused_mlp_fits(w1, max_weight_bytes))
