from .batchnorm import bn_scale_shift
from .checkpoint import (UnsafeCheckpointError, install_safe_loaders,
                         safe_torch_load)

__all__ = [
    'UnsafeCheckpointError', 'bn_scale_shift', 'install_safe_loaders',
    'safe_torch_load'
]
