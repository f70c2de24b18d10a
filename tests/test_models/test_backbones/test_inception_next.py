"""InceptionNeXt backbone: equality with the official network, shapes,
training modes."""
import pytest
import torch
import torch.nn as nn

from mmincnext.models import InceptionNeXt
from mmincnext.models.backbones.inception_next import (ConvMlp,
                                                       InceptionDWConv2d)

OFFICIAL_PARAMS = {
    'atto': 2_885_440,
    'tiny': 23_974_296,
    'small': 45_292_632,
    'base': 80_444_192,
}


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def assert_close_rel(out, ref, rtol=1e-5):
    scale = ref.abs().max().clamp_min(1e-12)
    err = (out - ref).abs().max() / scale
    assert err <= rtol, f'relative error {err:.3g} > {rtol}'


@pytest.mark.parametrize('arch', list(OFFICIAL_PARAMS))
def test_param_count_matches_official(arch):
    assert num_params(InceptionNeXt(arch)) == OFFICIAL_PARAMS[arch]


@pytest.mark.parametrize('alias,arch', [('a', 'atto'), ('t', 'tiny'),
                                        ('S', 'small'), ('b', 'base'),
                                        ('base_384', 'base')])
def test_arch_aliases(alias, arch):
    assert InceptionNeXt(alias).arch == InceptionNeXt(arch).arch


@pytest.mark.parametrize('arch', list(OFFICIAL_PARAMS))
def test_outputs_equal_official(arch, timm_reference):
    """Every stage output equals timm's (= the official code) on a
    non-square input with non-trivial weights in the official key layout."""
    ref, state_dict = timm_reference(arch)
    model = InceptionNeXt(arch)
    model.load_official_state_dict(state_dict)
    model.eval()
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model(x)
        refs = ref.forward_intermediates(x, intermediates_only=True)
    assert len(outs) == len(refs) == 4
    for out, expected in zip(outs, refs):
        assert out.shape == expected.shape
        assert_close_rel(out, expected)
    # the head is not part of the backbone: weights differ only there
    assert num_params(ref) - num_params(model) == sum(
        v.numel() for k, v in state_dict.items() if k.startswith('head.'))


def test_state_dict_keys_are_official(timm_reference):
    _, state_dict = timm_reference('atto')
    official = {k for k in state_dict if not k.startswith('head.')}
    assert set(InceptionNeXt('atto').state_dict()) == official


def test_channel_split_is_identity_first():
    """(C - 3gc, gc, gc, gc): identity, square, 1xk band, kx1 band."""
    mixer = InceptionDWConv2d(16, band_kernel_size=5, branch_ratio=0.125)
    assert mixer.split_indexes == (10, 2, 2, 2)
    with torch.no_grad():
        for i, conv in enumerate(
                (mixer.dwconv_hw, mixer.dwconv_w, mixer.dwconv_h)):
            conv.weight.zero_()
            conv.bias.fill_(100. * (i + 1))
    x = torch.randn(2, 16, 9, 9)
    y = mixer(x)
    assert torch.equal(y[:, :10], x[:, :10])  # identity channels come first
    assert torch.all(y[:, 10:12] == 100.)  # then the square branch
    assert torch.all(y[:, 12:14] == 200.)  # then the horizontal band
    assert torch.all(y[:, 14:16] == 300.)  # then the vertical band


def test_band_orientation():
    """dwconv_w spreads along the width (1 x k), dwconv_h along the height."""
    mixer = InceptionDWConv2d(8, band_kernel_size=5, branch_ratio=0.125)
    assert mixer.dwconv_hw.weight.shape == (1, 1, 3, 3)
    assert mixer.dwconv_w.weight.shape == (1, 1, 1, 5)
    assert mixer.dwconv_h.weight.shape == (1, 1, 5, 1)
    with torch.no_grad():
        for conv in (mixer.dwconv_hw, mixer.dwconv_w, mixer.dwconv_h):
            conv.weight.fill_(1.)
            conv.bias.zero_()
    x = torch.zeros(1, 8, 11, 11)
    x[:, :, 5, 5] = 1.  # an impulse in the centre of every channel
    y = mixer(x)
    w_branch, h_branch = y[0, 6], y[0, 7]
    assert torch.equal(w_branch.nonzero()[:, 0].unique(), torch.tensor([5]))
    assert w_branch[5].nonzero().flatten().tolist() == [3, 4, 5, 6, 7]
    assert torch.equal(h_branch.nonzero()[:, 1].unique(), torch.tensor([5]))
    assert h_branch[:, 5].nonzero().flatten().tolist() == [3, 4, 5, 6, 7]
    assert y[0, 5].count_nonzero() == 9  # the 3x3 square branch


def test_atto_uses_band_9_and_ratio_quarter():
    model = InceptionNeXt('atto')
    mixer = model.stages[0].blocks[0].token_mixer
    assert mixer.split_indexes == (10, 10, 10, 10)
    assert mixer.dwconv_w.kernel_size == (1, 9)
    assert InceptionNeXt('tiny').stages[0].blocks[0].token_mixer \
        .dwconv_h.kernel_size == (11, 1)


def test_custom_arch_dict():
    model = InceptionNeXt(
        dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128),
             band_kernel_size=7, branch_ratio=0.25, mlp_ratios=(2, 2, 2, 2)))
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]
    assert model.out_channels == [16, 32, 64, 128]
    assert model.stages[3].blocks[0].mlp.fc1.out_channels == 256


@pytest.mark.parametrize('out_indices,expected', [
    ((0, 1, 2, 3), (0, 1, 2, 3)),
    ([1, 2, 3], (1, 2, 3)),
    (3, (3, )),
    (-1, (3, )),
    ((-3, -1), (1, 3)),
    ((2, 0), (0, 2)),
])
def test_out_indices_forms_and_odd_shapes(out_indices, expected):
    model = InceptionNeXt('atto', out_indices=out_indices).eval()
    assert model.out_indices == expected
    outs = model(torch.rand(2, 3, 97, 131))
    sizes = {0: (24, 32), 1: (12, 16), 2: (6, 8), 3: (3, 4)}
    dims = (40, 80, 160, 320)
    assert [tuple(o.shape) for o in outs] == [
        (2, dims[i], *sizes[i]) for i in expected]
    assert model.out_channels == [dims[i] for i in expected]
    # stages after the last requested one are not built (no unused params)
    assert len(model.stages) == max(expected) + 1


def test_out_norms_only_on_returned_outputs():
    model = InceptionNeXt('atto', out_indices=(1, 3),
                          out_norm_cfg=dict(type='BN'))
    names = {n for n, _ in model.named_children()}
    assert {'norm1', 'norm3'} <= names and not {'norm0', 'norm2'} & names
    model.train()
    outs = model(torch.rand(2, 3, 64, 64))
    # BN in training mode normalises each output channel
    for out in outs:
        assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4


def test_raw_outputs_without_out_norm_equal_stage_outputs():
    model = InceptionNeXt('atto').eval()
    x = torch.rand(1, 3, 64, 64)
    outs = model(x)
    y = model.stem(x)
    for i, stage in enumerate(model.stages):
        y = stage(y)
        assert torch.equal(outs[i], y)


def test_default_init_is_trunc_normal():
    model = InceptionNeXt('atto')
    model.init_weights()
    w = model.stages[2].blocks[0].mlp.fc1.weight
    assert 0.018 < w.std() < 0.022 and w.mean().abs() < 1e-3
    assert torch.all(model.stages[2].blocks[0].mlp.fc1.bias == 0)
    assert torch.allclose(model.stages[0].blocks[0].gamma,
                          torch.full((40, ), 1e-6))


@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = InceptionNeXt('atto', frozen_stages=frozen_stages,
                          out_norm_cfg=dict(type='BN'))
    model.train()
    frozen = [model.stem] + [model.stages[i] for i in range(frozen_stages)] \
        + [getattr(model, f'norm{i}') for i in range(frozen_stages)]
    trainable = [model.stages[i] for i in range(frozen_stages, 4)]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in trainable:
        assert all(p.requires_grad for p in module.parameters())
        assert module.training
    if trainable:
        sum(o.sum() for o in model(torch.rand(2, 3, 64, 64))).backward()
        assert all(p.grad is None for m in frozen for p in m.parameters())
        assert all(p.grad is not None for m in trainable
                   for p in m.parameters())
    # frozen BN statistics do not move
    stem_mean = model.stem[1].running_mean.clone()
    model(torch.rand(2, 3, 64, 64) * 5 + 3)
    assert torch.equal(stem_mean, model.stem[1].running_mean)


def test_norm_eval_keeps_bn_statistics():
    model = InceptionNeXt('atto', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.rand(2, 3, 64, 64) + 1)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    # the rest trains: parameters still get gradients
    sum(o.sum() for o in model(torch.rand(2, 3, 64, 64))).backward()
    assert model.stem[0].weight.grad is not None


def test_with_cp_gives_same_outputs_and_gradients(timm_reference):
    _, state_dict = timm_reference('atto')
    grads = []
    for with_cp in (False, True):
        model = InceptionNeXt('atto', with_cp=with_cp)
        model.load_official_state_dict(state_dict)
        model.train()
        x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
        loss = sum((o**2).mean() for o in model(x))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name],
                                   rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize('nchw', [False, True])
@pytest.mark.parametrize('size', [(1, 2, 3), (2, 8, 10)])
def test_layer_scale_on_outputs_or_in_fc2_gives_the_same_gradients(
        monkeypatch, size, nchw):
    """The MLP puts the layer scale on its outputs where there are fewer
    pixels than hidden channels (6 < 64), and folds it into ``fc2`` where
    there are more (160): either way the same values and gradients, in
    float64, as the scale applied after an unscaled MLP."""
    torch.manual_seed(0)
    mlp = ConvMlp(16, 64).double()
    scale = (0.5 + torch.rand(16, dtype=torch.float64)).requires_grad_()
    n, h, w = size
    x = torch.randn(n, 16, h, w, dtype=torch.float64, requires_grad=True)
    assert mlp.scales_outputs(n * h * w) == (n * h * w < 64)

    def grads(scales_outputs):
        monkeypatch.setattr(ConvMlp, 'scales_outputs',
                            lambda self, rows: scales_outputs)
        if nchw:
            out = mlp.forward_nchw(x, scale)
        else:
            out = mlp(x.permute(0, 2, 3, 1), scale).permute(0, 3, 1, 2)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
        params = (x, scale, *mlp.parameters())
        return (out, *torch.autograd.grad(
            (out * weights.view_as(out)).sum(), params))

    on_outputs, folded = grads(True), grads(False)
    ref = mlp.forward_nchw(x) * scale.view(-1, 1, 1)
    torch.testing.assert_close(on_outputs[0], ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(on_outputs, folded):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = InceptionNeXt('atto', drop_path_rate=0.5,
                          layer_scale_init_value=1.)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks
             if not isinstance(b.drop_path, nn.Identity)]
    # linear from 0 over all 12 blocks: the first block has rate 0
    expected = torch.linspace(0, 0.5, 12).tolist()[1:]
    assert rates == pytest.approx(expected)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    plain = InceptionNeXt('atto', layer_scale_init_value=1.).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(model(x)[-1], model(x)[-1])
    assert torch.equal(model(x)[-1], plain(x)[-1])
    model.train()
    plain.train()
    outs = [model(x)[-1] for _ in range(3)]
    assert not torch.equal(outs[0], outs[1])


def test_buffers_follow_bn_momentum_defaults():
    bn = InceptionNeXt('atto').stages[1].blocks[0].norm
    assert isinstance(bn, nn.BatchNorm2d)
    assert bn.eps == 1e-5 and bn.momentum == 0.1


def test_syncbn_norm_cfg_is_used_everywhere():
    model = InceptionNeXt('atto', norm_cfg=dict(type='SyncBN'),
                          out_norm_cfg=dict(type='SyncBN'))
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm
                                                    ._BatchNorm)]
    # stem + 3 downsamples + 12 blocks + 4 output norms
    assert len(bns) == 1 + 3 + 12 + 4
    assert all(isinstance(m, nn.SyncBatchNorm) for m in bns)


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='huge'), "unknown InceptionNeXt arch 'huge'"),
    (dict(arch=dict(dims=(8, 16, 32, 64))), r"misses key\(s\) \['depths'\]"),
    (dict(arch=dict(depths=(1, 1, 1), dims=(8, 16, 32, 64))),
     r"arch\['depths'\] must hold 4"),
    (dict(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                    band_kernel_size=10)), 'positive odd int'),
    (dict(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), ratio=.1)),
     r"unknown key\(s\) \['ratio'\]"),
    (dict(arch=dict(depths=(1, 1, 1, 1), dims=(4, 16, 32, 64),
                    branch_ratio=0.125)), 'leaves no channel'),
    (dict(out_indices=(0, 4)), 'out_indices entry 4 is out of range'),
    (dict(out_indices=(1, -3)), 'name a stage twice'),
    (dict(out_indices=()), 'non-empty'),
    (dict(frozen_stages=5), r'frozen_stages must be in \[-1, 4\]'),
    (dict(frozen_stages=-2), 'frozen_stages must be'),
    (dict(out_indices=(0, 1), frozen_stages=3), 'not built'),
])
def test_bad_constructor_arguments(kwargs, message):
    kwargs = {'arch': 'atto', **kwargs}
    with pytest.raises(ValueError, match=message):
        InceptionNeXt(**kwargs)


def test_wrong_input_channels_and_too_small_input():
    model = InceptionNeXt('atto').eval()
    with pytest.raises(ValueError, match='with 3 channels, got shape'):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match='with 3 channels'):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match='smaller than the network stride 32'):
        model(torch.rand(1, 3, 64, 20))
    # a network built up to stage 1 needs stride 8 only
    assert InceptionNeXt('atto', out_indices=1).eval()(
        torch.rand(1, 3, 8, 8))[0].shape == (1, 80, 1, 1)
