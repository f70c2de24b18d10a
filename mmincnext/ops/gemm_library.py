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

The same file keeps a second choice per MLP width: whether the compiled
training MLP (:mod:`mmincnext.ops.training`) or the library's GEMMs run a
block's MLP in training (:func:`training_mlp_path`): which is faster
depends on the CPU, the width and the allocator setting (docs/speed.md has
the measurements). ``MMINCNEXT_TRAINING_MLP=kernels|library`` forces it.
A third choice per downsampling width and size: whether a stage's 2x2
stride-2 conv with autograd runs as itself (oneDNN) or as a GEMM over its
patches on the library (:func:`training_downsample_path`);
``MMINCNEXT_TRAINING_DOWNSAMPLE=patches|conv`` forces it.
"""
import functools
import json
import math
import os
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

__all__ = [
    'gemm_library', 'onednn_mlp_applies', 'training_mlp_path',
    'training_downsample_path', 'GEMM_LIBRARIES', 'ENV_VAR',
    'TRAINING_MLP_PATHS', 'TRAINING_MLP_ENV_VAR', 'TRAINING_DOWNSAMPLE_PATHS',
    'TRAINING_DOWNSAMPLE_ENV_VAR'
]

GEMM_LIBRARIES = ('mkl', 'onednn')
ENV_VAR = 'MMINCNEXT_GEMM'
TRAINING_MLP_PATHS = ('kernels', 'library')
TRAINING_MLP_ENV_VAR = 'MMINCNEXT_TRAINING_MLP'
TRAINING_DOWNSAMPLE_PATHS = ('patches', 'conv')
TRAINING_DOWNSAMPLE_ENV_VAR = 'MMINCNEXT_TRAINING_DOWNSAMPLE'
CACHE_ENV_VAR = 'MMINCNEXT_CACHE'
# The training MLP goes to the library only where it is this much faster
# (its median time at most this fraction of the kernels'): the kernels keep
# fewer activations (``pre`` alone, against ``pre`` and GELU's output), and
# where the two are level single measurements come out either way.
LIBRARY_MLP_MARGIN = 0.97
# The downsampling conv goes to the patch GEMM only where it is this much
# faster: the strided conv needs no copy of its input.
PATCH_DOWNSAMPLE_MARGIN = 0.97


def _time(fn, rounds: int) -> float:
    best = float('inf')
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _second_faster(first, second, rounds: int, margin: float) -> bool:
    """Whether ``second`` takes less than ``margin`` of ``first``'s time:
    both called without autograd, once each to warm up, then ``rounds``
    interleaved timings compared by their medians (where the two are close,
    single timings on a loaded machine come out either way)."""
    with torch.no_grad():
        first(), second()
        t_first, t_second = [], []
        for _ in range(rounds):
            t_first.append(_time(first, 1))
            t_second.append(_time(second, 1))
    return statistics.median(t_second) < margin * statistics.median(t_first)


# aten's convolution backward for the measurements' convs without padding,
# dilation or groups; stride and output mask given per call
_conv_backward = functools.partial(torch.ops.aten.convolution_backward,
                                   bias_sizes=[0], padding=[0, 0],
                                   dilation=[1, 1], transposed=False,
                                   output_padding=[0, 0], groups=1)


def _memory_setting(freed_memory_kept: bool) -> str:
    """The allocator setting as the keys of the kept choices name it."""
    return 'freed memory kept' if freed_memory_kept else 'glibc defaults'


def _kept_training_path(threads: int, what: str, freed_memory_kept: bool,
                        options: tuple, measure, suffix: str = '') -> str:
    """The kept choice of a training path, or ``measure(library)`` on this
    machine's :func:`gemm_library`, kept under ``'<machine> | <what> |
    <library> | <allocator setting><suffix>'``."""
    library = gemm_library()  # before _kept takes the file's lock
    return _kept(
        f'{_machine_key(threads)} | {what} | {library} | '
        f'{_memory_setting(freed_memory_kept)}{suffix}', options,
        lambda: measure(library))


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


def _machine_key(threads: int, cpuinfo: str = '/proc/cpuinfo') -> str:
    """The CPU, thread count and torch version that a choice holds for.

    The CPU is its model name with its family and model numbers where
    ``cpuinfo`` gives them: a VM may name different CPUs alike (``AMD
    EPYC`` for a Zen 4 and a Zen 5, whose kernels and libraries differ in
    speed), and a cache directory may be shared by the nodes of a cluster.
    """
    model = platform.processor() or platform.machine()
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's entry
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get('model name', model)
    if 'cpu family' in fields and 'model' in fields:
        model += f' (family {fields["cpu family"]}, model {fields["model"]})'
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


def _kept(key: str, options: tuple, measure) -> str:
    """The machine's kept choice under ``key`` (one of ``options``), or
    ``measure()``, kept; under a lock where the platform has one
    (``fcntl``), so that processes starting together measure once and
    agree."""
    path = choices_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path + '.lock', 'a')
    except OSError as e:
        _warn_not_kept(path, e)
        return measure()
    with lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        choices = _read_choices(path)
        if choices.get(key) in options:
            return choices[key]
        choices[key] = measure()
        try:
            with open(path + '.tmp', 'w') as f:
                json.dump(choices, f, indent=1, sort_keys=True)
            os.replace(path + '.tmp', path)
        except OSError as e:
            _warn_not_kept(path, e)
        return choices[key]


def _forced(env_var: str, options: tuple):
    """The value of ``$env_var`` (one of ``options``), or None where it is
    unset or empty."""
    forced = os.environ.get(env_var)
    if forced and forced not in options:
        raise ValueError(f'{env_var}={forced!r}: must be one of {options}')
    return forced or None


@functools.lru_cache(maxsize=None)
def _chosen(threads: int) -> str:
    """The machine's library for ``threads``, kept or measured."""
    return _kept(_machine_key(threads), GEMM_LIBRARIES, _measured)


def gemm_library() -> str:
    """``'mkl'`` (``F.linear`` on the channels-last view: the BLAS) or
    ``'onednn'`` (1x1 ``Conv2d``): the faster on this CPU at the current
    thread count, measured once per machine (kept in
    :func:`choices_file`), or ``$MMINCNEXT_GEMM``.

    Raises:
        ValueError: ``$MMINCNEXT_GEMM`` is set to something else.
    """
    return _forced(ENV_VAR, GEMM_LIBRARIES) or _chosen(torch.get_num_threads())


def onednn_mlp_applies(x: torch.Tensor) -> bool:
    """Whether a block's MLP with autograd runs as 1x1 convs (oneDNN) on
    ``x``: a CPU tensor, not under ``torch.compile`` or tracing (which keep
    one graph), and oneDNN is this machine's faster library."""
    return (x.device.type == 'cpu' and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and gemm_library() == 'onednn')


def _measured_mlp(channels: int,
                  hidden: int,
                  library: str,
                  rows: int = 2048,
                  rounds: int = 7) -> str:
    """Times a training MLP of this width (both layers and GELU, forward
    and backward, on ``rows`` rows) on the compiled kernels and on
    ``library`` (one of :data:`GEMM_LIBRARIES`), ``rounds`` interleaved
    rounds, called directly without autograd (as :func:`_measured`): the
    library where it is faster by more than :data:`LIBRARY_MLP_MARGIN`."""
    from . import kernels
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, channels, generator=gen)
    w1 = torch.randn(hidden, channels, generator=gen) * channels**-0.5
    w2 = torch.randn(channels, hidden, generator=gen) * hidden**-0.5
    b1, b2 = torch.zeros(hidden), torch.zeros(channels)
    grad = torch.randn(rows, channels, generator=gen)

    def on_kernels():
        _, pre = kernels.mlp_forward(x, None, w1, b1, w2, b2)
        kernels.mlp_backward(grad, x, pre, w1, w2)

    def blas():  # the MLP as F.linear on the rows, and its backward
        pre = torch.addmm(b1, x, w1.t())
        act = F.gelu(pre)
        torch.addmm(b2, act, w2.t())
        grad_pre = torch.ops.aten.gelu_backward(grad.mm(w2), pre)
        grad.t().mm(act), grad_pre.t().mm(x), grad_pre.mm(w1)
        grad.sum(0), grad_pre.sum(0)  # the bias gradients, as the kernels'

    def as_map(rows_tensor):  # [rows, C] as a channels-last [1, C, rows, 1]
        return rows_tensor.view(1, rows, 1, -1).permute(0, 3, 1, 2)

    x4, grad4 = as_map(x), as_map(grad)
    w1_4, w2_4 = w1[:, :, None, None], w2[:, :, None, None]
    conv_backward = functools.partial(_conv_backward, stride=[1, 1])

    def onednn():  # the MLP as 1x1 convs, and its backward
        pre = F.conv2d(x4, w1_4, b1)
        act = F.gelu(pre)
        F.conv2d(act, w2_4, b2)
        grad_act, _, _ = conv_backward(grad4, act, w2_4,
                                       output_mask=[True, True, True])
        grad_pre = torch.ops.aten.gelu_backward(grad_act, pre)
        conv_backward(grad_pre, x4, w1_4, output_mask=[True, True, True])

    run_library = onednn if library == 'onednn' else blas
    return ('library' if _second_faster(on_kernels, run_library, rounds,
                                        LIBRARY_MLP_MARGIN) else 'kernels')


@functools.lru_cache(maxsize=None)
def _mlp_chosen(threads: int, channels: int, hidden: int,
                freed_memory_kept: bool) -> str:
    """The machine's training MLP path at this width, kept or measured.
    The key names the allocator setting (with glibc's defaults the
    library's larger temporaries are faulted in afresh on every call, and
    the faster path can differ between the two settings) and the build of
    the kernels (a rebuilt extension is measured again)."""
    from .kernels import kernels_build
    return _kept_training_path(
        threads, f'training MLP {channels}x{hidden}', freed_memory_kept,
        TRAINING_MLP_PATHS,
        lambda library: _measured_mlp(channels, hidden, library),
        suffix=f' | kernels {kernels_build()}')


def training_mlp_path(channels: int, hidden: int) -> str:
    """``'kernels'`` (the compiled training MLP) or ``'library'`` (the
    GEMMs of :func:`gemm_library`): the faster for a training MLP of
    ``channels`` inputs and ``hidden`` hidden units on this CPU at the
    current thread count and allocator setting
    (:func:`mmincnext.engine.keep_freed_memory`), measured once per
    machine and width (kept in :func:`choices_file`), or
    ``$MMINCNEXT_TRAINING_MLP``. Only asked where the kernels can take the
    MLP (:func:`mmincnext.ops.mlp_training_applies`).

    Raises:
        ValueError: ``$MMINCNEXT_TRAINING_MLP`` is set to something else.
    """
    forced = _forced(TRAINING_MLP_ENV_VAR, TRAINING_MLP_PATHS)
    if forced:
        return forced
    # imported here: mmincnext.engine imports the models, which import ops
    from ..engine.memory import freed_memory_kept
    return _mlp_chosen(torch.get_num_threads(), channels, hidden,
                       freed_memory_kept())


def downsample_size_class(rows: int) -> int:
    """The size class of a downsampling conv with ``rows`` output pixels
    (all images): ``rows`` rounded to the nearest power of two on a log
    scale (a class spans a factor of two around it). Which path
    is faster depends on it (the patch copies stay in cache at small maps)
    more than on the exact size."""
    return 1 << max(0, round(math.log2(max(rows, 1))))


def _measured_downsample(in_channels: int,
                         out_channels: int,
                         library: str,
                         rows: int = 2048,
                         rounds: int = 7) -> str:
    """Times a 2x2 stride-2 conv of this width (forward and backward, bias
    included) on ``rows`` output pixels (a power of two: maps of at most
    32x32 outputs) as the strided conv (oneDNN) and as the GEMM over its
    patches on ``library`` (the copies to and from the patches included),
    ``rounds`` interleaved rounds, called directly without autograd (as
    :func:`_measured`): ``'patches'`` where that is faster by more than
    :data:`PATCH_DOWNSAMPLE_MARGIN`."""
    from .training import patch_weight, patches_2x2, patches_to_map
    bits = downsample_size_class(rows).bit_length() - 1
    n, map_bits = 1 << max(0, bits - 10), min(bits, 10)
    h, w = 1 << map_bits // 2, 1 << (map_bits - map_bits // 2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, in_channels, 2 * h, 2 * w, generator=gen).contiguous(
        memory_format=torch.channels_last)
    weight = torch.randn(out_channels, in_channels, 2, 2,
                         generator=gen) * (4 * in_channels)**-0.5
    bias = torch.zeros(out_channels)
    grad = torch.randn(n, h, w, out_channels, generator=gen)
    grad4 = grad.permute(0, 3, 1, 2)  # channels-last, as autograd's
    conv_backward = functools.partial(_conv_backward,
                                      output_mask=[True, True, True])
    w2d = patch_weight(weight)

    def strided():
        F.conv2d(x, weight, bias, stride=2)
        conv_backward(grad4, x, weight, stride=[2, 2])

    def patches():
        p = patches_2x2(x)
        if library == 'onednn':  # a 1x1 conv on the patches
            p4, w4 = p.permute(0, 3, 1, 2), w2d[:, :, None, None]
            F.conv2d(p4, w4, bias)
            grad_p = conv_backward(grad4, p4, w4, stride=[1, 1])[0]
            grad_p = grad_p.permute(0, 2, 3, 1)
        else:  # F.linear on the patch rows
            p2 = p.view(-1, 4 * in_channels)
            grad2 = grad.view(-1, out_channels)
            torch.addmm(bias, p2, w2d.t())
            grad_p = grad2.mm(w2d).view(p.shape)
            grad2.t().mm(p2), grad2.sum(0)
        patches_to_map(grad_p)

    return ('patches' if _second_faster(strided, patches, rounds,
                                        PATCH_DOWNSAMPLE_MARGIN) else 'conv')


@functools.lru_cache(maxsize=None)
def _downsample_chosen(threads: int, in_channels: int, out_channels: int,
                       size_class: int, freed_memory_kept: bool) -> str:
    """The machine's training downsample path at this width and size class,
    kept or measured; the key names the allocator setting (the patch copies
    are temporaries, faulted in afresh with glibc's defaults)."""
    return _kept_training_path(
        threads, f'training downsample {in_channels}x{out_channels} | '
        f'{size_class} output pixels', freed_memory_kept,
        TRAINING_DOWNSAMPLE_PATHS,
        lambda library: _measured_downsample(in_channels, out_channels,
                                             library, size_class))


def training_downsample_path(in_channels: int, out_channels: int,
                             rows: int) -> str:
    """``'patches'`` (the GEMM over the conv's 2x2 patches on
    :func:`gemm_library`) or ``'conv'`` (the strided conv, oneDNN): the
    faster for a 2x2 stride-2 conv with autograd from ``in_channels`` to
    ``out_channels`` channels on ``rows`` output pixels (all images) on this
    CPU at the current thread count and allocator setting, measured once per
    machine, width and size class (:func:`downsample_size_class`; kept in
    :func:`choices_file`), or ``$MMINCNEXT_TRAINING_DOWNSAMPLE``.

    Raises:
        ValueError: ``$MMINCNEXT_TRAINING_DOWNSAMPLE`` is set to something
            else.
    """
    forced = _forced(TRAINING_DOWNSAMPLE_ENV_VAR, TRAINING_DOWNSAMPLE_PATHS)
    if forced:
        return forced
    from ..engine.memory import freed_memory_kept
    return _downsample_chosen(torch.get_num_threads(), in_channels,
                              out_channels, downsample_size_class(rows),
                              freed_memory_kept())
