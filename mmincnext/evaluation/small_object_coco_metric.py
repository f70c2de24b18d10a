"""COCO metric with finer small-object bins beside the standard ones.

COCO's ``mAP_s`` pools every object under 32x32 px. Tiny-object benchmarks
(AI-TOD) split that range by the square root of the area into *very tiny*
(< 8 px), *tiny* (8-16 px) and *small* (16-32 px). :class:`SmallObjectCocoMetric`
is MMDetection's :class:`~mmdet.evaluation.CocoMetric` (all its keys and
options unchanged) plus, for ``bbox`` and ``segm``, the AP and AR of each of
these bins::

    coco/bbox_mAP_vtiny   AP over IoU .50:.95, sqrt(area) in [0, 8]
    coco/bbox_mAP_tiny    ...                  sqrt(area) in [8, 16]
    coco/bbox_mAP_small   ...                  sqrt(area) in [16, 32]
    coco/bbox_AR_vtiny    AR (100 detections per image) of the same bins
    ...                   (and segm_* for instance masks)

The bins go through pycocotools' own ``COCOeval`` (same matching, crowd and
``maxDets=100`` rules as the standard numbers), only with other
``params.areaRng``; bounds are inclusive on both ends, as COCO's own ranges
are. A bin without any ground truth reports ``-1``, as COCOeval does.
Note that ``mAP_small`` (16-32 px) is *not* COCO's ``mAP_s`` (0-32 px).
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmdet.datasets.api_wrappers import COCOeval
from mmdet.evaluation.metrics import CocoMetric
from mmengine.fileio import load
from mmengine.logging import MMLogger

from mmincnext.registry import METRICS, register_everywhere

__all__ = ['SmallObjectCocoMetric', 'DEFAULT_FINE_BINS']

#: name -> (min, max) side length in pixels (square root of the area)
DEFAULT_FINE_BINS: Dict[str, Tuple[float, float]] = OrderedDict(
    vtiny=(0, 8), tiny=(8, 16), small=(16, 32))


@register_everywhere(METRICS)
class SmallObjectCocoMetric(CocoMetric):
    """:class:`~mmdet.evaluation.CocoMetric` plus finer small-object bins.

    Use it in a config as::

        val_evaluator = dict(type='SmallObjectCocoMetric',
                             ann_file=data_root + 'annotations/'
                             'instances_val2017.json',
                             metric=['bbox', 'segm'])

    Args:
        fine_bins (dict, optional): Bin name -> ``(min, max)`` object side
            length in pixels (``sqrt(area)``). The AP/AR of each is reported
            as ``{metric}_mAP_{name}`` / ``{metric}_AR_{name}``. Defaults to
            :data:`DEFAULT_FINE_BINS` (vtiny < 8, tiny 8-16, small 16-32).
        fine_max_dets (int): Detections per image for the bins (COCO's AP
            uses 100). Defaults to 100.
        **kwargs: Every argument of :class:`~mmdet.evaluation.CocoMetric`.
    """

    def __init__(self,
                 *args,
                 fine_bins: Optional[Dict[str, Sequence[float]]] = None,
                 fine_max_dets: int = 100,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        fine_bins = DEFAULT_FINE_BINS if fine_bins is None else fine_bins
        if not isinstance(fine_bins, dict) or not fine_bins:
            raise ValueError('fine_bins must be a non-empty dict name -> '
                             f'(min_px, max_px), got {fine_bins!r}')
        standard = {'s', 'm', 'l', '50', '75'}
        for name, rng in fine_bins.items():
            if name in standard:
                raise ValueError(
                    f'fine bin name {name!r} would clash with the standard '
                    f'COCO keys (mAP_{name}); pick another name')
            if len(rng) != 2 or not 0 <= rng[0] < rng[1]:
                raise ValueError(
                    f'fine bin {name!r}: need (min_px, max_px) with '
                    f'0 <= min < max, got {rng!r}')
        self.fine_bins = OrderedDict(
            (name, (float(lo), float(hi))) for name, (lo, hi) in
            fine_bins.items())
        self.fine_max_dets = int(fine_max_dets)
        self._fine_predictions = {}

    def results2json(self, results: Sequence[dict],
                     outfile_prefix: str) -> dict:
        """Write the result files as CocoMetric does and keep the bbox/segm
        predictions for the fine bins (the files are deleted afterwards)."""
        result_files = super().results2json(results, outfile_prefix)
        self._fine_predictions = {
            metric: load(path) for metric, path in result_files.items()
            if metric in ('bbox', 'segm') and metric in self.metrics
        }
        return result_files

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """CocoMetric's results, then the fine bins of bbox / segm."""
        self._fine_predictions = {}
        eval_results = super().compute_metrics(results)
        if self.format_only:
            return eval_results
        logger = MMLogger.get_current_instance()
        for metric in ('bbox', 'segm'):
            predictions = self._fine_predictions.get(metric)
            if not predictions:
                continue
            fine = self.evaluate_fine_bins(metric, predictions)
            eval_results.update(fine)
            logger.info(f'{metric} fine small-object bins ('
                        + ', '.join(f'{k}: {lo:g}-{hi:g}px' for k, (lo, hi)
                                    in self.fine_bins.items()) + '): '
                        + ' '.join(f'{k}={v:.3f}' for k, v in fine.items()))
        self._fine_predictions = {}
        return eval_results

    def evaluate_fine_bins(self, metric: str,
                           predictions: list) -> Dict[str, float]:
        """AP / AR per fine bin with pycocotools' COCOeval.

        Args:
            metric (str): ``'bbox'`` or ``'segm'``.
            predictions (list[dict]): COCO-format results (as written by
                :meth:`results2json`).
        """
        if metric == 'segm':
            # as CocoMetric: mask areas must come from the masks, not boxes
            predictions = [{k: v for k, v in p.items() if k != 'bbox'}
                           for p in predictions]
        coco_dt = self._coco_api.loadRes(predictions)
        coco_eval = COCOeval(self._coco_api, coco_dt, metric)
        coco_eval.params.catIds = self.cat_ids
        coco_eval.params.imgIds = self.img_ids
        coco_eval.params.iouThrs = self.iou_thrs
        coco_eval.params.maxDets = [self.fine_max_dets]
        coco_eval.params.areaRng = [[lo**2, hi**2]
                                    for lo, hi in self.fine_bins.values()]
        coco_eval.params.areaRngLbl = list(self.fine_bins)
        coco_eval.evaluate()
        coco_eval.accumulate()
        # precision: [T, R, K, A, M]; recall: [T, K, A, M]; -1 = no gt
        precision = coco_eval.eval['precision']
        recall = coco_eval.eval['recall']
        out = OrderedDict()
        for a, name in enumerate(self.fine_bins):
            p = precision[:, :, :, a, 0]
            r = recall[:, :, a, 0]
            out[f'{metric}_mAP_{name}'] = _mean_valid(p)
            out[f'{metric}_AR_{name}'] = _mean_valid(r)
        return out


def _mean_valid(values: np.ndarray) -> float:
    """COCOeval's summary of an array: mean over entries > -1, else -1."""
    valid = values[values > -1]
    return float(round(float(np.mean(valid)), 3)) if valid.size else -1.0

