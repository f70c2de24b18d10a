# Copyright (c) OpenMMLab / mmincnext. All rights reserved.
"""Test (and evaluate) an MMDetection or MMSegmentation model with an
InceptionNeXt backbone; the task is taken from the config's
``default_scope``.

Options as ``mmdet/tools/test.py`` and ``mmseg/tools/test.py``. ``--out`` is
a ``.pkl`` file of raw predictions for detection (mmdet's DumpDetResults) and
a directory of predicted label maps for segmentation (mmseg's IoUMetric
``output_dir``). CPU-only ``--launcher pytorch`` runs use gloo.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

from mmengine.config import ConfigDict, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmincnext  # noqa: E402,F401  (registers the backbone & co.)
from mmincnext.engine.runner import (build_task_runner,  # noqa: E402
                                    close_process_group,
                                    load_task_config)
from mmincnext.engine import autocast_network  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument(
        '--out', help='detection: .pkl file of the predictions; '
        'segmentation: directory for the predicted label maps')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images are saved '
        '(inside work_dir/<timestamp>/ for detection)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--precision', choices=['fp32', 'bf16'], default='fp32',
        help='bf16: the network (backbone, neck, heads) under autocast to '
        'bfloat16, its outputs and the post-processing in float32')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args




def enable_visualization(cfg, args, scope: str):
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError('--show/--show-dir need a VisualizationHook in '
                           "default_hooks (visualization=dict(type="
                           "'VisualizationHook'))")
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


def enable_det_tta(cfg):
    """mmdet's default: horizontal-flip TTA merged by DetTTAModel."""
    if 'tta_model' not in cfg:
        warnings.warn('no tta_model in the config; using DetTTAModel with '
                      'NMS 0.5 and 100 detections')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                         max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('no tta_pipeline in the config; using the test '
                      'pipeline with and without horizontal flip')
        data = cfg.test_dataloader.dataset
        while 'dataset' in data:
            data = data['dataset']
        cfg.tta_pipeline = deepcopy(data.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape',
                                         'img_shape', 'scale_factor', 'flip',
                                         'flip_direction'))]])
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def enable_seg_tta(cfg):
    """mmseg's: the config's multi-scale/flip ``tta_pipeline`` and
    ``tta_model`` (SegTTAModel in mmseg's default runtime)."""
    if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
        raise RuntimeError('--tta needs tta_pipeline and tta_model in the '
                           'segmentation config (mmseg bases define them)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def main():
    args = parse_args()
    cfg, scope = load_task_config(args.config, args.cfg_options,
                                  args.launcher, args.work_dir)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        enable_visualization(cfg, args, scope)
    if args.tta:
        enable_det_tta(cfg) if scope == 'mmdet' else enable_seg_tta(cfg)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.out is not None and scope == 'mmdet' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file for detection, got '
                         f'{args.out}')

    runner = build_task_runner(cfg, scope, data_splits=('test', ))
    if args.precision == 'bf16':
        parts = autocast_network(runner.model)
        runner.logger.info(f'bf16 autocast: {", ".join(parts)}')
    if args.out is not None and scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    runner.test()
    close_process_group(runner)


if __name__ == '__main__':
    main()
