"""mmincnext.ops.kernels, the compiled kernels of CPU inference: built where
they can run; the fused MLP, the token mixer and the whole block equal float64
references (every register blocking, row-block remainders, clipped kernel
taps, the exact GELU across its range); clear errors on bad input."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from ops_helpers import (CPU_ISA, needs_kernel, on_threads, random_mlp,
                         reference, rel_err)

from mmincnext import ops
from mmincnext.models.backbones.inception_next import InceptionDWConv2d


@needs_kernel
def test_extension_is_built_on_a_cpu_that_runs_it():
    """`make install` builds mmincnext._ext (AVX-512) and _ext_avx2; on this
    CPU the build for its best instruction set must load and run (else
    every test below would check the fallback instead)."""
    assert ops.cpu_kernels_available()
    assert ops.kernels.kernels_isa() == CPU_ISA


@needs_kernel
@pytest.mark.parametrize(
    'rows,channels,hidden',
    [
        (1, 64, 256),      # one row: a padded remainder tile only
        (25, 96, 384),     # tiny stage 0 widths; 24 rows + 1
        (2000, 96, 384),   # several row blocks (168 rows) and a remainder
        (61, 192, 768),    # tiny stage 1 widths
        (50, 32, 128),     # 32-column panels for fc2
        (30, 16, 80),      # 16-column panels for both
        (7, 768, 3072),    # weights over 2 MiB: 8 chunks of 384 units
        (130, 384, 1536),  # tiny stage 2 widths: 4 chunks of 384
    ])
def test_fused_mlp_equals_float64_reference(rows, channels, hidden):
    args = random_mlp(rows, channels, hidden)
    out = ops.fused_mlp(*args)
    ref = reference(*args)
    assert out.shape == (rows, channels) and out.dtype == torch.float32
    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, err  # float32 rounding: 1e-7 to 1.3e-6 here


@needs_kernel
@pytest.mark.parametrize('channels,hidden,chunk', [
    (96, 384, 96),     # 4 chunks, 48-column panels in both GEMMs
    (64, 256, 128),    # 2 chunks, 64-column panels in both
    (32, 160, 80),     # 2 chunks, 16-column panels for fc1, 32 for fc2
    (64, 256, 256),    # one chunk: the whole hidden layer
])
def test_fused_mlp_hidden_chunks(channels, hidden, chunk):
    """fc2's partial sums over chunks of hidden units, added to the output
    rows chunk by chunk, give the unchunked result: row blocks of 24 rows
    and a remainder (hidden_block_bytes sets 24 rows of one chunk)."""
    args = random_mlp(77, channels, hidden)
    out = ops.kernels._ext.fused_mlp(*args, hidden_block_bytes=24 * chunk * 4,
                             hidden_chunk=chunk)
    ref = reference(*args)
    assert rel_err(out, ref) < 1e-5
    whole = ops.kernels._ext.fused_mlp(*args, hidden_chunk=hidden)
    assert rel_err(whole, ref) < 1e-5
    with pytest.raises(RuntimeError, match='hidden_chunk must be 0 or a '
                       f'multiple of 16 that divides {hidden}, got 24'):
        ops.kernels._ext.fused_mlp(*args, hidden_chunk=24)


@needs_kernel
@pytest.mark.parametrize('threads', [2, 3])
def test_kernels_give_the_same_bits_on_any_number_of_threads(threads):
    """The threads take row blocks (and weight panels to pack) from a shared
    counter, in whatever order they get there: every block is computed
    exactly once and in the same way, so the output does not depend on the
    number of threads (three: blocks not a multiple of the threads)."""
    args = random_mlp(1000, 96, 384)
    x = channels_last_input(2, 32, 9, 11)
    mixer = random_mixer(32)
    _, _, w1, b1, w2, b2 = random_mlp(1, 32, 128)
    block_args = (x, *ops.kernels._mixer_args(mixer), None, None, w1, b1, w2, b2)

    def run():
        return (ops.kernels._ext.fused_mlp(*args, hidden_block_bytes=24 * 384 * 4),
                ops.kernels._ext.fused_mlp(*args, hidden_chunk=96),
                ops.kernels._ext.metanext_block(*block_args,
                                        hidden_block_bytes=24 * 128 * 4))

    serial = on_threads(1, run)
    parallel = on_threads(threads, run)
    assert rel_err(serial[0], reference(*args)) < 1e-5
    for s, p in zip(serial, parallel):
        torch.testing.assert_close(p, s, rtol=0, atol=0)


@needs_kernel
def test_fused_gelu_is_exact_over_its_range():
    """With identity weights the kernel computes gelu(x) itself: within the
    float32 rounding of the exact erf form from -100 to 100, at the ends of
    its table (|x| = 5.6) and at the largest floats; NaN stays NaN."""
    special = [0., -0., 1e-30, -1e-30, 1e-45, -1e-45, 5.5, -5.5, 5.6, -5.6,
               5.61, -5.61, 1e4, -1e4, 3.4e38, -3.4e38]
    x = torch.cat([torch.linspace(-100, 100, 16 * 4001),
                   torch.tensor(special * 16 + [float('nan')] * 16)])
    x = x.view(-1, 16)
    eye = torch.eye(16)
    out = ops.fused_mlp(x, torch.zeros_like(x), eye, torch.zeros(16), eye,
                        torch.zeros(16))
    exact = F.gelu(x.double())[:-1]
    assert torch.isnan(out[-1]).all()
    err = (out[:-1].double() - exact).abs()
    # PyTorch's own float32 GELU is off by up to 8.8e-7 here (torch 2.14),
    # the kernel's by 2.4e-7: half a float32 ulp of the results near 4
    torch_err = (F.gelu(x[:-1]).double() - exact).abs()
    assert err.max() <= torch_err.max(), (err.max(), torch_err.max())
    assert err.max() < 2.5e-7, err.max()  # also for x = -3.4e38
    negative = x[:-1] < 0
    assert err[negative].max() < 1e-7, err[negative].max()


@needs_kernel
@pytest.mark.parametrize('case,match', [
    ('float64', 'float32'),
    ('non-contiguous', 'contiguous'),
    ('shortcut shape', 'x and shortcut'),
    ('weight shape', 'weight shapes'),
    ('channels', 'multiples of 16'),
])
def test_fused_mlp_rejects_bad_input(case, match):
    x, s, w1, b1, w2, b2 = random_mlp(8, 32, 128)
    if case == 'float64':
        x = x.double()
    elif case == 'non-contiguous':
        x = torch.randn(32, 8).t()
    elif case == 'shortcut shape':
        s = s[:4]
    elif case == 'weight shape':
        w2 = w2[:, :64].contiguous()
    else:
        x, s, w1, b1, w2, b2 = random_mlp(8, 40, 160)
    with pytest.raises(RuntimeError, match=match):
        ops.fused_mlp(x, s, w1, b1, w2, b2)


def random_mixer(channels, branch_ratio=0.125, band=11, square=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mixer = InceptionDWConv2d(channels, square, band, branch_ratio)
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return mixer.to(memory_format=torch.channels_last)


def channels_last_input(n, c, h, w, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=gen).contiguous(
        memory_format=torch.channels_last)


def mixer_reference(x, mixer, scale=None, shift=None):
    """The module's own forward (PyTorch's convs and cat) in float64."""
    y = copy.deepcopy(mixer).double()(x.double())
    if scale is not None:
        y = y * scale.double().view(1, -1, 1, 1) + shift.double().view(
            1, -1, 1, 1)
    return y


@needs_kernel
@pytest.mark.parametrize(
    'shape,ratio,band',
    [
        ((2, 96, 20, 27), 0.125, 11),   # tiny stage 0 widths (gc = 12)
        ((1, 40, 13, 9), 0.25, 9),      # atto: gc = 10, band 9, id 10
        ((1, 160, 6, 30), 0.125, 11),   # gc = 20: a full and a partial vector
        ((3, 48, 3, 4), 0.125, 11),     # image smaller than the band kernel
        ((2, 64, 1, 17), 0.25, 11),     # one image row
        ((1, 24, 12, 1), 1 / 3, 5),     # one image column, no identity
    ])
@pytest.mark.parametrize('affine', [False, True])
def test_inception_mixer_equals_float64_reference(shape, ratio, band, affine):
    """Zero padding at every border, identity first, the affine applied to
    every channel; channels-last output."""
    mixer = random_mixer(shape[1], ratio, band)
    x = channels_last_input(*shape)
    gen = torch.Generator().manual_seed(2)
    scale, shift = (torch.randn(shape[1], generator=gen),
                    torch.randn(shape[1], generator=gen)) if affine else (
                        None, None)
    out = ops.inception_mixer(x, mixer, scale, shift)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(out, mixer_reference(x, mixer, scale, shift)) < 1e-6


def block_reference(x, mixer, scale, shift, w1, b1, w2, b2):
    y = mixer_reference(x, mixer, scale, shift).permute(0, 2, 3, 1)
    return reference(y, x.permute(0, 2, 3, 1), w1, b1, w2,
                     b2).permute(0, 3, 1, 2)


@needs_kernel
@pytest.mark.parametrize('shape,hidden_block_bytes', [
    ((2, 96, 15, 21), 256 * 1024),  # 630 rows: blocks of 168 across rows
    ((1, 32, 5, 7), 24 * 128 * 4),  # blocks of 24 rows, image rows of 7
    ((1, 48, 2, 3), 256 * 1024),    # fewer rows than one register tile
])
@pytest.mark.parametrize('affine', [False, True])
def test_metanext_block_equals_float64_reference(shape, hidden_block_bytes,
                                                 affine):
    """The token mixer computed row block by row block (blocks that start
    and end inside image rows) feeds the fused MLP."""
    n, c, h, w = shape
    mixer = random_mixer(c)
    x = channels_last_input(*shape)
    _, _, w1, b1, w2, b2 = random_mlp(1, c, 4 * c)
    gen = torch.Generator().manual_seed(2)
    norm = (torch.rand(c, generator=gen) + 0.5,
            torch.randn(c, generator=gen)) if affine else (None, None)
    out = ops.kernels._ext.metanext_block(
        x, *ops.kernels._mixer_args(mixer), *norm, w1, b1, w2, b2,
        hidden_block_bytes=hidden_block_bytes)
    assert out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = block_reference(x, mixer, *norm, w1, b1, w2, b2)
    assert rel_err(out, ref) < 1e-5
    if hidden_block_bytes == 256 * 1024:  # the public wrapper: same call
        torch.testing.assert_close(
            ops.metanext_block(x, mixer, *norm, w1, b1, w2, b2), out,
            rtol=0, atol=0)


@needs_kernel
@pytest.mark.parametrize('case,match', [
    ('float64', 'float32'),
    ('NCHW memory', 'channels-last'),
    ('3-d input', r'\[N, C, H, W\]'),
    ('even kernel', 'k odd'),
    ('weight shape', 'dwconv_h weight'),
    ('scale only', 'both scale and shift'),
    ('scale size', 'scale and shift must have 32'),
    ('mlp channels', 'weight shapes'),
])
def test_mixer_and_block_reject_bad_input(case, match):
    mixer = random_mixer(32)
    x = channels_last_input(1, 32, 6, 6)
    scale = shift = None
    _, _, w1, b1, w2, b2 = random_mlp(1, 32, 128)
    if case == 'float64':
        x = x.double()
    elif case == 'NCHW memory':
        x = x.contiguous()
    elif case == '3-d input':
        x = x[0]
    elif case == 'even kernel':
        mixer.dwconv_hw = nn.Conv2d(4, 4, 2, groups=4)
    elif case == 'weight shape':
        mixer.dwconv_h = nn.Conv2d(4, 4, (9, 1), groups=4)
    elif case == 'scale only':
        scale = torch.ones(32)
    elif case == 'scale size':
        scale, shift = torch.ones(16), torch.zeros(16)
    else:
        _, _, w1, b1, w2, b2 = random_mlp(1, 48, 192)
    with pytest.raises(RuntimeError, match=match):
        if case == 'mlp channels':
            ops.metanext_block(x, mixer, scale, shift, w1, b1, w2, b2)
        else:
            ops.inception_mixer(x, mixer, scale, shift)


@needs_kernel
def test_kernels_take_empty_inputs():
    """No rows (an empty batch): empty outputs of the right shape, no crash
    (the row blocks of zero rows used to divide by zero)."""
    x, shortcut, w1, b1, w2, b2 = random_mlp(0, 32, 128)
    out = ops.fused_mlp(x, shortcut, w1, b1, w2, b2)
    assert out.shape == (0, 32)
    mixer = random_mixer(32)
    x = channels_last_input(0, 32, 6, 6)
    assert ops.inception_mixer(x, mixer).shape == (0, 32, 6, 6)
    assert ops.metanext_block(x, mixer, None, None, w1, b1, w2,
                              b2).shape == (0, 32, 6, 6)


@needs_kernel
@pytest.mark.parametrize('threads', [1, 2])
def test_fma_loop_runs_its_chains_on_every_thread(threads):
    """The benchmark's FMA ceiling: each thread's chains take every FMA
    (a = a + 1 counts the iterations exactly; a = a / 2 + 1 halves the
    distance to 2 each round, exactly in float32 for ten rounds from 3),
    one register's lanes per chain, 12 chains per thread."""
    lanes = {'avx512': 16, 'avx2': 8}[CPU_ISA]
    out = on_threads(threads, ops.kernels.fma_loop, 1000)
    assert out.shape == (threads, 12 * lanes)
    assert torch.equal(out, torch.full_like(out, 1000.0))
    a = torch.tensor(3.0)
    for _ in range(10):
        a = a * 0.5 + 1.0  # exact in float32: no rounding to differ
    out = on_threads(threads, ops.kernels.fma_loop, 10, 3.0, 0.5, 1.0)
    assert torch.equal(out, torch.full_like(out, a.item()))
    out = on_threads(threads, ops.kernels.fma_loop, 0, 7.0)
    assert torch.equal(out, torch.full((threads, 12 * lanes), 7.0))
    with pytest.raises(RuntimeError, match='iterations must be >= 0'):
        ops.kernels.fma_loop(-1)
