from .checkpoint import (UnsafeCheckpointError, install_safe_loaders,
                         safe_torch_load)

__all__ = ['UnsafeCheckpointError', 'install_safe_loaders', 'safe_torch_load']
