"""Multi-class NMS that exports as one ONNX ``NonMaxSuppression`` node.

``torch.ops.mmincnext.multiclass_nms`` is a custom op with ONNX's semantics:
for every image and class, the boxes whose score is above
``score_threshold`` go through greedy NMS (a box is suppressed by a kept box
of the same class with IoU above ``iou_threshold``), at most
``max_per_class`` are kept, and the result is the ``(S, 3)`` int64 list of
``(image, class, box)`` triples. In eager mode it runs mmcv's
``batched_nms`` (the NMS MMDetection's heads use) one class at a time;
MMDetection runs it with class-offset boxes below 10000 boxes, whose
rounding can turn an NMS decision at an IoU of the threshold to about 1e-5
the other way. When exported with
:data:`ONNX_TRANSLATIONS` it becomes ``NonMaxSuppression``, which ONNX
Runtime, OpenVINO and TensorRT implement natively.

Why by hand: PyTorch has no exportable NMS (torchvision's is not installed
here and exports through the TorchScript exporter only), and MMDeploy's
rewrites target that deprecated exporter.
"""
import torch
from torch import Tensor

__all__ = ['multiclass_nms', 'select_top', 'ONNX_TRANSLATIONS']


@torch.library.custom_op('mmincnext::multiclass_nms', mutates_args=())
def multiclass_nms(boxes: Tensor, scores: Tensor, max_per_class: int,
                   iou_threshold: float, score_threshold: float) -> Tensor:
    """Per-class NMS of a batch.

    Args:
        boxes (Tensor): ``(N, M, 4)`` boxes as ``x1, y1, x2, y2``.
        scores (Tensor): ``(N, C, M)`` score of every box for every class.
        max_per_class (int): Boxes kept per image and class.
        iou_threshold (float): Suppress above this IoU.
        score_threshold (float): Only boxes scoring above it take part.

    Returns:
        Tensor: ``(S, 3)`` int64 ``(image, class, box)`` of the kept boxes.
    """
    from mmcv.ops import batched_nms
    out = [boxes.new_zeros((0, 3), dtype=torch.long)]
    for b in range(scores.shape[0]):
        cls, idx = torch.nonzero(scores[b] > score_threshold, as_tuple=True)
        if idx.numel() == 0:
            continue
        # split_thr=0: one NMS per class, never the offset trick, whose
        # coordinates shifted by class * (max + 1) lose fp32 precision
        _, keep = batched_nms(boxes[b, idx].float(),
                              scores[b, cls, idx].float(), cls,
                              dict(iou_threshold=iou_threshold, split_thr=0))
        cls, idx = cls[keep], idx[keep]
        # at most max_per_class per class; keep is sorted by score
        rank = torch.zeros_like(cls)
        for c in cls.unique():
            sel = cls == c
            rank[sel] = torch.arange(int(sel.sum()), device=cls.device)
        ok = rank < max_per_class
        out.append(torch.stack(
            [torch.full_like(idx[ok], b), cls[ok], idx[ok]], dim=1))
    return torch.cat(out)


@multiclass_nms.register_fake
def _multiclass_nms_fake(boxes, scores, max_per_class, iou_threshold,
                         score_threshold):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, 3), dtype=torch.long)


def _multiclass_nms_onnx(boxes, scores, max_per_class: int,
                         iou_threshold: float, score_threshold: float):
    from onnxscript import opset18 as op
    return op.NonMaxSuppression(
        boxes, scores, op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]))


#: ``custom_translation_table`` for ``torch.onnx.export``.
ONNX_TRANSLATIONS = {
    torch.ops.mmincnext.multiclass_nms.default: _multiclass_nms_onnx
}


def select_top(boxes: Tensor, class_scores: Tensor, iou_threshold: float,
               max_per_img: int):
    """Class-aware NMS, then the best ``max_per_img`` boxes of each image.

    Equivalent to MMDetection's ``batched_nms`` followed by
    ``[:max_per_img]``, in static shapes: the kept ``(image, class, box)``
    scores are scattered into a zero ``(N, C * M)`` map and ``topk`` picks
    the best, so the outputs always have ``max_per_img`` rows.

    Args:
        boxes (Tensor): ``(N, M, 4)`` candidate boxes.
        class_scores (Tensor): ``(N, C, M)``; 0 for "not a candidate".
        iou_threshold (float): NMS IoU threshold.
        max_per_img (int): Rows of the outputs.

    Returns:
        tuple: ``boxes (N, K, 4)``, ``scores (N, K)``, ``labels (N, K)``
        (int64), sorted by score; unused rows have score 0, box 0 and
        label -1.
    """
    num, num_classes, num_boxes = class_scores.shape
    keep = torch.ops.mmincnext.multiclass_nms(boxes, class_scores,
                                              max_per_img, iou_threshold, 0.)
    img, cls, box = keep.unbind(1)
    kept = class_scores.new_zeros((num, num_classes * num_boxes + max_per_img))
    kept = kept.index_put((img, cls * num_boxes + box),
                          class_scores[img, cls, box])
    scores, flat = kept.topk(max_per_img, dim=1)
    flat = flat.clamp(max=num_classes * num_boxes - 1)
    labels = torch.div(flat, num_boxes, rounding_mode='floor')
    idx = flat - labels * num_boxes
    used = scores > 0
    out_boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
    out_boxes = out_boxes * used[..., None].to(out_boxes.dtype)
    labels = torch.where(used, labels, torch.full_like(labels, -1))
    return out_boxes, scores, labels
