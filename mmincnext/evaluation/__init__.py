"""Evaluation utilities. ``SmallObjectCocoMetric`` subclasses MMDetection's
CocoMetric, so it is only defined when mmdet is installed (``import
mmincnext`` keeps working with mmseg alone)."""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmdet') is not None:
    from .small_object_coco_metric import (DEFAULT_FINE_BINS,  # noqa: F401
                                           SmallObjectCocoMetric)
    __all__ += ['SmallObjectCocoMetric', 'DEFAULT_FINE_BINS']
