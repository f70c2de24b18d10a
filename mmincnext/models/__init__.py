import importlib.util
import warnings

from .backbones import InceptionNeXt

__all__ = ['InceptionNeXt']

# the detector wrappers build MMDetection models and transforms: defined
# only when mmdet is installed (``import mmincnext`` works with mmseg alone)
if importlib.util.find_spec('mmdet') is not None:
    from .detectors import SlicedInferenceDetector  # noqa: F401
    __all__ += ['SlicedInferenceDetector']

# the YOLO necks subclass MMYOLO's: defined only when mmyolo (with mmdet) is
# installed and imports (mmyolo 0.6.0 refuses mmcv >= 2.1.0 at import time;
# mmincnext still works for mmdet and mmseg then)
if importlib.util.find_spec('mmdet') is not None and \
        importlib.util.find_spec('mmyolo') is not None:
    try:
        from .necks import C2fMetaNeXt, YOLOv8InceptionPAFPN  # noqa: F401
    except (ImportError, AssertionError) as err:
        warnings.warn(f'mmyolo is installed but cannot be imported ({err}): '
                      'YOLOv8InceptionPAFPN is not registered')
    else:
        __all__ += ['C2fMetaNeXt', 'YOLOv8InceptionPAFPN']
