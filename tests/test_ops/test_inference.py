"""mmincnext.ops.inference: the backbone uses each compiled kernel exactly
where it applies, falls back to PyTorch where it cannot, and the oneDNN
MLP path in row blocks equals the plain block."""
from unittest import mock

import pytest
import torch
from ops_helpers import needs_kernel, random_mlp, rel_err

from mmincnext import ops
from mmincnext.models import InceptionNeXt


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


def spied_calls(names):
    """Patch ``mmincnext.ops.kernels.<name>``, which the inference paths call,
    to record the channel count of each call (and still compute it)."""
    calls = {name: [] for name in names}

    def spy(name):
        real = getattr(ops.kernels, name)

        def call(x, *args):
            calls[name].append(x.shape[1] if x.dim() == 4 else x.shape[-1])
            return real(x, *args)
        return call

    patches = [mock.patch.object(ops.kernels, name, side_effect=spy(name))
               for name in names]
    return calls, patches


KERNELS = ('metanext_block', 'inception_mixer', 'fused_mlp')


@needs_kernel
@pytest.mark.parametrize('arch,deploy,norm,expected', [
    # tiny: whole blocks in stages 0-2 (MLP weights of 0.3, 1.2 and 4.7 MB),
    # the mixer kernel and oneDNN's GEMMs in stage 3 (14.2 MB)
    ('tiny', False, 'BN', dict(metanext_block=[96] * 3 + [192] * 3 + [384] * 9,
                               inception_mixer=[768] * 3,
                               fused_mlp=[])),
    ('tiny', True, 'BN', dict(metanext_block=[96] * 3 + [192] * 3 + [384] * 9,
                              inception_mixer=[768] * 3,
                              fused_mlp=[])),
    # atto: stage 0 has 40 channels; stage 3's weights (2.5 MB) in chunks
    ('atto', False, 'BN', dict(metanext_block=[80] * 2 + [160] * 6 + [320] * 2,
                               inception_mixer=[40] * 2,
                               fused_mlp=[])),
    # a GroupNorm is no affine the kernels take: PyTorch's token mixer and
    # norm, then the fused MLP where it fits
    ('tiny', False, 'GN', dict(metanext_block=[], inception_mixer=[],
                               fused_mlp=[96] * 3 + [192] * 3 + [384] * 9)),
])
def test_backbone_uses_the_kernels_where_they_apply(arch, deploy, norm,
                                                     expected):
    """Each kernel runs exactly where it applies; outputs equal
    ``cpu_kernels=False``, which never calls them. With autograd only the
    token mixers take a kernel (their training path)."""
    norm_cfg = dict(type='BN') if norm == 'BN' else dict(type='GN',
                                                         num_groups=4)
    model = randomized(InceptionNeXt(arch, norm_cfg=norm_cfg))
    plain = InceptionNeXt(arch, norm_cfg=norm_cfg, cpu_kernels=False)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    if deploy:
        model.switch_to_deploy()
        plain.switch_to_deploy()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    calls, patches = spied_calls(KERNELS)
    with patches[0], patches[1], patches[2]:
        with torch.no_grad():
            outs = model(x)
            assert calls == expected
            refs = plain(x)
        assert calls == expected
        if not deploy:
            for spied in calls.values():
                spied.clear()
            model(x)  # autograd path
            assert calls == dict(
                metanext_block=[], fused_mlp=[],
                inception_mixer=[block.mlp.fc1.in_channels
                                 for stage in model.stages
                                 for block in stage.blocks])
    for out, ref in zip(outs, refs):
        assert rel_err(out, ref.double()) < 1e-5


@needs_kernel
def test_backbone_skips_the_kernels_when_they_cannot_run():
    """float64, BN in training mode, NCHW blocks, and MLP weights over
    ``fused_mlp_max_weight_bytes`` (the mixer kernel still runs)."""
    calls, patches = spied_calls(KERNELS)
    x = torch.randn(1, 3, 64, 64)
    model = InceptionNeXt('tiny').eval()
    block = model.stages[0].blocks[0]
    h = torch.randn(1, 96, 16, 16)
    with patches[0], patches[1], patches[2], torch.no_grad():
        InceptionNeXt('tiny').double().eval()(x.double())
        assert ops.inference_plan(block, h) == (None, False)  # NCHW memory
        block.norm.train()  # batch statistics: not an affine
        assert ops.inference_plan(
            block, h.contiguous(memory_format=torch.channels_last)) == (
                None, False)
        assert calls == {name: [] for name in KERNELS}
        # stage 0's weights of tiny (0.29 MB) fit, stage 1's (1.18 MB) not
        small = InceptionNeXt('tiny', out_indices=(0, 1)).eval()
        h = small.stem(x)
        for stage in small.stages:
            h = stage.downsample(h)
            for block in stage.blocks:
                h = ops.metanext_inference(
                    block, h, fused_mlp_max_weight_bytes=int(0.3e6))
    assert calls == dict(metanext_block=[96] * 3, inception_mixer=[192] * 3,
                         fused_mlp=[])


@pytest.mark.parametrize('arch,cpu_kernels', [('atto', True),
                                               ('atto', False),
                                               ('tiny', False)])
@pytest.mark.parametrize('deploy', [False, True])
def test_mlp_row_blocks_equal_the_block(arch, cpu_kernels, deploy):
    """``mlp_block_bytes`` small enough for many row blocks (and a
    remainder) on the oneDNN path: every block's output equals its autograd
    forward (the plain modules)."""
    model = randomized(InceptionNeXt(arch, cpu_kernels=cpu_kernels))
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = model.stem(x)
    for stage in model.stages:
        with torch.no_grad():
            h = stage.downsample(h)
        for block in stage.blocks:
            with torch.no_grad():
                out = ops.metanext_inference(block, h, mlp_block_bytes=5000)
            with torch.enable_grad():
                ref = block(h).detach()
            assert rel_err(out, ref) <= 1e-5
            h = ref


def test_without_the_extension_the_kernels_say_how_to_build_them(monkeypatch):
    """A pure-Python install: the backbone falls back to PyTorch's
    kernels, a direct call says what to do."""
    x = torch.randn(1, 3, 64, 64)
    model = InceptionNeXt('tiny', out_indices=(0, )).eval()
    with torch.no_grad():
        expected, = model(x)
    monkeypatch.setattr(ops.kernels, '_ext', None)
    try:
        assert not ops.cpu_kernels_available()
        with pytest.raises(RuntimeError, match='build_ext --inplace'):
            ops.fused_mlp(*random_mlp(2, 16, 64))
        with pytest.raises(RuntimeError, match='build_ext --inplace'):
            ops.inception_mixer(x, model.stages[0].blocks[0].token_mixer)
        with torch.no_grad():
            out, = model(x)
    finally:
        monkeypatch.undo()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)



def test_empty_batch_inference():
    """An empty batch goes through every inference path (kernels where they
    are built) and gives empty outputs of the right shapes."""
    model = InceptionNeXt('atto').eval()
    x = torch.zeros(0, 3, 64, 64).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(0, 40, 16, 16), (0, 80, 8, 8),
                                              (0, 160, 4, 4), (0, 320, 2, 2)]


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason='this CPU has no bf16 instructions for oneDNN')
@pytest.mark.parametrize('deploy', [False, True])
def test_bf16_autocast_runs_onednn_in_bf16_within_the_stated_tolerance(
        deploy):
    """Under CPU autocast to bfloat16 every block's MLP runs on oneDNN's
    fused ops in bf16 (not the unfused autocast path), and the outputs are
    within the stated tolerance of fp32: 2 % of each map's largest value."""
    model = randomized(InceptionNeXt('atto', out_indices=(0, 1, 2, 3)))
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    dtypes = []
    real = ops.inference._mlp_onednn

    def spy(x, *args):
        dtypes.append(x.dtype)
        return real(x, *args)

    with torch.no_grad():
        want = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16), mock.patch.object(
                ops.inference, '_mlp_onednn', side_effect=spy):
            got = model(x)
    assert dtypes == [torch.bfloat16] * sum(model.arch['depths'])
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16
        err = (g.float() - w).abs().max() / w.abs().max()
        assert 1e-4 < err < 2e-2  # bf16 did run, within the tolerance
