"""mmincnext: InceptionNeXt as an OpenMMLab 2.0 backbone.

``import mmincnext`` (or ``custom_imports=dict(imports=['mmincnext'])`` in a
config) registers the backbone, the layer-wise lr-decay optimizer constructor,
the small-object COCO metric and the sliced-training dataset wrapper
(``SlicedDataset`` with its ``CropToSlice`` transform) in MMEngine's root
registries, where MMDetection and MMSegmentation both find them, and makes
every checkpoint load go through ``torch.load(weights_only=True)``.
"""
from .utils import install_safe_loaders
from .version import __version__, version_info

install_safe_loaders()

# registration side effects; each subpackage guards its mmdet/mmseg imports
from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__', 'version_info']
