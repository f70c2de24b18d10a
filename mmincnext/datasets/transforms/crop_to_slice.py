"""``CropToSlice``: crop a sample to the window chosen by ``SlicedDataset``.

The box arithmetic lives in :func:`window_box_visibility`, which both the
transform and :class:`~mmincnext.datasets.SlicedDataset` (when it decides
from the annotations alone which windows hold objects) use, so that the
dataset's choice of windows and the crop of every sample agree exactly.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.structures.bbox import BaseBoxes

from mmincnext.registry import TRANSFORMS, register_everywhere

__all__ = ['CropToSlice', 'window_box_visibility']


def window_box_visibility(bboxes: np.ndarray, windows: np.ndarray,
                          image_shape: Optional[Tuple[int, int]] = None
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes cut to windows, in window coordinates, and how much is seen.

    The steps are those of mmdet's ``RandomCrop._crop_data`` (translate by
    the window's offset, clip to the window, ``is_inside``), done in
    float32 as mmdet's boxes are, for every window at once.

    Args:
        bboxes (ndarray): ``(n, 4)`` boxes ``x1, y1, x2, y2`` in image
            coordinates.
        windows (ndarray): ``(m, 4)`` windows ``x1, y1, x2, y2`` (int).
        image_shape (h, w), optional: The image size. Boxes are clipped to
            it first, so that the part of an annotation outside the image
            does not count as hidden.

    Returns:
        tuple: ``clipped`` ``(m, n, 4)`` float32 boxes in the coordinates of
        each window; ``visible`` ``(m, n)`` float32 fraction of each box's
        area (inside the image) that lies in the window (1 for a zero-area
        box in the window); ``inside`` ``(m, n)`` bool, mmdet's
        ``is_inside`` of the clipped box (at least a line of it lies in the
        window, not just on its edge).
    """
    boxes = np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    if image_shape is not None:
        h, w = image_shape
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    offset = windows[:, None, [0, 1, 0, 1]].astype(np.float32)
    size = (windows[:, None, 2:] - windows[:, None, :2]).astype(np.float32)
    clipped = boxes[None] - offset
    clipped[..., 0::2] = clipped[..., 0::2].clip(0, size[..., 0:1])
    clipped[..., 1::2] = clipped[..., 1::2].clip(0, size[..., 1:2])
    inside = ((clipped[..., 0] < size[..., 0])
              & (clipped[..., 1] < size[..., 1])
              & (clipped[..., 2] > 0) & (clipped[..., 3] > 0))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    seen = ((clipped[..., 2] - clipped[..., 0])
            * (clipped[..., 3] - clipped[..., 1]))
    positive = np.broadcast_to(area > 0, seen.shape)
    visible = np.divide(seen, np.broadcast_to(area, seen.shape),
                        out=inside.astype(np.float32), where=positive)
    visible[~inside] = 0
    return clipped, visible, inside


@register_everywhere(TRANSFORMS)
class CropToSlice(BaseTransform):
    """Crop a sample to ``results['slice_window']``.

    :class:`~mmincnext.datasets.SlicedDataset` puts the window of each
    sample into the results; this transform, the first of the wrapper's
    pipeline, crops everything to it. mmdet's ``RandomCrop`` crops the same
    keys but picks a *random* offset (and may reject the crop), while a
    sliced sample has a *fixed* window decided by the dataset, and boxes
    cut by the window need a visibility rule (``min_visible``) that the
    dataset uses too when it picks the windows.

    - ``img`` and ``gt_seg_map`` are sliced to the window.
    - Boxes (``gt_bboxes``, mmdet ``HorizontalBoxes`` or an ``(n, 4)``
      array) are clipped to the window; boxes with nothing inside are
      removed with their labels, ignore flags, masks and instance ids, as
      ``RandomCrop`` does.
    - An object box of which less than ``results['slice_min_visible']`` of
      its area is in the window becomes an **ignore region**
      (``gt_ignore_flags`` True, clipped box and mask kept), so that a
      sliver of an object is taught neither as an object nor as
      background (see :class:`~mmincnext.datasets.SlicedDataset`).
    - Ignore regions (``gt_ignore_flags`` True) are cropped like boxes and
      stay ignore regions.
    - ``gt_masks`` (``BitmapMasks`` or ``PolygonMasks``) go through their
      own ``crop()`` (polygons are intersected with the window).
    - ``img_shape`` and ``ori_shape`` become the window's ``(h, w)``: the
      window is the sample's original image from here on. The window's
      top-left corner goes to ``slice_offset`` ``(x, y)``; add
      ``'slice_offset'`` (and ``'slice_window'``) to ``PackDetInputs``'
      ``meta_keys`` to keep them in the data samples.
    - ``homography_matrix`` is updated as ``RandomCrop`` does.

    Required Keys: ``img``, ``slice_window``; optional ``gt_bboxes``,
    ``gt_bboxes_labels``, ``gt_ignore_flags``, ``gt_masks``, ``gt_seg_map``,
    ``gt_instances_ids``, ``slice_min_visible`` (default 0: only boxes with
    nothing in the window are removed).

    Modified Keys: ``img``, ``img_shape``, ``ori_shape`` and the optional
    keys above.

    Added Keys: ``slice_offset``, ``homography_matrix``, ``gt_ignore_flags``
    (with ``gt_bboxes``, if it was missing).
    """

    def transform(self, results: dict) -> dict:
        """Crop ``results`` to its ``slice_window``.

        Args:
            results (dict): The loaded sample with ``slice_window``.

        Returns:
            dict: The cropped sample.
        """
        if 'slice_window' not in results:
            raise KeyError(
                "CropToSlice needs results['slice_window'] (x1, y1, x2, y2); "
                "use it as the first transform of SlicedDataset's pipeline")
        img = results['img']
        img_h, img_w = img.shape[:2]
        x1, y1, x2, y2 = (int(v) for v in results['slice_window'])
        if not (0 <= x1 < x2 <= img_w and 0 <= y1 < y2 <= img_h):
            raise ValueError(
                f'slice window {(x1, y1, x2, y2)} does not fit in the image '
                f'of size (h, w) = {(img_h, img_w)} '
                f'({results.get("img_path")}); are the width / height of '
                'the annotations those of the image as loaded?')
        win_h, win_w = y2 - y1, x2 - x1
        min_visible = float(results.get('slice_min_visible', 0.))

        homography = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]],
                              dtype=np.float32)
        if results.get('homography_matrix', None) is None:
            results['homography_matrix'] = homography
        else:
            results['homography_matrix'] = \
                homography @ results['homography_matrix']

        results['img'] = img[y1:y2, x1:x2, ...]
        results['img_shape'] = (win_h, win_w)
        results['ori_shape'] = (win_h, win_w)
        results['slice_offset'] = (x1, y1)

        if results.get('gt_bboxes', None) is not None:
            self._crop_instances(results, (x1, y1, x2, y2), (img_h, img_w),
                                 min_visible)
        if results.get('gt_seg_map', None) is not None:
            results['gt_seg_map'] = results['gt_seg_map'][y1:y2, x1:x2]
        return results

    @staticmethod
    def _crop_instances(results: dict, window: Sequence[int],
                        image_shape: Tuple[int, int],
                        min_visible: float) -> None:
        """Crop boxes, labels, flags, masks and ids in place."""
        bboxes = results['gt_bboxes']
        is_boxes = isinstance(bboxes, BaseBoxes)
        array = bboxes.numpy() if is_boxes else np.asarray(bboxes)
        clipped, visible, inside = window_box_visibility(
            array, np.asarray([window]), image_shape)
        clipped, visible, inside = clipped[0], visible[0], inside[0]
        keep = np.flatnonzero(inside)

        if is_boxes:
            results['gt_bboxes'] = type(bboxes)(
                clipped[keep], dtype=bboxes.dtype, device=bboxes.device)
        else:
            results['gt_bboxes'] = clipped[keep].astype(array.dtype)

        ignore = results.get('gt_ignore_flags', None)
        if ignore is None:
            ignore = np.zeros(len(array), dtype=bool)
        # an object mostly outside the window becomes an ignore region
        partial = visible < min_visible
        results['gt_ignore_flags'] = (np.asarray(ignore, dtype=bool)
                                      | partial)[keep]
        for key in ('gt_bboxes_labels', 'gt_instances_ids'):
            if results.get(key, None) is not None:
                results[key] = results[key][keep]
        if results.get('gt_masks', None) is not None:
            results['gt_masks'] = results['gt_masks'][keep].crop(
                np.asarray(window))
