#!/usr/bin/env python
"""Sliced training and sliced evaluation on the embedded data, end to end
through the stock tools, with the fine size bins side by side.

1. generates large images (1000-1600 px, 150-300 objects of 6-24 px each)
   in YOLO txt format (``make_small_object_data.py --num-yolo-large``) into
   ``--data-root`` unless they are there,
2. converts them to COCO JSON with ``tools/dataset_converters/yolo2coco.py``,
3. trains the same detector (Faster R-CNN, InceptionNeXt-atto, small-object
   form, from scratch) for the same iterations and batch twice with
   ``tools/train.py``: on whole images
   (``configs/demo/faster-rcnn_inceptionnext-atto_fpn_small-obj_demo.py``,
   resized to 1024 px) and on 512 px windows
   (``..._small-obj_sliced_demo.py``, ``SlicedDataset``),
4. scores with ``tools/test.py``: whole-image training + whole-image test,
   whole-image training + sliced test (the plain checkpoint in the sliced
   config), sliced training + sliced test,
5. prints the table (COCO mAP, AP50, and AP of the < 8, 8-16, 16-32 px bins,
   500 detections per image) and writes it with the metrics to
   ``WORK_DIR/results.json`` and ``WORK_DIR/results.md``.

Examples::

    python tools/demo_sliced.py                  # the documented run
    python tools/demo_sliced.py --iters 20 --work-dir /tmp/s   # a quick one
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WHOLE = osp.join(ROOT, 'configs', 'demo',
                 'faster-rcnn_inceptionnext-atto_fpn_small-obj_demo.py')
SLICED = osp.join(ROOT, 'configs', 'demo',
                  'faster-rcnn_inceptionnext-atto_fpn_small-obj_sliced_'
                  'demo.py')
RUNS = (('whole-image training, whole-image test', 'whole', WHOLE),
        ('whole-image training, sliced test', 'whole', SLICED),
        ('sliced training, sliced test', 'sliced', SLICED))
KEYS = (('mAP', 'coco/bbox_mAP'), ('AP50', 'coco/bbox_mAP_50'),
        ('AP < 8 px', 'coco/bbox_mAP_vtiny'),
        ('AP 8-16 px', 'coco/bbox_mAP_tiny'),
        ('AP 16-32 px', 'coco/bbox_mAP_small'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Whole-image vs sliced training and testing of one '
        'small-object detector on generated large images.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data-root', default=osp.join(ROOT, 'data',
                                                   'demo_sliced'))
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                  'demo_sliced'))
    p.add_argument('--num-train', type=int, default=12,
                   help='large training images')
    p.add_argument('--num-val', type=int, default=4,
                   help='large validation images')
    p.add_argument('--iters', type=int, default=None,
                   help='training iterations of both runs (default: the '
                   "configs' 120)")
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def run(cmd, log):
    """Run a tool, its output into ``log``; raise naming the log."""
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f,
                              stderr=subprocess.STDOUT)
    if proc.returncode:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'{" ".join(cmd)} failed (log: {log}):\n{tail}')


def ensure_data(args):
    yolo = osp.join(args.data_root, 'yolo')
    if not osp.isfile(osp.join(yolo, 'data.yaml')):
        run([sys.executable,
             osp.join(ROOT, 'tools', 'dataset_converters',
                      'make_small_object_data.py'),
             '--out', args.data_root, '--seed', str(args.seed),
             '--num-train', '1', '--num-val', '1', '--num-large', '0',
             '--num-seg-train', '0', '--num-seg-val', '0',
             '--num-yolo-large', str(args.num_train),
             '--num-yolo-large-val', str(args.num_val)],
            osp.join(args.work_dir, 'generate.log'))
    for split in ('train', 'val'):
        out = osp.join(yolo, 'annotations', f'{split}.json')
        run([sys.executable,
             osp.join(ROOT, 'tools', 'dataset_converters', 'yolo2coco.py'),
             yolo, out, '--names', osp.join(yolo, 'data.yaml'),
             '--subset', split],
            osp.join(args.work_dir, f'yolo2coco_{split}.log'))
    return yolo


def data_options(yolo):
    root = yolo.rstrip('/') + '/'
    return [f'train_dataloader.dataset.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={root}annotations/val.json',
            f'test_evaluator.ann_file={root}annotations/val.json']


def schedule_options(iters):
    if iters is None:
        return []
    warmup = max(1, min(20, iters // 4))
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={iters}',
            f'param_scheduler.1.T_max={iters - warmup}']


def last_metrics(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not files:
        raise RuntimeError(f'no metrics json in {work_dir}')
    with open(files[-1]) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    yolo = ensure_data(args)
    checkpoints, seconds = {}, {}
    for name, config in (('whole', WHOLE), ('sliced', SLICED)):
        work = osp.join(args.work_dir, f'train_{name}')
        opts = data_options(yolo) + schedule_options(args.iters)
        if name == 'whole':  # the whole-image config's dataset is not wrapped
            opts[0] = opts[0].replace('dataset.dataset.', 'dataset.')
        t = time.time()
        run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
             '--work-dir', work, '--cfg-options', *opts],
            osp.join(args.work_dir, f'train_{name}.log'))
        seconds[f'train {name}'] = round(time.time() - t, 1)
        checkpoints[name] = sorted(glob.glob(osp.join(work, 'iter_*.pth')),
                                   key=osp.getmtime)[-1]
    results = []
    for i, (label, trained, config) in enumerate(RUNS):
        work = osp.join(args.work_dir, f'test_{i}')
        t = time.time()
        run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), config,
             checkpoints[trained], '--work-dir', work, '--cfg-options',
             *data_options(yolo)[1:]],
            osp.join(args.work_dir, f'test_{i}.log'))
        seconds[label] = round(time.time() - t, 1)
        results.append(dict(run=label, config=osp.relpath(config, ROOT),
                            checkpoint=osp.relpath(checkpoints[trained],
                                                   args.work_dir),
                            metrics=last_metrics(work)))
    header = '| run | ' + ' | '.join(k for k, _ in KEYS) + ' |'
    lines = [header, '| :-- |' + ' --: |' * len(KEYS)]
    for r in results:
        lines.append(f"| {r['run']} | " + ' | '.join(
            f"{r['metrics'].get(key, float('nan')):.3f}" for _, key in KEYS)
            + ' |')
    table = '\n'.join(lines)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(results=results, seconds=seconds,
                       total_seconds=round(time.time() - start, 1)), f,
                  indent=2)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print(table)
    print(f'times (s): {seconds}; results in {args.work_dir}')


if __name__ == '__main__':
    main()
