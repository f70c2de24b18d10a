"""Keep freed memory in the process for training and testing (glibc).

PyTorch's CPU allocator takes every tensor from ``malloc`` and gives it
back on ``free``; it keeps no cache. glibc serves blocks above its mmap
threshold (adjusted at run time, at most 32 MiB) with a fresh ``mmap`` and
unmaps them when freed, so every large activation of every step (the 4C-wide
hidden activations of a stage-0 MLP at detection or batch sizes, its
gradients) has its pages faulted in and zero-filled by the kernel again.
:func:`keep_freed_memory` raises the mmap threshold to 1 GiB and the trim
threshold to its maximum, so that freed blocks stay in the heap and are
reused; the process keeps its peak memory instead of returning it between
steps. It is what preloading jemalloc or tcmalloc gives, with glibc's own
``mallopt`` and nothing to install. ``tools/train.py`` and ``tools/test.py``
call it (through ``build_task_runner``); ``MMINCNEXT_KEEP_FREED_MEMORY=0``
turns it off. docs/speed.md has the measurements.
"""
import ctypes
import ctypes.util
import functools
import os

__all__ = ['keep_freed_memory', 'freed_memory_kept', 'ENV_VAR']

ENV_VAR = 'MMINCNEXT_KEEP_FREED_MEMORY'

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 2**30
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
_applied = False  # in this process


@functools.lru_cache(maxsize=None)
def _glibc():
    """glibc's ``mallopt``, or None on another C library or system."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], \
        ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds so that freed blocks are
    reused instead of being returned to the kernel (process-wide; later
    allocations only).

    Returns:
        bool: Whether the settings were applied: False where
        ``$MMINCNEXT_KEEP_FREED_MEMORY`` is ``0``, the C library is not
        glibc, or glibc refuses a value.

    Raises:
        ValueError: ``$MMINCNEXT_KEEP_FREED_MEMORY`` is neither ``0`` nor
            ``1``.
    """
    global _applied
    setting = os.environ.get(ENV_VAR, '1')
    if setting not in ('0', '1'):
        raise ValueError(f'{ENV_VAR}={setting!r}: must be 0 or 1')
    mallopt = _glibc()
    if setting == '0' or mallopt is None:
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                   and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _applied = _applied or applied
    return applied


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has applied its settings in this
    process (which changes which training paths are faster:
    :func:`mmincnext.ops.gemm_library.training_mlp_path`)."""
    return _applied
