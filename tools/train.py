# Copyright (c) OpenMMLab / mmincnext. All rights reserved.
"""Train an MMDetection or MMSegmentation model with an InceptionNeXt
backbone (the task is taken from the config's ``default_scope``).

Same options as ``mmdet/tools/train.py`` and ``mmseg/tools/train.py``; in
addition a CPU-only ``--launcher pytorch`` run (``tools/dist_train.sh`` on a
machine without GPU) uses gloo, and an AMP config started without a GPU falls
back to fp32 with a warning.
"""
import argparse
import logging
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmincnext  # noqa: E402,F401  (registers the backbone & co.)
from mmincnext.engine.runner import (build_task_runner,  # noqa: E402
                                    close_process_group,
                                    load_task_config)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Train a detector or segmentor (mmdet / mmseg config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision (AmpOptimWrapper); needs a GPU')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by (GPUs x images per GPU) / '
        'auto_scale_lr.base_batch_size (detection configs)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or (no value) from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. '
        'model.backbone.init_cfg.checkpoint=/path/inceptionnext_tiny.pth)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args




def switch_amp(cfg, amp: bool):
    """``--amp`` switches to AmpOptimWrapper (GPU only); an AMP config run
    without a GPU falls back to OptimWrapper."""
    wrapper = cfg.optim_wrapper
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA GPU (AmpOptimWrapper); '
                               'drop --amp to train in fp32 on the CPU')
        if wrapper.get('type') == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config',
                      logger='current', level=logging.WARNING)
        else:
            wrapper.type = 'AmpOptimWrapper'
            wrapper.loss_scale = 'dynamic'
    elif wrapper.get('type') == 'AmpOptimWrapper' and \
            not torch.cuda.is_available():
        print_log('no CUDA device: AmpOptimWrapper -> OptimWrapper (fp32)',
                  logger='current', level=logging.WARNING)
        wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)


def main():
    args = parse_args()
    cfg, scope = load_task_config(args.config, args.cfg_options,
                                  args.launcher, args.work_dir)

    switch_amp(cfg, args.amp)

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(
                '--auto-scale-lr needs auto_scale_lr=dict(enable=..., '
                'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True

    # resume: explicit checkpoint > latest in work_dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = build_task_runner(cfg, scope, data_splits=('train', 'val'))
    runner.train()
    close_process_group(runner)


if __name__ == '__main__':
    main()
