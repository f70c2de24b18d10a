"""YOLOv8InceptionPAFPN and its C2fMetaNeXt layer: shapes, channels (the
same as MMYOLO's YOLOv8PAFPN), gradients, the inference path, registries,
and ``import mmincnext`` without a usable mmyolo."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

# skips only where MMYOLO is not installed (it is in the project's
# environment, see requirements/runtime.txt)
pytest.importorskip('mmyolo')

from mmincnext.models.backbones.inception_next import \
    MetaNeXtBlock  # noqa: E402
from mmincnext.models.necks import (C2fMetaNeXt,  # noqa: E402
                                    YOLOv8InceptionPAFPN)

REPO_ROOT = os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', '..'))
ATTO = [40, 80, 160, 320]  # InceptionNeXt-atto, strides 4-32


def features(channels, size=64, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size >> i, size >> i, generator=gen)
            for i, c in enumerate(channels)]


def randomize_layer_scales(module):
    """Layer scales of order 1 (not the 1e-6 init), so that the blocks'
    token mixers and MLPs show in the outputs."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, MetaNeXtBlock):
            m.gamma.data = 0.5 + torch.rand(m.gamma.shape, generator=gen)


def test_c2f_metanext_data_flow_and_channels():
    layer = C2fMetaNeXt(120, 40, num_blocks=2, mlp_ratio=3.)
    assert layer.mid_channels == 20
    assert layer.main_conv.conv.in_channels == 120
    assert layer.main_conv.conv.out_channels == 2 * 20
    assert layer.final_conv.conv.in_channels == (2 + 2) * 20
    assert layer.final_conv.conv.out_channels == 40
    assert len(layer.blocks) == 2
    for block in layer.blocks:
        assert isinstance(block, MetaNeXtBlock)
        # InceptionNeXt's mixer on 20 channels: 2 per conv branch, 11 bands
        assert block.token_mixer.split_indexes == (14, 2, 2, 2)
        assert block.token_mixer.dwconv_w.kernel_size == (1, 11)
        assert block.mlp.fc1.out_channels == 60
    # the blocks' norm is the layer's norm_cfg (MMYOLO's BN settings)
    assert layer.blocks[0].norm.momentum == 0.03
    assert layer.blocks[0].norm.eps == 0.001

    x = torch.randn(2, 120, 16, 12)
    out = layer(x)
    assert out.shape == (2, 40, 16, 12)
    # step by step: split, blocks in sequence, concat, final conv
    halves = list(layer.main_conv(x).split((20, 20), 1))
    for block in layer.blocks:
        halves.append(block(halves[-1]))
    assert torch.allclose(out, layer.final_conv(torch.cat(halves, 1)))

    with pytest.raises(ValueError, match='num_blocks'):
        C2fMetaNeXt(16, 16, num_blocks=0)
    with pytest.raises(ValueError, match='drop path rates'):
        C2fMetaNeXt(16, 16, num_blocks=2, drop_path_rate=[0.1])
    with pytest.raises(ValueError, match='branch_ratio'):  # mid 2: gc = 0
        C2fMetaNeXt(8, 4)


@pytest.mark.parametrize('channels', [ATTO[1:], ATTO], ids=['P3-P5',
                                                            'P2-P5'])
def test_neck_shapes_and_yolov8_pafpn_channels(channels):
    """Same levels and the same per-layer widths as MMYOLO's YOLOv8PAFPN;
    each C2f's bottlenecks are MetaNeXt blocks."""
    from mmyolo.models.layers import CSPLayerWithTwoConv
    from mmyolo.models.necks import YOLOv8PAFPN
    kwargs = dict(in_channels=channels, out_channels=channels,
                  deepen_factor=0.33, widen_factor=1.0, num_csp_blocks=3)
    neck = YOLOv8InceptionPAFPN(**kwargs)
    neck.init_weights()
    stock = YOLOv8PAFPN(**kwargs)
    assert len(neck.top_down_layers) == len(neck.bottom_up_layers) == \
        len(channels) - 1
    for ours, theirs in zip(
            list(neck.top_down_layers) + list(neck.bottom_up_layers),
            list(stock.top_down_layers) + list(stock.bottom_up_layers)):
        assert isinstance(ours, C2fMetaNeXt)
        assert isinstance(theirs, CSPLayerWithTwoConv)
        assert ours.mid_channels == theirs.mid_channels
        assert len(ours.blocks) == len(theirs.blocks) == 1  # s depth
        for name in ('main_conv', 'final_conv'):
            assert getattr(ours, name).conv.weight.shape == \
                getattr(theirs, name).conv.weight.shape
    for ours, theirs in zip(neck.downsample_layers, stock.downsample_layers):
        assert ours.conv.weight.shape == theirs.conv.weight.shape
    # InceptionNeXt's init of the blocks; MMYOLO's for the ConvModules
    block = neck.top_down_layers[0].blocks[0]
    assert block.token_mixer.dwconv_hw.weight.std() < 0.05
    assert float(block.mlp.fc1.bias.abs().max()) == 0
    assert float(block.gamma.max()) == pytest.approx(1e-6)

    x = features(channels)
    outs = neck(x)
    assert [tuple(o.shape) for o in outs] == [tuple(f.shape) for f in x]


def test_every_parameter_gets_a_gradient():
    neck = YOLOv8InceptionPAFPN(ATTO, ATTO, deepen_factor=0.67,
                                num_csp_blocks=3, drop_path_rate=0.1)
    neck.init_weights()
    randomize_layer_scales(neck)
    neck.train()
    x = [f.requires_grad_() for f in features(ATTO)]
    loss = sum(o.pow(2).mean() for o in neck(x))
    loss.backward()
    no_grad = [n for n, p in neck.named_parameters() if p.grad is None]
    assert not no_grad, no_grad[:5]
    token_mixer = neck.bottom_up_layers[-1].blocks[-1].token_mixer
    assert float(token_mixer.dwconv_h.weight.grad.abs().sum()) > 0
    assert all(float(f.grad.abs().sum()) > 0 for f in x)
    assert len(neck.top_down_layers[0].blocks) == 2  # round(3 * 0.67)


def test_inference_path_matches_autograd_path():
    """In eval mode without autograd the blocks take mmincnext's inference
    path (the compiled CPU kernels, on the channels-last input the layer
    gives them): the same outputs as the autograd path."""
    from mmincnext import ops
    from mmincnext.ops import inference
    neck = YOLOv8InceptionPAFPN(ATTO, ATTO, deepen_factor=0.33)
    neck.init_weights()
    randomize_layer_scales(neck)
    neck.train()
    for _ in range(2):  # BN running statistics away from (0, 1)
        neck(features(ATTO, seed=3))
    neck.eval()
    block = neck.top_down_layers[0].blocks[0]
    x = torch.randn(1, block.mlp.fc1.in_channels, 8, 8).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        plan = inference.inference_plan(block, x)
    assert (plan.norm is not None) == ops.cpu_kernels_available()
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = [f.contiguous(memory_format=memory_format)
             for f in features(ATTO, seed=4)]
        reference = neck(x)  # autograd enabled: PyTorch's modules
        with torch.no_grad():
            fast = neck(x)
        for a, b in zip(fast, reference):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_channel_checks():
    with pytest.raises(ValueError, match='out_channels must equal'):
        YOLOv8InceptionPAFPN([80, 160, 320], [64, 128, 256])
    with pytest.raises(ValueError, match='out_channels must equal'):
        YOLOv8InceptionPAFPN([80, 160, 320], 128)
    with pytest.raises(ValueError, match='at least 2 levels'):
        YOLOv8InceptionPAFPN([80], [80])
    # widths a backbone does not return fail loudly in the first conv
    neck = YOLOv8InceptionPAFPN([80, 160, 320], [80, 160, 320])
    with pytest.raises(RuntimeError):
        neck(features([96, 192, 384], size=32))


@pytest.mark.parametrize('scope', ['mmyolo', 'mmengine', 'mmincnext'])
def test_registered_in_mmincnext_and_the_root(scope):
    if scope == 'mmyolo':
        from mmyolo.registry import MODELS
    elif scope == 'mmengine':
        from mmengine.registry import MODELS
    else:
        from mmincnext.registry import MODELS
    neck = MODELS.build(dict(type='YOLOv8InceptionPAFPN', in_channels=ATTO,
                             out_channels=ATTO, deepen_factor=0.33))
    assert isinstance(neck, YOLOv8InceptionPAFPN)
    layer = MODELS.build(dict(type='C2fMetaNeXt', in_channels=16,
                              out_channels=16))
    assert isinstance(layer, C2fMetaNeXt)


def run_python(code, env=None):
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_mmincnext_imports_without_mmyolo():
    out = run_python("""
        import sys
        sys.modules['mmyolo'] = None  # as if not installed
        import mmincnext
        from mmincnext import models
        from mmengine.registry import MODELS
        assert 'YOLOv8InceptionPAFPN' not in models.__all__
        assert MODELS.get('InceptionNeXt') is not None
        print('ok')
    """)
    assert out.split()[-1] == 'ok'


def test_mmincnext_imports_with_an_unusable_mmyolo(tmp_path):
    """mmyolo 0.6.0 asserts mmcv < 2.1.0 at import: mmincnext still
    imports (for mmdet and mmseg) and says why the neck is missing."""
    fake = tmp_path / 'mmyolo'
    fake.mkdir()
    (fake / '__init__.py').write_text(
        "raise AssertionError('MMCV==2.1.0 is used but incompatible')\n")
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tmp_path), REPO_ROOT] + [p for p in env.get(
            'PYTHONPATH', '').split(os.pathsep) if p])
    out = run_python("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import mmincnext
        from mmincnext import models
        assert 'YOLOv8InceptionPAFPN' not in models.__all__
        print([str(w.message) for w in caught
               if 'YOLOv8InceptionPAFPN' in str(w.message)])
        print('ok')
    """, env=env)
    assert 'incompatible' in out and 'not registered' in out
    assert out.split()[-1] == 'ok'
