#!/usr/bin/env python
"""Convert VisDrone2019-DET annotations to a COCO instances JSON.

    python tools/dataset_converters/visdrone2coco.py \
        data/VisDrone2019-DET-train \
        data/VisDrone2019-DET-train/instances.json

ROOT holds ``images/`` and ``annotations/``; the ``file_name``\\ s are
relative to ``ROOT/images`` (use it as ``data_prefix=dict(img=...)``).
Category ids 1-10 are pedestrian ... motor; category 0 and score-0 boxes
become ``iscrowd=1`` ignore regions, category 11 "others" is dropped unless
``--keep-others``. See ``mmincnext/datasets/converters/visdrone.py``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mmincnext.datasets.converters import (  # noqa: E402
    DatasetConversionError, visdrone_to_coco, write_coco_json)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert VisDrone2019-DET annotations to COCO JSON')
    parser.add_argument('root', help='folder holding images/ and '
                        'annotations/')
    parser.add_argument('out', help='output JSON file')
    parser.add_argument('--keep-others', action='store_true',
                        help='keep category 11 "others" as class 11')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        coco, summary = visdrone_to_coco(
            args.root, keep_others=args.keep_others,
            show_progress=sys.stdout.isatty())
    except DatasetConversionError as e:
        sys.exit(f'visdrone2coco: error: {e}')
    write_coco_json(coco, args.out)
    print(summary)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
