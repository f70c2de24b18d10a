"""mmincnext.ops.fused_mlp, the compiled MLP kernel of CPU inference: built
where it can run, equal to a float64 reference (every register blocking,
row-block remainders, the exact GELU across its range), clear errors on bad
input, and used by the backbone exactly where it applies."""
import copy
import platform
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from mmincnext import ops
from mmincnext.models import InceptionNeXt
from mmincnext.models.backbones import inception_next as backbone_module


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            return next((set(line.split(':', 1)[1].split()) for line in f
                         if line.startswith('flags')), set())
    except OSError:
        return set()


CPU_RUNS_KERNEL = (platform.machine() in ('x86_64', 'AMD64')
                   and {'avx512f', 'avx512dq', 'fma'} <= cpu_flags())
needs_kernel = pytest.mark.skipif(
    not CPU_RUNS_KERNEL, reason='the kernel needs an x86-64 CPU with AVX-512')


def reference(x, shortcut, w1, b1, w2, b2):
    """shortcut + fc2(gelu(fc1(x))) in float64 (exact erf GELU)."""
    x, shortcut, w1, b1, w2, b2 = (t.double()
                                   for t in (x, shortcut, w1, b1, w2, b2))
    return shortcut + F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def random_mlp(rows, channels, hidden, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, channels, generator=gen),
            torch.randn(rows, channels, generator=gen),
            torch.randn(hidden, channels, generator=gen) / channels**0.5,
            torch.randn(hidden, generator=gen),
            torch.randn(channels, hidden, generator=gen) / hidden**0.5,
            torch.randn(channels, generator=gen))


@needs_kernel
def test_extension_is_built_on_a_cpu_that_runs_it():
    """`make install` builds mmincnext._ext; on this CPU it must load and
    run (else every test below would check the fallback instead)."""
    assert ops.fused_mlp_available()


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
        (7, 768, 3072),    # long reductions (K = 3072 in fc2)
    ])
def test_fused_mlp_equals_float64_reference(rows, channels, hidden):
    args = random_mlp(rows, channels, hidden)
    out = ops.fused_mlp(*args)
    ref = reference(*args)
    assert out.shape == (rows, channels) and out.dtype == torch.float32
    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, err  # float32 rounding: 1e-7 to 1.3e-6 here


@needs_kernel
def test_fused_gelu_is_exact_over_its_range():
    """With identity weights the kernel computes gelu(x) itself: as close
    to the exact erf form as PyTorch's float32 GELU, from -100 to 100; NaN
    stays NaN."""
    x = torch.cat([torch.linspace(-100, 100, 16 * 4001),
                   torch.tensor([0., -0., 1e-30, -1e-30, 5.5, -5.5] * 16 +
                                [float('nan')] * 16)]).view(-1, 16)
    eye = torch.eye(16)
    out = ops.fused_mlp(x, torch.zeros_like(x), eye, torch.zeros(16), eye,
                        torch.zeros(16))
    exact = F.gelu(x.double())[:-1]
    assert torch.isnan(out[-1]).all()
    err = (out[:-1].double() - exact).abs()
    # PyTorch's own float32 GELU is off by up to 1.2e-6 here
    torch_err = (F.gelu(x[:-1]).double() - exact).abs()
    assert err.max() <= torch_err.max(), (err.max(), torch_err.max())
    assert (err <= 5e-7 * x[:-1].abs().clamp_min(1.)).all(), err.max()


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


def randomized(model, seed=0):
    """Non-trivial BN statistics and layer scales (eval outputs that would
    expose a wrong gamma fold or a skipped block)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(('running_mean', 'gamma')):
                t.copy_(0.5 * torch.randn(t.shape, generator=gen))
    return model.eval()


@needs_kernel
@pytest.mark.parametrize('arch,deploy,widths', [
    # tiny: stages 0-1 (weights of 0.3 and 1.2 MB), not 2-3 (4.7, 14 MB)
    ('tiny', False, [96] * 3 + [192] * 3),
    ('tiny', True, [96] * 3 + [192] * 3),
    # atto: not stage 0 (40 channels), stages 1-2, not 3 (2.5 MB)
    ('atto', False, [80] * 2 + [160] * 6),
])
def test_backbone_uses_the_kernel_where_it_applies(arch, deploy, widths):
    """The MLPs run fused exactly where the kernel applies; outputs equal
    ``fused_mlp=False``. Autograd and ``fused_mlp=False`` never call it."""
    fused = randomized(InceptionNeXt(arch))
    unfused = InceptionNeXt(arch, fused_mlp=False)
    unfused.load_state_dict(fused.state_dict())
    unfused.eval()
    if deploy:
        fused.switch_to_deploy()
        unfused.switch_to_deploy()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    called = []
    real = ops.fused_mlp

    def spy(x, *args):
        called.append(x.shape[1])
        return real(x, *args)

    with mock.patch.object(ops, 'fused_mlp', side_effect=spy):
        with torch.no_grad():
            outs = fused(x)
            assert called == widths
            refs = unfused(x)
        if not deploy:
            fused(x)  # autograd path
        assert called == widths
    for out, ref in zip(outs, refs):
        err = ((out - ref).abs().max() / ref.abs().max()).item()
        assert err < 1e-5, err


@needs_kernel
def test_backbone_skips_the_kernel_when_it_cannot_run(monkeypatch):
    """float64, and weights over ``FUSED_MLP_MAX_WEIGHT_BYTES``."""
    calls = []
    monkeypatch.setattr(ops, 'fused_mlp',
                        lambda *args: calls.append(1) or None)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        InceptionNeXt('tiny').double().eval()(x.double())
        # stage 0's weights of tiny (0.29 MB) fit, stage 1's (1.18 MB) not
        monkeypatch.setattr(backbone_module, 'FUSED_MLP_MAX_WEIGHT_BYTES',
                            0.3e6)
        model = InceptionNeXt('tiny').eval()
        mlps = [model.stages[i].blocks[0].mlp for i in (0, 1)]
        fits = [backbone_module._fused_mlp_applies(
            torch.empty(8, mlp.fc2.out_channels),
            torch.empty(8, mlp.fc2.out_channels),
            mlp.fc1.weight.flatten(1), mlp.fc2.weight.flatten(1))
            for mlp in mlps]
    assert fits == [True, False]
    assert calls == []


def test_fused_mlp_without_the_extension_says_how_to_build_it(monkeypatch):
    """A pure-Python install: the backbone falls back to PyTorch's
    kernels, a direct call says what to do."""
    x = torch.randn(1, 3, 64, 64)
    model = InceptionNeXt('tiny', out_indices=(0, )).eval()
    with torch.no_grad():
        expected, = model(x)
    monkeypatch.setattr(ops, '_ext', None)
    ops.fused_mlp_available.cache_clear()
    try:
        assert not ops.fused_mlp_available()
        with pytest.raises(RuntimeError, match='pip install'):
            ops.fused_mlp(*random_mlp(2, 16, 64))
        with torch.no_grad():
            out, = model(x)
    finally:
        monkeypatch.undo()
        ops.fused_mlp_available.cache_clear()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

