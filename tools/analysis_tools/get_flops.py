# Copyright (c) OpenMMLab / mmincnext. All rights reserved.
"""FLOPs and parameters of a detection or segmentation model (or just its
backbone) on a synthetic input, with MMEngine's complexity analysis.

FLOPs are counted as in fvcore / MMEngine: one fused multiply-add = 1, i.e.
the "MACs" of the InceptionNeXt paper (tiny: 4.2 G at 224x224).

    python tools/analysis_tools/get_flops.py CONFIG [--shape 1280 800]
    python tools/analysis_tools/get_flops.py CONFIG --backbone-only --shape 224
"""
import argparse
import os.path as osp
import sys
from functools import partial

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
import mmincnext  # noqa: E402,F401

DEFAULT_SHAPES = {'mmdet': (1280, 800), 'mmseg': (512, 512)}


def parse_args():
    parser = argparse.ArgumentParser(
        description='FLOPs / params of a model on a synthetic input')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None,
        help='input H W (or one value for a square); default 1280 800 '
        'for detection, 512 512 for segmentation')
    parser.add_argument(
        '--backbone-only', action='store_true',
        help='count the backbone alone (no neck / heads)')
    parser.add_argument(
        '--show-table', action='store_true',
        help='print the per-module table')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args()


def build_model(cfg):
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_SHAPES:
        raise ValueError(f'config default_scope must be one of '
                         f'{sorted(DEFAULT_SHAPES)}, got {scope!r}')
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # no download
    model = MODELS.build(cfg.model)
    return scope, revert_sync_batchnorm(model).eval()


def synthetic_data_sample(scope, h, w):
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=meta)
    from mmseg.structures import SegDataSample
    return SegDataSample(metainfo=meta)


def complexity(cfg, shape, backbone_only=False, show_table=False):
    """Return ``dict(flops, params, shape, scope)`` for ``cfg``'s model."""
    scope, model = build_model(cfg)
    h, w = (shape[0], shape[0]) if len(shape) == 1 else shape[:2]
    inputs = torch.rand(1, 3, h, w)
    if backbone_only:
        target = model.backbone
    else:
        target = model
        model.forward = partial(
            model.forward,
            data_samples=[synthetic_data_sample(scope, h, w)],
            mode='tensor')
    with torch.no_grad():
        out = get_model_complexity_info(
            target, inputs=(inputs, ), show_table=show_table,
            show_arch=False)
    return dict(flops=out['flops'], params=out['params'], shape=(h, w),
                scope=scope, table=out.get('out_table'))


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    shape = args.shape or DEFAULT_SHAPES[cfg.get('default_scope')]
    if len(shape) not in (1, 2):
        raise ValueError(f'--shape takes 1 or 2 ints, got {shape}')
    res = complexity(cfg, shape, args.backbone_only, args.show_table)
    if args.show_table and res['table']:
        print(res['table'])
    line = '=' * 30
    what = 'backbone' if args.backbone_only else 'model'
    print(f'{line}\nConfig: {args.config} ({what})\n'
          f'Input shape: (1, 3, {res["shape"][0]}, {res["shape"][1]})\n'
          f'Flops: {res["flops"] / 1e9:.3f} G\n'
          f'Params: {res["params"] / 1e6:.3f} M\n{line}')
    print('FLOPs count one multiply-add as 1. Operators MMEngine cannot '
          'count are skipped (it warns); check before citing the numbers.')


if __name__ == '__main__':
    main()
