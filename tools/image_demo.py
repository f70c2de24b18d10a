#!/usr/bin/env python
"""Detect objects in an image file or a folder of images and save annotated
pictures (boxes, masks, labels, scores) with MMDetection's ``DetInferencer``.

Example, with the checkpoint that ``make demo`` trained::

    python tools/image_demo.py data/demo/det/val \\
        configs/demo/mask-rcnn_inceptionnext-atto_fpn_small-obj_demo.py \\
        work_dirs/demo/iter_1000.pth --out-dir work_dirs/demo/image_demo

Pictures go to ``OUT_DIR/vis/`` and, with ``--save-pred``, the predictions
as JSON to ``OUT_DIR/preds/`` (DetInferencer's layout). For images much
larger than the training images (e.g. ``data/demo/det/large``), use sliced
inference: ``tools/sliced_inference.py``.
"""
import argparse
import os
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('inputs', help='image file or folder of images')
    p.add_argument('config', help='model config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out-dir', default='outputs')
    p.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='score threshold of the drawn predictions')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--save-pred', action='store_true',
                   help='also save the predictions as JSON')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.exists(args.inputs):
        raise FileNotFoundError(args.inputs)
    sys.path.insert(0, ROOT)
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=args.config, weights=args.checkpoint,
                               device=args.device, show_progress=False)
    res = inferencer(args.inputs, batch_size=args.batch_size,
                     out_dir=args.out_dir, pred_score_thr=args.score_thr,
                     no_save_pred=not args.save_pred)
    files = inferencer._inputs_to_list(args.inputs)
    for f, pred in zip(files, res['predictions']):
        n = sum(s >= args.score_thr for s in pred['scores'])
        print(f'{f}: {n} detections with score >= {args.score_thr}')
    print(f'pictures in {osp.join(args.out_dir, "vis")}{os.sep}')


if __name__ == '__main__':
    main()
