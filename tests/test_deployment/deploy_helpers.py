"""Shared by the deployment tests: detectors with weights that give varied,
valid detections, the inputs, PyTorch's reference and a tie-aware
comparison of detections."""
import numpy as np
import torch

SIZE = 128


def smooth_images(num, h=SIZE, w=SIZE, seed=0):
    """BGR float images 0-255 with structure at every scale (pure noise
    averages out in the stride-32 features and makes every position score
    the same)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(num, 3, max(h // 8, 1), max(w // 8, 1), generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode='bicubic',
                                        align_corners=False).clamp(0, 1)
    return x * 200 + torch.rand(num, 3, h, w, generator=g) * 55


def build_detector(config, seed=0):
    """The config's detector (the inner one of a sliced config) with
    variance-preserving random weights: He-normal convolutions, layer
    scales 0.3, and the heads' prediction convolutions rescaled to unit
    output std, so that scores are spread (few ties, no saturation) and
    distance-coded boxes are mostly valid."""
    from mmcv.cnn import ConvModule

    from mmincnext.deployment import load_detector
    torch.manual_seed(seed)
    cfg, model, classes, palette, sliced = load_detector(config, None,
                                                         deploy=False)
    g = torch.Generator().manual_seed(seed)
    head = model.bbox_head
    bare = set()
    for mod in head.modules():
        if not isinstance(mod, ConvModule):
            bare.update(c for c in mod.children()
                        if isinstance(c, torch.nn.Conv2d))
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan = mod.weight[0].numel()
                mod.weight.normal_(0, (2. / fan) ** .5, generator=g)
                if mod.bias is not None:
                    mod.bias.uniform_(-0.5, 0.5, generator=g)
                    if 'rtm_reg' in name:
                        mod.bias += 1.  # RTMDet: distances * stride > 0
        for name, p in model.named_parameters():
            if name.endswith('gamma'):
                p.fill_(0.3)
    stds = {}
    hooks = [c.register_forward_hook(
        lambda m, i, o: stds.__setitem__(m, max(stds.get(m, 0.),
                                                float(o.std()))))
        for c in bare]
    with torch.no_grad():
        x = model.data_preprocessor(
            dict(inputs=list(smooth_images(2, seed=seed + 1))), False)
        head(model.extract_feat(x['inputs']))
        for c in bare:
            c.weight /= max(stds[c], 1e-6)
    for h in hooks:
        h.remove()
    return cfg, model, classes, sliced


def reference(model, x):
    """PyTorch's detections (``model.predict``) for an input that is
    already resized and padded: image shape = input shape, scale 1."""
    from mmdet.structures import DetDataSample
    h, w = x.shape[-2:]
    samples = [DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
        batch_input_shape=(h, w), pad_shape=(h, w))) for _ in range(len(x))]
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=list(x), data_samples=samples), False)
        res = model.predict(data['inputs'], data['data_samples'])
    return [r.pred_instances for r in res]


def box_iou(box, boxes):
    """IoU of one ``x1, y1, x2, y2`` box with each of ``boxes``."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa
    return inter / (area(box) + area(boxes) - inter)


def assert_same_detections(ref, boxes, scores, labels, k, iou_thr=None,
                           score_tol=1e-3, box_tol=1.0, rel_tol=1e-3,
                           max_flips=2, clipped_after_nms=None):
    """``ref`` (PyTorch InstanceData, sorted by score; its best ``k``) and
    one image's exported outputs are the same detections: every detection
    of one has one in the other with the same label, the score within
    ``score_tol`` and the box within ``box_tol`` px or ``rel_tol``
    relative.

    Exempt, because either outcome is right up to fp32 rounding:

    - a *flip*: a detection one side kept and the other suppressed, where
      its IoU with a better box of its class found on both sides is the NMS
      threshold ``iou_thr`` to 1e-4 (MMDetection's ``batched_nms`` shifts
      the boxes of each class by an offset, which rounds the IoU); at most
      ``max_flips`` per image;
      (with ``clipped_after_nms=(H, W)``, MMYOLO's clamping of the boxes
      after NMS, the IoU of boxes on the image border is not the one NMS
      saw: any IoU above the threshold counts there);
    - what a flip changes downstream: a detection suppressed (IoU above the
      threshold) by a better one that only the other side has;
    - detections pushed past the ``k``-th place by these, or tied there.
    """
    ref_b = ref.bboxes[:k].numpy()
    ref_s = ref.scores[:k].numpy()
    ref_l = ref.labels[:k].numpy()
    used = scores > 0
    assert (np.diff(scores) <= 0).all()  # sorted
    assert (scores[~used] == 0).all() and (labels[~used] == -1).all()
    got_b, got_s, got_l = boxes[used], scores[used], labels[used]
    ref_free = np.ones(len(ref_s), bool)
    got_free = np.ones(len(got_s), bool)
    for j, (b, s, lab) in enumerate(zip(ref_b, ref_s, ref_l)):
        tol = np.maximum(box_tol, rel_tol * np.abs(b))
        ok = got_free & (got_l == lab) & (np.abs(got_s - s) < score_tol) & \
            (np.abs(got_b - b) <= tol).all(1)
        if ok.any():
            got_free[np.flatnonzero(ok)[np.argmin(np.abs(got_s[ok] - s))]] = \
                False
            ref_free[j] = False
    full = len(ref.scores) >= k
    tail = min(ref_s.min(), got_s.min()) if len(ref_s) and len(got_s) \
        else -1
    flips = 0
    sides = (('PyTorch', (ref_b, ref_s, ref_l, ref_free),
              (got_b, got_s, got_l, got_free)),
             ('exported', (got_b, got_s, got_l, got_free),
              (ref_b, ref_s, ref_l, ref_free)))
    for side, (b, s, lab, free), (ob, os_, ol, ofree) in sides:
        for j in np.flatnonzero(free):
            better = (ol == lab[j]) & (os_ > s[j])
            ious = box_iou(b[j], ob[better]) if better.any() else \
                np.zeros(0)
            if iou_thr is not None and len(ious):
                close = np.abs(ious - iou_thr) < 1e-4
                if clipped_after_nms is not None:
                    h, w = clipped_after_nms
                    edge = lambda x: (x[..., :2] <= 0).any(-1) | \
                        (x[..., 2] >= w) | (x[..., 3] >= h)  # noqa: E731
                    close |= (edge(b[j]) | edge(ob[better])) & \
                        (ious > iou_thr - 1e-4)
                if close[~ofree[better]].any():
                    flips += 1
                    continue
                if (ious[ofree[better]] > iou_thr - 1e-4).any():
                    continue  # suppressed by a flipped-in detection
            if full and s[j] <= tail + score_tol:
                continue  # pushed past the k-th place, or tied there
            raise AssertionError(
                f'{side} detection label {lab[j]} score {s[j]:.5f} box '
                f'{b[j]} has no match')
    assert flips <= max_flips, f'{flips} NMS decisions differ'
