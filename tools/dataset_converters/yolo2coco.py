#!/usr/bin/env python
"""Convert YOLO txt labels (Ultralytics layout) to a COCO instances JSON.

    python tools/dataset_converters/yolo2coco.py data/my_yolo \
        data/my_yolo/instances_train.json --subset train

ROOT holds ``images/`` and ``labels/`` (sub-folders mirrored); the
``file_name``\\ s are relative to ``ROOT/images``. Class names come from
``--names`` (a data.yaml or a names file, one name per line), else from
``ROOT/data.yaml``; COCO category id = YOLO class id + 1. See
``mmincnext/datasets/converters/yolo.py``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mmincnext.datasets.converters import (  # noqa: E402
    DatasetConversionError, write_coco_json, yolo_to_coco)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert YOLO txt labels to COCO JSON')
    parser.add_argument('root', help='folder holding images/ and labels/')
    parser.add_argument('out', help='output JSON file')
    parser.add_argument('--names', help='data.yaml (names: list or dict) '
                        'or a names file, one name per line (default: '
                        'ROOT/data.yaml)')
    parser.add_argument('--subset', help='convert only images/SUBSET (e.g. '
                        'train); file names stay relative to ROOT/images')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        coco, summary = yolo_to_coco(args.root, names=args.names,
                                     subset=args.subset,
                                     show_progress=sys.stdout.isatty())
    except DatasetConversionError as e:
        sys.exit(f'yolo2coco: error: {e}')
    write_coco_json(coco, args.out)
    print(summary)
    print(f'wrote {args.out} (category id = YOLO class id + 1: '
          + ', '.join(f"{c['id']} {c['name']}" for c in coco['categories'])
          + ')')


if __name__ == '__main__':
    main()
