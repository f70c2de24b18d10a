"""High-level inference helpers (need MMDetection; not imported by
``import mmincnext``)."""
from .sliced_inference import (coco_evaluate, detector_predictor,
                               filter_border_boxes, get_windows,
                               inference_detector_batched, merge_predictions,
                               min_window_overlap, predict_windows,
                               sliced_inference, to_coco_results)

__all__ = [
    'coco_evaluate', 'detector_predictor', 'filter_border_boxes',
    'get_windows', 'inference_detector_batched', 'merge_predictions',
    'min_window_overlap', 'predict_windows', 'sliced_inference',
    'to_coco_results'
]
