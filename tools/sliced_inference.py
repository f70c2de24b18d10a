#!/usr/bin/env python
"""Sliced (tiled) inference of any MMDetection config on large images.

The image is cut into overlapping windows (SAHI's slicing), each window goes
through the config's own test pipeline, several windows per forward pass,
and the window detections are merged in full-image coordinates: cut views
of objects at inner window borders are dropped, duplicates are removed with
mmcv's ``batched_nms``. ``--whole-image`` adds a pass on the whole image
(for objects larger than a window). The work is done by
:class:`mmincnext.models.SlicedInferenceDetector` around the config's
detector, the model that ``tools/test.py`` evaluates sliced (see
``mmincnext/models/detectors/sliced_inference_detector.py``; the pieces are in
``mmincnext/apis/sliced_inference.py``).

Predict (pictures in OUT/vis, COCO-format results in OUT/results.bbox.json
with the image ids of OUT/images.json)::

    python tools/sliced_inference.py CONFIG CHECKPOINT IMG_OR_DIR \\
        --out-dir OUT [--patch-size 640] [--patch-overlap-ratio 0.25]

Evaluate tiled against whole-image inference on a COCO-format split (the
images are read from IMG_DIR; COCO metrics of every mode side by side, in
OUT/metrics.json, results of each mode in OUT/results_MODE.bbox.json)::

    python tools/sliced_inference.py CONFIG CHECKPOINT data/demo/det/large \\
        --ann-file data/demo/det/annotations/instances_large.json --out-dir OUT
"""
import argparse
import os
import os.path as osp
import time

import mmcv
import torch
from mmdet.apis import init_detector
from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.utils.misc import get_file_list
from mmengine.config import DictAction
from mmengine.fileio import dump, load
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar, mkdir_or_exist

from mmincnext.apis import coco_evaluate, to_coco_results
from mmincnext.apis.sliced_inference import coco_category_ids
from mmincnext.models import SlicedInferenceDetector

MODES = ('whole', 'sliced', 'sliced+whole')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Sliced (tiled) inference of an MMDetection detector on '
        'large images, and tiled-vs-whole-image COCO evaluation.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='detection config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('img', help='image file or folder (with --ann-file: '
                   'the folder of the annotation file\'s images)')
    p.add_argument('--out-dir', default='work_dirs/sliced_inference')
    p.add_argument('--ann-file', help='COCO annotation file: evaluate '
                   'whole-image, sliced and sliced+whole inference')
    p.add_argument('--patch-size', type=int, nargs='+', default=[640],
                   help='window size in px: one value or H W')
    p.add_argument('--patch-overlap-ratio', type=float, default=0.25,
                   help='overlap of neighbouring windows (fraction of the '
                   'window size)')
    p.add_argument('--batch-size', type=int, default=4,
                   help='windows per forward pass')
    p.add_argument('--whole-image', action='store_true',
                   help='predict mode: also predict the whole image and '
                   'merge it in')
    p.add_argument('--border-margin', type=float, default=2.,
                   help='drop boxes cut by an inner window border (within '
                   'this many px of it, and shorter than the overlap); '
                   'negative: keep them')
    p.add_argument('--merge-iou-thr', type=float, default=0.5,
                   help='IoU threshold of the merging NMS')
    p.add_argument('--merge-nms-type', default='nms',
                   choices=['nms', 'soft_nms'])
    p.add_argument('--class-agnostic', action='store_true',
                   help='merge across classes')
    p.add_argument('--max-dets', type=int, default=1000,
                   help='detections kept per image (and per image and class '
                   'in the fine-bin metrics)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='score threshold of the drawn boxes (results files '
                   'keep every detection)')
    p.add_argument('--no-vis', action='store_true', help='draw nothing')
    p.add_argument('--device', default='cuda:0' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value')
    args = p.parse_args(argv)
    if len(args.patch_size) not in (1, 2):
        p.error('--patch-size takes one value or two (H W)')
    if len(args.patch_size) == 1:
        args.patch_size = args.patch_size * 2
    return args


def build_sliced(model, args) -> SlicedInferenceDetector:
    """The wrapper around ``model`` with the command line's settings; every
    window (and the whole image) goes through the config's test pipeline,
    reading the array instead of the file."""
    from mmdet.utils import get_test_pipeline_cfg
    pipeline = get_test_pipeline_cfg(model.cfg.copy())
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    return SlicedInferenceDetector(
        detector=model, slice_size=tuple(args.patch_size),
        overlap_ratio=args.patch_overlap_ratio, window_pipeline=pipeline,
        batch_size=args.batch_size,
        border_margin=args.border_margin if args.border_margin >= 0 else
        None,
        nms=dict(type=args.merge_nms_type, iou_threshold=args.merge_iou_thr,
                 class_agnostic=args.class_agnostic),
        max_per_img=args.max_dets)


def main(argv=None):
    args = parse_args(argv)
    model = init_detector(args.config, args.checkpoint, device=args.device,
                          cfg_options=args.cfg_options)
    classes = model.dataset_meta['classes']
    sliced = build_sliced(model, args)
    mkdir_or_exist(args.out_dir)
    visualizer = None
    if not args.no_vis:
        mkdir_or_exist(osp.join(args.out_dir, 'vis'))
        visualizer = VISUALIZERS.build(model.cfg.visualizer)
        visualizer.dataset_meta = model.dataset_meta

    if args.ann_file:
        coco = load(args.ann_file)
        images = [(im['id'], osp.join(args.img, im['file_name']))
                  for im in coco['images']]
        cat_ids = coco_category_ids(classes, coco['categories'])
        modes = MODES
    else:
        files, _ = get_file_list(args.img)
        if not files:
            raise FileNotFoundError(f'no image found at {args.img}')
        images = list(enumerate(files, 1))
        cat_ids = list(range(1, len(classes) + 1))
        modes = ('sliced+whole', ) if args.whole_image else ('sliced', )
    vis_mode = 'sliced+whole' if args.whole_image else 'sliced'

    border = sliced.border_margin
    predictions = {m: {} for m in modes}
    shapes, image_entries = {}, []
    timings = {'windows': 0., 'whole': 0.}
    num_windows = 0
    for img_id, path in images:
        img = mmcv.imread(path)  # BGR, as inference_detector reads it
        h, w = img.shape[:2]
        shapes[img_id] = (h, w)
        rel = osp.relpath(path, args.img) if osp.isdir(args.img) else \
            osp.basename(path)
        image_entries.append(dict(id=img_id, file_name=rel, height=h,
                                  width=w))
        windows = sliced.get_windows(h, w)
        num_windows += len(windows)
        print_log(f'{path}: {w}x{h}, {len(windows)} windows', 'current')
        bar = ProgressBar(len(windows))
        t0 = time.perf_counter()
        tiles = sliced.predict_sliced(img, windows, progress=bar.update)
        timings['windows'] += time.perf_counter() - t0
        whole = None
        if 'whole' in modes or 'sliced+whole' in modes:
            t0 = time.perf_counter()
            whole = sliced.predict_whole(img)
            timings['whole'] += time.perf_counter() - t0
        for mode in modes:
            parts = dict(whole=[whole], sliced=[tiles],
                         **{'sliced+whole': [tiles, whole]})[mode]
            if mode == 'whole':  # the model's own output, best max_dets
                order = whole.scores.argsort(descending=True)
                top = order[:args.max_dets]
                res = InstanceData(bboxes=whole.bboxes[top],
                                   scores=whole.scores[top],
                                   labels=whole.labels[top])
            else:
                res = sliced.merge(parts)
            predictions[mode][img_id] = res
        if visualizer is not None:
            name = osp.splitext(rel)[0].replace(os.sep, '_') + '.jpg'
            sample = DetDataSample(metainfo=dict(ori_shape=(h, w)))
            sample.pred_instances = predictions[vis_mode][img_id].cpu()
            visualizer.add_datasample(
                name, mmcv.bgr2rgb(img), data_sample=sample, draw_gt=False,
                show=False, pred_score_thr=args.score_thr,
                out_file=osp.join(args.out_dir, 'vis', name))
        print()

    for mode in modes:
        results = []
        for img_id, inst in predictions[mode].items():
            results += to_coco_results(inst, img_id, cat_ids)
        suffix = '' if not args.ann_file else '_' + mode.replace('+', '_')
        dump(results, osp.join(args.out_dir, f'results{suffix}.bbox.json'))
    if not args.ann_file:
        dump(dict(images=image_entries, categories=[
            dict(id=i, name=c) for i, c in zip(cat_ids, classes)]),
             osp.join(args.out_dir, 'images.json'))
        print_log(f'{len(images)} images, {num_windows} windows in '
                  f'{timings["windows"]:.1f} s; results in {args.out_dir}',
                  'current')
        return None

    metrics = {}
    for mode in modes:
        metrics[mode] = coco_evaluate(args.ann_file, predictions[mode],
                                      shapes, classes, args.max_dets)
    report = dict(
        config=args.config, checkpoint=args.checkpoint,
        ann_file=args.ann_file, patch_size=args.patch_size,
        patch_overlap_ratio=args.patch_overlap_ratio,
        border_margin=border, merge_iou_thr=args.merge_iou_thr,
        max_dets=args.max_dets, num_images=len(images),
        num_windows=num_windows,
        seconds=dict(windows=round(timings['windows'], 2),
                     whole=round(timings['whole'], 2)),
        metrics=metrics)
    dump(report, osp.join(args.out_dir, 'metrics.json'), indent=2)
    print(format_table(metrics, args.max_dets))
    print_log(f'metrics in {osp.join(args.out_dir, "metrics.json")}',
              'current')
    return report


def format_table(metrics: dict, max_dets: int) -> str:
    """Modes side by side: one row per metric key."""
    from terminaltables import AsciiTable
    modes = list(metrics)
    keys = [k for k in metrics[modes[0]] if k.startswith('coco/bbox_')]
    rows = [['metric'] + modes]
    for key in keys:
        name = key[len('coco/bbox_'):]
        fine = name.split('_')[-1] in ('all', 'vtiny', 'tiny', 'small')
        label = f'{name} (@{max_dets})' if fine else name
        rows.append([label] + [f'{metrics[m][key]:.3f}' for m in modes])
    return AsciiTable(rows).table


if __name__ == '__main__':
    main()
