"""VisDrone2019-DET annotations to COCO instances.

Input: ``ROOT/images/NAME.jpg`` and ``ROOT/annotations/NAME.txt``, one line
per box::

    bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,
    truncation,occlusion

in pixels (a trailing comma, as in the released files, is accepted). What
each line becomes:

* categories 1-10 (pedestrian ... motor) with score 1: objects of COCO
  category ids 1-10 (:data:`VISDRONE_CLASSES`), ``bbox = [left, top,
  width, height]`` unchanged (VisDrone's pixel grid is COCO's);
* score 0 with categories 1-10: an ignore region of its own class
  (``iscrowd=1``), as the VisDrone toolkit ignores such boxes;
* category 0 ("ignored regions"): an ignore region for every class (one
  ``iscrowd=1`` annotation per category id), because detections of any
  class there count neither as true nor as false positives;
* category 11 ("others"): dropped and counted, or with ``keep_others`` a
  class of its own (id 11), as any other class;
* ``truncation`` and ``occlusion`` are kept as fields of the annotation.

Boxes are clipped to the image, zero-area boxes dropped (both counted, see
:mod:`.common`); an image without an annotation file is an image without
objects (counted); an annotation file without an image is an error.
"""
import os.path as osp
from typing import Tuple

from .common import (CocoBuilder, ConversionSummary, DatasetConversionError,
                     pair_files, parse_number, progress, read_image_size,
                     read_lines)

__all__ = ['VISDRONE_CLASSES', 'visdrone_to_coco']

#: the 10 evaluated classes, COCO category ids 1..10 in this order
VISDRONE_CLASSES = ('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck',
                    'tricycle', 'awning-tricycle', 'bus', 'motor')
_IGNORED, _OTHERS = 0, 11
_FIELDS = ('bbox_left', 'bbox_top', 'bbox_width', 'bbox_height', 'score',
           'object_category', 'truncation', 'occlusion')


def _parse_line(text: str, path: str, line: int) -> dict:
    """One annotation line -> dict of its 8 fields (numbers)."""
    fields = text.split(',')
    if len(fields) == len(_FIELDS) + 1 and not fields[-1].strip():
        fields = fields[:-1]  # the trailing comma of the released files
    if len(fields) != len(_FIELDS):
        raise DatasetConversionError(
            path, f'expected {len(_FIELDS)} comma-separated fields ('
            + ','.join(_FIELDS) + f'), got {len(fields)}', line)
    values = {
        name: parse_number(v.strip(), path, line, name)
        for name, v in zip(_FIELDS, fields)
    }
    if values['score'] not in (0, 1):
        raise DatasetConversionError(
            path, f"score {fields[4].strip()} in a ground-truth file must "
            'be 0 (ignored) or 1 (a detection result file is not an '
            'annotation file)', line)
    for name in ('score', 'object_category', 'truncation', 'occlusion'):
        if values[name] != int(values[name]):
            raise DatasetConversionError(
                path, f'{name} {fields[_FIELDS.index(name)].strip()!r} is '
                'not an integer', line)
        values[name] = int(values[name])
    if not 0 <= values['object_category'] <= _OTHERS:
        raise DatasetConversionError(
            path, f"unknown object_category {values['object_category']} "
            '(VisDrone-DET has 0-11)', line)
    if values['bbox_width'] < 0 or values['bbox_height'] < 0:
        raise DatasetConversionError(path, 'negative bbox_width or '
                                     'bbox_height', line)
    return values


def visdrone_to_coco(root: str,
                     keep_others: bool = False,
                     img_dir: str = 'images',
                     ann_dir: str = 'annotations',
                     show_progress: bool = False
                     ) -> Tuple[dict, ConversionSummary]:
    """Convert a VisDrone2019-DET split to a COCO instances dict.

    Args:
        root (str): Split folder holding ``img_dir`` and ``ann_dir``.
        keep_others (bool): Keep category 11 "others" as a class (id 11)
            instead of dropping it. Defaults to False.
        img_dir (str): Image folder under ``root``; the ``file_name``\\ s are
            relative to it. Defaults to ``'images'``.
        ann_dir (str): Annotation folder under ``root`` (mirrors
            ``img_dir``). Defaults to ``'annotations'``.
        show_progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple[dict, ConversionSummary]: The COCO dict and what was handled.

    Raises:
        DatasetConversionError: Bad input; the message names the file and
            the line.
    """
    img_root, ann_root = osp.join(root, img_dir), osp.join(root, ann_dir)
    classes = VISDRONE_CLASSES + (('others', ) if keep_others else ())
    summary = ConversionSummary(source='VisDrone-DET')
    coco = CocoBuilder(list(enumerate(classes, 1)), summary)
    all_ids = list(range(1, len(classes) + 1))
    for rel, ann_file in progress(pair_files(img_root, ann_root),
                                  show_progress):
        width, height = read_image_size(osp.join(img_root, rel))
        image_id = coco.add_image(rel, width, height)
        if ann_file is None:
            summary.images_without_labels += 1
            continue
        for line, text in enumerate(read_lines(ann_file), 1):
            if not text.strip():
                continue
            v = _parse_line(text, ann_file, line)
            x1, y1 = v['bbox_left'], v['bbox_top']
            box = (x1, y1, x1 + v['bbox_width'], y1 + v['bbox_height'])
            extra = dict(truncation=v['truncation'],
                         occlusion=v['occlusion'])
            category = v['object_category']
            if category == _IGNORED:
                coco.add_ignore_region(image_id, box, all_ids, **extra)
            elif category == _OTHERS and not keep_others:
                summary.dropped_classes['others'] += 1
            else:
                coco.add_box(image_id, box, category,
                             iscrowd=int(v['score'] == 0), **extra)
    return coco.to_dict('VisDrone2019-DET converted by mmincnext '
                        'visdrone2coco'), summary
