"""Folding BatchNorms into their neighbouring convolutions, for
``switch_to_deploy`` (inference only: the running statistics are baked in)."""
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmincnext.utils import bn_scale_shift


def fold_bn_before(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """A new conv equal to ``conv(bn(x))``; ``conv`` must be dense and must
    not pad (a padded border would see the BN shift)."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'can only fold BatchNorm, got {type(bn).__name__}')
    if conv.groups != 1 or any(p != 0 for p in conv.padding):
        raise ValueError('can only fold BN into an unpadded dense conv')
    scale, shift = bn_scale_shift(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      stride=conv.stride, bias=True).to(conv.weight)
    w = conv.weight.detach()
    fused.weight.data.copy_(w * scale.view(1, -1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else 0.
    fused.bias.data.copy_(bias + (w * shift.view(1, -1, 1, 1)).sum((1, 2, 3)))
    return fused


def fold_bn_into_next_conv(seq: nn.Sequential, bn_idx: int, conv_idx: int):
    """``seq[bn_idx]`` (a BN) into the conv after it; the BN becomes an
    ``nn.Identity``."""
    seq[conv_idx] = fold_bn_before(seq[bn_idx], seq[conv_idx])
    seq[bn_idx] = nn.Identity()


def fold_bn_into_prev_conv(seq: nn.Sequential, conv_idx: int, bn_idx: int):
    """``seq[bn_idx]`` (a BN) into the conv before it, in place; the BN
    becomes an ``nn.Identity``."""
    conv, bn = seq[conv_idx], seq[bn_idx]
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'can only fold BatchNorm, got {type(bn).__name__}')
    scale, shift = bn_scale_shift(bn)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias.data if conv.bias is not None else 0.
    conv.bias = nn.Parameter(bias * scale + shift)
    seq[bn_idx] = nn.Identity()
