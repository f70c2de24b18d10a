from .sliced_inference_detector import SlicedInferenceDetector

__all__ = ['SlicedInferenceDetector']
