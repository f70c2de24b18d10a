"""Deploy mode and channels-last: outputs equal the official network's;
``switch_to_deploy`` is one-way and idempotent; torch.compile sees one
graph."""
import copy

import pytest
import torch
import torch.nn as nn

from mmincnext.models import InceptionNeXt


def rel_err(out, ref):
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def official_pair(arch, timm_reference):
    """timm's network and ours with the same non-trivial weights (layer
    scales around 1, BN statistics away from (0, 1))."""
    ref, state_dict = timm_reference(arch)
    model = InceptionNeXt(arch)
    model.load_official_state_dict(state_dict)
    return ref, model.eval()


@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_deploy_and_channels_last_equal_official(arch, timm_reference):
    """Eval (fused inference path), deploy and channels-last outputs equal
    timm's (the MLP in row blocks: tests/test_ops/test_inference.py)."""
    ref, model = official_pair(arch, timm_reference)
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(3))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    deploy = copy.deepcopy(model)
    deploy.switch_to_deploy()
    deploy_cl = copy.deepcopy(deploy).to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, intermediates_only=True)
        results = {
            'eval': model(x),
            'eval channels_last': model(x_cl),
            'deploy': deploy(x),
            'deploy channels_last': deploy_cl(x_cl),
        }
    with torch.enable_grad():
        # autograd: the unfolded eval path and the plain deploy path
        results['eval autograd'] = tuple(o.detach() for o in model(x))
        results['deploy autograd'] = tuple(o.detach() for o in deploy(x))
    for name, outs in results.items():
        assert len(outs) == 4, name
        for i, (out, exp) in enumerate(zip(outs, expected)):
            assert out.shape == exp.shape, (name, i)
            assert rel_err(out, exp) <= 1e-5, (name, i, rel_err(out, exp))
    # outputs come back in the input's memory format
    assert all(o.is_contiguous() for o in results['eval'])
    assert all(o.is_contiguous() for o in results['deploy'])
    assert all(o.is_contiguous(memory_format=torch.channels_last)
               for o in results['eval channels_last'])


def test_deploy_removes_norms_and_layer_scales(timm_reference):
    _, model = official_pair('atto', timm_reference)
    names = [n for n, _ in model.named_parameters()]
    model.switch_to_deploy()
    assert model.deploy
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(block.gamma is None for stage in model.stages
               for block in stage.blocks)
    deployed = {n for n, _ in model.named_parameters()}
    # every remaining tensor keeps its official name
    assert deployed <= set(names)
    assert not any('.norm.' in n or n.endswith('gamma') for n in deployed)


def test_deploy_is_one_way_and_idempotent(timm_reference):
    _, model = official_pair('atto', timm_reference)
    model.switch_to_deploy()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.switch_to_deploy()  # a second call changes nothing
        second = model(x)
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_deploy_keeps_output_norms():
    torch.manual_seed(0)
    model = InceptionNeXt('atto', out_norm_cfg=dict(type='BN'),
                          out_indices=(1, 3)).eval()
    for m in model.modules():  # non-trivial statistics everywhere
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        outs = model(x)
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3')
    for out, exp in zip(outs, expected):
        assert rel_err(out, exp) <= 1e-5


def test_parameter_names_unchanged_before_deploy(timm_reference):
    """The speed work keeps the official layout (and checkpoint loading)."""
    _, state_dict = timm_reference('atto')
    model = InceptionNeXt('atto')
    official = {k: v.shape for k, v in state_dict.items()
                if not k.startswith('head.')}
    assert {k: v.shape for k, v in model.state_dict().items()} == official


def test_channels_last_training_gradients_equal(timm_reference):
    """A training step in channels-last gives the official gradients."""
    ref, model = official_pair('atto', timm_reference)
    ref = copy.deepcopy(ref).train()
    model.train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = sum((o**2).mean() for o in model(x))
    loss.backward()
    ref_loss = sum((o**2).mean() for o in ref.forward_intermediates(
        x, intermediates_only=True))
    ref_loss.backward()
    assert rel_err(loss.detach(), ref_loss.detach()) <= 1e-5
    ref_grads = {n: p.grad for n, p in ref.named_parameters()
                 if p.grad is not None}
    # conv biases right before a training-mode BN get (mathematically) zero
    # gradients, rounding noise in both networks: those must stay within
    # 1e-6 of the largest gradient, whichever library ran the GEMMs; every
    # other gradient equals the official one within 1e-4
    largest = max(g.abs().max() for g in ref_grads.values())
    for name, param in model.named_parameters():
        ref_grad = ref_grads[name]
        if ref_grad.abs().max() < 1e-3 * largest:
            assert param.grad.abs().max() <= 1e-6 * largest, name
            continue
        err = (param.grad - ref_grad).abs().max() / ref_grad.abs().max()
        assert err <= 1e-4, (name, err)


@pytest.mark.parametrize('mode', ['train', 'eval', 'deploy'])
def test_torch_compile_captures_one_graph(mode):
    """torch.compile sees the whole backbone as one graph (no graph breaks)
    in training, eval inference and deploy mode, and its outputs equal the
    eager ones (dynamo's 'eager' backend: no C++ compiler needed)."""
    torch.manual_seed(0)
    model = InceptionNeXt('atto')
    model.init_weights()
    x = torch.randn(2, 3, 64, 96)
    if mode != 'train':
        model.eval()
    if mode == 'deploy':
        model.switch_to_deploy()
    torch._dynamo.reset()
    grad = torch.enable_grad() if mode == 'train' else torch.no_grad()
    with grad:
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
        compiled = torch.compile(model, backend='eager', fullgraph=True)
        if mode == 'train':  # same batch statistics and drop-path draws
            torch.manual_seed(1)
            expected = model(x)
            torch.manual_seed(1)
        else:
            expected = model(x)
        outs = compiled(x)
    for out, exp in zip(outs, expected):
        assert rel_err(out.detach(), exp.detach()) <= 1e-5
