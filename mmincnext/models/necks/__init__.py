"""Necks for MMYOLO detectors (need mmyolo): ``YOLOv8InceptionPAFPN`` and its
``C2fMetaNeXt`` layer."""
from .yolov8_inception_pafpn import C2fMetaNeXt, YOLOv8InceptionPAFPN

__all__ = ['C2fMetaNeXt', 'YOLOv8InceptionPAFPN']
