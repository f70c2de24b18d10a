"""Dataset converters to COCO instances JSON.

Each ``*_to_coco`` function returns ``(coco_dict, summary)``: the COCO dict
(``images``, ``annotations``, ``categories``; ids from 1; ``file_name``
relative to the image folder given) and a :class:`ConversionSummary` of
what was handled (clipped boxes, dropped zero-area boxes, images without
labels, ...). Bad input raises :class:`DatasetConversionError` (a
``ValueError``) naming the file and the line. The command lines are
``tools/dataset_converters/{visdrone,yolo,voc}2coco.py``.
"""
from .common import (CLIP_TOLERANCE, IMG_EXTENSIONS, CocoBuilder,
                     ConversionSummary, DatasetConversionError,
                     read_image_size, write_coco_json)
from .visdrone import VISDRONE_CLASSES, visdrone_to_coco
from .voc import read_voc_ids, voc_to_coco
from .yolo import load_yolo_names, yolo_to_coco

__all__ = [
    'CLIP_TOLERANCE', 'IMG_EXTENSIONS', 'CocoBuilder', 'ConversionSummary',
    'DatasetConversionError', 'read_image_size', 'write_coco_json',
    'VISDRONE_CLASSES', 'visdrone_to_coco', 'read_voc_ids', 'voc_to_coco',
    'load_yolo_names', 'yolo_to_coco'
]
