"""What the dataset converters share.

* :class:`DatasetConversionError`: the one error for bad input; its message
  starts with ``FILE:LINE:`` (or ``FILE:``) of the offending input.
* :class:`ConversionSummary`: what a conversion did with the input that was
  not an error (boxes clipped to the image, zero-area boxes dropped, images
  without labels, ...), printable as one line.
* :class:`CocoBuilder`: collects images and annotations with consecutive
  ids (both from 1) and applies the box rules every converter follows.
* :func:`read_image_size`, :func:`pair_files`, :func:`write_coco_json`.

Box rules (all formats): a box is clipped to the image; it is counted as
clipped when it passes the border by more than :data:`CLIP_TOLERANCE` px
(smaller overshoots are rounding in the source, e.g. 6-decimal YOLO
values). A box (or polygon) of zero area after clipping is dropped and
counted. Boxes under 1 px wide or high are kept but counted, because
MMDetection's ``CocoDataset`` skips them when it loads the file.
"""
import os
import os.path as osp
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import mmengine
from mmengine.utils import track_iter_progress
from PIL import Image, UnidentifiedImageError

__all__ = [
    'DatasetConversionError', 'ConversionSummary', 'CocoBuilder',
    'IMG_EXTENSIONS', 'CLIP_TOLERANCE', 'read_image_size', 'find_images',
    'pair_files', 'parse_number', 'progress', 'read_lines',
    'write_coco_json'
]

#: image file extensions looked for (compared case-insensitively)
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: px a box may pass the image border without being counted as clipped
CLIP_TOLERANCE = 0.01
# EXIF orientations that turn the image by 90 degrees (width <-> height)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)


class DatasetConversionError(ValueError):
    """Input that cannot be converted without guessing.

    Args:
        path (str): The offending file (or folder).
        message (str): What is wrong, and where useful what was expected.
        line (int, optional): 1-based line in ``path``.
    """

    def __init__(self, path: str, message: str,
                 line: Optional[int] = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = self.path if line is None else f'{self.path}:{line}'
        super().__init__(f'{where}: {message}')


@dataclass
class ConversionSummary:
    """What a conversion handled (everything that was not an error).

    Args:
        source (str): Name of the input format.
        images (int): Images written.
        images_without_labels (int): Images without a label / annotation
            file (written as images without objects).
        images_without_objects (int): Images written without any
            ``iscrowd=0`` annotation (including the above).
        objects (int): Annotations with ``iscrowd=0``.
        ignored (int): Source boxes written as ignore regions
            (``iscrowd=1``).
        polygons (int): Annotations written with a polygon segmentation.
        clipped (int): Boxes or polygons clipped to the image.
        dropped_zero_area (int): Boxes or polygons dropped because their
            area is zero (after clipping).
        dropped_classes (Counter): Source boxes dropped by class name (e.g.
            VisDrone's ``others``).
        under_one_px (int): Annotations kept with a box under 1 px wide or
            high (MMDetection's ``CocoDataset`` skips them).
        size_mismatch (int): Images whose size in the annotation file
            differs from the image file (the image file's size is used).
    """
    source: str = ''
    images: int = 0
    images_without_labels: int = 0
    images_without_objects: int = 0
    objects: int = 0
    ignored: int = 0
    polygons: int = 0
    clipped: int = 0
    dropped_zero_area: int = 0
    dropped_classes: Counter = field(default_factory=Counter)
    under_one_px: int = 0
    size_mismatch: int = 0

    def __str__(self) -> str:
        head = f'{self.images} images'
        if self.images_without_labels:
            head += f' ({self.images_without_labels} without a label file)'
        parts = [
            head, f'{self.images_without_objects} without objects',
            f'{self.objects} objects',
            f'{self.ignored} ignore regions (iscrowd=1)'
        ]
        if self.polygons:
            parts.append(f'{self.polygons} polygons')
        parts.append(f'{self.clipped} clipped to the image')
        parts.append(f'{self.dropped_zero_area} zero-area dropped')
        for name, n in sorted(self.dropped_classes.items()):
            parts.append(f'{n} {name!r} dropped')
        if self.under_one_px:
            parts.append(f'{self.under_one_px} under 1 px (MMDetection '
                         'skips them)')
        if self.size_mismatch:
            parts.append(f'{self.size_mismatch} images whose annotated '
                         'size differs from the file (file size used)')
        prefix = f'{self.source}: ' if self.source else ''
        return prefix + ', '.join(parts)


def parse_number(text: str, path: str, line: int, what: str) -> float:
    """``float(text)``, or a :class:`DatasetConversionError` naming the
    field when it is not a finite number.

    Args:
        text (str): The field as read.
        path (str): File the field comes from.
        line (int): Its 1-based line.
        what (str): Name of the field for the message.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DatasetConversionError(
            path, f'{what} {text!r} is not a number', line) from None
    if value != value or value in (float('inf'), float('-inf')):
        raise DatasetConversionError(
            path, f'{what} {text!r} is not a finite number', line)
    return value


def read_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file (without line ends).

    Args:
        path (str): Text file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DatasetConversionError(
            path, f'not a UTF-8 text file ({e.reason} at byte '
            f'{e.start})') from None


def read_image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image from its header (no pixel decoding).

    The size is that of the image as displayed, which is what mmcv (and
    OpenCV) decode: an EXIF orientation of 5-8 swaps width and height.

    Args:
        path (str): Image file.
    """
    if not osp.isfile(path):
        raise DatasetConversionError(path, 'image not found')
    try:
        with Image.open(path) as img:
            width, height = img.size
            # a PNG's EXIF may sit after the pixels and reading it would
            # decode them: such (rare) PNGs are taken as not rotated
            if img.format == 'PNG' and 'exif' not in img.info:
                orientation = 1
            else:
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DatasetConversionError(path, f'unreadable image ({e})') from e
    if orientation in _TRANSPOSED:
        width, height = height, width
    return int(width), int(height)


def find_images(folder: str) -> List[str]:
    """Image files under ``folder`` (recursively), sorted, as paths
    relative to it with ``/`` separators.

    Args:
        folder (str): Folder to search.
    """
    if not osp.isdir(folder):
        raise DatasetConversionError(folder, 'image folder not found')
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMG_EXTENSIONS):
                rel = osp.relpath(osp.join(dirpath, name), folder)
                found.append(rel.replace(os.sep, '/'))
    return sorted(found)


def pair_files(img_dir: str,
               label_dir: str,
               label_ext: str = '.txt',
               skip: Sequence[str] = ()) -> List[Tuple[str, Optional[str]]]:
    """Pair every image with the label file at the same relative path.

    ``img_dir/a/b.jpg`` pairs with ``label_dir/a/b.txt``. A label file
    without an image is an error, as are two images with one stem.

    Args:
        img_dir (str): Root of the images.
        label_dir (str): Root of the label files (mirrors ``img_dir``).
        label_ext (str): Extension of the label files.
        skip (Sequence[str]): Label file names that are not labels (e.g.
            ``classes.txt``).

    Returns:
        list[tuple[str, str | None]]: ``(image path relative to img_dir,
        label file path or None)``, sorted by image path.
    """
    images = find_images(img_dir)
    if not images:
        raise DatasetConversionError(img_dir, 'no images found (looked for '
                                     + ', '.join(IMG_EXTENSIONS) + ')')
    if not osp.isdir(label_dir):
        raise DatasetConversionError(label_dir, 'label folder not found')
    by_stem: Dict[str, str] = {}
    for rel in images:
        stem = osp.splitext(rel)[0]
        if stem in by_stem:
            raise DatasetConversionError(
                osp.join(img_dir, rel), 'two images share the label file '
                f'{stem}{label_ext} (the other is {by_stem[stem]})')
        by_stem[stem] = rel
    labels = {}
    for dirpath, _, filenames in os.walk(label_dir):
        for name in filenames:
            if not name.endswith(label_ext) or name in skip:
                continue
            path = osp.join(dirpath, name)
            stem = osp.splitext(osp.relpath(path, label_dir))[0]
            stem = stem.replace(os.sep, '/')
            if stem not in by_stem:
                raise DatasetConversionError(
                    path, 'label file without image (no '
                    f'{osp.join(img_dir, stem)}.* with an image '
                    'extension)')
            labels[stem] = path
    return [(rel, labels.get(osp.splitext(rel)[0])) for rel in images]


def progress(items: Sequence, enabled: bool) -> Iterable:
    """``items``, with MMEngine's progress bar when ``enabled``."""
    if enabled and len(items):
        return track_iter_progress(list(items))
    return items


class CocoBuilder:
    """Collects a COCO instances dict with the box rules of this package.

    Args:
        categories (Sequence[tuple[int, str]]): ``(category id, name)``.
        summary (ConversionSummary): Counters to update.
    """

    def __init__(self, categories: Sequence[Tuple[int, str]],
                 summary: ConversionSummary) -> None:
        self.categories = [dict(id=int(i), name=str(n))
                           for i, n in categories]
        self.summary = summary
        self.images: List[dict] = []
        self.annotations: List[dict] = []
        self._sizes: Dict[int, Tuple[int, int]] = {}
        self._with_objects = set()

    def add_image(self, file_name: str, width: int, height: int) -> int:
        """Add an image; returns its id.

        Args:
            file_name (str): Path relative to the image folder.
            width (int): Width in px.
            height (int): Height in px.
        """
        image_id = len(self.images) + 1
        self.images.append(dict(id=image_id, file_name=file_name,
                                width=int(width), height=int(height)))
        self._sizes[image_id] = (int(width), int(height))
        self.summary.images += 1
        return image_id

    def add_box(self,
                image_id: int,
                box: Sequence[float],
                category_id: int,
                iscrowd: int = 0,
                polygon: Optional[Sequence[float]] = None,
                **extra) -> bool:
        """Add one annotation; returns False if it was dropped.

        Args:
            image_id (int): Id returned by :meth:`add_image`.
            box (Sequence[float]): ``(x1, y1, x2, y2)`` in COCO's continuous
                pixel coordinates (0 = the left edge of the image). Ignored
                when ``polygon`` is given (its extent is the box).
            category_id (int): COCO category id.
            iscrowd (int): 1 for an ignore region.
            polygon (Sequence[float], optional): ``x1, y1, x2, y2, ...`` in
                pixels; written as the ``segmentation``, its area (as
                pycocotools rasterises it) is the ``area``.
            **extra: More fields of the annotation (e.g. ``occlusion``).
        """
        width, height = self._sizes[image_id]
        tol = CLIP_TOLERANCE
        if polygon is not None:
            xs, ys = polygon[0::2], polygon[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        x1, y1, x2, y2 = (float(v) for v in box)
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            self.summary.clipped += 1
        x1, x2 = (min(max(v, 0.0), width) for v in (x1, x2))
        y1, y2 = (min(max(v, 0.0), height) for v in (y1, y2))
        w, h = x2 - x1, y2 - y1
        ann = dict(id=len(self.annotations) + 1, image_id=image_id,
                   category_id=int(category_id), bbox=[x1, y1, w, h],
                   area=w * h, iscrowd=int(iscrowd))
        if polygon is not None and w > 0 and h > 0:
            # imported here: only polygons need it, and mmseg-only
            # environments may lack pycocotools
            from pycocotools import mask as mask_utils
            # vertices clamped to the image, as Ultralytics clips segments
            poly = [min(max(float(v), 0.0), width if i % 2 == 0 else height)
                    for i, v in enumerate(polygon)]
            rle = mask_utils.frPyObjects([poly], height, width)
            ann['segmentation'] = [poly]
            ann['area'] = float(mask_utils.area(mask_utils.merge(rle)))
        if ann['area'] <= 0:
            self.summary.dropped_zero_area += 1
            return False
        if w < 1 or h < 1:
            self.summary.under_one_px += 1
        ann.update(extra)
        self.annotations.append(ann)
        if iscrowd:
            self.summary.ignored += 1
        else:
            self.summary.objects += 1
            self._with_objects.add(image_id)
        if 'segmentation' in ann:
            self.summary.polygons += 1
        return True

    def add_ignore_region(self, image_id: int, box: Sequence[float],
                          category_ids: Sequence[int], **extra) -> bool:
        """Add one ignore region for several classes: an ``iscrowd=1``
        annotation per category id (COCO's evaluation ignores detections
        in a crowd region of their own class only), counted once.

        Args:
            image_id (int): Id returned by :meth:`add_image`.
            box (Sequence[float]): ``(x1, y1, x2, y2)`` as in
                :meth:`add_box`.
            category_ids (Sequence[int]): The classes it ignores.
            **extra: More fields of the annotations.
        """
        first, *rest = category_ids
        if not self.add_box(image_id, box, first, iscrowd=1, **extra):
            return False
        for category_id in rest:
            ann = dict(self.annotations[-1], id=len(self.annotations) + 1,
                       category_id=int(category_id))
            ann['bbox'] = list(ann['bbox'])
            self.annotations.append(ann)
        return True

    def to_dict(self, description: str) -> dict:
        """The COCO dict (``info``, ``licenses``, ``images``,
        ``annotations``, ``categories``); also completes the summary.

        Args:
            description (str): ``info.description``.
        """
        self.summary.images_without_objects = sum(
            1 for img in self.images if img['id'] not in self._with_objects)
        return dict(info=dict(description=description), licenses=[],
                    images=self.images, annotations=self.annotations,
                    categories=self.categories)


def write_coco_json(coco: dict, out_file: str) -> None:
    """Write ``coco`` as JSON atomically: a temporary file in the same
    folder (created if needed) renamed over ``out_file``, so a reader never
    sees a partial file.

    Args:
        coco (dict): The COCO dict.
        out_file (str): Destination path.
    """
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix='.tmp',
                               prefix='.' + osp.basename(out_file) + '.')
    try:
        with os.fdopen(fd, 'w') as f:
            mmengine.dump(coco, f, file_format='json')
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out_file)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise

