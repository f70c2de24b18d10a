"""Layer-/stage-wise lr decay for InceptionNeXt detectors and segmentors."""
import os.path as osp
import re

import pytest
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmincnext  # noqa: F401  (registers everything)
from mmincnext.engine import (get_layer_id_for_inceptionnext,
                              get_stage_id_for_inceptionnext)

import mmdet

BASE_LR, WD, RATE = 1e-4, 0.05, 0.9


def shipped_config(package, path):
    """A base config shipped inside the mmdet / mmseg wheel."""
    module = __import__(package)
    return Config.fromfile(
        osp.join(osp.dirname(module.__file__), '.mim', 'configs', path))


def build_mask_rcnn(arch='tiny', **backbone):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = shipped_config('mmdet', '_base_/models/mask-rcnn_r50_fpn.py')
    dims = {'tiny': [96, 192, 384, 768], 'atto': [40, 80, 160, 320]}[arch]
    cfg.model.backbone = dict(type='InceptionNeXt', arch=arch,
                              out_norm_cfg=dict(type='BN'), **backbone)
    cfg.model.neck.in_channels = dims
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def optim_cfg(**paramwise):
    return dict(
        type='OptimWrapper',
        constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
        paramwise_cfg=paramwise,
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD))


def lr_and_wd_by_name(model, optim_wrapper):
    ids = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            name = ids[id(p)]
            assert name not in out, f'{name} in two groups'
            out[name] = (group['lr'], group['weight_decay'])
    return out


@pytest.fixture(scope='module')
def mask_rcnn_tiny():
    return build_mask_rcnn('tiny')


def test_layer_wise_lr_per_group_mask_rcnn(mask_rcnn_tiny):
    model = mask_rcnn_tiny
    wrapper = build_optim_wrapper(
        model, optim_cfg(decay_rate=RATE, decay_type='layer_wise',
                         num_layers=6))
    got = lr_and_wd_by_name(model, wrapper)
    # every trainable parameter is in exactly one group
    assert set(got) == {n for n, p in model.named_parameters()
                        if p.requires_grad}

    def lr(layer_id):  # 8 ids: 0..6 backbone, 7 = neck/heads (full lr)
        return BASE_LR * RATE**(7 - layer_id)

    expected = {
        'backbone.stem.0.weight': (lr(0), WD),
        'backbone.stem.1.weight': (lr(0), 0.),
        'backbone.stages.0.blocks.2.mlp.fc1.weight': (lr(1), WD),
        'backbone.stages.0.blocks.0.gamma': (lr(1), 0.),
        'backbone.stages.1.downsample.0.weight': (lr(2), 0.),
        'backbone.stages.1.downsample.1.weight': (lr(2), WD),
        'backbone.stages.1.blocks.2.token_mixer.dwconv_w.weight':
        (lr(2), WD),
        'backbone.stages.2.downsample.1.weight': (lr(3), WD),
        'backbone.stages.2.blocks.0.mlp.fc2.bias': (lr(3), 0.),
        'backbone.stages.2.blocks.2.norm.weight': (lr(3), 0.),
        'backbone.stages.2.blocks.3.mlp.fc2.weight': (lr(4), WD),
        'backbone.stages.2.blocks.5.token_mixer.dwconv_h.weight':
        (lr(4), WD),
        'backbone.stages.2.blocks.8.gamma': (lr(5), 0.),
        'backbone.stages.3.downsample.1.weight': (lr(6), WD),
        'backbone.stages.3.blocks.2.mlp.fc1.weight': (lr(6), WD),
        'backbone.norm0.weight': (lr(7), 0.),
        'backbone.norm3.bias': (lr(7), 0.),
        'neck.lateral_convs.0.conv.weight': (BASE_LR, WD),
        'neck.fpn_convs.3.conv.bias': (BASE_LR, 0.),
        'rpn_head.rpn_conv.weight': (BASE_LR, WD),
        'roi_head.bbox_head.fc_cls.weight': (BASE_LR, WD),
        'roi_head.mask_head.conv_logits.bias': (BASE_LR, 0.),
    }
    for name, (want_lr, want_wd) in expected.items():
        assert got[name][0] == pytest.approx(want_lr, rel=1e-9), name
        assert got[name][1] == want_wd, name
    # every 1-D parameter and bias without decay, every other with decay
    for name, (_, wd) in got.items():
        p = dict(model.named_parameters())[name]
        assert wd == (0. if p.ndim == 1 or name.endswith('.bias') else WD)
    # 8 distinct lrs: ids 0..7
    assert len({round(v[0] / BASE_LR, 12) for v in got.values()}) == 8


def test_layer_ids_match_mmdet_convnext_mapping(mask_rcnn_tiny):
    """Our ids equal mmdet's ConvNeXt ids on the equivalent ConvNeXt names
    (stem = downsample_layers.0, stages.i.downsample = downsample_layers.i,
    stages.i.blocks.j = stages.i.j)."""
    from mmdet.engine.optimizers.layer_decay_optimizer_constructor import \
        get_layer_id_for_convnext

    def to_convnext(name):
        name = re.sub(r'^backbone\.stem\.', 'backbone.downsample_layers.0.',
                      name)
        name = re.sub(r'^backbone\.stages\.(\d)\.downsample\.',
                      r'backbone.downsample_layers.\1.', name)
        return re.sub(r'^backbone\.stages\.(\d)\.blocks\.',
                      r'backbone.stages.\1.', name)

    checked = 0
    for name, _ in mask_rcnn_tiny.named_parameters():
        if re.match(r'backbone\.(stem|stages)\.', name):
            assert get_layer_id_for_inceptionnext(name, 6) == \
                get_layer_id_for_convnext(to_convnext(name), 6), name
            checked += 1
    assert checked > 100


def test_stage_wise_and_frozen_stages():
    model = build_mask_rcnn('atto', frozen_stages=1)
    wrapper = build_optim_wrapper(
        model, optim_cfg(decay_rate=RATE, decay_type='stage_wise'))
    got = lr_and_wd_by_name(model, wrapper)
    # frozen stem and stage 0 are not optimised
    assert not any(n.startswith(('backbone.stem.', 'backbone.stages.0.'))
                   for n in got)
    # default num_layers for stage-wise is 4: stage i -> id i + 1
    for name, (lr, _) in got.items():
        m = re.match(r'backbone\.stages\.(\d)\.', name)
        want_id = int(m.group(1)) + 1 if m else 5
        assert lr == pytest.approx(BASE_LR * RATE**(5 - want_id)), name
        assert get_stage_id_for_inceptionnext(name, 4) == want_id


def test_default_num_layers_atto_layer_wise():
    model = build_mask_rcnn('atto')
    wrapper = build_optim_wrapper(model, optim_cfg(decay_rate=RATE))
    got = lr_and_wd_by_name(model, wrapper)
    # atto: stage 2 has 6 blocks -> ids 3, 4; stage 3 -> 5; head -> 6
    assert got['backbone.stages.2.blocks.5.mlp.fc1.weight'][0] == \
        pytest.approx(BASE_LR * RATE**2)
    assert got['backbone.stages.3.blocks.0.mlp.fc1.weight'][0] == \
        pytest.approx(BASE_LR * RATE)
    assert got['rpn_head.rpn_cls.weight'][0] == pytest.approx(BASE_LR)
    with pytest.raises(ValueError, match='num_layers >= 5'):
        build_optim_wrapper(model, optim_cfg(decay_rate=RATE, num_layers=4))


def test_lr_decay_for_mmseg_segmentor():
    import mmseg  # noqa: F401  (a test requirement: fails loudly if missing)
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = shipped_config('mmseg', '_base_/models/upernet_r50.py')
    cfg.model.backbone = dict(type='InceptionNeXt', arch='atto')
    cfg.model.decode_head.in_channels = [40, 80, 160, 320]
    cfg.model.auxiliary_head.in_channels = 160
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type='BN')
    cfg.model.pop('data_preprocessor')
    cfg.model.pretrained = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(
        model, optim_cfg(decay_rate=RATE, decay_type='layer_wise',
                         num_layers=6))
    got = lr_and_wd_by_name(model, wrapper)
    assert got['backbone.stem.0.weight'][0] == pytest.approx(
        BASE_LR * RATE**7)
    assert got['decode_head.conv_seg.weight'] == (BASE_LR, WD)
    assert got['auxiliary_head.conv_seg.bias'] == (BASE_LR, 0.)


def test_clear_errors():
    from mmdet.registry import MODELS
    cfg = shipped_config('mmdet', '_base_/models/retinanet_r50_fpn.py')
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        resnet_model = MODELS.build(cfg.model)
    with pytest.raises(TypeError, match='backbone is mmincnext InceptionNeXt'
                       '|InceptionNeXt; got'):
        build_optim_wrapper(resnet_model, optim_cfg(decay_rate=RATE))
    with pytest.raises(ValueError, match='decay_rate'):
        build_optim_wrapper(resnet_model, optim_cfg(decay_type='layer_wise'))
    with pytest.raises(ValueError, match='decay_type'):
        build_optim_wrapper(resnet_model,
                            optim_cfg(decay_rate=RATE, decay_type='layer'))
    with pytest.raises(ValueError, match='unsupported paramwise_cfg'):
        build_optim_wrapper(resnet_model,
                            optim_cfg(decay_rate=RATE, norm_decay_mult=0.))


def test_lr_decay_survives_scheduler_step(mask_rcnn_tiny):
    """The ratio between groups is kept by mmengine's schedulers."""
    from mmengine.optim import LinearLR
    wrapper = build_optim_wrapper(
        mask_rcnn_tiny, optim_cfg(decay_rate=RATE, num_layers=6))
    sched = LinearLR(wrapper, start_factor=0.5, by_epoch=False, end=10)
    before = [g['lr'] for g in wrapper.optimizer.param_groups]
    sched.step()
    after = [g['lr'] for g in wrapper.optimizer.param_groups]
    ratios = {round(a / b, 9) for a, b in zip(after, before)}
    assert len(ratios) == 1 and ratios != {1.0}


def test_same_groups_through_sliced_inference_wrapper():
    """SlicedInferenceDetector (names ``module.*``), alone and inside a
    DDP-like wrapper (one more ``.module`` level), gets the parameter groups
    of the detector it wraps."""
    from mmincnext.models import SlicedInferenceDetector
    model = build_mask_rcnn('atto')
    wrapped = SlicedInferenceDetector(detector=model)
    assert next(iter(dict(wrapped.named_parameters()))).startswith('module.')

    class DDPLike(nn.Module):  # what DDP looks like to the constructor

        def __init__(self, module):
            super().__init__()
            self.module = module

    cfg = optim_cfg(decay_rate=RATE, decay_type='layer_wise', num_layers=6)
    want = lr_and_wd_by_name(model, build_optim_wrapper(model, cfg))
    for outer in (wrapped, DDPLike(wrapped)):
        got = lr_and_wd_by_name(model, build_optim_wrapper(outer, cfg))
        assert got == want
        assert len(set(got.values())) > 4


def test_fused_adamw_with_layer_decay_groups_matches_the_loop():
    """The configs' ``fused=True`` AdamW over the constructor's groups
    (one lr and weight decay per layer) updates every parameter as torch's
    per-tensor loop does."""
    import copy

    import torch
    torch.manual_seed(0)
    fused_model = build_mask_rcnn('atto')
    loop_model = copy.deepcopy(fused_model)
    wrappers = []
    for model, kind in ((fused_model, dict(fused=True)),
                        (loop_model, dict(foreach=False))):
        cfg = optim_cfg(decay_rate=RATE, decay_type='layer_wise',
                        num_layers=5)
        cfg['optimizer'].update(kind)
        wrappers.append(build_optim_wrapper(model, cfg))
    assert wrappers[0].optimizer.defaults['fused'] is True
    assert len(wrappers[0].optimizer.param_groups) > 10
    params = [list(m.parameters()) for m in (fused_model, loop_model)]
    before = [p.detach().clone() for p in params[0]]
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params[0]]
        for wrapper, ps in zip(wrappers, params):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            wrapper.step()
            wrapper.zero_grad()
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the steps changed every weight (each group's lr is above zero)
    assert all(not torch.equal(a, b) for a, b in zip(params[0], before))
