"""Compiled CPU kernels of mmincnext (optional).

``mmincnext._ext`` is built from ``mmincnext/ops/csrc`` by ``setup.py``
(``pip install -e .``, which ``make install`` runs) on x86-64 with a C++
compiler. Without it, or on a CPU without AVX-512, every model runs on
PyTorch's own kernels with the same results; :func:`fused_mlp_available`
tells which.
"""
import functools
import importlib
import importlib.util
import warnings


def _load_extension():
    if importlib.util.find_spec('mmincnext._ext') is None:
        return None  # not built: a pure-Python install
    try:
        return importlib.import_module('mmincnext._ext')
    except ImportError as e:  # built, but e.g. against another torch
        warnings.warn(
            f'mmincnext._ext does not load ({e}); rebuild it with '
            '`pip install --no-build-isolation -e .` or `python setup.py '
            "build_ext --inplace`. Falling back to PyTorch's kernels.")
        return None


_ext = _load_extension()


@functools.lru_cache(maxsize=None)
def fused_mlp_available() -> bool:
    """Whether :func:`fused_mlp` can run: the extension is built and the CPU
    has AVX-512 (F, DQ) and FMA."""
    return _ext is not None and _ext.cpu_supported()


def fused_mlp(x, shortcut, fc1_weight, fc1_bias, fc2_weight, fc2_bias):
    """``shortcut + fc2(gelu(fc1(x)))`` in one pass over row blocks whose
    hidden activations stay in L2 (CPU inference, float32).

    Args:
        x (Tensor): ``[M, C]`` input rows, contiguous.
        shortcut (Tensor): ``[M, C]`` residual rows, contiguous.
        fc1_weight (Tensor): ``[H, C]``; ``H`` and ``C`` multiples of 16.
        fc1_bias (Tensor): ``[H]``.
        fc2_weight (Tensor): ``[C, H]``.
        fc2_bias (Tensor): ``[C]``.

    Returns:
        Tensor: ``[M, C]``, equal to the unfused computation within float32
        rounding (GELU is the exact erf form).
    """
    if not fused_mlp_available():
        raise RuntimeError(
            'mmincnext.ops.fused_mlp needs the compiled extension '
            '(pip install --no-build-isolation -e .) and an AVX-512 CPU')
    return _ext.fused_mlp(x, shortcut, fc1_weight, fc1_bias, fc2_weight,
                          fc2_bias)
