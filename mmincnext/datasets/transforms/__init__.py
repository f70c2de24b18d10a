"""Data transforms (need MMDetection; imported by :mod:`mmincnext.datasets`
when mmdet is installed)."""
from .crop_to_slice import CropToSlice, window_box_visibility

__all__ = ['CropToSlice', 'window_box_visibility']
