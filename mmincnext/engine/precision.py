"""Reduced-precision inference of a detector or segmentor: the network under
autocast, the post-processing in float32.

mmengine's ``TestLoop(fp16=True)`` puts the whole ``test_step`` under
autocast, post-processing included; on the CPU that is bfloat16, which
mmcv's NMS and RoIAlign kernels reject. :func:`autocast_network` instead
wraps the ``forward`` of the network's parts (backbone, neck, the heads'
networks), so that the convolutions and GEMMs run in bfloat16 while box
decoding, NMS, RoI pooling and resizing see float32 tensors, as in fp32
testing.
"""
import functools
import warnings
from typing import List

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

__all__ = ['NETWORK_PARTS', 'autocast_network']

# mmdet's single- and two-stage detectors, mmseg's encoder-decoders
NETWORK_PARTS = ('backbone', 'neck', 'bbox_head', 'rpn_head',
                 'roi_head.bbox_head', 'roi_head.mask_head', 'decode_head',
                 'auxiliary_head')


def _to_float(t):
    if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16,
                                                   torch.float16):
        return t.float()
    return t


def _autocast_forward(forward, device_type: str, dtype: torch.dtype):

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        return tree_map(_to_float, out)

    return wrapped


def autocast_network(model: nn.Module,
                     dtype: torch.dtype = torch.bfloat16) -> List[str]:
    """Run the network parts of ``model`` (:data:`NETWORK_PARTS` that it
    has) under ``torch.autocast`` to ``dtype`` on the model's device, their
    bfloat16 / float16 outputs cast back to float32.

    Args:
        model (nn.Module): A detector or segmentor, or a wrapper of one
            (DDP, a TTA model) with the model as ``module``.
        dtype (torch.dtype): The autocast dtype.

    Returns:
        list[str]: The names of the wrapped parts.

    Raises:
        ValueError: ``model`` has none of the parts.
    """
    while not any(hasattr(model, p.split('.')[0]) for p in NETWORK_PARTS) \
            and isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    device_type = next(model.parameters()).device.type
    if device_type == 'cpu' and dtype == torch.bfloat16 and \
            not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn('this CPU has no bf16 instructions: bf16 is emulated '
                      'and slower than fp32 here')
    wrapped = []
    for path in NETWORK_PARTS:
        part = model
        for name in path.split('.'):
            part = getattr(part, name, None)
        if part is None:
            continue
        parts = list(part) if isinstance(part, nn.ModuleList) else [part]
        for i, module in enumerate(parts):
            module.forward = _autocast_forward(module.forward, device_type,
                                               dtype)
            wrapped.append(path if len(parts) == 1 else f'{path}.{i}')
    if not wrapped:
        raise ValueError(f'{type(model).__name__} has none of the network '
                         f'parts {NETWORK_PARTS} to run in {dtype}')
    return wrapped
