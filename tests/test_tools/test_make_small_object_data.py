"""The embedded small-object data generator
(tools/dataset_converters/make_small_object_data.py)."""
import filecmp
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
import make_small_object_data as gen  # noqa: E402

SMALL = ['--num-train', '8', '--num-val', '3', '--num-large', '1',
         '--large-size', '320', '--large-objects', '40',
         '--num-seg-train', '2', '--num-seg-val', '1', '--seg-size', '96']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo_data') / 'a')
    gen.main(['--out', out, '--seed', '3'] + SMALL)
    return out


def _files(root):
    return sorted(
        osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root)
        for f in fs)


def test_deterministic(data, tmp_path):
    again = str(tmp_path / 'b')
    gen.main(['--out', again, '--seed', '3'] + SMALL)
    files = _files(data)
    assert files == _files(again)
    # meta.json records the output path, everything else is byte-identical
    files.remove('meta.json')
    _, mismatch, errors = filecmp.cmpfiles(data, again, files, shallow=False)
    assert not mismatch and not errors

    other = str(tmp_path / 'c')
    gen.main(['--out', other, '--seed', '4'] + SMALL)
    _, mismatch, _ = filecmp.cmpfiles(data, other, files, shallow=False)
    assert 'det/train/train_00000.jpg' in mismatch
    assert 'det/annotations/instances_train.json' in mismatch


def test_split_streams_are_independent(tmp_path):
    """Changing the number of train images leaves the val images alone."""
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    base = ['--num-val', '2', '--num-large', '0', '--num-seg-train', '0',
            '--num-seg-val', '0']
    gen.main(['--out', a, '--num-train', '1'] + base)
    gen.main(['--out', b, '--num-train', '3'] + base)
    assert filecmp.cmp(osp.join(a, 'det/val/val_00001.jpg'),
                       osp.join(b, 'det/val/val_00001.jpg'), shallow=False)


def test_coco_annotations_small_and_consistent(data):
    sides = []
    for split in ('train', 'val', 'large'):
        ann_file = osp.join(data, 'det', 'annotations',
                            f'instances_{split}.json')
        coco = COCO(ann_file)
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
            list(gen.CLASSES)
        assert len(coco.getImgIds()) > 0
        for img in coco.loadImgs(coco.getImgIds()):
            with Image.open(osp.join(data, 'det', split,
                                     img['file_name'])) as im:
                assert im.size == (img['width'], img['height'])
                assert im.mode == 'RGB'
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
            assert anns, 'every image has objects'
            union = np.zeros((img['height'], img['width']), np.uint8)
            for ann in anns:
                assert ann['iscrowd'] == 0
                assert ann['category_id'] in (1, 2, 3)
                m = coco.annToMask(ann)
                ys, xs = np.nonzero(m)
                # the box is the tight box of the mask, the area its pixels
                x, y, w, h = ann['bbox']
                assert (xs.min(), ys.min()) == (x, y)
                assert (xs.max() + 1, ys.max() + 1) == (x + w, y + h)
                assert m.sum() == ann['area']
                assert mask_utils.area(mask_utils.encode(
                    np.asfortranarray(m))) == ann['area']
                union += m
                sides.append(np.sqrt(ann['area']))
            assert union.max() == 1, 'objects must not overlap'
    sides = np.array(sides)
    assert len(sides) > 150
    assert (sides < 32).mean() > 0.9, 'most objects are COCO-small'
    assert (sides < 16).mean() > 0.3, 'a good share is tiny (< 16 px)'
    assert (sides >= 4).all()


def test_large_split_is_big_with_tiny_objects(data):
    coco = json.load(open(osp.join(data, 'det', 'annotations',
                                   'instances_large.json')))
    assert coco['images'][0]['width'] == 320
    sides = np.sqrt([a['area'] for a in coco['annotations']])
    assert len(sides) >= 30 and sides.max() < 16


def test_objects_are_painted_in_their_class_colour(data):
    """The pixels under a mask carry the class hue (the cue to learn)."""
    import colorsys
    coco = COCO(osp.join(data, 'det', 'annotations', 'instances_val.json'))
    for ann in coco.loadAnns(coco.getAnnIds()):
        if ann['area'] < 60:
            continue
        img = coco.loadImgs(ann['image_id'])[0]
        arr = np.asarray(Image.open(
            osp.join(data, 'det', 'val', img['file_name']))).astype(float)
        rgb = arr[coco.annToMask(ann).astype(bool)].mean(0) / 255
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        ref = gen.CLASS_HUES[ann['category_id'] - 1]
        assert min(abs(hue - ref), 1 - abs(hue - ref)) < 0.1


def test_ade20k_layout(data):
    seg = osp.join(data, 'seg')
    for split in ('training', 'validation'):
        imgs = sorted(os.listdir(osp.join(seg, 'images', split)))
        anns = sorted(os.listdir(osp.join(seg, 'annotations', split)))
        assert imgs and [osp.splitext(f)[0] for f in imgs] == \
            [osp.splitext(f)[0] for f in anns]
        for fi, fa in zip(imgs, anns):
            im = Image.open(osp.join(seg, 'images', split, fi))
            lab = Image.open(osp.join(seg, 'annotations', split, fa))
            assert fi.endswith('.jpg') and fa.endswith('.png')
            assert lab.mode == 'L' and im.size == lab.size == (96, 96)
            values = set(np.unique(np.asarray(lab)).tolist())
            # 0 = unlabelled (ignored by reduce_zero_label), 1 = background,
            # 2.. = the object classes
            assert values <= set(range(len(gen.SEG_CLASSES) + 1))
            assert {0, 1} <= values and len(values & {2, 3, 4}) >= 1
    meta = json.load(open(osp.join(data, 'meta.json')))
    assert meta['seg_classes'] == ['background', 'circle', 'square',
                                   'triangle']
    assert meta['seg_reduce_zero_label'] is True


YOLO = ['--num-train', '0', '--num-val', '0', '--num-large', '0',
        '--num-seg-train', '0', '--num-seg-val', '0', '--num-yolo-large',
        '2', '--num-yolo-large-val', '1', '--yolo-large-size', '300', '420',
        '--yolo-large-objects', '20', '30']


def test_yolo_large_split(data, tmp_path):
    """Large images in YOLO txt format: off by default, deterministic, and
    yolo2coco's conversion gives back the drawn boxes."""
    from mmincnext.datasets.converters import yolo_to_coco
    assert not osp.exists(osp.join(data, 'yolo'))
    a, b, c = (str(tmp_path / n) for n in 'abc')
    for out, seed in ((a, '5'), (b, '5'), (c, '6')):
        gen.main(['--out', out, '--seed', seed] + YOLO)
    files = _files(osp.join(a, 'yolo'))
    assert files == [
        'data.yaml', 'images/train/train_00000.jpg',
        'images/train/train_00001.jpg', 'images/val/val_00000.jpg',
        'labels/train/train_00000.txt', 'labels/train/train_00001.txt',
        'labels/val/val_00000.txt']
    _, mismatch, errors = filecmp.cmpfiles(
        osp.join(a, 'yolo'), osp.join(b, 'yolo'), files, shallow=False)
    assert not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(
        osp.join(a, 'yolo'), osp.join(c, 'yolo'), files, shallow=False)
    assert 'images/train/train_00000.jpg' in mismatch

    coco, summary = yolo_to_coco(osp.join(a, 'yolo'))  # its data.yaml
    assert [cat['name'] for cat in coco['categories']] == list(gen.CLASSES)
    assert summary.clipped == summary.dropped_zero_area == 0
    for img in coco['images']:
        split, name = img['file_name'].split('/')
        index = int(name.split('_')[1].split('.')[0])
        drawn, objs = gen.yolo_large_image(5, split, index, (300, 420),
                                           (20, 30), (6, 24))
        assert (img['height'], img['width']) == drawn.shape[:2]
        assert 300 <= img['width'] <= 420 and 300 <= img['height'] <= 420
        anns = [x for x in coco['annotations'] if x['image_id'] == img['id']]
        assert len(anns) == len(objs) >= 20
        for ann, obj in zip(anns, objs):
            assert ann['category_id'] == obj['category'] + 1
            # 6 decimals of the normalised values: well under 1e-3 px
            np.testing.assert_allclose(ann['bbox'], obj['bbox'], atol=1e-3)
            assert max(obj['bbox'][2:]) <= 26
