"""A BatchNorm in eval mode as a per-channel affine ``x * scale + shift``.

Used by the BN folding of ``switch_to_deploy`` (:mod:`mmincnext.models.utils`)
and by the CPU inference kernels (:mod:`mmincnext.ops`), which take the block
norm as an affine; it lives here so that ``ops`` never imports ``models``.
"""
from typing import Tuple

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def bn_scale_shift(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` of ``bn`` with its running statistics."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) \
        if bn.affine else 1. / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias.detach() if bn.affine else 0.) - bn.running_mean * scale
    return scale, shift
