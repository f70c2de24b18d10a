#!/usr/bin/env python
"""Convert Pascal VOC XML annotations to a COCO instances JSON.

    python tools/dataset_converters/voc2coco.py \
        data/VOCdevkit/VOC2007/Annotations data/voc07_trainval.json \
        --img-dir data/VOCdevkit/VOC2007/JPEGImages \
        --split-file data/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt

The ``file_name``\\ s are relative to ``--img-dir`` (default ANN_DIR).
Boxes are VOC's 1-based inclusive pixels, written as ``[xmin - 1, ymin - 1,
xmax - xmin + 1, ymax - ymin + 1]`` (``--zero-based``: ``[xmin, ymin,
xmax - xmin, ymax - ymin]``); ``difficult=1`` becomes ``iscrowd=1``. See
``mmincnext/datasets/converters/voc.py``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mmincnext.datasets.converters import (  # noqa: E402
    DatasetConversionError, read_voc_ids, voc_to_coco, write_coco_json)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert Pascal VOC XML annotations to COCO JSON')
    parser.add_argument('ann_dir', help='folder of .xml files')
    parser.add_argument('out', help='output JSON file')
    parser.add_argument('--img-dir', help='image folder (default: ANN_DIR)')
    parser.add_argument('--classes', nargs='+', help='class names, ids '
                        '1..N in this order (default: the sorted names '
                        'found)')
    parser.add_argument('--split-file', help='convert only the ids listed '
                        '(e.g. ImageSets/Main/train.txt)')
    parser.add_argument('--zero-based', action='store_true',
                        help='boxes are 0-based continuous coordinates, '
                        'not VOC 1-based pixel indices')
    args = parser.parse_args(argv)
    if args.classes and len(set(args.classes)) != len(args.classes):
        parser.error(f'--classes has repeated names: {args.classes}')
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        ids = read_voc_ids(args.split_file) if args.split_file else None
        coco, summary = voc_to_coco(
            args.ann_dir, img_dir=args.img_dir, classes=args.classes,
            ids=ids, one_based=not args.zero_based,
            show_progress=sys.stdout.isatty())
    except DatasetConversionError as e:
        sys.exit(f'voc2coco: error: {e}')
    write_coco_json(coco, args.out)
    print(summary)
    print(f'wrote {args.out} (classes: '
          + ', '.join(c['name'] for c in coco['categories']) + ')')


if __name__ == '__main__':
    main()
