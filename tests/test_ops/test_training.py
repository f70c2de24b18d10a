"""mmincnext.ops.training and the training kernels of the token mixer
(mixer_backward) and the MLP (mlp_forward, mlp_backward): outputs and all
gradients equal float64 autograd (the mixer on every image-edge case, tap
group and channel remainder; the MLP on every register blocking, row-block
and tile remainders, hidden chunks, with and without the residual); GELU's
derivative across its range; the same bits on every run; where the backbone
uses them in training, and that its outputs and gradients equal PyTorch's
path; clear errors on bad input. The downsampling conv as a GEMM over its
patches equals the strided conv, and applies only where it can."""
import pytest
import torch
import torch.nn.functional as F
from ops_helpers import needs_kernel, on_threads, random_mlp, rel_err

from mmincnext import ops
from mmincnext.ops.gemm_library import (ENV_VAR, GEMM_LIBRARIES,
                                        TRAINING_DOWNSAMPLE_ENV_VAR,
                                        TRAINING_MLP_ENV_VAR)
from mmincnext.models.backbones.inception_next import (InceptionDWConv2d,
                                                       InceptionNeXt)


def random_mixer(n, c, h, w, ratio=0.125, band=11, square=3, seed=0):
    """A token mixer with standard-normal parameters, its input and an
    output gradient (channels-last)."""
    gen = torch.Generator().manual_seed(seed)
    mixer = InceptionDWConv2d(c, square, band, ratio)
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x, grad_y = (torch.randn(n, c, h, w, generator=gen).contiguous(
        memory_format=torch.channels_last) for _ in range(2))
    return mixer, x, grad_y


def mixer_grads(mixer):
    return [p.grad for p in (mixer.dwconv_hw.weight, mixer.dwconv_hw.bias,
                             mixer.dwconv_w.weight, mixer.dwconv_w.bias,
                             mixer.dwconv_h.weight, mixer.dwconv_h.bias)]


@needs_kernel
@pytest.mark.parametrize(
    'shape,ratio,band,square',
    [
        ((2, 96, 56, 56), 0.125, 11, 3),  # stage 0: 12 channels per branch
        ((2, 384, 14, 14), 0.125, 11, 3),  # stage 2: 48 = 3 x 16
        ((1, 768, 7, 7), 0.125, 11, 3),   # stage 3: bands wider than the image
        ((1, 16, 1, 1), 0.25, 11, 3),     # one pixel: every tap but the centre
        ((3, 40, 5, 13), 0.25, 11, 3),    # 10 channels, H < band < W
        ((1, 200, 9, 30), 0.125, 7, 5),   # other kernels; 25 = 16 + 9
        ((1, 48, 20, 3), 0.25, 25, 7),    # band of 25: tap groups 12, 12, 1
    ])
def test_mixer_kernels_equal_float64_autograd(shape, ratio, band, square):
    mixer, x, grad_y = random_mixer(*shape, ratio, band, square)
    ref = InceptionDWConv2d(shape[1], square, band, ratio).double()
    ref.load_state_dict(mixer.state_dict())
    x64 = x.double().requires_grad_()
    y_ref = ref(x64)
    y_ref.backward(grad_y.double())
    x = x.clone().requires_grad_()
    y = ops.mixer_training(mixer, x)
    y.backward(grad_y)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(y, y_ref.detach()) < 1e-6
    assert rel_err(x.grad, x64.grad) < 1e-6
    names = ('w_hw', 'b_hw', 'w_w', 'b_w', 'w_h', 'b_h')
    for name, grad, ref_grad in zip(names, mixer_grads(mixer),
                                    mixer_grads(ref)):
        assert grad.shape == ref_grad.shape, name
        # float32 rounding: about 1e-7 here
        assert rel_err(grad, ref_grad) < 1e-6, (name, rel_err(grad, ref_grad))


@needs_kernel
def test_mixer_backward_gives_the_same_bits_on_any_number_of_threads():
    """The weight and bias sums go in a fixed number of lanes of image rows,
    added in order: the same bits on every run and on one thread."""
    mixer, x, grad_y = random_mixer(4, 96, 24, 24)
    weights = (mixer.dwconv_hw.weight, mixer.dwconv_w.weight,
               mixer.dwconv_h.weight)
    runs = [on_threads(threads, ops.mixer_backward, grad_y, x, *weights)
            for threads in (2, 2, 3, 1)]
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_kernel
@pytest.mark.parametrize('case,match', [
    ('grad_y shape', r"grad_y must have x's shape \[2, 32, 6, 6\]"),
    ('grad_y NCHW', 'grad_y must be contiguous in channels-last memory'),
    ('x float64', 'x must be a float32'),
    ('weight channels', r'dwconv_w weight must be \[gc, 1, 1, k\]'),
    ('weight dims', 'conv weights must be 4-d'),
])
def test_mixer_backward_rejects_bad_input(case, match):
    mixer, x, grad_y = random_mixer(2, 32, 6, 6, ratio=0.25)
    w_hw, w_w, w_h = (mixer.dwconv_hw.weight, mixer.dwconv_w.weight,
                      mixer.dwconv_h.weight)
    if case == 'grad_y shape':
        grad_y = grad_y[:, :, :4, :4].contiguous(
            memory_format=torch.channels_last)
    elif case == 'grad_y NCHW':
        grad_y = grad_y.contiguous()
    elif case == 'x float64':
        x = x.double()
    elif case == 'weight channels':
        w_w = w_w[:4].contiguous()
    elif case == 'weight dims':
        w_h = w_h.flatten(1)
    with pytest.raises(RuntimeError, match=match):
        ops.mixer_backward(grad_y, x, w_hw.detach(), w_w.detach(),
                           w_h.detach())


def autograd_reference(x, shortcut, w1, b1, w2, b2, grad_out):
    """Output, pre-activations and the gradients of x, w1, b1, w2, b2 in
    float64."""
    leaves = [t.double().requires_grad_() for t in (x, w1, b1, w2, b2)]
    x64, w1_64, b1_64, w2_64, b2_64 = leaves
    pre = F.linear(x64, w1_64, b1_64)
    out = F.linear(F.gelu(pre), w2_64, b2_64)
    if shortcut is not None:
        out = out + shortcut.double()
    out.backward(grad_out.double())
    return out.detach(), pre.detach(), [t.grad for t in leaves]


@needs_kernel
@pytest.mark.parametrize(
    'rows,channels,hidden,chunk,with_shortcut',
    [
        (1, 64, 256, 0, True),       # one row: padded remainder tiles only
        (2000, 96, 384, 0, True),    # stage 0 widths: row blocks, remainder
        (2000, 96, 384, 0, False),   # without the residual (stochastic depth)
        (61, 192, 768, 0, True),     # stage 1 widths
        (50, 32, 128, 0, False),     # 32-column panels
        (30, 16, 80, 0, True),       # 16 channels: below one tile of rows
        (77, 80, 320, 16, True),     # 20 chunks of 16 units; 80 = 6 x 13 + 2
        (130, 384, 1536, 0, True),   # stage 2 widths: 24 chunks of 64
        (700, 384, 1536, 96, False),  # 16 chunks of 96 (8-row tiles)
    ])
def test_mlp_kernels_equal_float64_autograd(rows, channels, hidden, chunk,
                                            with_shortcut):
    x, shortcut, w1, b1, w2, b2 = random_mlp(rows, channels, hidden)
    shortcut = shortcut if with_shortcut else None
    grad_out = torch.randn(rows, channels,
                           generator=torch.Generator().manual_seed(1))
    out_ref, pre_ref, grads_ref = autograd_reference(x, shortcut, w1, b1, w2,
                                                     b2, grad_out)
    out, pre = ops.mlp_forward(x, shortcut, w1, b1, w2, b2)
    assert rel_err(out, out_ref) < 1e-5 and rel_err(pre, pre_ref) < 1e-5
    sizes = dict(hidden_block_bytes=24 * chunk * 4) if chunk else {}
    grads = ops.mlp_backward(grad_out, x, pre, w1, w2, hidden_chunk=chunk,
                             **sizes)
    names = ('x', 'fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias')
    for name, grad, ref in zip(names, grads, grads_ref):
        assert grad.shape == ref.shape and grad.dtype == torch.float32, name
        # float32 rounding: 1e-7 to 1e-6 here
        assert rel_err(grad, ref) < 1e-5, (name, rel_err(grad, ref))


def scaled_reference(x, shortcut, w1, b1, w2, b2, scale, grad_out):
    """``shortcut + scale * mlp(x)`` and the gradients of x, w1, b1, w2, b2
    and scale in float64."""
    leaves = [t.double().requires_grad_() for t in (x, w1, b1, w2, b2, scale)]
    x64, w1_64, b1_64, w2_64, b2_64, s64 = leaves
    out = F.linear(F.gelu(F.linear(x64, w1_64, b1_64)), w2_64, b2_64) * s64
    out = out + shortcut.double()
    out.backward(grad_out.double())
    return out.detach(), [t.grad for t in leaves]


@needs_kernel
@pytest.mark.parametrize(
    'rows,channels,hidden,lanes',
    [
        (2000, 96, 384, None),   # stage 0 widths: lanes of row blocks
        (61, 192, 768, True),    # whole hidden units in hidden lanes
        (130, 384, 1536, None),  # stage 2 widths: chunks in hidden lanes
    ])
def test_layer_scale_in_the_kernels_equals_float64_autograd(
        rows, channels, hidden, lanes):
    """The layer scale given to the kernels (multiplied into fc2 as it is
    packed, its gradient from fc2's in one pass): the output and every
    gradient, the scale's included, equal float64 autograd of
    ``shortcut + scale * fc2(gelu(fc1(x)))``, on either split of the
    backward pass."""
    x, shortcut, w1, b1, w2, b2 = random_mlp(rows, channels, hidden)
    gen = torch.Generator().manual_seed(2)
    scale = torch.rand(channels, generator=gen) + 0.5
    grad_out = torch.randn(rows, channels, generator=gen)
    out_ref, grads_ref = scaled_reference(x, shortcut, w1, b1, w2, b2, scale,
                                          grad_out)
    out, pre = ops.mlp_forward(x, shortcut, w1, b1, w2, b2, scale)
    assert rel_err(out, out_ref) < 1e-5
    grads = on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2,
                       hidden_lanes=lanes, scale=scale, fc2_bias=b2)
    names = ('x', 'fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias',
             'scale')
    assert len(grads) == len(names)
    for name, grad, ref in zip(names, grads, grads_ref):
        assert grad.shape == ref.shape and grad.dtype == torch.float32, name
        assert rel_err(grad, ref) < 1e-5, (name, rel_err(grad, ref))


@needs_kernel
@pytest.mark.parametrize(
    'rows,channels,hidden,chunk',
    [
        (392, 768, 2304, 0),   # stage 3 at batch 8, 224 px: 36 chunks of 64
        (1300, 384, 1536, 0),  # more rows than one block (8 blocks of 168)
        (61, 192, 768, 0),     # whole-hidden chunks: one lane has them all
        (40, 64, 256, 16),     # 16 chunks of 16
    ])
def test_backward_lanes_of_hidden_chunks_equal_lanes_of_rows(
        rows, channels, hidden, chunk):
    """The backward pass split by hidden chunks across the threads (each
    summing its share of grad_x) equals float64 autograd like the split by
    row blocks; on one thread, where one lane takes every chunk in order,
    the weight gradients are the same bits as on two."""
    x, shortcut, w1, b1, w2, b2 = random_mlp(rows, channels, hidden)
    grad_out = torch.randn(rows, channels,
                           generator=torch.Generator().manual_seed(1))
    _, _, grads_ref = autograd_reference(x, shortcut, w1, b1, w2, b2,
                                         grad_out)
    _, pre = ops.mlp_forward(x, shortcut, w1, b1, w2, b2)
    results = {}
    for lanes in (False, True):
        results[lanes] = on_threads(2, ops.mlp_backward, grad_out, x, pre,
                                    w1, w2, hidden_chunk=chunk,
                                    hidden_lanes=lanes)
        for grad, ref in zip(results[lanes], grads_ref):
            assert grad.shape == ref.shape and rel_err(grad, ref) < 1e-5
    serial = on_threads(1, ops.mlp_backward, grad_out, x, pre, w1, w2,
                        hidden_chunk=chunk, hidden_lanes=True)
    for a, b in zip(serial[1:], results[True][1:]):
        # the weight gradients of a chunk: one lane, same order, same bits
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_kernel
def test_lanes_are_chosen_by_rows_and_weight_size():
    """The default takes hidden lanes where M < H or the two weights take
    more than 2 MiB (384 x 1536: 4.5 MiB): the same bits as asking for them
    there, and as asking for row lanes where M >= H and the weights are
    small."""
    for rows, channels, hidden, by_hidden in ((100, 64, 256, True),
                                              (300, 64, 256, False),
                                              (1600, 384, 1536, True)):
        x, _, w1, b1, w2, b2 = random_mlp(rows, channels, hidden)
        grad_out = torch.randn_like(x)
        _, pre = ops.mlp_forward(x, None, w1, b1, w2, b2)
        chosen = on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2)
        forced = on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2,
                            hidden_lanes=by_hidden)
        for a, b in zip(chosen, forced):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # there (chunks of hidden units, two lanes either way) the two splits
    # sum in different orders: the bits tell which one ran
    other = on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2,
                       hidden_lanes=False)
    assert not all(torch.equal(a, b) for a, b in zip(chosen, other))


@needs_kernel
def test_hidden_lane_blocks_keep_their_channel_rows_in_l2():
    """In hidden lanes a row block's rows of x, grad_out and grad_x (3 x C
    floats each) take at most 768 KiB: at C = 384, blocks of 168 rows,
    fewer than the hidden-gradient size alone gives (512 KiB of chunks of
    64: 2048 rows, capped at 512). The weight gradients sum over the blocks
    in order, so their bits tell the block size: the default's are those of
    168-row blocks asked for, and differ from those of 84-row blocks."""
    x, _, w1, b1, w2, b2 = random_mlp(1600, 384, 1536)
    grad_out = torch.randn_like(x)
    _, pre = ops.mlp_forward(x, None, w1, b1, w2, b2)

    def backward(**sizes):
        return on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2,
                          hidden_lanes=True, **sizes)

    chosen = backward()
    for a, b in zip(chosen, backward(hidden_block_bytes=168 * 64 * 4)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    halves = backward(hidden_block_bytes=84 * 64 * 4)
    assert not torch.equal(chosen[1], halves[1])


@needs_kernel
def test_gelu_derivative_is_exact_over_its_range():
    """With identity weights and ones as the output gradient, grad_x is
    GELU's derivative at x: within 1e-6 of float64 autograd from -100 to
    100 and at the largest floats (where it is 0 or 1); NaN stays NaN."""
    special = [0., -0., 1e-30, -1e-30, 5.6, -5.6, 5.61, -5.61, 9.5, -9.5,
               1e4, -1e4, 3.4e38, -3.4e38]
    x = torch.cat([torch.linspace(-100, 100, 16 * 4001),
                   torch.tensor(special * 16 + [float('nan')] * 16)])
    x = x.view(-1, 16)
    eye, zeros = torch.eye(16), torch.zeros(16)
    _, pre = ops.mlp_forward(x, None, eye, zeros, eye, zeros)
    grad_x = ops.mlp_backward(torch.ones_like(x), x, pre, eye, eye)[0]
    x64 = x[:-1].double().requires_grad_()
    F.gelu(x64).sum().backward()
    assert torch.isnan(grad_x[-1]).all()
    err = (grad_x[:-1].double() - x64.grad).abs()
    assert err.max() < 1e-6, err.max()


@needs_kernel
def test_backward_gives_the_same_bits_on_every_run():
    """Each thread sums the weight gradients of a fixed lane of row blocks,
    whichever thread takes it: the same bits on every run; on one thread
    (one lane) the same values within float32 rounding."""
    x, _, w1, b1, w2, b2 = random_mlp(3000, 96, 384)
    grad_out = torch.randn_like(x)
    _, pre = ops.mlp_forward(x, None, w1, b1, w2, b2)
    runs = [on_threads(2, ops.mlp_backward, grad_out, x, pre, w1, w2)
            for _ in range(3)]
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    serial = on_threads(1, ops.mlp_backward, grad_out, x, pre, w1, w2)
    for a, b in zip(serial, runs[0]):
        assert rel_err(a, b.double()) < 1e-5


@needs_kernel
@pytest.mark.parametrize('case,match', [
    ('grad_out shape', r'grad_out must be \[8, 32\]'),
    ('pre shape', r'pre must be \[8, 128\]'),
    ('float64', 'grad_out must be a float32'),
    ('non-contiguous', 'x must be contiguous'),
    ('weight shape', 'weight shapes do not match'),
    ('scale size', 'scale must have 32 values'),
    ('scale without fc2_bias', 'with a scale, fc2_bias must be given'),
])
def test_mlp_backward_rejects_bad_input(case, match):
    x, _, w1, b1, w2, b2 = random_mlp(8, 32, 128)
    _, pre = ops.mlp_forward(x, None, w1, b1, w2, b2)
    grad_out = torch.randn_like(x)
    if case == 'grad_out shape':
        grad_out = grad_out[:4]
    elif case == 'pre shape':
        pre = pre[:, :64].contiguous()
    elif case == 'float64':
        grad_out = grad_out.double()
    elif case == 'non-contiguous':
        x = torch.randn(32, 8).t()
    elif case == 'weight shape':
        w2 = w2[:16].contiguous()
    extra = {}
    if case == 'scale size':
        extra = dict(scale=torch.ones(16), fc2_bias=b2)
    elif case == 'scale without fc2_bias':
        extra = dict(scale=torch.ones(32))
    with pytest.raises(RuntimeError, match=match):
        ops.mlp_backward(grad_out, x, pre, w1, w2, **extra)


def train_step(model, x):
    model.zero_grad()
    outs = model(x)
    sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
        for o in outs).backward()
    return outs, {n: p.grad for n, p in model.named_parameters()}


@needs_kernel
@pytest.mark.parametrize('drop_path_rate', [0., 0.3])
def test_training_runs_the_kernels_and_equals_pytorch(monkeypatch,
                                                      drop_path_rate):
    """InceptionNeXt-T in training: every token mixer takes its kernels;
    the MLPs of stages 0-2 (weights of at most 6 MiB) take the fused
    kernels (where they are the faster path: forced here), stage 3's do
    not; outputs and every parameter's gradient equal the model without the
    kernels (with stochastic depth: the same random masks, the residual sum
    outside the kernel)."""
    monkeypatch.setenv(TRAINING_MLP_ENV_VAR, 'kernels')
    calls = {'mlp_forward': [], 'inception_mixer': [], 'mixer_backward': []}

    def counted(name):
        kernel = getattr(ops.kernels, name)

        def count(x, *args):
            calls[name].append(x.shape[1])
            return kernel(x, *args)
        return count

    for name in calls:
        monkeypatch.setattr(ops.kernels, name, counted(name))
    torch.manual_seed(0)
    model = InceptionNeXt('tiny', drop_path_rate=drop_path_rate,
                          layer_scale_init_value=0.5).train()
    plain = InceptionNeXt('tiny', drop_path_rate=drop_path_rate,
                          cpu_kernels=False).train()
    plain.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    outs, grads = train_step(model, x)
    stages = [96] * 3 + [192] * 3 + [384] * 9
    assert calls['mlp_forward'] == stages
    assert calls['inception_mixer'] == stages + [768] * 3
    assert calls['mixer_backward'] == ([768] * 3 + stages[::-1])
    torch.manual_seed(1)
    outs_ref, grads_ref = train_step(plain, x)
    for out, ref in zip(outs, outs_ref):
        assert rel_err(out, ref.double()) < 1e-5
    # the biases of convs before a BatchNorm (stem, token mixers) have
    # gradient 0 up to rounding noise: that noise must stay as small
    noise = 1e-5 * max(ref.abs().max() for ref in grads_ref.values())
    for name, ref in grads_ref.items():
        if ref.abs().max() < noise:
            assert grads[name].abs().max() < noise, name
        else:
            assert rel_err(grads[name], ref.double()) < 1e-4, name


@needs_kernel
def test_kernels_apply_only_where_they_can(monkeypatch):
    monkeypatch.setenv(TRAINING_MLP_ENV_VAR, 'kernels')
    model = InceptionNeXt('tiny').train()
    block = model.stages[0].blocks[0]
    x = torch.rand(2, 96, 8, 8).contiguous(memory_format=torch.channels_last)
    stage3 = torch.rand(2, 768, 2, 2).contiguous(
        memory_format=torch.channels_last)
    for applies in (ops.mixer_training_applies, ops.mlp_training_applies):
        assert applies(block, x)
        assert not applies(block, x.contiguous())  # NCHW memory
        assert not applies(block, x.double())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not applies(block, x)
    assert not ops.mlp_training_applies(block, x, max_weight_bytes=2**10)
    assert ops.mixer_training_applies(model.stages[3].blocks[0], stage3)
    assert not ops.mlp_training_applies(model.stages[3].blocks[0], stage3)
    monkeypatch.setenv(TRAINING_MLP_ENV_VAR, 'library')  # faster here
    assert ops.mixer_training_applies(block, x)
    assert not ops.mlp_training_applies(block, x)
    monkeypatch.setenv(TRAINING_MLP_ENV_VAR, 'kernels')
    block.cpu_kernels = False
    assert not ops.mixer_training_applies(block, x)
    assert not ops.mlp_training_applies(block, x)


@pytest.mark.parametrize('library', GEMM_LIBRARIES)
@pytest.mark.parametrize('shape', [(2, 16, 8, 12), (1, 8, 7, 9),
                                   (3, 24, 2, 2)])
def test_downsample_as_patch_gemm_equals_the_strided_conv(
        monkeypatch, library, shape):
    """Output and the gradients of input, weight and bias equal the 2x2
    stride-2 conv's in float64, on either library; an odd last row or
    column is left out and gets no gradient, as in the conv."""
    monkeypatch.setenv(ENV_VAR, library)
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(shape[1], 2 * shape[1], 2, stride=2).double()
    x = torch.randn(*shape, generator=gen, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    out = ops.downsample_training(conv, x)
    ref = conv(x)
    assert out.shape == ref.shape
    assert out.permute(0, 2, 3, 1).is_contiguous()  # channels-last
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    params = (x, conv.weight, conv.bias)
    got = torch.autograd.grad(out, params, grad)
    want = torch.autograd.grad(ref, params, grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if shape[2] % 2:
        assert got[0][:, :, -1].abs().max() == 0


def test_downsample_patch_gemm_applies_only_where_it_can(monkeypatch):
    monkeypatch.setenv(TRAINING_DOWNSAMPLE_ENV_VAR, 'patches')
    conv = torch.nn.Conv2d(16, 32, 2, stride=2)
    x = torch.rand(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    applies = ops.downsample_training_applies
    assert applies(conv, x)
    assert not applies(conv, x.contiguous())  # NCHW memory
    assert not applies(conv, x.double())
    with torch.no_grad():
        assert not applies(conv, x)  # inference: the strided conv
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not applies(conv, x)
    for other in (dict(kernel_size=3, stride=2), dict(kernel_size=2),
                  dict(kernel_size=2, stride=2, padding=1),
                  dict(kernel_size=2, stride=2, groups=2),
                  dict(kernel_size=2, stride=2, dilation=2)):
        assert not applies(torch.nn.Conv2d(16, 32, **other), x), other
    monkeypatch.setenv(TRAINING_DOWNSAMPLE_ENV_VAR, 'conv')
    assert not applies(conv, x)
