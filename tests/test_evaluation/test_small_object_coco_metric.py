"""SmallObjectCocoMetric: CocoMetric + very tiny / tiny / small bins."""
import json

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)
import pycocotools  # noqa: F401  (a test requirement: fails loudly if missing)

import mmincnext  # noqa: E402,F401
from mmincnext.evaluation import SmallObjectCocoMetric  # noqa: E402

H = W = 200
CLASSES = ('thing', 'other')
# (image id, category id, x, y, w, h); side sqrt(area): 5, 6 -> vtiny,
# 12 -> tiny, 24 -> small (16-32), 50 -> COCO medium
OBJECTS = [
    (1, 1, 10, 10, 5, 5),
    (1, 1, 40, 40, 12, 12),
    (1, 2, 100, 100, 50, 50),
    (2, 2, 20, 30, 24, 24),
    (2, 1, 150, 150, 6, 6),
]


@pytest.fixture(scope='module')
def ann_file(tmp_path_factory):
    anns = []
    for i, (img, cat, x, y, w, h) in enumerate(OBJECTS, 1):
        poly = [x, y, x + w, y, x + w, y + h, x, y + h]
        anns.append(dict(id=i, image_id=img, category_id=cat,
                         bbox=[x, y, w, h], area=w * h, iscrowd=0,
                         segmentation=[poly]))
    data = dict(
        images=[dict(id=i, file_name=f'{i}.png', height=H, width=W)
                for i in (1, 2)],
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)],
        annotations=anns)
    path = tmp_path_factory.mktemp('coco') / 'ann.json'
    path.write_text(json.dumps(data))
    return str(path)


def run_metric(ann_file, objects, metric=('bbox', ), with_masks=False,
               extra=(), **kwargs):
    """objects: (image id, cat id, x, y, w, h, score) predictions."""
    from pycocotools.coco import COCO
    coco = COCO(ann_file)
    evaluator = SmallObjectCocoMetric(ann_file=ann_file, metric=list(metric),
                                      **kwargs)
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = []
    for img in (1, 2):
        preds = [o for o in list(objects) + list(extra) if o[0] == img]
        pred = dict(
            bboxes=torch.tensor([[x, y, x + w, y + h]
                                 for _, _, x, y, w, h, _ in preds],
                                dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([s for *_, s in preds]),
            labels=torch.tensor([c - 1 for _, c, *_ in preds]))
        if with_masks:
            masks = []
            for _, cat, x, y, w, h, _ in preds:
                # the gt mask of the object at this box, if any
                ann = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img))
                       if a['bbox'] == [x, y, w, h]]
                mask = coco.annToMask(ann[0]) if ann else np.zeros(
                    (H, W), np.uint8)
                masks.append(torch.from_numpy(mask).bool())
            pred['masks'] = torch.stack(masks)
        samples.append(dict(img_id=img, ori_shape=(H, W),
                            pred_instances=pred))
    evaluator.process({}, samples)
    return evaluator.evaluate(len(samples))


def perfect():
    return [o + (1.0, ) for o in OBJECTS]


def test_perfect_predictions_bbox_and_segm(ann_file):
    res = run_metric(ann_file, perfect(), metric=('bbox', 'segm'),
                     with_masks=True)
    for m in ('bbox', 'segm'):
        # standard keys of CocoMetric are still there
        assert res[f'coco/{m}_mAP'] == 1.0
        assert res[f'coco/{m}_mAP_s'] == 1.0
        assert res[f'coco/{m}_mAP_m'] == 1.0
        assert res[f'coco/{m}_mAP_l'] == -1.0
        for name in ('vtiny', 'tiny', 'small'):
            assert res[f'coco/{m}_mAP_{name}'] == 1.0, (m, name)
            assert res[f'coco/{m}_AR_{name}'] == 1.0, (m, name)


def test_empty_bin_is_minus_one(ann_file):
    res = run_metric(ann_file, perfect(),
                     fine_bins=dict(vtiny=(0, 8), huge=(200, 400)))
    assert res['coco/bbox_mAP_vtiny'] == 1.0
    assert res['coco/bbox_mAP_huge'] == -1.0
    assert res['coco/bbox_AR_huge'] == -1.0
    assert 'coco/bbox_mAP_tiny' not in res


def test_known_values_per_bin(ann_file):
    preds = [
        # very tiny 5x5, shifted 1 px in x: IoU 20/30 = 0.667, score 0.9
        (1, 1, 11, 10, 5, 5, 0.9),
        # very tiny 6x6, shifted 1 px in x and y: IoU 25/47 = 0.532
        (2, 1, 151, 151, 6, 6, 0.8),
        # tiny (12 px): missed
        # small (24 px) and medium (50 px): perfect
        (2, 2, 20, 30, 24, 24, 1.0),
        (1, 2, 100, 100, 50, 50, 1.0),
    ]
    res = run_metric(ann_file, preds)
    # 10 IoU thresholds .50:.95. Very tiny: both matched at .50 (AP 1),
    # only the 0.9-score box at .55/.60/.65 (precision 1 up to recall 0.5:
    # 51 of COCO's 101 recall points -> 51/101), none above.
    assert res['coco/bbox_mAP_vtiny'] == pytest.approx(
        round((1 + 3 * 51 / 101) / 10, 3))
    assert res['coco/bbox_AR_vtiny'] == pytest.approx((1 + 3 * 0.5) / 10)
    assert res['coco/bbox_mAP_tiny'] == 0.0
    assert res['coco/bbox_AR_tiny'] == 0.0
    assert res['coco/bbox_mAP_small'] == 1.0
    assert res['coco/bbox_AR_small'] == 1.0


def test_bin_equal_to_coco_small_reproduces_mAP_s(ann_file):
    """Same COCOeval matching: a (0, 32) bin equals COCO's mAP_s, also for
    imperfect predictions with false positives and wrong classes."""
    rng = np.random.default_rng(0)
    preds = []
    for img, cat, x, y, w, h in OBJECTS:
        dx, dy = rng.integers(-2, 3, size=2)
        preds.append((img, cat, x + int(dx), y + int(dy), w, h,
                      float(rng.uniform(0.3, 1))))
    extra = [(1, 1, 60, 60, 10, 10, 0.9), (2, 2, 22, 30, 24, 24, 0.95),
             (2, 1, 152, 150, 6, 6, 0.8)]
    res = run_metric(ann_file, preds, extra=extra,
                     fine_bins=dict(upto32=(0, 32)))
    assert 0 < res['coco/bbox_mAP_s'] < 1
    assert res['coco/bbox_mAP_upto32'] == pytest.approx(
        res['coco/bbox_mAP_s'], abs=1e-3)


def test_registered_and_invalid_bins():
    from mmdet.registry import METRICS
    from mmdet.utils import register_all_modules
    register_all_modules()
    metric = METRICS.build(dict(type='SmallObjectCocoMetric'))
    assert isinstance(metric, SmallObjectCocoMetric)
    assert list(metric.fine_bins) == ['vtiny', 'tiny', 'small']
    with pytest.raises(ValueError, match='clash'):
        SmallObjectCocoMetric(fine_bins=dict(s=(0, 32)))
    with pytest.raises(ValueError, match='min < max'):
        SmallObjectCocoMetric(fine_bins=dict(a=(16, 8)))
