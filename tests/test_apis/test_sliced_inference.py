"""Sliced (tiled) inference: mmincnext.apis.sliced_inference and
tools/sliced_inference.py.

The merging and the coordinates are checked exactly with an oracle
"detector" on the demo generator's large image (2000 x 2000, 300 objects of
8-16 px): it returns, for each window, the box of every object part visible
in it (from the rasterised annotation polygons), scored by the visible
fraction, so objects crossing window borders come back cut, as from a real
detector. The real MMDetection path (config test pipeline, batched
``test_step``, mmcv NMS, DetLocalVisualizer, COCO metrics) runs on the atto
P2 RTMDet config.
"""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)
import sahi  # noqa: F401  (a test requirement: fails loudly if missing)

from mmengine.structures import InstanceData  # noqa: E402

from mmincnext.apis import (coco_evaluate, get_windows,  # noqa: E402
                            inference_detector_batched, merge_predictions,
                            min_window_overlap, sliced_inference)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
RTMDET_P2 = osp.join(
    ROOT, 'configs', 'rtmdet',
    'rtmdet_inceptionnext-atto_pafpn-p2_small-obj_8xb32-300e_coco.py')
CLASSES = ('circle', 'square', 'triangle')


def load_tool(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = load_tool('make_small_object_data',
                osp.join(ROOT, 'tools', 'dataset_converters',
                         'make_small_object_data.py'))


def make_large(out, size, objects):
    """The generator's ``large`` split: one image, objects of 8-16 px."""
    GEN.main(['--out', out, '--num-train', '0', '--num-val', '0',
              '--num-large', '1', '--large-size', str(size),
              '--large-objects', str(objects), '--num-seg-train', '0',
              '--num-seg-val', '0'])
    ann_file = osp.join(out, 'det', 'annotations', 'instances_large.json')
    with open(ann_file) as f:
        ann = json.load(f)
    return ann_file, osp.join(out, 'det', 'large'), ann


@pytest.fixture(scope='module')
def large(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('large'))
    ann_file, img_dir, ann = make_large(out, 2000, 300)
    h, w = ann['images'][0]['height'], ann['images'][0]['width']
    # object id map from the annotation polygons (as the generator paints)
    ids = np.zeros((h, w), np.int32)
    for k, a in enumerate(ann['annotations']):
        x, y, bw, bh = (int(v) for v in a['bbox'])
        x0, y0 = max(x - 2, 0), max(y - 2, 0)
        x1, y1 = min(x + bw + 2, w), min(y + bh + 2, h)
        m = GEN.rasterise(np.array(a['segmentation'][0]).reshape(-1, 2),
                          x0, y0, y1 - y0, x1 - x0)
        ids[y0:y1, x0:x1][m] = k + 1
    gt = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                    a['bbox'][1] + a['bbox'][3], a['category_id'] - 1]
                   for a in ann['annotations']])
    return dict(ann_file=ann_file, img_dir=img_dir, ann=ann, ids=ids, gt=gt)


class Oracle:
    """Predictor returning the visible part of every object in a window of
    the id map; score = visible fraction of the object."""

    def __init__(self, ids, labels):
        self.labels = np.asarray(labels)
        self.area = np.bincount(ids.reshape(-1))
        self.calls = 0

    def __call__(self, crops):
        from scipy.ndimage import find_objects
        self.calls += 1
        out = []
        for crop in crops:
            boxes, scores, labels = [], [], []
            visible = np.bincount(crop.reshape(-1),
                                  minlength=len(self.area))
            for k, sl in enumerate(find_objects(crop), 1):
                if sl is None:
                    continue
                boxes.append([sl[1].start, sl[0].start, sl[1].stop,
                              sl[0].stop])
                scores.append(visible[k] / self.area[k])
                labels.append(self.labels[k - 1])
            out.append(InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.long)))
        return out


def as_rows(inst):
    rows = torch.cat([inst.bboxes, inst.labels[:, None].float()], 1)
    return sorted(map(tuple, rows.round().long().tolist()))


def crossing_objects(gt, windows, size):
    """GT boxes cut by an inner edge of some window."""
    n = 0
    for x1, y1, x2, y2, _ in gt:
        for wx1, wy1, wx2, wy2 in windows:
            inside = x2 > wx1 and x1 < wx2 and y2 > wy1 and y1 < wy2
            cut = (0 < wx1 and x1 < wx1 < x2) or (wx2 < size and
                                                  x1 < wx2 < x2) or \
                (0 < wy1 and y1 < wy1 < y2) or (wy2 < size and
                                                y1 < wy2 < y2)
            if inside and cut:
                n += 1
                break
    return n


def test_windows_cover_with_overlap():
    for h, w, size, ratio in ((2000, 2000, 512, 0.25), (700, 1000, 320, 0.2),
                              (600, 500, 640, 0.25)):
        win = get_windows(h, w, size, ratio)
        assert len(np.unique(win, axis=0)) == len(win)
        assert (win[:, 0] >= 0).all() and (win[:, 1] >= 0).all()
        assert (win[:, 2] <= w).all() and (win[:, 3] <= h).all()
        assert ((win[:, 2] - win[:, 0]) == min(size, w)).all()
        assert ((win[:, 3] - win[:, 1]) == min(size, h)).all()
        covered = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in win:
            covered[y1:y2, x1:x2] = True
        assert covered.all()
        ox, oy = min_window_overlap(win)
        if w > size:
            assert ox >= int(ratio * size)
        else:
            assert ox == np.inf
        if h > size:
            assert oy >= int(ratio * size)
    with pytest.raises(ValueError):
        get_windows(100, 100, 64, 1.0)


def test_sliced_oracle_exact_full_image_boxes(large):
    """Every object once, with its exact full-image box, though many
    objects cross window borders; batching does not change anything."""
    ids, gt = large['ids'], large['gt']
    assert ids.shape == (2000, 2000) and len(gt) == 300
    oracle = Oracle(ids, gt[:, 4])
    merged, parts = sliced_inference(
        oracle, ids, slice_size=512, overlap_ratio=0.25, batch_size=7,
        return_parts=True)
    windows = parts['windows_xyxy']
    assert len(windows) == 25 and oracle.calls == 4  # ceil(25 / 7)
    assert crossing_objects(gt, windows, 2000) >= 15
    expected = sorted(map(tuple, gt.round().astype(int).tolist()))
    assert as_rows(merged) == expected
    assert torch.allclose(merged.scores, torch.ones(len(merged)))
    # the same with one window per call, and with a whole-image pass
    merged1 = sliced_inference(Oracle(ids, gt[:, 4]), ids, 512, 0.25,
                               batch_size=1)
    assert as_rows(merged1) == expected
    merged_w = sliced_inference(Oracle(ids, gt[:, 4]), ids, 512, 0.25,
                                whole_image=True)
    assert as_rows(merged_w) == expected


def test_sliced_oracle_duplicates_without_border_filter(large):
    """NMS alone keeps cut views of border objects (a sliver has a low IoU
    with the whole box): the border filter is what removes them."""
    ids, gt = large['ids'], large['gt']
    merged = sliced_inference(Oracle(ids, gt[:, 4]), ids, 512, 0.25,
                              border_margin=None)
    assert len(merged) > len(gt)
    # every extra box is a cut view (score < 1) inside a true object
    extra = merged[merged.scores < 1]
    assert len(extra) == len(merged) - len(gt)
    gt_t = torch.as_tensor(gt[:, :4], dtype=torch.float32)
    for box in extra.bboxes:
        inside = ((gt_t[:, 0] <= box[0]) & (gt_t[:, 1] <= box[1]) &
                  (gt_t[:, 2] >= box[2]) & (gt_t[:, 3] >= box[3]))
        assert inside.any()


def test_merge_predictions_nms():
    a = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.],
                                          [100., 100., 110., 110.]]),
                     scores=torch.tensor([0.9, 0.8]),
                     labels=torch.tensor([0, 1]))
    b = InstanceData(bboxes=torch.tensor([[0., 0., 10., 11.],
                                          [100., 100., 110., 110.]]),
                     scores=torch.tensor([0.7, 0.95]),
                     labels=torch.tensor([0, 2]))
    m = merge_predictions([a, b], iou_thr=0.5)
    # class-aware: the two boxes at 100 have different classes
    assert len(m) == 3 and m.scores.tolist() == pytest.approx(
        [0.95, 0.9, 0.8])
    m = merge_predictions([a, b], iou_thr=0.5, class_agnostic=True)
    assert len(m) == 2 and m.labels.tolist() == [2, 0]
    assert len(merge_predictions([a, b], max_dets=1)) == 1
    assert len(merge_predictions([])) == 0


def test_coco_evaluate_oracle(large):
    """Ground truth as predictions: AP 1 in every bin when all 300 objects
    count; COCO's standard AP (best 100 per image and class) cannot see
    them all (a class has more than 100 objects)."""
    gt = large['gt']
    img = large['ann']['images'][0]
    pred = InstanceData(bboxes=torch.tensor(gt[:, :4], dtype=torch.float32),
                        scores=torch.linspace(1, 0.5, len(gt)),
                        labels=torch.tensor(gt[:, 4], dtype=torch.long))
    metrics = coco_evaluate(large['ann_file'], {img['id']: pred},
                            {img['id']: (img['height'], img['width'])},
                            CLASSES, max_dets=1000)
    assert metrics['coco/bbox_mAP_all'] == 1.0
    assert metrics['coco/bbox_mAP_tiny'] == 1.0
    assert metrics['coco/bbox_AR_all'] == 1.0
    assert max(np.bincount(gt[:, 4].astype(int))) > 100
    assert metrics['coco/bbox_mAP'] < 1.0


# ------------------------------------------------------- real mmdet path
def small_test_cfg(size=256):
    from mmengine.config import Config
    cfg = Config.fromfile(RTMDET_P2)
    cfg.model.bbox_head.num_classes = len(CLASSES)
    for t in cfg.test_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = (size, size)
        if t.type == 'Pad':
            t.size = (size, size)
    return cfg


@pytest.fixture(scope='module')
def rtmdet(tmp_path_factory):
    """Random-init atto P2 RTMDet through init_detector, and the same
    weights saved as a checkpoint with the demo classes."""
    from mmdet.apis import init_detector
    torch.manual_seed(0)
    model = init_detector(small_test_cfg(), None, device='cpu')
    ckpt = str(tmp_path_factory.mktemp('ckpt') / 'rtmdet_random.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=CLASSES))), ckpt)
    return model, ckpt


def test_batched_inference_matches_inference_detector(rtmdet, large):
    from mmdet.apis import inference_detector
    model, _ = rtmdet
    import mmcv
    img = mmcv.imread(osp.join(large['img_dir'], 'large_00000.jpg'))
    crops = [img[300:556, 900:1156],
             img[1000:1200, 500:800]]  # another size
    batched = inference_detector_batched(model, crops)
    single = [inference_detector(model, c) for c in crops]
    for b, s in zip(batched, single):
        b, s = b.pred_instances, s.pred_instances
        assert len(b) == len(s) > 0
        assert torch.allclose(b.bboxes, s.bboxes, atol=1e-2)
        assert torch.allclose(b.scores, s.scores, atol=1e-4)


def test_sliced_inference_real_detector(rtmdet, large):
    import mmcv
    model, _ = rtmdet
    img = mmcv.imread(osp.join(large['img_dir'], 'large_00000.jpg'))
    img = img[:400, :448]
    merged, parts = sliced_inference(
        model, img, slice_size=256, overlap_ratio=0.25, batch_size=3,
        whole_image=True, max_dets=500, return_parts=True)
    windows, tiles = parts['windows_xyxy'], parts['windows']
    assert len(windows) == 4 and len(tiles) > 0 and len(parts['whole']) > 0
    assert 0 < len(merged) <= 500
    # window boxes lie in their window, in image coordinates
    win = torch.as_tensor(windows, dtype=torch.float32)[tiles.window_ids]
    assert bool((tiles.bboxes[:, :2] >= win[:, :2] - 1e-3).all())
    assert bool((tiles.bboxes[:, 2:] <= win[:, 2:] + 1e-3).all())
    assert float(tiles.bboxes[:, 0].max()) > 256  # not all in window 0
    # the merged boxes are kept window / whole-image boxes
    pool = torch.cat([tiles.bboxes, parts['whole'].bboxes.cpu()])
    dist = (merged.bboxes[:, None] - pool[None]).abs().amax(-1).min(1).values
    assert float(dist.max()) == 0
    assert (merged.scores[:-1] >= merged.scores[1:]).all()


def test_tool_eval_and_predict(rtmdet, tmp_path, capsys):
    """tools/sliced_inference.py: tiled vs whole-image COCO evaluation on a
    generated large split, then predict mode on a folder."""
    _, ckpt = rtmdet
    ann_file, img_dir, ann = make_large(str(tmp_path / 'data'), 512, 30)
    tool = load_tool('sliced_inference_tool',
                     osp.join(ROOT, 'tools', 'sliced_inference.py'))
    common = [RTMDET_P2, ckpt, img_dir, '--patch-size', '320',
              '--device', 'cpu', '--cfg-options',
              'model.bbox_head.num_classes=3',
              'test_dataloader.dataset.pipeline.1.scale=(256,256)',
              'test_dataloader.dataset.pipeline.2.size=(256,256)']
    out = tmp_path / 'eval'
    report = tool.main(common + ['--ann-file', ann_file, '--out-dir',
                                 str(out)])
    table = capsys.readouterr().out
    for mode in ('whole', 'sliced', 'sliced+whole'):
        assert mode in table
        metrics = report['metrics'][mode]
        for key in ('coco/bbox_mAP', 'coco/bbox_mAP_s', 'coco/bbox_mAP_all',
                    'coco/bbox_mAP_tiny', 'coco/bbox_AR_tiny'):
            assert 0 <= metrics[key] <= 1 or metrics[key] == -1, key
        res = json.loads((out / f'results_{mode.replace("+", "_")}'
                          '.bbox.json').read_text())
        assert res and {r['category_id'] for r in res} <= {1, 2, 3}
        assert {r['image_id'] for r in res} == {1}
    assert report['num_windows'] == 4
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['metrics'] == report['metrics']
    assert (out / 'vis' / 'large_00000.jpg').is_file()

    out = tmp_path / 'predict'
    assert tool.main(common + ['--out-dir', str(out), '--whole-image',
                               '--max-dets', '50']) is None
    res = json.loads((out / 'results.bbox.json').read_text())
    images = json.loads((out / 'images.json').read_text())
    assert images['images'] == [dict(id=1, file_name='large_00000.jpg',
                                     height=512, width=512)]
    assert [c['name'] for c in images['categories']] == list(CLASSES)
    assert 0 < len(res) <= 50
    for r in res:
        x, y, w, h = r['bbox']
        assert x >= 0 and y >= 0 and x + w <= 512.01 and y + h <= 512.01
    assert (out / 'vis' / 'large_00000.jpg').is_file()
