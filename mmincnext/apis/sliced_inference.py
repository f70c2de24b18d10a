"""Sliced (tiled) inference of MMDetection detectors on large images.

Small objects in a big image are lost twice by whole-image inference: the
test pipeline shrinks the image to the model's input scale (a 2000 px image
at RTMDet's 640 px: an 12 px object becomes 4 px), and detectors cap the
detections per image. Sliced inference runs the detector on overlapping
windows (each resized by the config's own test pipeline, as a normal image)
and merges the windows' detections in full-image coordinates.

The pieces, all usable on their own:

- :func:`get_windows`: the windows, from SAHI's ``get_slice_bboxes`` (the
  slicing MMDetection's large-image demo uses): a regular grid with a fixed
  overlap, the last row / column moved back inside the image.
- :func:`inference_detector_batched`: MMDetection's ``inference_detector``
  (the config's test pipeline, then ``model.test_step``) on a *batch* of
  images per forward pass.
- :func:`predict_windows`: runs a predictor on every window, clips the boxes
  to their window, drops **border-cut** boxes (below) and shifts the boxes
  to full-image coordinates.
- :func:`merge_predictions`: concatenates window (and optionally
  whole-image) predictions and removes duplicates with mmcv's
  ``batched_nms`` (class-aware by default), then keeps the ``max_dets``
  best.
- :func:`sliced_inference`: all of it for one image and one detector.

Border-cut boxes. An object crossing the edge between two windows is seen
whole in one window and cut in the other; the cut box can overlap the whole
one with an IoU far below any NMS threshold (a 3 px sliver of a 12 px object
has IoU 0.25), so NMS alone leaves duplicates. Let ``ov`` be the smallest
overlap of two neighbouring windows and ``m`` the ``border_margin``: every
object whose side is at most ``ov - 2 m`` lies, in some window, at least
``m`` px away from every edge of that window that is inside the image (the
windows' safe zones overlap by ``ov - 2 m``). So a box that comes within
``m`` px of an inner window edge and is at most ``ov - 2 m`` long across that
edge is a cut view of an object that another window sees whole, and is
dropped. Longer boxes are kept (their object may be whole in no window;
NMS and the optional whole-image pass deal with them). Edges on the image
border are never inner edges.

Only boxes are merged; instance masks of the windows are dropped.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData

__all__ = [
    'get_windows', 'inference_detector_batched', 'predict_windows',
    'merge_predictions', 'sliced_inference', 'min_window_overlap',
    'filter_border_boxes'
]

Predictor = Callable[[List[np.ndarray]], List[InstanceData]]


def get_windows(height: int, width: int, slice_size: Sequence[int],
                overlap_ratio: float) -> np.ndarray:
    """Windows ``(N, 4)`` as ``x1, y1, x2, y2`` (int) covering the image.

    Args:
        height, width (int): Image size.
        slice_size (int | (h, w)): Window size; windows are cut to the image
            when it is smaller.
        overlap_ratio (float): Overlap of neighbouring windows as a fraction
            of the window size, in ``[0, 1)``.
    """
    from sahi.slicing import get_slice_bboxes
    if isinstance(slice_size, int):
        slice_size = (slice_size, slice_size)
    sh, sw = (int(s) for s in slice_size)
    if sh <= 0 or sw <= 0:
        raise ValueError(f'slice size must be positive, got {slice_size}')
    if not 0 <= overlap_ratio < 1:
        raise ValueError(f'overlap ratio must be in [0, 1), got '
                         f'{overlap_ratio}')
    windows = get_slice_bboxes(
        height, width, slice_height=min(sh, height),
        slice_width=min(sw, width), auto_slice_resolution=False,
        overlap_height_ratio=overlap_ratio, overlap_width_ratio=overlap_ratio)
    # SAHI can emit the same last window twice when the grid ends exactly
    # on the border; keep the first of each
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    _, first = np.unique(windows, axis=0, return_index=True)
    return windows[np.sort(first)]


def min_window_overlap(windows: np.ndarray) -> Tuple[float, float]:
    """Smallest overlap (x, y) in px between neighbouring windows of the
    grid; ``inf`` along an axis with a single row / column."""
    out = []
    for lo, hi in ((0, 2), (1, 3)):
        spans = np.unique(windows[:, [lo, hi]], axis=0)
        spans = spans[np.argsort(spans[:, 0])]
        if len(spans) < 2:
            out.append(math.inf)
        else:
            out.append(float((spans[:-1, 1] - spans[1:, 0]).min()))
    return tuple(out)


def filter_border_boxes(bboxes: torch.Tensor, window: Sequence[int],
                        image_shape: Tuple[int, int], overlap: Tuple[float,
                                                                     float],
                        margin: float) -> torch.Tensor:
    """Keep-mask of the boxes (window coordinates, clipped to the window)
    that are not border-cut views; see the module docstring.

    Args:
        bboxes (Tensor): ``(n, 4)`` boxes in window coordinates.
        window (x1, y1, x2, y2): The window in the image.
        image_shape (h, w): The image size.
        overlap (ox, oy): Smallest overlap of neighbouring windows.
        margin (float): Distance in px to an inner edge that counts as
            touching it.
    """
    x1, y1, x2, y2 = (int(v) for v in window)
    h, w = image_shape
    ww, wh = x2 - x1, y2 - y1
    keep = torch.ones(len(bboxes), dtype=torch.bool, device=bboxes.device)
    bw = bboxes[:, 2] - bboxes[:, 0]
    bh = bboxes[:, 3] - bboxes[:, 1]
    ox, oy = overlap
    # (is the edge inside the image, box touches it, box short enough)
    edges = (
        (x1 > 0, bboxes[:, 0] <= margin, bw <= ox - 2 * margin),
        (x2 < w, bboxes[:, 2] >= ww - margin, bw <= ox - 2 * margin),
        (y1 > 0, bboxes[:, 1] <= margin, bh <= oy - 2 * margin),
        (y2 < h, bboxes[:, 3] >= wh - margin, bh <= oy - 2 * margin),
    )
    for inner, touches, short in edges:
        if inner:
            keep &= ~(touches & short)
    return keep


def predict_windows(img: np.ndarray,
                    predict: Predictor,
                    windows: np.ndarray,
                    batch_size: int = 4,
                    border_margin: Optional[float] = 2.,
                    progress: Optional[Callable[[int], None]] = None
                    ) -> InstanceData:
    """Predict every window of ``img``; boxes in image coordinates.

    Args:
        img (ndarray): ``(H, W, C)`` image, as the predictor expects it
            (BGR for MMDetection models).
        predict (callable): list of window images -> list of
            :class:`InstanceData` with ``bboxes`` (window coordinates),
            ``scores`` and ``labels``.
        windows (ndarray): ``(N, 4)`` windows (see :func:`get_windows`).
        batch_size (int): Windows per ``predict`` call.
        border_margin (float, optional): Border-cut filtering margin in px
            (module docstring); ``None`` keeps every box.
        progress (callable, optional): Called with the number of windows
            done after each batch.

    Returns:
        InstanceData: ``bboxes``, ``scores``, ``labels`` of all windows
        (not merged), plus ``window_ids``.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    h, w = img.shape[:2]
    overlap = min_window_overlap(windows)
    parts = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        crops = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in batch]
        preds = predict(crops)
        if len(preds) != len(crops):
            raise RuntimeError(f'the predictor returned {len(preds)} '
                               f'results for {len(crops)} windows')
        for k, (pred, window) in enumerate(zip(preds, batch)):
            x1, y1, x2, y2 = (int(v) for v in window)
            bboxes = pred.bboxes.detach().float().reshape(-1, 4).clone()
            bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, x2 - x1)
            bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, y2 - y1)
            keep = torch.ones(len(bboxes), dtype=torch.bool,
                              device=bboxes.device)
            if border_margin is not None:
                keep = filter_border_boxes(bboxes, window, (h, w), overlap,
                                           border_margin)
            bboxes = bboxes[keep] + bboxes.new_tensor([x1, y1, x1, y1])
            parts.append(InstanceData(
                bboxes=bboxes,
                scores=pred.scores.detach().float().reshape(-1)[keep],
                labels=pred.labels.detach().reshape(-1)[keep].long(),
                window_ids=torch.full((len(bboxes), ), start + k,
                                      dtype=torch.long,
                                      device=bboxes.device)))
        if progress is not None:
            progress(len(batch))
    if not parts:
        return _empty_instances()
    return InstanceData.cat(parts)


def _empty_instances(device='cpu') -> InstanceData:
    return InstanceData(
        bboxes=torch.zeros((0, 4), device=device),
        scores=torch.zeros((0, ), device=device),
        labels=torch.zeros((0, ), dtype=torch.long, device=device))


def merge_predictions(parts: Sequence[InstanceData],
                      iou_thr: float = 0.5,
                      class_agnostic: bool = False,
                      max_dets: Optional[int] = 1000,
                      nms_type: str = 'nms') -> InstanceData:
    """Merge predictions in image coordinates with mmcv's ``batched_nms``.

    Args:
        parts (list[InstanceData]): e.g. the windows' predictions and the
            whole-image pass, each with ``bboxes``, ``scores``, ``labels``.
        iou_thr (float): NMS IoU threshold.
        class_agnostic (bool): Suppress across classes.
        max_dets (int, optional): Keep the best ``max_dets`` after NMS.
        nms_type (str): An mmcv NMS type (``'nms'``, ``'soft_nms'``).

    Returns:
        InstanceData: ``bboxes``, ``scores``, ``labels``, sorted by score.
    """
    from mmcv.ops import batched_nms
    keys = ('bboxes', 'scores', 'labels')
    parts = [InstanceData(**{k: p.get(k) for k in keys}) for p in parts]
    parts = [p for p in parts if len(p) > 0]
    if not parts:
        return _empty_instances()
    merged = InstanceData.cat(parts)
    dets, keep = batched_nms(
        merged.bboxes, merged.scores, merged.labels,
        dict(type=nms_type, iou_threshold=iou_thr),
        class_agnostic=class_agnostic)
    merged = merged[keep]
    # soft-NMS rescored the kept boxes
    merged.scores = dets[:, -1]
    if max_dets is not None and len(merged) > max_dets:
        merged = merged[:max_dets]
    return merged


def inference_detector_batched(model: torch.nn.Module,
                               imgs: Sequence[np.ndarray],
                               test_pipeline=None) -> list:
    """MMDetection's ``inference_detector`` on a batch of in-memory images
    per forward pass: the config's test pipeline (first step replaced by
    ``LoadImageFromNDArray``), then one ``model.test_step``.

    Args:
        model: A detector from :func:`mmdet.apis.init_detector`.
        imgs (list[ndarray]): BGR images (any sizes; the data preprocessor
            pads the batch).
        test_pipeline (Compose, optional): Built pipeline to reuse.

    Returns:
        list[DetDataSample]: One per image, boxes in that image's
        coordinates.
    """
    if test_pipeline is None:
        test_pipeline = build_ndarray_test_pipeline(model.cfg)
    data = [test_pipeline(dict(img=img, img_id=0)) for img in imgs]
    batch = dict(inputs=[d['inputs'] for d in data],
                 data_samples=[d['data_samples'] for d in data])
    with torch.no_grad():
        return model.test_step(batch)


def build_ndarray_test_pipeline(cfg):
    """The config's test pipeline reading ``results['img']`` (an ndarray),
    as :func:`mmdet.apis.inference_detector` builds it."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipeline = get_test_pipeline_cfg(cfg.copy())
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    return Compose(pipeline)


def detector_predictor(model: torch.nn.Module) -> Predictor:
    """A :data:`Predictor` running ``model`` with
    :func:`inference_detector_batched` (pipeline built once)."""
    pipeline = build_ndarray_test_pipeline(model.cfg)

    def predict(imgs: List[np.ndarray]) -> List[InstanceData]:
        results = inference_detector_batched(model, imgs, pipeline)
        return [r.pred_instances for r in results]

    return predict


def sliced_inference(model_or_predictor,
                     img: np.ndarray,
                     slice_size: Sequence[int] = (640, 640),
                     overlap_ratio: float = 0.25,
                     batch_size: int = 4,
                     whole_image: bool = False,
                     border_margin: Optional[float] = 2.,
                     iou_thr: float = 0.5,
                     class_agnostic: bool = False,
                     max_dets: Optional[int] = 1000,
                     return_parts: bool = False):
    """Detect objects in a large image window by window.

    Args:
        model_or_predictor: An MMDetection detector (from
            ``init_detector``) or a :data:`Predictor`.
        img (ndarray): ``(H, W, 3)`` BGR image.
        slice_size (int | (h, w)): Window size in image pixels.
        overlap_ratio (float): Window overlap as a fraction of its size.
        batch_size (int): Windows per forward pass.
        whole_image (bool): Also predict the whole image (through the
            config's test pipeline) and merge it in: keeps objects too big
            for a window.
        border_margin (float, optional): See the module docstring; ``None``
            disables the border-cut filter.
        iou_thr (float): IoU threshold of the merging NMS.
        class_agnostic (bool): Class-agnostic merging NMS.
        max_dets (int, optional): Detections kept per image.
        return_parts (bool): Also return the unmerged ``'windows'`` and
            ``'whole'`` predictions and the ``'windows_xyxy'``.

    Returns:
        InstanceData (or ``(InstanceData, dict)``): boxes in image
        coordinates, sorted by score.
    """
    if isinstance(model_or_predictor, torch.nn.Module):
        predict = detector_predictor(model_or_predictor)
    else:
        predict = model_or_predictor
    h, w = img.shape[:2]
    windows = get_windows(h, w, slice_size, overlap_ratio)
    tiles = predict_windows(img, predict, windows, batch_size, border_margin)
    parts: Dict[str, object] = dict(windows=tiles, windows_xyxy=windows)
    to_merge = [tiles]
    if whole_image:
        whole = predict([img])[0]
        parts['whole'] = whole
        to_merge.append(whole)
    merged = merge_predictions(to_merge, iou_thr, class_agnostic, max_dets)
    return (merged, parts) if return_parts else merged


# ----------------------------------------------------------------- COCO I/O
def coco_category_ids(classes: Sequence[str], coco_categories: list
                      ) -> List[int]:
    """COCO category id of each model class (matched by name)."""
    by_name = {c['name']: c['id'] for c in coco_categories}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(
            f'model classes {missing} are not categories of the annotation '
            f'file ({sorted(by_name)}); the model must be trained on the '
            'same classes')
    return [by_name[c] for c in classes]


def to_coco_results(instances: InstanceData, image_id: int,
                    cat_ids: Sequence[int]) -> List[dict]:
    """COCO result entries (``bbox`` as x, y, w, h) of one image."""
    out = []
    bboxes = instances.bboxes.cpu().numpy().astype(float)
    scores = instances.scores.cpu().numpy().astype(float)
    labels = instances.labels.cpu().numpy()
    for (x1, y1, x2, y2), score, label in zip(bboxes, scores, labels):
        out.append(dict(image_id=int(image_id),
                        category_id=int(cat_ids[int(label)]),
                        bbox=[round(x1, 2), round(y1, 2),
                              round(x2 - x1, 2), round(y2 - y1, 2)],
                        score=round(float(score), 5)))
    return out


def coco_evaluate(ann_file: str, predictions: Dict[int, InstanceData],
                  image_shapes: Dict[int, Tuple[int, int]],
                  classes: Sequence[str],
                  max_dets: int = 1000) -> Dict[str, float]:
    """COCO box metrics of ``predictions`` (image id -> instances).

    Uses :class:`mmincnext.evaluation.SmallObjectCocoMetric` when available
    (mmdet's :class:`CocoMetric` otherwise). COCO's ``mAP`` keys count the
    best 100 detections per image and class, which caps recall on images
    with more objects of a class than that (the large images hold
    hundreds); the fine bins
    ``all`` (every size), ``vtiny`` (< 8 px), ``tiny`` (8-16 px) and
    ``small`` (16-32 px) are computed with ``max_dets`` detections per
    image instead.
    """
    try:
        from mmincnext.evaluation import (DEFAULT_FINE_BINS,
                                          SmallObjectCocoMetric)
    except ImportError:  # the fine-bin metric is not available
        SmallObjectCocoMetric = None
    if SmallObjectCocoMetric is not None:
        bins = dict(all=(0, 1e5))
        bins.update(DEFAULT_FINE_BINS)
        metric = SmallObjectCocoMetric(
            ann_file=ann_file, metric='bbox', fine_bins=bins,
            fine_max_dets=max_dets)
    else:
        from mmdet.evaluation import CocoMetric
        metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=tuple(classes))
    for img_id, inst in predictions.items():
        metric.process({}, [dict(
            img_id=img_id, ori_shape=image_shapes[img_id],
            pred_instances=dict(bboxes=inst.bboxes, scores=inst.scores,
                                labels=inst.labels))])
    return metric.evaluate(len(predictions))
