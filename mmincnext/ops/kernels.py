"""Python wrappers of mmincnext's compiled CPU kernels (optional).

``mmincnext._ext`` (AVX-512) and ``mmincnext._ext_avx2`` (AVX2) are built
from ``mmincnext/ops/csrc`` by ``setup.py`` (``make install`` runs ``python
setup.py build_ext --inplace``) on x86-64 with a C++ compiler; the first one
the CPU runs is loaded (:func:`kernels_isa`). Without them, or on a CPU with
neither instruction set, every model runs on PyTorch's own kernels with the
same results; :func:`cpu_kernels_available` tells which. All kernels take
float32 and run without autograd: the inference kernels, the token mixer's
backward pass (:func:`mixer_backward`; its forward pass is
:func:`inception_mixer`) and the forward and backward halves of the
training MLP (:func:`mlp_forward`, :func:`mlp_backward`), which
:mod:`mmincnext.ops.training` wraps in autograd functions. Where the
backbone uses them is decided in :mod:`mmincnext.ops.inference` and
:mod:`mmincnext.ops.training`. :func:`fma_loop` is no model op: it measures
the CPU's FMA rate, the ceiling in the benchmark's limit table.
"""
import functools
import hashlib
import importlib
import importlib.util
import warnings


# The builds, in order of preference, and the instruction set each needs.
_BUILDS = (('mmincnext._ext', 'avx512'), ('mmincnext._ext_avx2', 'avx2'))


def _load_extension():
    """The first build that loads and whose instruction set the CPU has, as
    ``(module, isa)``, or ``(None, None)``."""
    for name, isa in _BUILDS:
        if importlib.util.find_spec(name) is None:
            continue  # not built: a pure-Python install
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # built, but e.g. against another torch
            warnings.warn(
                f'{name} does not load ({e}); rebuild it with '
                '`pip install --no-build-isolation -e .` or `python setup.py '
                "build_ext --inplace`. Falling back to PyTorch's kernels.")
            continue
        if module.cpu_supported():
            return module, isa
    return None, None


_ext, _isa = _load_extension()


def cpu_kernels_available() -> bool:
    """Whether the kernels can run: an extension is built for an
    instruction set this CPU has (AVX-512 F/DQ and FMA, or AVX2 and
    FMA)."""
    return _ext is not None


def kernels_isa():
    """The instruction set of the loaded kernels: ``'avx512'``, ``'avx2'``,
    or None where none runs."""
    return _isa


@functools.lru_cache(maxsize=None)
def kernels_build():
    """A short digest of the loaded extension's file (its first 12 hex
    digits of SHA-256), or None where none runs: what names a build in the
    measured choices kept on disk (:mod:`mmincnext.ops.gemm_library`), so
    that a rebuilt extension is measured afresh."""
    if _ext is None:
        return None
    digest = hashlib.sha256()
    with open(_ext.__file__, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()[:12]


def _extension(name):
    if not cpu_kernels_available():
        raise RuntimeError(
            f'mmincnext.ops.{name} needs the compiled extension (python '
            'setup.py build_ext --inplace) and a CPU with AVX-512 or AVX2')
    return getattr(_ext, name)


def fused_mlp(x, shortcut, fc1_weight, fc1_bias, fc2_weight, fc2_bias):
    """``shortcut + fc2(gelu(fc1(x)))`` in one pass over row blocks whose
    hidden activations stay in L2 (in chunks of up to 384 hidden units where
    the two weights take more than 2 MiB).

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
    return _extension('fused_mlp')(x, shortcut, fc1_weight, fc1_bias,
                                   fc2_weight, fc2_bias)


def _mixer_args(mixer):
    return (mixer.dwconv_hw.weight, mixer.dwconv_hw.bias,
            mixer.dwconv_w.weight, mixer.dwconv_w.bias,
            mixer.dwconv_h.weight, mixer.dwconv_h.bias)


def inception_mixer(x, mixer, scale=None, shift=None):
    """The token mixer ``mixer`` (an ``InceptionDWConv2d``), optionally
    followed by a per-channel affine ``y * scale + shift`` (a BatchNorm in
    eval mode), in one pass over channels-last activations.

    Args:
        x (Tensor): ``[N, C, H, W]``, contiguous in channels-last memory.
        mixer (InceptionDWConv2d): Its three depthwise convs (odd kernels,
            zero padding, with bias) and the identity-first channel split.
        scale (Tensor, optional): ``[C]``.
        shift (Tensor, optional): ``[C]``, given with ``scale``.

    Returns:
        Tensor: ``[N, C, H, W]`` in channels-last memory.
    """
    return _extension('inception_mixer')(x, *_mixer_args(mixer), scale,
                                         shift)


def metanext_block(x, mixer, scale, shift, fc1_weight, fc1_bias, fc2_weight,
                   fc2_bias):
    """A whole MetaNeXt block, ``x + fc2(gelu(fc1(affine(mixer(x)))))``: the
    token mixer (:func:`inception_mixer`) computed row block by row block
    into L2, where :func:`fused_mlp` takes it at once.

    Args:
        x (Tensor): ``[N, C, H, W]``, contiguous in channels-last memory.
        mixer (InceptionDWConv2d): The token mixer.
        scale, shift (Tensor | None): ``[C]`` affine after the mixer (both
            or neither).
        fc1_weight, fc1_bias, fc2_weight, fc2_bias (Tensor): As in
            :func:`fused_mlp` (``fc2`` with the layer scale folded in).

    Returns:
        Tensor: ``[N, C, H, W]`` in channels-last memory.
    """
    return _extension('metanext_block')(x, *_mixer_args(mixer), scale, shift,
                                        fc1_weight, fc1_bias, fc2_weight,
                                        fc2_bias)


def mixer_backward(grad_y, x, w_hw, w_w, w_h):
    """The gradients of :func:`inception_mixer` without the affine (the
    token mixer in training) with respect to ``x`` and the three convs'
    weights and biases: ``grad_x`` in one pass over ``grad_y`` (the mixer
    with flipped kernels), the weight and bias sums in one pass over the
    conv branches' channels, in a fixed number of lanes of image rows
    added in order (the same bits on any number of threads).

    Args:
        grad_y (Tensor): ``[N, C, H, W]``, contiguous in channels-last
            memory.
        x (Tensor): The mixer's input, like ``grad_y``.
        w_hw, w_w, w_h (Tensor): The weights of ``dwconv_hw``, ``dwconv_w``
            and ``dwconv_h``.

    Returns:
        tuple[Tensor, ...]: ``grad_x`` (channels-last), then the weight
        and bias gradients of ``dwconv_hw``, ``dwconv_w``, ``dwconv_h``.
    """
    return tuple(_extension('mixer_backward')(grad_y, x, w_hw, w_w, w_h))


def mlp_forward(x, shortcut, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                scale=None):
    """The forward pass of the training MLP: :func:`fused_mlp` (without the
    residual where ``shortcut`` is None) that also returns ``fc1``'s
    outputs before GELU, for :func:`mlp_backward`.

    Args:
        x, fc1_weight, fc1_bias, fc2_weight, fc2_bias (Tensor): As in
            :func:`fused_mlp`.
        shortcut (Tensor | None): ``[M, C]`` residual rows, or None.
        scale (Tensor, optional): ``[C]``, the layer scale on ``fc2``'s
            outputs (``shortcut + scale * fc2(...)``), multiplied into
            ``fc2``'s weight and bias as they are packed.

    Returns:
        tuple[Tensor, Tensor]: ``out [M, C]`` and the pre-activations
        ``pre [M, H]``.
    """
    return tuple(_extension('mlp_forward')(x, shortcut, fc1_weight,
                                           fc1_bias, fc2_weight, fc2_bias,
                                           scale))


def mlp_backward(grad_out, x, pre, fc1_weight, fc2_weight, *,
                 hidden_block_bytes=None, hidden_chunk=0, hidden_lanes=None,
                 scale=None, fc2_bias=None):
    """The gradients of :func:`mlp_forward`'s ``out`` with respect to ``x``
    and the four weights (and the layer scale, where given), in one pass
    over row blocks (hidden units in chunks whose weights and per-thread
    weight-gradient sums stay in L2).

    Args:
        grad_out (Tensor): ``[M, C]``, contiguous.
        x (Tensor): ``[M, C]``, the forward input.
        pre (Tensor): ``[M, H]``, from :func:`mlp_forward`.
        fc1_weight (Tensor): ``[H, C]``.
        fc2_weight (Tensor): ``[C, H]``.
        hidden_block_bytes (int, optional): Hidden gradients per row block
            (default: the kernels' ``kBackwardBlockBytes``, 512 KiB); blocks
            have at most 512 rows, and in hidden lanes at most as many as
            keep their rows of ``x``, ``grad_out`` and ``grad_x`` within
            768 KiB (168 at ``C = 384``).
        hidden_chunk (int): Hidden units per chunk, a multiple of 16 that
            divides ``H``; 0 (default): all of them where both weights take
            at most 2 MiB, else 64 (or the widest multiple of 16 below it
            that divides ``H``).
        hidden_lanes (bool, optional): How the threads share the work: in
            lanes of hidden chunks over all rows (True) or in lanes of row
            blocks over all hidden units (False); default: hidden chunks
            where there are fewer rows than hidden units (``M < H``) or the
            two weights take more than 2 MiB (those chunked in hidden
            units), where the row lanes' per-thread weight-gradient sums
            would move more memory than the hidden lanes' per-thread
            ``grad_x`` sums.
        scale (Tensor, optional): ``[C]``, the layer scale given to
            :func:`mlp_forward`.
        fc2_bias (Tensor, optional): ``[C]``, ``fc2``'s bias: needed with
            ``scale`` (for the scale's gradient).

    Returns:
        tuple[Tensor, ...]: ``grad_x [M, C]``, ``grad_fc1_weight [H, C]``,
        ``grad_fc1_bias [H]``, ``grad_fc2_weight [C, H]``,
        ``grad_fc2_bias [C]``, and with ``scale`` ``grad_scale [C]``; the
        residual's gradient is ``grad_out``.
    """
    sizes = {} if hidden_block_bytes is None else dict(
        hidden_block_bytes=hidden_block_bytes)
    lanes = -1 if hidden_lanes is None else int(bool(hidden_lanes))
    return tuple(_extension('mlp_backward')(grad_out, x, pre, fc1_weight,
                                            fc2_weight,
                                            hidden_chunk=hidden_chunk,
                                            hidden_lanes=lanes, scale=scale,
                                            fc2_bias=fc2_bias, **sizes))


def fma_loop(iterations, a0=0.0, b=1.0, c=1.0):
    """The CPU's FMA rate, the ceiling of every GEMM: on each of
    ``torch.get_num_threads()`` threads, independent register-wide chains
    ``a = a * b + c`` from ``a0``, ``iterations`` times, in registers only.

    Args:
        iterations (int): Rounds of FMAs per chain.
        a0, b, c (float): The chains' start, factor and addend (float32).

    Returns:
        Tensor: ``[threads, chains * lanes]``, each chain's final value in
        each lane; ``2 * out.numel() * iterations`` is the number of
        floating-point operations.
    """
    return _extension('fma_loop')(iterations, a0, b, c)
