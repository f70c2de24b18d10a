#!/usr/bin/env python
"""Generate the embedded small-object dataset used by ``make demo``.

Deterministic (same ``--seed`` and sizes -> byte-identical files) and fast
(seconds), so the demo and the tests need no download. It writes::

    OUT/
      meta.json                       classes, arguments, size statistics
      det/
        train/*.jpg  val/*.jpg  large/*.jpg
        annotations/instances_{train,val,large}.json     COCO instance format
      seg/                            ADE20K layout (reduce_zero_label=True)
        images/{training,validation}/*.jpg
        annotations/{training,validation}/*.png
      yolo/                           only with --num-yolo-large N > 0
        images/{train,val}/*.jpg  labels/{train,val}/*.txt  data.yaml

Detection images have textured, cluttered backgrounds (low-frequency colour
noise, gradients, stripes, pixel noise) and distractor shapes that are *not*
objects (strokes, arcs, rings, crosses, dull blobs). The objects are
``circle``, ``square`` and ``triangle``: each class has a shape and a hue
family, with random size, aspect, rotation, shade and noise. Sizes follow a
log-uniform law, so most objects are under 32 px (COCO "small") and a large
share under 16 px (AI-TOD "tiny"). Every object is painted through the mask
that pycocotools rasterises from its own polygon, so the ``segmentation``,
``bbox`` (tight box of the painted pixels) and ``area`` (painted pixel count)
match the image exactly. Objects do not overlap each other.

The ``large`` split holds a few big images (default 2000 x 2000) with many
8-16 px objects, for sliced (tiled) inference.

The ``yolo`` split (off by default) holds large images (each side drawn
from 1000-1600 px) with 6-24 px objects in YOLO txt format, for sliced
training: one ``class cx cy w h`` line per object (class ids from 0,
values normalised by the image size, 6 decimals; the box is the tight box
of the painted pixels, as in the COCO splits) and a ``data.yaml`` with the
class names. ``tools/dataset_converters/yolo2coco.py`` turns it into COCO.

The segmentation split uses ADE20K semantics with ``reduce_zero_label``:
label 0 = unlabelled (the clutter; ignored), 1 = background, 2.. = the
object classes, so after reduction the classes are
``('background', 'circle', 'square', 'triangle')``.

Example::

    python tools/dataset_converters/make_small_object_data.py --out data/demo
"""
import argparse
import colorsys
import json
import math
import os
import os.path as osp
import time

import numpy as np
import yaml
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'square', 'triangle')
# hue centre (0-1) of each class; objects are saturated, clutter mostly dull
CLASS_HUES = (0.0, 0.33, 0.62)
SEG_CLASSES = ('background', ) + CLASSES
SPLIT_IDS = {'train': 1, 'val': 2, 'large': 3, 'seg_training': 4,
             'seg_validation': 5, 'yolo_train': 6, 'yolo_val': 7}


def _rng(seed, split, index):
    """Independent stream per (seed, split, image): changing the number of
    images of one split leaves every other image unchanged."""
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


# --------------------------------------------------------------------- drawing
def textured_background(rng, h, w):
    """Low-frequency colour noise + linear gradient + faint stripes."""
    base = rng.uniform(70, 190, size=3)
    # low-frequency colour blobs: a coarse random grid upsampled bicubically
    gh = max(2, h // rng.integers(24, 64))
    gw = max(2, w // rng.integers(24, 64))
    coarse = rng.normal(0, 28, size=(gh, gw, 3))
    blobs = np.stack([
        np.asarray(Image.fromarray(coarse[..., c].astype(np.float32)).resize(
            (w, h), Image.BICUBIC)) for c in range(3)
    ], axis=-1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w)
    grad = ramp[..., None] * rng.uniform(-50, 50, size=3)
    period = rng.uniform(6, 30)
    ang2 = rng.uniform(0, 2 * math.pi)
    stripes = np.sin((np.cos(ang2) * xx + np.sin(ang2) * yy) * 2 * math.pi /
                     period)[..., None] * rng.uniform(0, 10)
    img = base + blobs + grad + stripes
    return img


def random_colour(rng, hue=None, sat=(0.65, 1.0), val=(0.55, 1.0)):
    if hue is None:
        h = rng.uniform(0, 1)
    else:
        h = (hue + rng.uniform(-0.05, 0.05)) % 1.0
    s, v = rng.uniform(*sat), rng.uniform(*val)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def draw_clutter(rng, canvas, label_draw, h, w, n):
    """Distractors that are not objects. Also marks them (value 0 = ignore)
    in ``label_draw`` when given."""
    draw = ImageDraw.Draw(canvas)
    for _ in range(n):
        kind = rng.integers(0, 5)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(4, 30)
        # clutter is dull (low saturation) or, for strokes, any colour
        dull = random_colour(rng, sat=(0.0, 0.3), val=(0.2, 0.95))
        vivid = random_colour(rng)
        width = int(rng.integers(1, 4))
        if kind == 0:  # stroke
            a = rng.uniform(0, 2 * math.pi)
            xy = [cx, cy, cx + 2 * r * math.cos(a), cy + 2 * r * math.sin(a)]
            cmds = [('line', xy, dict(fill=vivid, width=width))]
        elif kind == 1:  # arc
            xy = [cx - r, cy - r, cx + r, cy + r]
            a0 = rng.uniform(0, 360)
            cmds = [('arc', xy, dict(start=a0, end=a0 + rng.uniform(60, 200),
                                     fill=vivid, width=width))]
        elif kind == 2:  # ring (hollow, so not a circle object)
            xy = [cx - r, cy - r, cx + r, cy + r]
            cmds = [('ellipse', xy, dict(outline=vivid, width=width))]
        elif kind == 3:  # cross
            t = max(1, int(r / 4))
            cmds = [('line', [cx - r, cy, cx + r, cy],
                     dict(fill=vivid, width=t)),
                    ('line', [cx, cy - r, cx, cy + r],
                     dict(fill=vivid, width=t))]
        else:  # dull filled blob (irregular polygon)
            k = int(rng.integers(5, 9))
            angs = np.sort(rng.uniform(0, 2 * math.pi, k))
            rads = r * rng.uniform(0.5, 1.0, k)
            xy = [(cx + q * math.cos(a), cy + q * math.sin(a))
                  for a, q in zip(angs, rads)]
            cmds = [('polygon', xy, dict(fill=dull))]
        for name, xy, kw in cmds:
            getattr(draw, name)(xy, **kw)
            if label_draw is not None:
                kw = {k: (0 if k in ('fill', 'outline') else v)
                      for k, v in kw.items()}
                getattr(label_draw, name)(xy, **kw)


def object_polygon(rng, cls, size):
    """Vertices (centred at 0) of one object; ``size`` is its rough extent."""
    rot = rng.uniform(0, 2 * math.pi)
    aspect = rng.uniform(0.8, 1.25)
    if cls == 'circle':
        n = 32
        angs = np.linspace(0, 2 * math.pi, n, endpoint=False)
        pts = np.stack([np.cos(angs), np.sin(angs)], 1) * 0.5
    elif cls == 'square':
        pts = np.array([[-.5, -.5], [.5, -.5], [.5, .5], [-.5, .5]])
        size = size / math.sqrt(2) * 1.15  # keep the rotated extent ~ size
    else:
        angs = np.array([90, 210, 330]) * math.pi / 180
        pts = np.stack([np.cos(angs), -np.sin(angs)], 1) * 0.6
    pts = pts * size * np.array([aspect, 1 / aspect])
    c, s = math.cos(rot), math.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def rasterise(poly, x0, y0, h, w):
    """Binary mask of ``poly`` (absolute coords) in the window at (x0, y0),
    using pycocotools' polygon rasteriser, i.e. exactly what COCO evaluation
    decodes from the annotation."""
    local = (poly - np.array([x0, y0])).reshape(-1).tolist()
    rle = mask_utils.merge(mask_utils.frPyObjects([local], h, w))
    return mask_utils.decode(rle).astype(bool)


def make_image(rng, h, w, num_objects, size_range, num_clutter,
               with_label=False):
    """Return (uint8 HxWx3 image, objects, label map or None).

    Each object is a dict(category, polygon, bbox, area, mask_window)."""
    img = textured_background(rng, h, w)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    label = label_draw = None
    if with_label:
        label = Image.new('L', (w, h), 1)  # 1 = background
        label_draw = ImageDraw.Draw(label)
    draw_clutter(rng, canvas, label_draw, h, w, num_clutter)
    arr = np.asarray(canvas).astype(np.float32)
    lab = np.asarray(label).copy() if with_label else None

    occupied = np.zeros((h, w), bool)
    objects = []
    lo, hi = size_range
    attempts = 0
    while len(objects) < num_objects and attempts < num_objects * 20:
        attempts += 1
        cls_id = int(rng.integers(0, len(CLASSES)))
        size = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        pts = object_polygon(rng, CLASSES[cls_id], size)
        ext = np.ceil(pts.max(0) - pts.min(0)).astype(int) + 2
        if ext[0] >= w - 2 or ext[1] >= h - 2:
            continue
        cx = rng.uniform(-pts[:, 0].min() + 1, w - pts[:, 0].max() - 1)
        cy = rng.uniform(-pts[:, 1].min() + 1, h - pts[:, 1].max() - 1)
        # vertices on a 1/8 px grid: exact in binary floating point, so the
        # windowed rasterisation below equals COCO's on the whole image
        poly = np.round((pts + np.array([cx, cy])) * 8) / 8
        x0 = max(int(math.floor(poly[:, 0].min())) - 1, 0)
        y0 = max(int(math.floor(poly[:, 1].min())) - 1, 0)
        x1 = min(int(math.ceil(poly[:, 0].max())) + 2, w)
        y1 = min(int(math.ceil(poly[:, 1].max())) + 2, h)
        # keep a 2 px gap between objects
        if occupied[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2].any():
            continue
        m = rasterise(poly, x0, y0, y1 - y0, x1 - x0)
        if m.sum() < 4:
            continue
        ys, xs = np.nonzero(m)
        colour = np.array(random_colour(rng, CLASS_HUES[cls_id]), np.float32)
        # shading across the object + per-pixel texture
        shade = 1 + rng.uniform(-0.15, 0.15) * (xs - xs.mean()) / max(
            1, np.ptp(xs))
        win = arr[y0:y1, x0:x1]
        win[ys, xs] = colour * shade[:, None] + rng.normal(0, 6, (len(ys), 3))
        occupied[y0:y1, x0:x1] |= m
        if lab is not None:
            lab[y0:y1, x0:x1][m] = cls_id + 2
        bx0, by0 = x0 + xs.min(), y0 + ys.min()
        bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        objects.append(dict(
            category=cls_id,
            polygon=[float(v) for v in poly.reshape(-1)],
            bbox=[float(bx0), float(by0), float(bw), float(bh)],
            area=float(m.sum())))
    # sensor noise over everything
    arr = arr + rng.normal(0, rng.uniform(3, 9), arr.shape)
    out = np.clip(arr, 0, 255).astype(np.uint8)
    return out, objects, lab


# --------------------------------------------------------------------- writing
def write_coco_split(out_dir, split, num, h, w, objects_range, size_range,
                     clutter_range, seed, quality):
    img_dir = osp.join(out_dir, 'det', split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        rng = _rng(seed, split, i)
        n_obj = int(rng.integers(objects_range[0], objects_range[1] + 1))
        n_clu = int(rng.integers(clutter_range[0], clutter_range[1] + 1))
        img, objs, _ = make_image(rng, h, w, n_obj, size_range, n_clu)
        name = f'{split}_{i:05d}.jpg'
        Image.fromarray(img).save(osp.join(img_dir, name), quality=quality)
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for o in objs:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1,
                category_id=o['category'] + 1, bbox=o['bbox'],
                area=o['area'], segmentation=[o['polygon']], iscrowd=0))
    coco = dict(
        info=dict(description='mmincnext synthetic small-object data',
                  version='1.0'),
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=c, supercategory='shape')
                    for i, c in enumerate(CLASSES)])
    ann_dir = osp.join(out_dir, 'det', 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return size_stats(annotations) | dict(images=len(images))


def write_seg_split(out_dir, split, num, size, seed, quality):
    img_dir = osp.join(out_dir, 'seg', 'images', split)
    ann_dir = osp.join(out_dir, 'seg', 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    counts = np.zeros(len(SEG_CLASSES) + 1, np.int64)
    for i in range(num):
        rng = _rng(seed, 'seg_' + split, i)
        img, _, lab = make_image(
            rng, size, size, int(rng.integers(15, 40)), (8, 48),
            int(rng.integers(10, 25)), with_label=True)
        stem = f'seg_{split}_{i:05d}'
        Image.fromarray(img).save(osp.join(img_dir, stem + '.jpg'),
                                  quality=quality)
        Image.fromarray(lab).save(osp.join(ann_dir, stem + '.png'))
        counts += np.bincount(lab.reshape(-1), minlength=len(counts))
    return dict(images=num, pixel_counts={
        name: int(c) for name, c in zip(('unlabelled', ) + SEG_CLASSES,
                                        counts)})


def yolo_large_image(seed, split, index, size_range, objects_range,
                     obj_size):
    """Draw image ``index`` of the YOLO split ``split`` (``'train'`` or
    ``'val'``).

    Args:
        seed (int): Generator seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Image index in the split.
        size_range (tuple[int, int]): Min / max side in px; width and
            height are drawn independently.
        objects_range (tuple[int, int]): Min / max objects per image.
        obj_size (tuple[float, float]): Object extent in px (log-uniform).

    Returns:
        tuple: ``(uint8 HxWx3 image, objects)``, objects as in
        :func:`make_image`.
    """
    rng = _rng(seed, 'yolo_' + split, index)
    w, h = (int(rng.integers(size_range[0], size_range[1] + 1))
            for _ in range(2))
    n = int(rng.integers(objects_range[0], objects_range[1] + 1))
    img, objs, _ = make_image(rng, h, w, n, obj_size,
                              int(rng.integers(n // 2, n + 1)))
    return img, objs


def write_yolo_split(out_dir, split, num, size_range, objects_range,
                     obj_size, seed, quality):
    """Write ``OUT/yolo/{images,labels}/split``: JPEG images and one
    ``class cx cy w h`` line (normalised) per object."""
    img_dir = osp.join(out_dir, 'yolo', 'images', split)
    label_dir = osp.join(out_dir, 'yolo', 'labels', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    objects = []
    for i in range(num):
        img, objs = yolo_large_image(seed, split, i, size_range,
                                     objects_range, obj_size)
        h, w = img.shape[:2]
        stem = f'{split}_{i:05d}'
        Image.fromarray(img).save(osp.join(img_dir, stem + '.jpg'),
                                  quality=quality)
        lines = []
        for o in objs:
            x, y, bw, bh = o['bbox']
            lines.append(f"{o['category']} {(x + bw / 2) / w:.6f} "
                         f'{(y + bh / 2) / h:.6f} {bw / w:.6f} '
                         f'{bh / h:.6f}\n')
        with open(osp.join(label_dir, stem + '.txt'), 'w') as f:
            f.writelines(lines)
        objects += objs
    return size_stats(objects) | dict(images=num)


def write_yolo_data_yaml(out_dir):
    """``OUT/yolo/data.yaml`` in Ultralytics' layout (paths relative to
    the file's folder, names as an ``{id: name}`` mapping)."""
    data = dict(train='images/train', val='images/val', nc=len(CLASSES),
                names=dict(enumerate(CLASSES)))
    with open(osp.join(out_dir, 'yolo', 'data.yaml'), 'w') as f:
        yaml.safe_dump(data, f, sort_keys=False)


def size_stats(annotations):
    s = (np.sqrt([a['area'] for a in annotations]) if annotations
         else np.zeros(0))
    n = max(len(s), 1)
    return dict(
        objects=len(s),
        frac_under_8=float((s < 8).sum() / n),
        frac_under_16=float((s < 16).sum() / n),
        frac_under_32=float((s < 32).sum() / n),
        median_sqrt_area=float(np.median(s)) if len(s) else 0.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default='data/demo', help='output folder')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--img-size', type=int, default=256,
                   help='side of the square train/val images')
    p.add_argument('--objects', type=int, nargs=2, default=(12, 30),
                   metavar=('MIN', 'MAX'), help='objects per train/val image')
    p.add_argument('--obj-size', type=float, nargs=2, default=(10, 40),
                   metavar=('MIN', 'MAX'),
                   help='object extent in px, sampled log-uniformly')
    p.add_argument('--clutter', type=int, nargs=2, default=(8, 20),
                   metavar=('MIN', 'MAX'), help='distractors per image')
    p.add_argument('--num-large', type=int, default=2,
                   help='big images for tiled inference (0 to skip)')
    p.add_argument('--large-size', type=int, default=2000)
    p.add_argument('--large-objects', type=int, default=300)
    p.add_argument('--large-obj-size', type=float, nargs=2, default=(8, 16),
                   metavar=('MIN', 'MAX'))
    p.add_argument('--num-yolo-large', type=int, default=0, metavar='N',
                   help='large training images in YOLO txt format under '
                   'OUT/yolo (0 to skip)')
    p.add_argument('--num-yolo-large-val', type=int, default=None,
                   help='large validation images in YOLO format (default: '
                   'N // 4, at least 1)')
    p.add_argument('--yolo-large-size', type=int, nargs=2,
                   default=(1000, 1600), metavar=('MIN', 'MAX'),
                   help='image side in px (width and height drawn apart)')
    p.add_argument('--yolo-large-objects', type=int, nargs=2,
                   default=(150, 300), metavar=('MIN', 'MAX'),
                   help='objects per YOLO image')
    p.add_argument('--yolo-large-obj-size', type=float, nargs=2,
                   default=(6, 24), metavar=('MIN', 'MAX'))
    p.add_argument('--num-seg-train', type=int, default=100,
                   help='ADE20K-format training images (0 to skip)')
    p.add_argument('--num-seg-val', type=int, default=20)
    p.add_argument('--seg-size', type=int, default=256)
    p.add_argument('--quality', type=int, default=95, help='JPEG quality')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    stats = {}
    det = dict(objects_range=args.objects, size_range=args.obj_size,
               clutter_range=args.clutter, seed=args.seed,
               quality=args.quality)
    for split, num in (('train', args.num_train), ('val', args.num_val)):
        stats[split] = write_coco_split(args.out, split, num, args.img_size,
                                        args.img_size, **det)
    if args.num_large:
        n = args.large_objects
        stats['large'] = write_coco_split(
            args.out, 'large', args.num_large, args.large_size,
            args.large_size, objects_range=(n, n),
            size_range=args.large_obj_size,
            clutter_range=(n // 2, n), seed=args.seed, quality=args.quality)
    if args.num_yolo_large:
        num_val = args.num_yolo_large_val
        if num_val is None:
            num_val = max(1, args.num_yolo_large // 4)
        for split, num in (('train', args.num_yolo_large), ('val', num_val)):
            stats['yolo_' + split] = write_yolo_split(
                args.out, split, num, args.yolo_large_size,
                args.yolo_large_objects, args.yolo_large_obj_size,
                args.seed, args.quality)
        write_yolo_data_yaml(args.out)
    for split, num in (('training', args.num_seg_train),
                       ('validation', args.num_seg_val)):
        if num:
            stats['seg_' + split] = write_seg_split(
                args.out, split, num, args.seg_size, args.seed, args.quality)
    meta = dict(classes=list(CLASSES), seg_classes=list(SEG_CLASSES),
                seg_reduce_zero_label=True, args=vars(args), stats=stats)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    for split, s in stats.items():
        if 'objects' in s:
            print(f'{split:>6}: {s["images"]} images, {s["objects"]} objects, '
                  f'{100 * s["frac_under_32"]:.0f}% < 32 px, '
                  f'{100 * s["frac_under_16"]:.0f}% < 16 px '
                  f'(sqrt area), median {s["median_sqrt_area"]:.1f} px')
        else:
            print(f'{split}: {s["images"]} images')
    print(f'wrote {args.out} in {time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
