"""Deployment: ONNX export of detectors with NMS in the graph
(:mod:`.export`) and running the files in ONNX Runtime or OpenVINO
(:mod:`.runtime`). Needs MMDetection; not imported by ``import mmincnext``.
"""
from .export import (METADATA_KEY, ExportableDetector, default_input_size,
                     export_metadata, export_onnx, head_kind,
                     load_detector)
from .nms import multiclass_nms, select_top
from .runtime import OnnxDetector, read_metadata

__all__ = [
    'METADATA_KEY', 'ExportableDetector', 'OnnxDetector',
    'default_input_size', 'export_metadata', 'export_onnx', 'head_kind',
    'load_detector', 'multiclass_nms', 'read_metadata', 'select_top'
]
