"""SlicedDataset + CropToSlice: sliced training on a tiny COCO dataset.

Windows of 100 px with overlap 0.2 (stride 80): a 180 x 260 (h x w) image
has columns x 0-100, 80-180, 160-260 and rows y 0-100, 80-180 (6 windows),
a 180 x 180 image 4 windows, and an 60 x 80 image a single window.
"""
import json
import pickle

import cv2
import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.registry import DefaultScope

import mmincnext  # noqa: F401
from mmincnext.apis.sliced_inference import get_windows
from mmincnext.datasets import CropToSlice, SlicedDataset

# pycocotools' polygon rasterisation under NumPy 2 (BitmapMasks test)
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')

CLASSES = ('thing', 'other')
# image id -> (file, height, width)
IMAGES = {1: ('a.png', 180, 260), 2: ('b.png', 180, 180),
          3: ('c.png', 180, 180), 4: ('d.png', 60, 80)}
# (image id, category id, x1, y1, x2, y2, iscrowd)
OBJECTS = [
    (1, 1, 10, 10, 30, 40, 0),      # inside window (0, 0, 100, 100) only
    (1, 2, 90, 20, 130, 40, 0),     # 25 % in (0, 0, 100, 100)
    (1, 1, 200, 120, 250, 170, 1),  # crowd: ignore region
    (2, 1, 85, 60, 115, 95, 0),     # 50 / 100 / 21.4 / 42.9 % in 4 windows
    (4, 2, 10, 10, 30, 30, 0),
]
SLICE = dict(slice_size=100, overlap_ratio=0.2)
# windows without an object at min_visible=0.3: image 1 has 4 (one with
# only the crowd region), image 2 one (only a 21 % sliver), image 3 all 4
NUM_WINDOWS, NUM_EMPTY = 15, 9


@pytest.fixture(autouse=True)
def mmdet_scope():
    """The default scope the Runner sets for mmdet configs."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def pattern(h, w):
    """A BGR image whose pixels encode their coordinates."""
    y, x = np.mgrid[:h, :w]
    return np.stack([x % 256, y % 256, (3 * x + 7 * y) % 256],
                    axis=-1).astype(np.uint8)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('sliced_coco')
    (root / 'img').mkdir()
    images = []
    for img_id, (name, h, w) in IMAGES.items():
        cv2.imwrite(str(root / 'img' / name), pattern(h, w))
        images.append(dict(id=img_id, file_name=name, height=h, width=w))
    anns = []
    for i, (img, cat, x1, y1, x2, y2, crowd) in enumerate(OBJECTS, 1):
        anns.append(dict(
            id=i, image_id=img, category_id=cat,
            bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
            iscrowd=crowd,
            segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]]))
    data = dict(images=images, annotations=anns,
                categories=[dict(id=i + 1, name=n)
                            for i, n in enumerate(CLASSES)])
    (root / 'ann.json').write_text(json.dumps(data))
    return str(root)


def coco_cfg(data_root, bitmap=False, ann_file='ann.json'):
    return dict(
        type='CocoDataset', data_root=data_root, ann_file=ann_file,
        data_prefix=dict(img='img/'), metainfo=dict(classes=CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
                 poly2mask=bitmap),
        ])


def sliced(data_root, bitmap=False, pipeline=None, **kwargs):
    args = dict(SLICE, min_visible=0.3, empty_ratio=1.0)
    args.update(kwargs)
    return SlicedDataset(
        dataset=coco_cfg(data_root, bitmap),
        pipeline=pipeline or [dict(type='CropToSlice')], **args)


def sample_of(ds, img_id, window):
    """The cropped sample of ``window`` in image ``img_id``."""
    for idx in range(len(ds)):
        image_idx, win = ds.get_slice(idx)
        info = ds.dataset.get_data_info(image_idx)
        if info['img_id'] == img_id and win == tuple(window):
            return ds[idx]
    raise AssertionError(f'no sample {window} of image {img_id}')


def windows_by_image(ds):
    out = {}
    for idx in range(len(ds)):
        image_idx, win = ds.get_slice(idx)
        img_id = ds.dataset.get_data_info(image_idx)['img_id']
        out.setdefault(img_id, []).append(win)
    return out


def as_tuple_set(boxes):
    return {tuple(float(v) for v in b) for b in boxes}


def polygon_vertices(poly):
    return {tuple(float(v) for v in p) for p in np.reshape(poly, (-1, 2))}


# ------------------------------------------------------------ the windows
def test_windows_cover_images_and_match_get_windows(data_root):
    ds = sliced(data_root)
    assert len(ds) == NUM_WINDOWS
    by_image = windows_by_image(ds)
    for img_id, (_, h, w) in IMAGES.items():
        expected = [tuple(int(v) for v in win)
                    for win in get_windows(h, w, 100, 0.2)]
        assert by_image[img_id] == expected
        covered = np.zeros((h, w), dtype=bool)
        for x1, y1, x2, y2 in by_image[img_id]:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            covered[y1:y2, x1:x2] = True
        assert covered.all()
    assert by_image[1] == [(0, 0, 100, 100), (80, 0, 180, 100),
                           (160, 0, 260, 100), (0, 80, 100, 180),
                           (80, 80, 180, 180), (160, 80, 260, 180)]


def test_rectangular_slice_size(data_root):
    ds = sliced(data_root, slice_size=(100, 180))
    by_image = windows_by_image(ds)
    for img_id, (_, h, w) in IMAGES.items():
        expected = [tuple(int(v) for v in win)
                    for win in get_windows(h, w, (100, 180), 0.2)]
        assert by_image[img_id] == expected
    assert by_image[2] == [(0, 0, 180, 100), (0, 80, 180, 180)]


# ------------------------------------------------------- the exact crops
def test_image_crop_and_shapes(data_root):
    ds = sliced(data_root)
    res = sample_of(ds, 1, (160, 80, 260, 180))
    np.testing.assert_array_equal(res['img'],
                                  pattern(180, 260)[80:180, 160:260])
    assert res['img_shape'] == (100, 100)
    assert res['ori_shape'] == (100, 100)
    assert res['slice_offset'] == (160, 80)
    assert res['slice_window'] == (160, 80, 260, 180)
    np.testing.assert_array_equal(
        res['homography_matrix'],
        np.array([[1, 0, -160], [0, 1, -80], [0, 0, 1]], np.float32))


@pytest.mark.parametrize('min_visible', [0.3, 0.2])
def test_cut_box_below_and_above_min_visible(data_root, min_visible):
    """The (90, 20, 130, 40) box shows 10 of its 40 px width (25 %) in the
    window (0, 0, 100, 100): an ignore region at 0.3, an object at 0.2."""
    ds = sliced(data_root, min_visible=min_visible)
    res = sample_of(ds, 1, (0, 0, 100, 100))
    assert isinstance(res['gt_bboxes'], HorizontalBoxes)
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[10, 10, 30, 40], [90, 20, 100, 40]])
    np.testing.assert_array_equal(res['gt_bboxes_labels'], [0, 1])
    partial_ignored = min_visible > 0.25
    np.testing.assert_array_equal(res['gt_ignore_flags'],
                                  [False, partial_ignored])
    masks = res['gt_masks']
    assert isinstance(masks, PolygonMasks)
    assert (masks.height, masks.width) == (100, 100)
    assert polygon_vertices(masks.masks[0][0]) == {
        (10, 10), (30, 10), (30, 40), (10, 40)}
    assert polygon_vertices(masks.masks[1][0]) == {
        (90, 20), (100, 20), (100, 40), (90, 40)}

    # the same box whole in the next window, in its coordinates
    res = sample_of(ds, 1, (80, 0, 180, 100))
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[10, 20, 50, 40]])
    np.testing.assert_array_equal(res['gt_bboxes_labels'], [1])
    np.testing.assert_array_equal(res['gt_ignore_flags'], [False])
    assert polygon_vertices(res['gt_masks'].masks[0][0]) == {
        (10, 20), (50, 20), (50, 40), (10, 40)}


@pytest.mark.parametrize('min_visible,ignored', [(0.5, False),
                                                 (0.51, True)])
def test_min_visible_is_inclusive(data_root, min_visible, ignored):
    """(85, 60, 115, 95) is exactly half in (0, 0, 100, 100)."""
    ds = sliced(data_root, min_visible=min_visible)
    res = sample_of(ds, 2, (0, 0, 100, 100))
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[85, 60, 100, 95]])
    np.testing.assert_array_equal(res['gt_ignore_flags'], [ignored])


def test_box_cut_on_two_sides(data_root):
    ds = sliced(data_root)  # min_visible 0.3
    # 15 x 15 of 30 x 35: 21.4 % -> ignore region
    res = sample_of(ds, 2, (0, 80, 100, 180))
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[85, 0, 100, 15]])
    np.testing.assert_array_equal(res['gt_ignore_flags'], [True])
    # 30 x 15 of 30 x 35: 42.9 % -> object
    res = sample_of(ds, 2, (80, 80, 180, 180))
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[5, 0, 35, 15]])
    np.testing.assert_array_equal(res['gt_ignore_flags'], [False])
    assert polygon_vertices(res['gt_masks'].masks[0][0]) == {
        (5, 0), (35, 0), (35, 15), (5, 15)}


def test_crowd_region_stays_ignore_region(data_root):
    ds = sliced(data_root, min_visible=0.)
    res = sample_of(ds, 1, (160, 80, 260, 180))
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[40, 40, 90, 90]])
    np.testing.assert_array_equal(res['gt_bboxes_labels'], [0])
    np.testing.assert_array_equal(res['gt_ignore_flags'], [True])
    assert len(res['gt_masks']) == 1
    # windows without any box have empty, consistent annotations
    res = sample_of(ds, 3, (0, 0, 100, 100))
    assert res['gt_bboxes'].numpy().shape == (0, 4)
    assert len(res['gt_bboxes_labels']) == len(res['gt_ignore_flags']) == 0
    assert len(res['gt_masks']) == 0


def test_bitmap_masks_cropped_exactly(data_root):
    whole = SlicedDataset(dataset=coco_cfg(data_root, bitmap=True),
                          pipeline=[], whole_image=True, **SLICE)
    ds = sliced(data_root, bitmap=True)
    for img_id, window in [(1, (0, 0, 100, 100)), (2, (80, 80, 180, 180)),
                           (1, (160, 80, 260, 180))]:
        full = sample_of(whole, img_id, (0, 0) + IMAGES[img_id][:0:-1])
        res = sample_of(ds, img_id, window)
        x1, y1, x2, y2 = window
        inside = res['gt_bboxes'].numpy()
        assert isinstance(res['gt_masks'], BitmapMasks)
        assert res['gt_masks'].masks.shape == (len(inside), y2 - y1,
                                               x2 - x1)
        # the full-image masks of the boxes that reach into the window
        full_boxes = full['gt_bboxes'].numpy()
        hit = ((full_boxes[:, 0] < x2) & (full_boxes[:, 2] > x1)
               & (full_boxes[:, 1] < y2) & (full_boxes[:, 3] > y1))
        np.testing.assert_array_equal(
            res['gt_masks'].masks,
            full['gt_masks'].masks[hit][:, y1:y2, x1:x2])
        assert res['gt_masks'].masks.any(axis=(1, 2)).all()


# ------------------------------------------------------------ empty windows
@pytest.mark.parametrize('ratio,kept', [(0., 0), (0.5, 5), (1., 9)])
def test_empty_ratio_keeps_that_many_empty_windows(data_root, ratio, kept):
    ds = sliced(data_root, empty_ratio=ratio)
    assert len(ds) == NUM_WINDOWS - NUM_EMPTY + kept
    num_empty = sum(
        not (~ds[i]['gt_ignore_flags']).any() for i in range(len(ds)))
    assert num_empty == kept


def test_seeded_choice_of_empty_windows(data_root):
    first = sliced(data_root, empty_ratio=0.5, seed=0)
    again = sliced(data_root, empty_ratio=0.5, seed=0)
    np.testing.assert_array_equal(first._slices, again._slices)
    for idx in range(len(first)):
        a, b = first[idx], again[idx]
        np.testing.assert_array_equal(a['img'], b['img'])
        np.testing.assert_array_equal(a['gt_bboxes'].numpy(),
                                      b['gt_bboxes'].numpy())
    others = [sliced(data_root, empty_ratio=0.5, seed=s)._slices
              for s in (1, 2, 3)]
    assert all(len(o) == len(first) for o in others)
    assert any(not np.array_equal(o, first._slices) for o in others)


# -------------------------------------------------------------- whole image
def test_whole_image_adds_one_sample_per_image(data_root):
    ds = sliced(data_root, whole_image=True)
    # image 4 (60 x 80) is a single window: its one sample is the whole
    assert len(ds) == NUM_WINDOWS + 3
    by_image = windows_by_image(ds)
    for img_id, (_, h, w) in IMAGES.items():
        assert by_image[img_id].count((0, 0, w, h)) == 1
    res = sample_of(ds, 1, (0, 0, 260, 180))
    np.testing.assert_array_equal(res['img'], pattern(180, 260))
    assert res['ori_shape'] == (180, 260)
    assert len(res['gt_bboxes']) == 3
    np.testing.assert_array_equal(res['gt_ignore_flags'],
                                  [False, False, True])
    # whole-image samples are kept when empty windows are not
    ds = sliced(data_root, whole_image=True, empty_ratio=0.)
    assert len(ds) == NUM_WINDOWS - NUM_EMPTY - 1 + 4
    assert windows_by_image(ds)[3] == [(0, 0, 180, 180)]


# ------------------------------------------- dataset API and registration
def test_len_metainfo_data_info_and_cat_ids(data_root):
    ds = sliced(data_root, bitmap=True, lazy_init=True)
    assert not ds._fully_initialized
    assert len(ds) == NUM_WINDOWS
    assert ds._fully_initialized
    assert ds.metainfo == ds.dataset.metainfo
    assert ds.metainfo['classes'] == CLASSES
    ds.metainfo['classes'] = None  # a copy
    assert ds.metainfo['classes'] == CLASSES
    for idx in range(len(ds)):
        info = ds.get_data_info(idx)
        x1, y1, x2, y2 = info['slice_window']
        assert (info['width'], info['height']) == (x2 - x1, y2 - y1)
        assert info['slice_offset'] == (x1, y1)
        # the data info says what CropToSlice does
        res = ds[idx]
        np.testing.assert_array_equal(
            np.asarray([i['bbox'] for i in info['instances']],
                       np.float32).reshape(-1, 4),
            res['gt_bboxes'].numpy())
        np.testing.assert_array_equal(
            [bool(i['ignore_flag']) for i in info['instances']],
            res['gt_ignore_flags'])
        assert all('mask' not in i for i in info['instances'])
        assert ds.get_cat_ids(idx) == [
            int(label) for label, ignore in zip(res['gt_bboxes_labels'],
                                                res['gt_ignore_flags'])
            if not ignore]


def test_builds_from_mmdet_and_mmengine_registries(data_root):
    from mmdet.registry import DATASETS as MMDET_DATASETS
    from mmengine.registry import DATASETS
    cfg = dict(type='SlicedDataset', dataset=coco_cfg(data_root),
               pipeline=[dict(type='CropToSlice'),
                         dict(type='PackDetInputs')],
               min_visible=0.3, **SLICE)
    for registry, name in [(MMDET_DATASETS, 'SlicedDataset'),
                           (DATASETS, 'SlicedDataset'),
                           (DATASETS, 'mmincnext.SlicedDataset')]:
        ds = registry.build(dict(cfg, type=name))
        assert isinstance(ds, SlicedDataset)
        assert len(ds) == NUM_WINDOWS
        assert isinstance(ds.pipeline.transforms[0], CropToSlice)
        assert isinstance(ds[0]['data_samples'], DetDataSample)


def test_inside_mmdet_wrappers(data_root):
    """ClassBalancedDataset repeats windows by the classes they hold."""
    from mmdet.registry import DATASETS
    cfg = dict(type='SlicedDataset', dataset=coco_cfg(data_root),
               pipeline=[dict(type='CropToSlice')], empty_ratio=0.,
               min_visible=0.3, **SLICE)
    balanced = DATASETS.build(
        dict(type='ClassBalancedDataset', dataset=cfg, oversample_thr=0.5))
    inner = balanced.dataset
    assert isinstance(inner, SlicedDataset)
    # 'other' (label 1) is the only object of 2 of the 6 windows (a box
    # of 'other' is an ignore region in a third): those are repeated
    cat_ids = [inner.get_cat_ids(i) for i in range(len(inner))]
    assert cat_ids.count([1]) == 2 and cat_ids.count([0]) == 4
    assert len(balanced) > len(inner)
    # the last repeat is the last window: image 4's, 60 x 80
    assert balanced[len(balanced) - 1]['img'].shape[:2] == (60, 80)


def test_realistic_train_pipeline(data_root):
    meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                 'scale_factor', 'flip', 'flip_direction', 'slice_offset',
                 'slice_window')
    ds = sliced(data_root, pipeline=[
        dict(type='CropToSlice'),
        dict(type='RandomFlip', prob=1.0),
        dict(type='Resize', scale=(200, 200), keep_ratio=True),
        dict(type='PackDetInputs', meta_keys=meta_keys),
    ])
    idx = next(i for i in range(len(ds))
               if ds.get_slice(i)[1] == (0, 0, 100, 100)
               and ds.get_data_info(i)['img_id'] == 1)
    out = ds[idx]
    sample = out['data_samples']
    assert isinstance(sample, DetDataSample)
    assert out['inputs'].shape == (3, 200, 200)
    assert sample.ori_shape == (100, 100)
    assert sample.img_shape == (200, 200)
    assert sample.slice_offset == (0, 0)
    assert sample.slice_window == (0, 0, 100, 100)
    # flipped in the 100 px window, then scaled by 2
    torch.testing.assert_close(sample.gt_instances.bboxes.tensor,
                               torch.tensor([[140., 20., 180., 80.]]))
    assert sample.gt_instances.labels.tolist() == [0]
    torch.testing.assert_close(sample.ignored_instances.bboxes.tensor,
                               torch.tensor([[0., 40., 20., 80.]]))
    assert sample.ignored_instances.labels.tolist() == [1]


def test_dataloader_with_two_workers_and_no_image_cache(data_root):
    from mmengine.runner import Runner
    ds = sliced(data_root, empty_ratio=0.5, whole_image=True, pipeline=[
        dict(type='CropToSlice'),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'ori_shape', 'img_shape', 'slice_window'))
    ])
    state_size = len(pickle.dumps(ds))
    # everything but the wrapped dataset and the pipeline: the window index
    arrays = {k: v.nbytes for k, v in vars(ds).items()
              if isinstance(v, np.ndarray)}
    assert set(arrays) == {'_slices', '_image_sizes'}
    assert sum(arrays.values()) <= 20 * len(ds) + 8 * len(IMAGES)
    loader = Runner.build_dataloader(dict(
        batch_size=2, num_workers=2, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'),
        collate_fn=dict(type='pseudo_collate'),
        dataset=ds), seed=0)
    seen = []
    for batch in loader:
        for inputs, sample in zip(batch['inputs'], batch['data_samples']):
            seen.append((sample.img_id,) + sample.slice_window)
            x1, y1, x2, y2 = sample.slice_window
            assert inputs.shape == (3, y2 - y1, x2 - x1)
    expected = []
    for idx in range(len(ds)):
        image_idx, window = ds.get_slice(idx)
        expected.append(
            (ds.dataset.get_data_info(image_idx)['img_id'],) + window)
    assert sorted(seen) == sorted(expected)
    # and in this process: nothing is kept from the samples
    for idx in range(len(ds)):
        ds[idx]
    assert len(pickle.dumps(ds)) == state_size


def test_infinite_sampler(data_root):
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(dict(
        batch_size=4, num_workers=0,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        collate_fn=dict(type='pseudo_collate'),
        dataset=dict(type='SlicedDataset', dataset=coco_cfg(data_root),
                     pipeline=[dict(type='CropToSlice'),
                               dict(type='PackDetInputs')],
                     **SLICE)), seed=0)
    batches = iter(loader)
    for _ in range(5):  # more samples than one pass
        batch = next(batches)
        assert len(batch['inputs']) == 4


# ----------------------------------------------------- CropToSlice alone
def test_crop_to_slice_arrays_seg_map_and_ids():
    img = pattern(50, 60)
    seg = (np.arange(50 * 60) % 7).reshape(50, 60).astype(np.uint8)
    results = dict(
        img=img, img_shape=(50, 60), ori_shape=(50, 60),
        gt_bboxes=np.array([[5, 5, 15, 15], [25, 10, 45, 20],
                            [50, 40, 60, 50], [-10, 0, 30, 10],
                            [35, 25, 55, 45]], np.float32),
        gt_bboxes_labels=np.array([0, 1, 2, 3, 4]),
        gt_instances_ids=np.array([10, 11, 12, 13, 14]),
        gt_seg_map=seg, slice_window=(20, 0, 40, 30),
        slice_min_visible=0.3,
        homography_matrix=np.diag([2., 2., 1.]).astype(np.float32))
    out = CropToSlice()(results)
    np.testing.assert_array_equal(out['img'], img[0:30, 20:40])
    np.testing.assert_array_equal(out['gt_seg_map'], seg[0:30, 20:40])
    # boxes 0 and 2 are outside; box 1 is 15 of 20 px (75 %) in; box 3
    # counts only its part inside the image (x 0-30): 10 of 30 px (33 %,
    # not 10 of 40); box 4 is 5 x 5 of 20 x 20 (6 %) in: ignore region
    np.testing.assert_array_equal(
        out['gt_bboxes'], [[5, 10, 20, 20], [0, 0, 10, 10], [15, 25, 20, 30]])
    assert out['gt_bboxes'].dtype == np.float32
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [1, 3, 4])
    np.testing.assert_array_equal(out['gt_instances_ids'], [11, 13, 14])
    np.testing.assert_array_equal(out['gt_ignore_flags'],
                                  [False, False, True])
    assert out['img_shape'] == out['ori_shape'] == (30, 20)
    assert out['slice_offset'] == (20, 0)
    np.testing.assert_array_equal(
        out['homography_matrix'],
        [[2, 0, -20], [0, 2, 0], [0, 0, 1]])


def test_crop_to_slice_errors(data_root):
    with pytest.raises(KeyError, match='slice_window'):
        CropToSlice()(dict(img=pattern(10, 10)))
    with pytest.raises(ValueError, match='does not fit'):
        CropToSlice()(dict(img=pattern(10, 10), slice_window=(0, 0, 20, 10)))


def test_image_size_must_match_annotations(data_root, tmp_path):
    ann = json.loads(open(f'{data_root}/ann.json').read())
    ann['images'][1]['width'] = 200  # b.png is 180 wide
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    ds = SlicedDataset(
        dataset=dict(coco_cfg(data_root), ann_file=str(tmp_path / 'ann.json')),
        pipeline=[dict(type='CropToSlice')], **SLICE)
    idx = next(i for i in range(len(ds))
               if ds.get_data_info(i)['img_id'] == 2)
    with pytest.raises(ValueError, match='annotations give'):
        ds[idx]


def test_rejected_sample_is_replaced(data_root):
    """A transform returning None (a broken image, a rejected crop): another
    random sample, as mmengine's datasets do in training."""
    first = (0, 0, 100, 100)

    def reject_first(results):
        return None if results['slice_window'] == first else results

    ds = sliced(data_root, pipeline=[dict(type='CropToSlice'), reject_first])
    np.random.seed(0)
    for idx in range(len(ds)):
        assert ds[idx]['slice_window'] != first
    ds = sliced(data_root, max_refetch=2,
                pipeline=[dict(type='CropToSlice'), lambda results: None])
    with pytest.raises(RuntimeError, match='no valid sample after 3'):
        ds[0]


@pytest.mark.parametrize('kwargs', [
    dict(slice_size=0), dict(overlap_ratio=1.), dict(min_visible=1.5),
    dict(empty_ratio=-0.1), dict(pipeline=dict(type='CropToSlice'))])
def test_invalid_arguments(data_root, kwargs):
    args = dict(dataset=coco_cfg(data_root),
                pipeline=[dict(type='CropToSlice')])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError)):
        SlicedDataset(**args)
