#!/usr/bin/env python
"""Detect objects with an exported model (tools/deployment/export_onnx.py) in
ONNX Runtime or OpenVINO, on an image or a folder.

The images go through the config's own test pipeline (stored in the file),
so the detections are PyTorch's. Outputs, as tools/image_demo.py writes
them (MMDetection's ``DetInferencer`` layout): pictures in ``OUT/vis/``,
with ``--save-pred`` one JSON per image in ``OUT/preds/``; and, as
tools/sliced_inference.py, COCO-format results in
``OUT/results.bbox.json`` (image ids in ``OUT/images.json``)::

    python tools/deployment/onnx_inference.py MODEL.onnx IMG_OR_DIR \\
        --out-dir OUT [--runtime onnxruntime|openvino] [--precision bf16]

Large images: ``--sliced`` runs the model on overlapping windows and merges
them (mmincnext.apis.sliced_inference, the code of tools/sliced_inference.py);
a model exported from a ``_sliced_`` config slices by default, with that
config's settings. With ``--ann-file`` (COCO json; images read from
IMG_DIR by ``file_name``) the COCO box metrics are computed and written to
``OUT/metrics.json``.
"""
import argparse
import os
import os.path as osp
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('model', help='.onnx file from export_onnx.py')
    p.add_argument('inputs', help='image file or folder of images')
    p.add_argument('--out-dir', default='outputs')
    p.add_argument('--runtime', choices=('onnxruntime', 'openvino'),
                   default='onnxruntime')
    p.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32',
                   help='bf16: OpenVINO on CPUs with bf16 instructions')
    p.add_argument('--threads', type=int, help='runtime threads')
    p.add_argument('--batch-size', type=int, default=1,
                   help='images (or windows) per run')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='score threshold of the drawn predictions')
    p.add_argument('--save-pred', action='store_true',
                   help='also save the predictions of each image as JSON')
    p.add_argument('--no-vis', action='store_true', help='draw nothing')
    p.add_argument('--ann-file', help='COCO annotation file: evaluate')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--sliced', action='store_true',
                      help='sliced inference (default for a model exported '
                      'from a sliced config)')
    mode.add_argument('--whole', action='store_true',
                      help='whole-image inference, also for a model of a '
                      'sliced config')
    p.add_argument('--patch-size', type=int, nargs='+',
                   help='window size, one value or H W (default: the sliced '
                   'config\'s, else 640)')
    p.add_argument('--patch-overlap-ratio', type=float)
    p.add_argument('--whole-image', action='store_true',
                   help='sliced: also merge a whole-image pass')
    p.add_argument('--border-margin', type=float,
                   help='sliced: border-cut margin in px (< 0: off)')
    p.add_argument('--merge-iou-thr', type=float,
                   help='sliced: IoU threshold of the merging NMS')
    p.add_argument('--max-dets', type=int,
                   help='sliced: detections kept per image (default the '
                   'sliced config\'s max_per_img, else 1000)')
    args = p.parse_args(argv)
    if args.patch_size and len(args.patch_size) not in (1, 2):
        p.error('--patch-size takes one value or two (H W)')
    return args


def sliced_settings(args, meta: dict) -> dict:
    """Command line, else the sliced config's settings, else the defaults of
    :func:`mmincnext.apis.sliced_inference`."""
    cfg = meta.get('sliced') or {}
    size = args.patch_size or cfg.get('slice_size', 640)
    if isinstance(size, int):
        size = [size]
    size = list(size) * 2 if len(size) == 1 else list(size)
    nms = cfg.get('nms') or {}
    margin = args.border_margin if args.border_margin is not None else \
        cfg.get('border_margin', 2.)
    return dict(
        slice_size=tuple(size),
        overlap_ratio=args.patch_overlap_ratio if
        args.patch_overlap_ratio is not None else cfg.get('overlap_ratio',
                                                          0.25),
        whole_image=args.whole_image or bool(cfg.get('whole_image', False)),
        border_margin=None if margin is None or margin < 0 else margin,
        iou_thr=args.merge_iou_thr if args.merge_iou_thr is not None else
        nms.get('iou_threshold', 0.5),
        class_agnostic=bool(nms.get('class_agnostic', False)),
        max_dets=args.max_dets if args.max_dets is not None else
        cfg.get('max_per_img', 1000))


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    import mmcv
    from mmdet.structures import DetDataSample
    from mmdet.utils.misc import get_file_list
    from mmengine.fileio import dump, load
    from mmengine.logging import print_log
    from mmengine.utils import mkdir_or_exist

    from mmincnext.apis import sliced_inference, to_coco_results
    from mmincnext.apis.sliced_inference import (coco_category_ids,
                                                 coco_evaluate)
    from mmincnext.deployment import OnnxDetector
    for path, what in ((args.model, 'model'), (args.inputs, 'inputs')):
        if not osp.exists(path):
            raise FileNotFoundError(f'{what} {path} not found')
    if args.batch_size < 1:
        raise ValueError(f'--batch-size must be >= 1, got {args.batch_size}')
    detector = OnnxDetector(args.model, args.runtime, args.precision,
                            args.threads)
    meta = detector.meta
    classes = detector.classes
    sliced = args.sliced or (bool(meta.get('sliced')) and not args.whole)
    settings = sliced_settings(args, meta) if sliced else None

    if args.ann_file:
        coco = load(args.ann_file)
        root = args.inputs if osp.isdir(args.inputs) else \
            osp.dirname(args.inputs)
        images = [(im['id'], osp.join(root, im['file_name']))
                  for im in coco['images']]
        cat_ids = coco_category_ids(classes, coco['categories'])
    else:
        files, _ = get_file_list(args.inputs)
        if not files:
            raise FileNotFoundError(f'no image found at {args.inputs}')
        images = list(enumerate(files, 1))
        cat_ids = list(range(1, len(classes) + 1))

    mkdir_or_exist(args.out_dir)
    visualizer = None
    if not args.no_vis:
        from mmdet.visualization import DetLocalVisualizer
        mkdir_or_exist(osp.join(args.out_dir, 'vis'))
        visualizer = DetLocalVisualizer(name=f'onnx_{id(detector)}')
        visualizer.dataset_meta = dict(classes=classes,
                                       palette=meta.get('palette'))
    if args.save_pred:
        mkdir_or_exist(osp.join(args.out_dir, 'preds'))

    predictions, shapes, entries = {}, {}, []
    seconds = 0.
    todo = list(images)
    while todo:
        batch = todo[:1 if sliced else args.batch_size]
        todo = todo[len(batch):]
        imgs = []
        for img_id, path in batch:
            img = mmcv.imread(path)  # BGR, as MMDetection reads it
            if img is None:
                raise ValueError(f'{path}: not a readable image')
            imgs.append(img)
        t0 = time.perf_counter()
        if sliced:
            results = [sliced_inference(detector.predict, imgs[0],
                                        batch_size=args.batch_size,
                                        **settings)]
        else:
            results = detector.predict(imgs)
        seconds += time.perf_counter() - t0
        for (img_id, path), img, res in zip(batch, imgs, results):
            h, w = img.shape[:2]
            shapes[img_id] = (h, w)
            rel = osp.relpath(path, args.inputs) if osp.isdir(args.inputs) \
                else osp.basename(path)
            entries.append(dict(id=img_id, file_name=rel, height=h,
                                width=w))
            predictions[img_id] = res
            name = osp.basename(path)
            if visualizer is not None:
                sample = DetDataSample(metainfo=dict(ori_shape=(h, w)))
                sample.pred_instances = res
                visualizer.add_datasample(
                    name, mmcv.bgr2rgb(img), data_sample=sample,
                    draw_gt=False, show=False, pred_score_thr=args.score_thr,
                    out_file=osp.join(args.out_dir, 'vis', name))
            if args.save_pred:
                dump(dict(labels=res.labels.tolist(),
                          scores=res.scores.tolist(),
                          bboxes=res.bboxes.tolist()),
                     osp.join(args.out_dir, 'preds',
                              osp.splitext(name)[0] + '.json'))
            num = int((res.scores >= args.score_thr).sum())
            print(f'{path}: {num} detections with score >= {args.score_thr}')

    results = []
    for img_id, inst in predictions.items():
        results += to_coco_results(inst, img_id, cat_ids)
    dump(results, osp.join(args.out_dir, 'results.bbox.json'))
    dump(dict(images=entries, categories=[
        dict(id=i, name=c) for i, c in zip(cat_ids, classes)]),
         osp.join(args.out_dir, 'images.json'))
    mode = 'sliced' if sliced else 'whole image'
    print_log(f'{len(images)} images ({mode}, {args.runtime} '
              f'{args.precision}) in {seconds:.2f} s; results in '
              f'{args.out_dir}{os.sep}', 'current')
    if not args.ann_file:
        return None
    max_dets = settings['max_dets'] if sliced else meta['max_per_img']
    metrics = coco_evaluate(args.ann_file, predictions, shapes, classes,
                            max(max_dets, 100))
    report = dict(model=args.model, runtime=args.runtime,
                  precision=args.precision, mode=mode,
                  sliced=settings, num_images=len(images),
                  seconds=round(seconds, 2), metrics=metrics)
    dump(report, osp.join(args.out_dir, 'metrics.json'), indent=2)
    return report


if __name__ == '__main__':
    main()
