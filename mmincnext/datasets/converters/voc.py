"""Pascal VOC XML annotations to COCO instances.

Input: one XML per image (``<filename>``, ``<size>``, ``<object>`` with
``<name>``, ``<difficult>``, ``<bndbox>``). What each field becomes:

* ``<filename>``: the image, looked for in the image folder; if it is not
  there, the XML's stem with the usual image extensions. ``file_name`` is
  its path relative to the image folder. Width and height are read from the
  image header; a ``<size>`` that disagrees is counted (the image wins).
* ``<name>``: the category; ids 1..N in the order of ``classes`` (default:
  the sorted names found).
* ``<difficult>1``: an ignore region (``iscrowd=1``) of its class.
* ``<bndbox>``: VOC's own files use 1-based pixel indices with both ends
  inside the box (``xmin=1`` is the first column, a box 1..10 is 10 px
  wide). In COCO's continuous coordinates pixel ``i`` (1-based) spans
  ``[i - 1, i]``, so::

      bbox = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]

  With ``one_based=False`` (files from tools that write 0-based continuous
  coordinates) ``bbox = [xmin, ymin, xmax - xmin, ymax - ymin]``. Note that
  MMDetection's ``XMLDataset`` (and its ``pascal_voc.py`` converter) use
  ``xmax - xmin`` as the width of 1-based boxes, one pixel less.

Boxes are clipped to the image and zero-area ones dropped, both counted
(see :mod:`.common`). Bad input raises :class:`DatasetConversionError`
naming the XML file and the line of the offending element.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from .common import (IMG_EXTENSIONS, CocoBuilder, ConversionSummary,
                     DatasetConversionError, parse_number, progress,
                     read_image_size, read_lines)

__all__ = ['voc_to_coco', 'read_voc_ids']


def _parse_xml(path: str) -> Tuple[Element, Dict[Element, int]]:
    """Parse ``path``; returns the root element and the line of every
    element (ElementTree itself keeps no line numbers)."""
    builder = TreeBuilder()
    lines: Dict[Element, int] = {}
    parser = expat.ParserCreate()

    def start(tag, attrs):
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
        root = builder.close()
    except expat.ExpatError as e:
        raise DatasetConversionError(
            path, f'not valid XML ({expat.ErrorString(e.code)})',
            e.lineno) from None
    return root, lines


class _VocFile:
    """One parsed XML: its objects as (name, difficult, box, line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        root, self.lines = _parse_xml(path)
        self.root = root
        if root.tag != 'annotation':
            self.error(f'root element is <{root.tag}>, not <annotation>',
                       root)
        self.filename = self.text(root, 'filename', required=False)
        self.size = None
        size = root.find('size')
        if size is not None:
            w = self.text(size, 'width', required=False)
            h = self.text(size, 'height', required=False)
            if w and h:
                self.size = (self.number(size.find('width'), 'width'),
                             self.number(size.find('height'), 'height'))
        self.objects = []
        for obj in root.findall('object'):
            name = self.text(obj, 'name')
            difficult = self.text(obj, 'difficult', required=False) or '0'
            if difficult not in ('0', '1'):
                self.error(f'<difficult> is {difficult!r}, not 0 or 1',
                           obj.find('difficult'))
            bndbox = obj.find('bndbox')
            if bndbox is None:
                self.error('<object> without <bndbox>', obj)
            box = []
            for tag in ('xmin', 'ymin', 'xmax', 'ymax'):
                self.text(bndbox, tag)
                box.append(self.number(bndbox.find(tag), tag))
            if box[2] < box[0] or box[3] < box[1]:
                self.error(f'xmax < xmin or ymax < ymin in {box}', bndbox)
            self.objects.append((name, difficult == '1', box,
                                 self.lines[obj]))

    def error(self, message: str, elem: Optional[Element] = None):
        raise DatasetConversionError(
            self.path, message, None if elem is None else self.lines[elem])

    def text(self, parent: Element, tag: str,
             required: bool = True) -> Optional[str]:
        elem = parent.find(tag)
        if elem is None or not (elem.text or '').strip():
            if required:
                self.error(f'<{parent.tag}> without <{tag}>', parent)
            return None
        return elem.text.strip()

    def number(self, elem: Element, what: str) -> float:
        return parse_number(elem.text.strip(), self.path, self.lines[elem],
                            f'<{what}>')


def _find_image(voc: _VocFile, img_dir: str) -> str:
    """Path (relative to ``img_dir``) of the image of ``voc``."""
    stem = osp.splitext(osp.basename(voc.path))[0]
    candidates = []
    if voc.filename:
        candidates.append(voc.filename)
        if not voc.filename.lower().endswith(IMG_EXTENSIONS):
            candidates += [voc.filename + e for e in IMG_EXTENSIONS]
    for ext in IMG_EXTENSIONS:
        candidates += [stem + ext, stem + ext.upper()]
    for rel in candidates:
        if osp.isfile(osp.join(img_dir, rel)):
            return rel.replace(os.sep, '/')
    elem = voc.root.find('filename')
    voc.error(
        f'image not found in {img_dir} (looked for '
        + ', '.join(candidates[:3]) + ', ...)',
        elem if elem is not None else voc.root)


def read_voc_ids(path: str) -> List[str]:
    """Image ids of a VOC ``ImageSets/Main/*.txt`` split file (first word
    of every non-empty line).

    Args:
        path (str): Split file.
    """
    if not osp.isfile(path):
        raise DatasetConversionError(path, 'split file not found')
    return [t.split()[0] for t in read_lines(path) if t.strip()]


def voc_to_coco(ann_dir: str,
                img_dir: Optional[str] = None,
                classes: Optional[Sequence[str]] = None,
                ids: Optional[Sequence[str]] = None,
                one_based: bool = True,
                show_progress: bool = False
                ) -> Tuple[dict, ConversionSummary]:
    """Convert a folder of Pascal VOC XML files to a COCO instances dict.

    Args:
        ann_dir (str): Folder of ``*.xml`` files.
        img_dir (str, optional): Image folder; the ``file_name``\\ s are
            relative to it. Defaults to ``ann_dir``.
        classes (Sequence[str], optional): Class names, category ids 1..N
            in this order; an object of another name is an error. Defaults
            to the sorted names found.
        ids (Sequence[str], optional): Convert only these XML stems (e.g.
            from :func:`read_voc_ids`). Defaults to every XML file.
        one_based (bool): The boxes are VOC's 1-based, both-ends-inclusive
            pixel indices (see the module doc). False: 0-based continuous
            coordinates. Defaults to True.
        show_progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple[dict, ConversionSummary]: The COCO dict and what was handled.

    Raises:
        DatasetConversionError: Bad input; the message names the file and
            the line.
    """
    img_dir = ann_dir if img_dir is None else img_dir
    if not osp.isdir(ann_dir):
        raise DatasetConversionError(ann_dir, 'annotation folder not found')
    if not osp.isdir(img_dir):
        raise DatasetConversionError(img_dir, 'image folder not found')
    if ids is None:
        files = sorted(f for f in os.listdir(ann_dir)
                       if f.lower().endswith('.xml'))
    else:
        files = [i + '.xml' for i in ids]
        for f in files:
            if not osp.isfile(osp.join(ann_dir, f)):
                raise DatasetConversionError(osp.join(ann_dir, f),
                                             'XML file of a listed id not '
                                             'found')
    if not files:
        raise DatasetConversionError(ann_dir, 'no .xml files')
    # first parse everything: the default classes are all names found
    parsed = [_VocFile(osp.join(ann_dir, f))
              for f in progress(files, show_progress)]
    if classes is None:
        classes = sorted({o[0] for voc in parsed for o in voc.objects})
    class_ids = {name: i for i, name in enumerate(classes, 1)}
    if len(class_ids) != len(classes):
        raise ValueError(f'classes has repeated names: {list(classes)}')
    summary = ConversionSummary(source='VOC')
    coco = CocoBuilder([(i, n) for n, i in class_ids.items()], summary)
    used: Dict[str, str] = {}
    offset = 1 if one_based else 0
    for voc in parsed:
        rel = _find_image(voc, img_dir)
        if rel in used:
            voc.error(f'image {rel} is also the image of {used[rel]}')
        used[rel] = voc.path
        width, height = read_image_size(osp.join(img_dir, rel))
        if voc.size is not None and voc.size != (width, height):
            summary.size_mismatch += 1
        image_id = coco.add_image(rel, width, height)
        for name, difficult, (x1, y1, x2, y2), line in voc.objects:
            if name not in class_ids:
                raise DatasetConversionError(
                    voc.path, f'class {name!r} is not one of the classes '
                    f'{list(classes)}', line)
            coco.add_box(image_id, (x1 - offset, y1 - offset, x2, y2),
                         class_ids[name], iscrowd=int(difficult))
    return coco.to_dict('Pascal VOC XML converted by mmincnext voc2coco'), \
        summary
