"""Datasets, data transforms and dataset converters. ``SlicedDataset``
(sliced training) and ``CropToSlice`` work on MMDetection's boxes and
masks, so they are only defined when mmdet is installed (``import
mmincnext`` keeps working with mmseg alone); the converters need neither."""
import importlib.util

from . import converters  # noqa: F401

__all__ = []

if importlib.util.find_spec('mmdet') is not None:
    from .sliced_dataset import SlicedDataset  # noqa: F401
    from .transforms import CropToSlice, window_box_visibility  # noqa: F401
    __all__ += ['SlicedDataset', 'CropToSlice', 'window_box_visibility']
