"""Dataset converters to COCO (mmincnext/datasets/converters and
tools/dataset_converters/{visdrone,yolo,voc}2coco.py), against small
hand-written files in each format."""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.datasets.transforms import LoadAnnotations
from PIL import Image

from mmincnext.datasets.converters import (VISDRONE_CLASSES,
                                           ConversionSummary,
                                           DatasetConversionError,
                                           load_yolo_names, read_image_size,
                                           read_voc_ids, visdrone_to_coco,
                                           voc_to_coco, write_coco_json,
                                           yolo_to_coco)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(REPO, 'tools', 'dataset_converters')


# ------------------------------------------------------------------ helpers
def _image(path, width, height, fmt=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(width * 1000 + height)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def _text(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def _anns(coco, image_id=None):
    """Annotations without their ids, for exact comparison."""
    return [{k: v for k, v in a.items() if k != 'id'}
            for a in coco['annotations']
            if image_id is None or a['image_id'] == image_id]


def _check_ids(coco):
    assert [i['id'] for i in coco['images']] == \
        list(range(1, len(coco['images']) + 1))
    assert [a['id'] for a in coco['annotations']] == \
        list(range(1, len(coco['annotations']) + 1))


def _raises_at(path, line=None):
    """``pytest.raises`` for an error that names ``path`` (and ``line``)."""
    where = str(path) if line is None else f'{path}:{line}:'
    return pytest.raises(DatasetConversionError, match='^' + re.escape(where))


def _mmdet_load(coco, tmp_path, img_prefix):
    """Load ``coco`` with MMDetection's CocoDataset and decode every image;
    returns the number of (non-ignored, ignored) instances."""
    ann_file = str(tmp_path / 'mmdet_check.json')
    write_coco_json(coco, ann_file)
    classes = tuple(c['name'] for c in coco['categories'])
    ds = CocoDataset(
        ann_file=ann_file, data_prefix=dict(img=str(img_prefix) + '/'),
        metainfo=dict(classes=classes), test_mode=True,
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True)])
    assert len(ds) == len(coco['images'])
    n_obj = n_ign = 0
    for i, img in enumerate(coco['images']):
        data = ds[i]
        assert data['img_path'] == osp.join(str(img_prefix) + '/',
                                            img['file_name'])
        assert data['img'].shape[:2] == (img['height'], img['width'])
        n_ign += int(data['gt_ignore_flags'].sum())
        n_obj += int((~data['gt_ignore_flags']).sum())
    return n_obj, n_ign


# ----------------------------------------------------------------- VisDrone
VISDRONE_A = '\n'.join([
    '10,20,30,15,1,4,0,1,',  # car, with the released files' trailing comma
    '0,0,50,20,0,0,0,0,',  # ignored region: ignores every class
    '5,5,10,10,0,1,0,0',  # pedestrian with score 0: ignored, class 1 only
    '90,70,20,20,1,2,1,0',  # people, passes the 100x80 border: clipped
    '40,40,0,10,1,3,0,0',  # zero width: dropped
    '50,50,5,5,1,11,0,0',  # others: dropped by default
    '',
])


@pytest.fixture
def visdrone(tmp_path):
    root = tmp_path / 'visdrone'
    _image(str(root / 'images' / 'a.jpg'), 100, 80)
    _image(str(root / 'images' / 'b.jpg'), 60, 40)
    _image(str(root / 'images' / 'c.jpg'), 30, 20)  # no annotation file
    _text(str(root / 'annotations' / 'a.txt'), VISDRONE_A)
    _text(str(root / 'annotations' / 'b.txt'), '1,1,2,3,1,10,0,2\n')
    return root


def test_visdrone_round_trip(visdrone, tmp_path):
    coco, summary = visdrone_to_coco(str(visdrone))
    _check_ids(coco)
    assert coco['categories'] == [
        dict(id=i, name=n) for i, n in enumerate(VISDRONE_CLASSES, 1)]
    assert coco['images'] == [
        dict(id=1, file_name='a.jpg', width=100, height=80),
        dict(id=2, file_name='b.jpg', width=60, height=40),
        dict(id=3, file_name='c.jpg', width=30, height=20)]
    t = dict(truncation=0, occlusion=0)
    region = [dict(image_id=1, category_id=c, bbox=[0., 0., 50., 20.],
                   area=1000., iscrowd=1, **t) for c in range(1, 11)]
    assert _anns(coco) == [
        dict(image_id=1, category_id=4, bbox=[10., 20., 30., 15.],
             area=450., iscrowd=0, truncation=0, occlusion=1),
        *region,
        dict(image_id=1, category_id=1, bbox=[5., 5., 10., 10.],
             area=100., iscrowd=1, **t),
        dict(image_id=1, category_id=2, bbox=[90., 70., 10., 10.],
             area=100., iscrowd=0, truncation=1, occlusion=0),
        dict(image_id=2, category_id=10, bbox=[1., 1., 2., 3.], area=6.,
             iscrowd=0, truncation=0, occlusion=2),
    ]
    assert summary == ConversionSummary(
        source='VisDrone-DET', images=3, images_without_labels=1,
        images_without_objects=1, objects=3, ignored=2, clipped=1,
        dropped_zero_area=1, dropped_classes={'others': 1})
    line = str(summary)
    for part in ('3 images (1 without a label file)', '3 objects',
                 '2 ignore regions', '1 clipped', '1 zero-area dropped',
                 "1 'others' dropped"):
        assert part in line
    # 3 objects; the region is loaded once per class, plus the pedestrian
    assert _mmdet_load(coco, tmp_path, visdrone / 'images') == (3, 11)


def test_visdrone_keep_others(visdrone):
    coco, summary = visdrone_to_coco(str(visdrone), keep_others=True)
    assert coco['categories'][-1] == dict(id=11, name='others')
    others = [a for a in coco['annotations'] if a['category_id'] == 11]
    # the ignored region now covers "others" too, and the box is kept
    assert [(a['bbox'], a['iscrowd']) for a in others] == [
        ([0., 0., 50., 20.], 1), ([50., 50., 5., 5.], 0)]
    assert summary.objects == 4 and not summary.dropped_classes


@pytest.mark.parametrize('bad,reason', [
    ('1,2,3,4,1,1,0', 'expected 8 comma-separated fields'),
    ('1,2,3,4,1,1,0,0,0', 'expected 8 comma-separated fields'),
    ('1,2,x,4,1,1,0,0', "bbox_width 'x' is not a number"),
    ('1,2,3,4,1,12,0,0', 'unknown object_category 12'),
    ('1,2,3,4,1,1.5,0,0', "object_category '1.5' is not an integer"),
    ('1,2,3,4,0.7,1,0,0', 'score 0.7'),
    ('1,2,-3,4,1,1,0,0', 'negative bbox_width'),
])
def test_visdrone_bad_lines(visdrone, bad, reason):
    ann = visdrone / 'annotations' / 'b.txt'
    _text(str(ann), '1,1,2,3,1,10,0,2\n' + bad + '\n')
    with _raises_at(ann, 2) as e:
        visdrone_to_coco(str(visdrone))
    assert reason in str(e.value)
    assert e.value.path == str(ann) and e.value.line == 2
    assert isinstance(e.value, ValueError)


def test_visdrone_bad_files(visdrone):
    orphan = visdrone / 'annotations' / 'zzz.txt'
    _text(str(orphan), '1,1,2,3,1,1,0,0\n')
    with _raises_at(orphan) as e:
        visdrone_to_coco(str(visdrone))
    assert 'label file without image' in str(e.value)
    os.remove(orphan)
    broken = visdrone / 'images' / 'b.jpg'
    _text(str(broken), 'not an image')
    with _raises_at(broken) as e:
        visdrone_to_coco(str(visdrone))
    assert 'unreadable image' in str(e.value)
    with _raises_at(visdrone / 'nothing' / 'images'):
        visdrone_to_coco(str(visdrone / 'nothing'))


# --------------------------------------------------------------------- YOLO
YOLO_A = '\n'.join([
    '0 0.25 0.5 0.125 0.25',  # car: [37.5, 37.5, 25, 25]
    '1 0.96875 0.5 0.125 0.5',  # person, passes the right border: clipped
    '2 0.5 0.5 0 0.1',  # zero width: dropped
    '1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3',  # polygon (20,10)-(60,30)
    '',
])


@pytest.fixture
def yolo(tmp_path):
    root = tmp_path / 'yolo'
    _image(str(root / 'images' / 'train' / 'a.jpg'), 200, 100)
    _image(str(root / 'images' / 'train' / 'sub' / 'b.png'), 100, 50)
    _image(str(root / 'images' / 'val' / 'c.jpg'), 40, 30)  # no labels
    _text(str(root / 'labels' / 'train' / 'a.txt'), YOLO_A)
    _text(str(root / 'labels' / 'train' / 'sub' / 'b.txt'),
          '2 0.5 0.5 0.5 0.5\n')
    _text(str(root / 'data.yaml'),
          'path: .\ntrain: images/train\nval: images/val\nnc: 3\n'
          'names: [car, person, tree]\n')
    return root


def test_yolo_round_trip(yolo, tmp_path):
    coco, summary = yolo_to_coco(str(yolo))
    _check_ids(coco)
    # category id = YOLO class id + 1
    assert coco['categories'] == [dict(id=1, name='car'),
                                  dict(id=2, name='person'),
                                  dict(id=3, name='tree')]
    # sub-folders mirrored, names relative to ROOT/images
    assert coco['images'] == [
        dict(id=1, file_name='train/a.jpg', width=200, height=100),
        dict(id=2, file_name='train/sub/b.png', width=100, height=50),
        dict(id=3, file_name='val/c.jpg', width=40, height=30)]
    poly = [20., 10., 60., 10., 60., 30., 20., 30.]
    assert _anns(coco) == [
        dict(image_id=1, category_id=1, bbox=[37.5, 37.5, 25., 25.],
             area=625., iscrowd=0),
        dict(image_id=1, category_id=2, bbox=[181.25, 25., 18.75, 50.],
             area=937.5, iscrowd=0),
        dict(image_id=1, category_id=2, bbox=[20., 10., 40., 20.],
             area=800., iscrowd=0, segmentation=[poly]),
        dict(image_id=2, category_id=3, bbox=[25., 12.5, 50., 25.],
             area=1250., iscrowd=0),
    ]
    assert summary == ConversionSummary(
        source='YOLO', images=3, images_without_labels=1,
        images_without_objects=1, objects=4, polygons=1, clipped=1,
        dropped_zero_area=1)
    assert '1 polygons' in str(summary)
    assert _mmdet_load(coco, tmp_path, yolo / 'images') == (4, 0)


def test_yolo_subset_and_polygon_clipping(yolo):
    _text(str(yolo / 'labels' / 'train' / 'sub' / 'b.txt'),
          '0 -0.1 0.2 0.5 0.2 0.5 1.2\n')
    coco, summary = yolo_to_coco(str(yolo), subset='train')
    assert [i['file_name'] for i in coco['images']] == [
        'train/a.jpg', 'train/sub/b.png']
    ann = coco['annotations'][-1]
    # vertices clamped to the 100x50 image
    assert ann['segmentation'] == [[0., 10., 50., 10., 50., 50.]]
    assert ann['bbox'] == [0., 10., 50., 40.]
    assert summary.clipped == 2 and summary.images_without_labels == 0


@pytest.mark.parametrize('names_text,suffix', [
    ('names:\n  0: car\n  1: person\n  2: tree\n', '.yaml'),
    ('names: {2: tree, 0: car, 1: person}\n', '.yml'),
    ('car\nperson\ntree\n\n', '.txt'),
])
def test_yolo_names_sources(yolo, tmp_path, names_text, suffix):
    names = tmp_path / ('names' + suffix)
    _text(str(names), names_text)
    assert load_yolo_names(str(names)) == {0: 'car', 1: 'person',
                                           2: 'tree'}
    os.remove(yolo / 'data.yaml')
    coco, _ = yolo_to_coco(str(yolo), names=str(names))
    assert [c['name'] for c in coco['categories']] == ['car', 'person',
                                                       'tree']
    assert load_yolo_names(['a', 'b']) == {0: 'a', 1: 'b'}


@pytest.mark.parametrize('bad,reason', [
    ('0 0.5 0.5 0.1', 'expected 5 values'),
    ('0 0.5 0.5 0.1 0.1 0.3', 'expected 5 values'),
    ('0 0.5 0.5 0.1 0.1 0.3 0.3 0.4', 'expected 5 values'),
    ('0 0.5 abc 0.1 0.1', "cy 'abc' is not a number"),
    ('0 0.1 0.1 0.3 0.1 0.3 nan', "y3 'nan' is not a finite number"),
    ('3 0.5 0.5 0.1 0.1', 'unknown class id 3'),
    ('1.5 0.5 0.5 0.1 0.1', "class '1.5' is not a class id"),
    ('car 0.5 0.5 0.1 0.1', "class 'car' is not a number"),
    ('0 0.5 0.5 -0.1 0.1', 'negative w or h'),
])
def test_yolo_bad_lines(yolo, bad, reason):
    label = yolo / 'labels' / 'train' / 'sub' / 'b.txt'
    _text(str(label), '2 0.5 0.5 0.5 0.5\n\n' + bad + '\n')
    with _raises_at(label, 3) as e:
        yolo_to_coco(str(yolo))
    assert reason in str(e.value)


def test_yolo_bad_files(yolo, tmp_path):
    orphan = yolo / 'labels' / 'val' / 'd.txt'
    _text(str(orphan), '0 0.5 0.5 0.1 0.1\n')
    with _raises_at(orphan) as e:
        yolo_to_coco(str(yolo))
    assert 'label file without image' in str(e.value)
    os.remove(orphan)
    # labelImg's names file beside the labels is not a label file
    _text(str(yolo / 'labels' / 'classes.txt'), 'car\nperson\ntree\n')
    yolo_to_coco(str(yolo))

    broken = yolo / 'images' / 'val' / 'c.jpg'
    _text(str(broken), 'GIF89a but not really')
    with _raises_at(broken) as e:
        yolo_to_coco(str(yolo))
    assert 'unreadable image' in str(e.value)

    cases = [
        ('names: [car, car]\n', 'is the name of classes 0 and 1', None),
        ('nc: 2\nnames: [car, person, tree]\n', 'nc: 2', None),
        ('names: [car\n', 'not valid YAML', 2),
        ('kpt_shape: [17, 3]\nnames: [person]\n', 'pose', None),
        ('train: images\n', 'no names: entry', None),
    ]
    for text, reason, line in cases:
        _text(str(yolo / 'data.yaml'), text)
        with _raises_at(yolo / 'data.yaml', line) as e:
            yolo_to_coco(str(yolo))
        assert reason in str(e.value)
    names = tmp_path / 'names.txt'
    _text(str(names), 'car\n\nperson\n')
    with _raises_at(names, 2):
        load_yolo_names(str(names))
    os.remove(yolo / 'data.yaml')
    with _raises_at(yolo / 'data.yaml') as e:
        yolo_to_coco(str(yolo))
    assert 'no class names' in str(e.value)


# ---------------------------------------------------------------------- VOC
def _voc_xml(filename, objects, size=None):
    size_xml = '' if size is None else (
        f'  <size><width>{size[0]}</width><height>{size[1]}</height>'
        '<depth>3</depth></size>\n')
    objs = ''.join(
        '  <object>\n'
        f'    <name>{name}</name>\n'
        f'    <difficult>{difficult}</difficult>\n'
        f'    <bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>'
        f'<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>\n'
        '  </object>\n' for name, difficult, b in objects)
    return (f'<annotation>\n  <folder>VOC</folder>\n'
            f'  <filename>{filename}</filename>\n{size_xml}{objs}'
            '</annotation>\n')


@pytest.fixture
def voc(tmp_path):
    ann_dir, img_dir = tmp_path / 'Annotations', tmp_path / 'JPEGImages'
    _image(str(img_dir / 'a.jpg'), 100, 80)
    _image(str(img_dir / 'b.png'), 50, 40)
    _text(str(ann_dir / 'a.xml'), _voc_xml('a.jpg', [
        ('dog', 0, (1, 1, 10, 20)),  # the top-left 10x20 pixels
        ('cat', 1, (11, 21, 30, 40)),  # difficult: ignore region
        ('dog', 0, (90, 71, 120, 80)),  # passes the right border: clipped
    ], size=(100, 80)))
    # <filename> is wrong: found by the XML's stem; <size> disagrees
    _text(str(ann_dir / 'b.xml'), _voc_xml('missing.jpg', [], (10, 10)))
    return ann_dir, img_dir


def test_voc_round_trip(voc, tmp_path):
    ann_dir, img_dir = voc
    coco, summary = voc_to_coco(str(ann_dir), img_dir=str(img_dir))
    _check_ids(coco)
    assert coco['categories'] == [dict(id=1, name='cat'),
                                  dict(id=2, name='dog')]
    assert coco['images'] == [
        dict(id=1, file_name='a.jpg', width=100, height=80),
        dict(id=2, file_name='b.png', width=50, height=40)]
    # 1-based inclusive pixels: [xmin - 1, ymin - 1, xmax - xmin + 1, ...]
    assert _anns(coco) == [
        dict(image_id=1, category_id=2, bbox=[0., 0., 10., 20.],
             area=200., iscrowd=0),
        dict(image_id=1, category_id=1, bbox=[10., 20., 20., 20.],
             area=400., iscrowd=1),
        dict(image_id=1, category_id=2, bbox=[89., 70., 11., 10.],
             area=110., iscrowd=0),
    ]
    assert summary == ConversionSummary(
        source='VOC', images=2, images_without_objects=1, objects=2,
        ignored=1, clipped=1, size_mismatch=1)
    assert 'annotated size differs' in str(summary)
    assert _mmdet_load(coco, tmp_path, img_dir) == (2, 1)


def test_voc_options(voc):
    ann_dir, img_dir = voc
    coco, _ = voc_to_coco(str(ann_dir), img_dir=str(img_dir),
                          classes=['dog', 'cat', 'bird'])
    assert [c['name'] for c in coco['categories']] == ['dog', 'cat', 'bird']
    assert [a['category_id'] for a in coco['annotations']] == [1, 2, 1]
    # 0-based continuous coordinates: [xmin, ymin, xmax - xmin, ...]
    _text(str(ann_dir / 'b.xml'), _voc_xml('b.png', [
        ('dog', 0, (1.5, 2, 11.5, 12)), ('dog', 0, (5, 5, 5, 9))]))
    coco, summary = voc_to_coco(str(ann_dir), img_dir=str(img_dir),
                                one_based=False)
    assert coco['annotations'][-1]['bbox'] == [1.5, 2., 10., 10.]
    assert summary.dropped_zero_area == 1
    split = ann_dir / 'train.txt'
    _text(str(split), 'b\n\n')
    assert read_voc_ids(str(split)) == ['b']
    coco, _ = voc_to_coco(str(ann_dir), img_dir=str(img_dir), ids=['b'])
    assert [i['file_name'] for i in coco['images']] == ['b.png']
    # images beside the XML files by default
    _image(str(ann_dir / 'b.png'), 50, 40)
    coco, _ = voc_to_coco(str(ann_dir), ids=['b'])
    assert coco['images'][0]['file_name'] == 'b.png'


def test_voc_bad_input(voc):
    ann_dir, img_dir = voc
    a = ann_dir / 'a.xml'
    with _raises_at(a, 10) as e:  # the second <object>
        voc_to_coco(str(ann_dir), img_dir=str(img_dir),
                    classes=['dog', 'bird'])
    assert "class 'cat' is not one of the classes" in str(e.value)

    text = _voc_xml('a.jpg', [('dog', 0, (1, 1, 10, 20))], (100, 80))
    cases = [
        (text.replace('<xmin>1<', '<xmin>one<'), 8, "<xmin> 'one' is not "
         'a number'),
        (text.replace('<xmax>10<', '<xmax>0<'), 8, 'xmax < xmin'),
        (text.replace('<ymax>20</ymax>', ''), 8, '<bndbox> without <ymax>'),
        (text.replace('<name>dog</name>', ''), 5, '<object> without <name>'),
        (text.replace('<difficult>0<', '<difficult>yes<'), 7,
         "<difficult> is 'yes'"),
        (text.replace('</object>', '</objekt>'), 9, 'not valid XML'),
    ]
    for bad, line, reason in cases:
        _text(str(a), bad)
        with _raises_at(a, line) as e:
            voc_to_coco(str(ann_dir), img_dir=str(img_dir))
        assert reason in str(e.value)

    _text(str(a), text)
    os.remove(img_dir / 'b.png')
    with _raises_at(ann_dir / 'b.xml', 3) as e:  # the <filename> line
        voc_to_coco(str(ann_dir), img_dir=str(img_dir))
    assert 'image not found' in str(e.value)
    _text(str(img_dir / 'b.png'), 'not a png')
    with _raises_at(img_dir / 'b.png') as e:
        voc_to_coco(str(ann_dir), img_dir=str(img_dir))
    assert 'unreadable image' in str(e.value)
    with _raises_at(ann_dir / 'zzz.xml'):
        voc_to_coco(str(ann_dir), img_dir=str(img_dir), ids=['zzz'])


# ------------------------------------------------------------------- common
def test_image_size_follows_exif_orientation(tmp_path):
    """A JPEG turned by EXIF has the size mmcv decodes (width <-> height),
    read without decoding the pixels."""
    path = str(tmp_path / 'turned.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new('RGB', (40, 30)).save(path, exif=exif)
    assert read_image_size(path) == (30, 40)
    assert mmcv.imread(path).shape[:2] == (40, 30)
    with _raises_at(tmp_path / 'none.jpg') as e:
        read_image_size(str(tmp_path / 'none.jpg'))
    assert 'image not found' in str(e.value)


def test_write_coco_json_atomic(tmp_path):
    out = tmp_path / 'new' / 'dir' / 'out.json'
    write_coco_json(dict(images=[1]), str(out))
    assert json.loads(out.read_text()) == dict(images=[1])
    assert os.stat(out).st_mode & 0o044, 'readable like any other file'
    with pytest.raises(TypeError):
        write_coco_json(dict(images=[object()]), str(out))
    # the old file is intact and no temporary file is left behind
    assert json.loads(out.read_text()) == dict(images=[1])
    assert os.listdir(out.parent) == ['out.json']


# ----------------------------------------------------------- command lines
def _run(script, *args):
    return subprocess.run(
        [sys.executable, osp.join(TOOLS, script), *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120)


def test_visdrone2coco_cli(visdrone, tmp_path):
    out = tmp_path / 'out' / 'visdrone.json'
    proc = _run('visdrone2coco.py', visdrone, out, '--keep-others')
    assert proc.returncode == 0, proc.stderr
    assert '1 clipped to the image' in proc.stdout
    assert json.loads(out.read_text()) == \
        visdrone_to_coco(str(visdrone), keep_others=True)[0]


def test_yolo2coco_cli(yolo, tmp_path):
    out = tmp_path / 'yolo.json'
    names = tmp_path / 'names.txt'
    _text(str(names), 'car\nperson\ntree\n')
    proc = _run('yolo2coco.py', yolo, out, '--names', names)
    assert proc.returncode == 0, proc.stderr
    assert 'category id = YOLO class id + 1: 1 car, 2 person' in proc.stdout
    assert json.loads(out.read_text()) == yolo_to_coco(str(yolo))[0]


def test_cli_error_is_one_line(yolo, tmp_path, capsys):
    """Bad input: exit status 1 and one line naming the file and the line
    (run in-process: the same main() as the command line)."""
    spec = importlib.util.spec_from_file_location(
        'yolo2coco', osp.join(TOOLS, 'yolo2coco.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    label = yolo / 'labels' / 'train' / 'a.txt'
    _text(str(label), '7 0.5 0.5 0.1 0.1\n')
    with pytest.raises(SystemExit) as e:
        tool.main([str(yolo), str(tmp_path / 'bad.json')])
    assert e.value.code == (f'yolo2coco: error: {label}:1: unknown class '
                            'id 7 (the names have 0-2)')
    assert not (tmp_path / 'bad.json').exists()


def test_voc2coco_cli(voc, tmp_path):
    ann_dir, img_dir = voc
    out = tmp_path / 'voc.json'
    split = tmp_path / 'trainval.txt'
    _text(str(split), 'a\n')
    proc = _run('voc2coco.py', ann_dir, out, '--img-dir', img_dir,
                '--classes', 'dog', 'cat', '--split-file', split)
    assert proc.returncode == 0, proc.stderr
    assert 'classes: dog, cat' in proc.stdout
    assert json.loads(out.read_text()) == voc_to_coco(
        str(ann_dir), img_dir=str(img_dir), classes=['dog', 'cat'],
        ids=['a'])[0]
