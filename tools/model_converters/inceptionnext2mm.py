# Copyright (c) mmincnext. All rights reserved.
"""Convert an official (sail-sg/inceptionnext) or timm InceptionNeXt
checkpoint into an OpenMMLab checkpoint.

The output is ``{'state_dict': {'backbone.<official key>': tensor, ...},
'meta': {...}}`` without the classifier head, usable as
``load_from=...`` of a detector/segmentor or as
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``.
(mmincnext's backbone also loads the official file directly; converting
gives a file that any OpenMMLab loader accepts.)

The input is read with ``torch.load(weights_only=True)`` (or from
``.safetensors``); files that need arbitrary unpickling are refused.

    python tools/model_converters/inceptionnext2mm.py \
        inceptionnext_tiny.pth inceptionnext-tiny_mm.pth
"""
import argparse
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mmincnext.models.backbones import InceptionNeXt  # noqa: E402
from mmincnext.models.utils import (extract_state_dict, guess_arch,  # noqa
                                    load_official_state_dict, stage_depths)
from mmincnext.utils import safe_torch_load  # noqa: E402


def load_source(path: str) -> dict:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return safe_torch_load(path)


def convert(checkpoint: dict):
    """Official/timm checkpoint (plain or wrapped) -> ``(arch, state_dict)``
    with ``backbone.`` keys.

    Raises:
        ValueError: the checkpoint is not an InceptionNeXt of a known size
            (atto / tiny / small / base).
    """
    state_dict = extract_state_dict(checkpoint)
    backbone = {k: v for k, v in state_dict.items()
                if not k.startswith('head.')}
    arch = guess_arch(backbone, InceptionNeXt.arch_settings)
    if arch is None and 'stem.0.weight' in backbone:
        raise ValueError(
            'InceptionNeXt checkpoint of unknown size (stem width '
            f"{backbone['stem.0.weight'].shape[0]}, blocks per stage "
            f'{stage_depths(backbone)}); known: atto, tiny, small, base')
    if arch is None:
        raise ValueError(
            'not an InceptionNeXt checkpoint of a known size (atto/tiny/'
            f'small/base); keys start with {sorted(backbone)[:3]}')
    # strict: raises on any missing, extra or mis-shaped tensor
    load_official_state_dict(InceptionNeXt(arch), backbone)
    return arch, {f'backbone.{k}': v.clone() for k, v in backbone.items()}


def main():
    parser = argparse.ArgumentParser(
        description='Convert an official/timm InceptionNeXt checkpoint to '
        'an OpenMMLab checkpoint (backbone. prefix, no head)')
    parser.add_argument('src', help='official .pth or timm .pth/.safetensors')
    parser.add_argument('dst', help='output .pth path')
    args = parser.parse_args()
    arch, state_dict = convert(load_source(args.src))
    dst_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(dst_dir, exist_ok=True)
    torch.save(
        dict(state_dict=state_dict,
             meta=dict(arch=arch, source=osp.basename(args.src),
                       converter='mmincnext inceptionnext2mm')),
        args.dst)
    print(f'InceptionNeXt-{arch}: {len(state_dict)} tensors -> {args.dst}')


if __name__ == '__main__':
    main()
