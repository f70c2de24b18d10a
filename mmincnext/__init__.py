"""mmincnext: InceptionNeXt as an OpenMMLab 2.0 backbone.

``import mmincnext`` (or ``custom_imports=dict(imports=['mmincnext'])`` in a
config) registers the backbone in MMEngine's root registry, where MMDetection
and MMSegmentation both find it, and makes every checkpoint load go through
``torch.load(weights_only=True)``.
"""
from .utils import install_safe_loaders
from .version import __version__, version_info

install_safe_loaders()

from . import models  # noqa: E402,F401  (registers the backbone)

__all__ = ['__version__', 'version_info']
