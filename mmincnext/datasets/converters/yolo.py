"""YOLO txt labels (Ultralytics layout) to COCO instances.

Input: ``ROOT/images/**/NAME.jpg`` and ``ROOT/labels/**/NAME.txt`` (the
label tree mirrors the image tree, e.g. ``images/train/a.jpg`` <->
``labels/train/a.txt``), one object per line, all values normalised to
[0, 1] by the image width / height:

* ``class cx cy w h``: a box; ``bbox = [(cx - w/2) W, (cy - h/2) H, w W,
  h H]``, ``area`` its width x height;
* ``class x1 y1 x2 y2 ...`` (at least 3 points): a polygon, written as the
  ``segmentation`` in pixels, its extent as the ``bbox`` and its area as
  pycocotools rasterises it as the ``area``.

The COCO category id is the YOLO class id + 1 (COCO ids start at 1); the
names come from the dataset's ``data.yaml`` (``names:`` as a list or a
``{id: name}`` dict) or a plain names file (one name per line, line N =
class N - 1). An image without a label file is an image without objects
(counted); a label file without an image is an error; ``classes.txt``
files in the label tree (labelImg's names file) are not label files.
Boxes and polygons are clipped to the image (polygons vertex by vertex, as
Ultralytics does) and zero-area ones dropped, both counted (see
:mod:`.common`).
"""
import os.path as osp
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import yaml

from .common import (CocoBuilder, ConversionSummary, DatasetConversionError,
                     pair_files, parse_number, progress, read_image_size,
                     read_lines)

__all__ = ['load_yolo_names', 'yolo_to_coco']

_NAMES_FILES_IN_LABELS = ('classes.txt', )


def _names_from_value(names, path: str) -> Dict[int, str]:
    """``names:`` of a data.yaml (list or dict) -> {class id: name}."""
    if isinstance(names, (list, tuple)):
        out = dict(enumerate(names))
    elif isinstance(names, Mapping):
        out = {}
        for key, name in names.items():
            try:
                class_id = int(key)
            except (TypeError, ValueError):
                raise DatasetConversionError(
                    path, f'names: key {key!r} is not a class id') from None
            if class_id < 0 or class_id in out:
                raise DatasetConversionError(
                    path, f'names: class id {key!r} is negative or '
                    'repeated')
            out[class_id] = name
    else:
        raise DatasetConversionError(
            path, 'names: must be a list or a {id: name} mapping, got '
            f'{type(names).__name__}')
    if not out:
        raise DatasetConversionError(path, 'names: is empty')
    out = {k: str(v) for k, v in sorted(out.items())}
    seen = {}
    for class_id, name in out.items():
        if name in seen:
            raise DatasetConversionError(
                path, f'names: {name!r} is the name of classes '
                f'{seen[name]} and {class_id}')
        seen[name] = class_id
    return out


def load_yolo_names(source: Union[str, Sequence[str], Mapping[int, str]]
                    ) -> Dict[int, str]:
    """Class names of a YOLO dataset as ``{class id: name}``.

    Args:
        source (str | Sequence[str] | Mapping[int, str]): A ``data.yaml``
            (``.yaml`` / ``.yml``; its ``names:`` is a list or an
            ``{id: name}`` mapping; ``nc:``, when there, must agree), a
            plain names file (one name per line, line N is class N - 1), or
            the names themselves.
    """
    if not isinstance(source, str):
        return _names_from_value(source, '<names>')
    path = source
    if not osp.isfile(path):
        raise DatasetConversionError(path, 'names file not found')
    if not path.lower().endswith(('.yaml', '.yml')):
        lines = read_lines(path)
        while lines and not lines[-1].strip():
            lines.pop()
        for line, name in enumerate(lines, 1):
            if not name.strip():
                raise DatasetConversionError(
                    path, 'empty line inside the class names (line N is '
                    'class N - 1)', line)
        return _names_from_value([n.strip() for n in lines], path)
    try:
        # safe_load: a data.yaml holds plain data, never Python objects
        data = yaml.safe_load('\n'.join(read_lines(path)) + '\n')
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        raise DatasetConversionError(
            path, f'not valid YAML ({getattr(e, "problem", e)})',
            None if mark is None else mark.line + 1) from None
    if isinstance(data, list):
        return _names_from_value(data, path)
    if not isinstance(data, dict) or 'names' not in data:
        raise DatasetConversionError(path, 'no names: entry')
    if 'kpt_shape' in data:
        raise DatasetConversionError(
            path, 'a pose (keypoint) dataset: its label lines are not '
            'boxes or polygons')
    names = _names_from_value(data['names'], path)
    if 'nc' in data and data['nc'] != len(names):
        raise DatasetConversionError(
            path, f"nc: {data['nc']} but names: has {len(names)} entries")
    return names


def _parse_line(text: str, path: str, line: int,
                names: Dict[int, str]) -> Tuple[int, list, bool]:
    """One label line -> (class id, values, is_polygon)."""
    tokens = text.split()
    n = len(tokens)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise DatasetConversionError(
            path, 'expected 5 values (class cx cy w h) or a class and at '
            f'least 3 x y pairs (polygon), got {n}', line)
    class_value = parse_number(tokens[0], path, line, 'class')
    if class_value != int(class_value) or class_value < 0:
        raise DatasetConversionError(
            path, f'class {tokens[0]!r} is not a class id (an integer from '
            '0)', line)
    class_id = int(class_value)
    if class_id not in names:
        raise DatasetConversionError(
            path, f'unknown class id {class_id} (the names have '
            f'{min(names)}-{max(names)})', line)
    polygon = n != 5
    what = (['cx', 'cy', 'w', 'h'] if not polygon else
            [f'{a}{i // 2 + 1}' for i, a in zip(range(n - 1), 'xy' * n)])
    values = [
        parse_number(t, path, line, w) for t, w in zip(tokens[1:], what)
    ]
    if not polygon and (values[2] < 0 or values[3] < 0):
        raise DatasetConversionError(path, 'negative w or h', line)
    return class_id, values, polygon


def yolo_to_coco(root: str,
                 names: Optional[Union[str, Sequence[str],
                                       Mapping[int, str]]] = None,
                 subset: Optional[str] = None,
                 img_dir: str = 'images',
                 label_dir: str = 'labels',
                 show_progress: bool = False
                 ) -> Tuple[dict, ConversionSummary]:
    """Convert a YOLO-format dataset to a COCO instances dict.

    Args:
        root (str): Dataset folder holding ``img_dir`` and ``label_dir``.
        names (str | Sequence[str] | Mapping[int, str], optional): Class
            names, see :func:`load_yolo_names`. Defaults to
            ``root/data.yaml``.
        subset (str, optional): Convert only ``img_dir/subset`` (e.g.
            ``'train'``); the ``file_name``\\ s stay relative to
            ``root/img_dir``. Defaults to everything under ``img_dir``.
        img_dir (str): Image folder under ``root``. Defaults to
            ``'images'``.
        label_dir (str): Label folder under ``root`` (mirrors
            ``img_dir``). Defaults to ``'labels'``.
        show_progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple[dict, ConversionSummary]: The COCO dict (category id = YOLO
        class id + 1) and what was handled.

    Raises:
        DatasetConversionError: Bad input; the message names the file and
            the line.
    """
    if names is None:
        names = osp.join(root, 'data.yaml')
        if not osp.isfile(names):
            raise DatasetConversionError(
                names, 'no class names: pass them (e.g. --names '
                'data.yaml) or put a data.yaml with names: in the dataset '
                'folder')
    names = load_yolo_names(names)
    img_root, label_root = osp.join(root, img_dir), osp.join(root, label_dir)
    prefix = ''
    if subset:
        img_root = osp.join(img_root, subset)
        label_root = osp.join(label_root, subset)
        prefix = subset.strip('/') + '/'
    summary = ConversionSummary(source='YOLO')
    coco = CocoBuilder([(k + 1, v) for k, v in names.items()], summary)
    pairs = pair_files(img_root, label_root, skip=_NAMES_FILES_IN_LABELS)
    for rel, label_file in progress(pairs, show_progress):
        width, height = read_image_size(osp.join(img_root, rel))
        image_id = coco.add_image(prefix + rel, width, height)
        if label_file is None:
            summary.images_without_labels += 1
            continue
        for line, text in enumerate(read_lines(label_file), 1):
            if not text.strip():
                continue
            class_id, v, is_polygon = _parse_line(text, label_file, line,
                                                  names)
            if is_polygon:
                poly = [
                    c * (width if i % 2 == 0 else height)
                    for i, c in enumerate(v)
                ]
                coco.add_box(image_id, None, class_id + 1, polygon=poly)
            else:
                cx, cy, w, h = v
                box = ((cx - w / 2) * width, (cy - h / 2) * height,
                       (cx + w / 2) * width, (cy + h / 2) * height)
                coco.add_box(image_id, box, class_id + 1)
    return coco.to_dict('YOLO labels converted by mmincnext yolo2coco'), \
        summary
