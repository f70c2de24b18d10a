"""Which library runs the backbone's 1x1-conv GEMMs when autograd is on
(training, or inference with gradients) on the CPU.

PyTorch sends ``F.linear`` on the ``(N, H, W, C)`` view to the BLAS (MKL on
x86 wheels) and a 1x1 ``Conv2d`` on channels-last NCHW to oneDNN, forward
and backward. Which is faster depends on the CPU: MKL's sgemm is fast on
Intel and much slower than oneDNN on AMD. :func:`gemm_library` decides by
timing both on one representative MLP layer (forward and backward) on the
machine it runs on, once per machine, thread count and torch version: the
choice is kept in ``$MMINCNEXT_CACHE/gemm_library.json`` (default
``~/.cache/mmincnext``), so that every process on the machine takes the
same path and gives the same bits (a resumed run, the ranks of a job,
where two timings close to each other could otherwise differ).
``MMINCNEXT_GEMM=mkl|onednn`` forces a choice (to reproduce another
machine's path); deleting the file measures again. Inference without
autograd has its own dispatch (:mod:`mmincnext.ops.inference`).
"""
import functools
import json
import os
import platform
import time
import warnings

import torch
import torch.nn.functional as F

__all__ = ['gemm_library', 'onednn_mlp_applies', 'GEMM_LIBRARIES', 'ENV_VAR']

GEMM_LIBRARIES = ('mkl', 'onednn')
ENV_VAR = 'MMINCNEXT_GEMM'
CACHE_ENV_VAR = 'MMINCNEXT_CACHE'


def _time(fn, rounds: int) -> float:
    best = float('inf')
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _measured() -> str:
    """Times the forward and backward GEMMs of both paths, called directly
    without autograd, so that the measurement records nothing in the
    caller's autograd context (it may run inside a checkpointed block's
    forward pass, whose saved tensors must match its recomputation)."""
    if not torch.backends.mkldnn.is_available():
        return 'mkl'
    gen = torch.Generator().manual_seed(0)
    # a stage-3 MLP layer of InceptionNeXt-T at batch 8, 224 px
    x = torch.randn(8, 384, 14, 14, generator=gen).contiguous(
        memory_format=torch.channels_last)
    w = torch.randn(1536, 384, 1, 1, generator=gen).contiguous(
        memory_format=torch.channels_last)
    rows, w2d = x.permute(0, 2, 3, 1).reshape(-1, 384), w.flatten(1)
    grad_rows = torch.ones(rows.shape[0], 1536)
    grad = grad_rows.view(8, 14, 14, 1536).permute(0, 3, 1, 2)

    def blas():  # F.linear's forward and backward: the BLAS's mm
        torch.mm(rows, w2d.t()), torch.mm(grad_rows, w2d)
        torch.mm(grad_rows.t(), rows)

    def onednn():  # a 1x1 Conv2d's forward and backward: oneDNN
        F.conv2d(x, w)
        torch.ops.aten.convolution_backward(grad, x, w, None, [1, 1],
                                            [0, 0], [1, 1], False, [0, 0],
                                            1, [True, True, False])

    with torch.no_grad():
        blas(), onednn()  # warm-up
        t_blas = t_onednn = float('inf')
        for _ in range(3):  # interleaved
            t_blas = min(t_blas, _time(blas, 1))
            t_onednn = min(t_onednn, _time(onednn, 1))
    return 'onednn' if t_onednn < t_blas else 'mkl'


def choices_file() -> str:
    """The file that keeps the measured choices of this machine."""
    root = os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.path.expanduser('~'), '.cache', 'mmincnext')
    return os.path.join(root, 'gemm_library.json')


def _machine_key(threads: int) -> str:
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), model)
    except OSError:
        pass
    return f'{model} | {threads} threads | torch {torch.__version__}'


def _read_choices(path: str) -> dict:
    try:
        with open(path) as f:
            choices = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        warnings.warn(f'{path}: unreadable ({e}); measuring again')
        return {}
    if not isinstance(choices, dict):
        warnings.warn(f'{path}: not a JSON object; measuring again')
        return {}
    return choices


def _warn_not_kept(path: str, error: OSError):
    warnings.warn(f'{path}: cannot keep the GEMM library choice ({error}); '
                  'measured for this process only')


@functools.lru_cache(maxsize=None)
def _chosen(threads: int) -> str:
    """The machine's kept choice for ``threads``, or a new measurement,
    kept; under a lock where the platform has one (``fcntl``), so that
    processes starting together measure once and agree."""
    path, key = choices_file(), _machine_key(threads)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path + '.lock', 'a')
    except OSError as e:
        _warn_not_kept(path, e)
        return _measured()
    with lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        choices = _read_choices(path)
        if choices.get(key) in GEMM_LIBRARIES:
            return choices[key]
        choices[key] = _measured()
        try:
            with open(path + '.tmp', 'w') as f:
                json.dump(choices, f, indent=1, sort_keys=True)
            os.replace(path + '.tmp', path)
        except OSError as e:
            _warn_not_kept(path, e)
        return choices[key]


def gemm_library() -> str:
    """``'mkl'`` (``F.linear`` on the channels-last view: the BLAS) or
    ``'onednn'`` (1x1 ``Conv2d``): the faster on this CPU at the current
    thread count, measured once per machine (kept in
    :func:`choices_file`), or ``$MMINCNEXT_GEMM``.

    Raises:
        ValueError: ``$MMINCNEXT_GEMM`` is set to something else.
    """
    forced = os.environ.get(ENV_VAR)
    if forced:
        if forced not in GEMM_LIBRARIES:
            raise ValueError(f'{ENV_VAR}={forced!r}: must be one of '
                             f'{GEMM_LIBRARIES}')
        return forced
    return _chosen(torch.get_num_threads())


def onednn_mlp_applies(x: torch.Tensor) -> bool:
    """Whether a block's MLP with autograd runs as 1x1 convs (oneDNN) on
    ``x``: a CPU tensor, not under ``torch.compile`` or tracing (which keep
    one graph), and oneDNN is this machine's faster library."""
    return (x.device.type == 'cpu' and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and gemm_library() == 'onednn')
