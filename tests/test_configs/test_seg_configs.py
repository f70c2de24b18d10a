"""The ADE20K segmentation configs: the paper's recipes, and every config
builds through MMSegmentation's registry, trains a step and predicts in
``whole`` and ``slide`` mode (SyncBN reverted to BN for the CPU; tiny
inputs; the real backbone sizes)."""
import copy
import functools
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from torch.nn.modules.batchnorm import _BatchNorm

import mmincnext  # noqa: F401  (registers InceptionNeXt)
from mmincnext.models import InceptionNeXt

import mmseg
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
URL = 'https://github.com/sail-sg/inceptionnext/releases/download/model/'

# The paper's recipes: config name -> (arch, drop path).
UPERNET = {
    'upernet_inceptionnext-t_8xb2-160k_ade20k-512x512': ('tiny', 0.2),
    'upernet_inceptionnext-s_8xb2-160k_ade20k-512x512': ('small', 0.3),
    'upernet_inceptionnext-b_8xb2-160k_ade20k-512x512': ('base', 0.4),
}
SEM_FPN = {
    'fpn_inceptionnext-t_8xb4-40k_ade20k-512x512': ('tiny', 0.1),
    'fpn_inceptionnext-s_8xb4-40k_ade20k-512x512': ('small', 0.2),
    'fpn_inceptionnext-b_8xb4-40k_ade20k-512x512': ('base', 0.2),
}


def config_path(name):
    folder = 'upernet' if name.startswith('upernet') else 'sem_fpn'
    return osp.join(ROOT, 'configs', folder, name + '.py')


@functools.lru_cache(maxsize=None)
def load_config(name):
    """Parse a config once per session (callers must not modify it)."""
    return Config.fromfile(config_path(name))


def test_config_set_is_complete():
    found = {osp.splitext(osp.basename(p))[0] for p in
             glob.glob(osp.join(ROOT, 'configs', 'upernet', '*.py')) +
             glob.glob(osp.join(ROOT, 'configs', 'sem_fpn', '*.py'))}
    assert found == set(UPERNET) | set(SEM_FPN)


@pytest.mark.parametrize('name', sorted(UPERNET) + sorted(SEM_FPN))
def test_config_follows_paper_recipe(name):
    cfg = load_config(name)
    is_upernet = name in UPERNET
    arch, drop_path = (UPERNET if is_upernet else SEM_FPN)[name]
    dims = list(InceptionNeXt.arch_settings[arch]['dims'])

    # only mmincnext is imported (mmseg's ConvNeXt configs import mmpretrain)
    assert cfg.custom_imports == dict(
        imports=['mmincnext'], allow_failed_imports=False)

    model = cfg.model
    assert model.type == 'EncoderDecoder' and model.pretrained is None
    sync_bn = dict(type='SyncBN', requires_grad=True)
    assert model.backbone == dict(
        type='InceptionNeXt', arch=arch, out_indices=(0, 1, 2, 3),
        norm_cfg=sync_bn, out_norm_cfg=sync_bn, drop_path_rate=drop_path,
        init_cfg=dict(type='Pretrained',
                      checkpoint=f'{URL}inceptionnext_{arch}.pth'))
    assert model.data_preprocessor.size == (512, 512)
    assert model.test_cfg.mode == 'whole'
    assert model.decode_head.num_classes == 150
    assert model.decode_head.norm_cfg == sync_bn

    if is_upernet:
        assert model.decode_head.type == 'UPerHead'
        assert model.decode_head.in_channels == dims
        assert model.auxiliary_head.type == 'FCNHead'
        assert model.auxiliary_head.in_index == 2
        assert model.auxiliary_head.in_channels == dims[2]
        assert model.auxiliary_head.num_classes == 150
        assert model.auxiliary_head.loss_decode.loss_weight == 0.4
        assert cfg.optim_wrapper == dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                           weight_decay=0.01, fused=True),
            paramwise_cfg=dict(norm_decay_mult=0.))
        assert cfg.param_scheduler == [
            dict(type='LinearLR', start_factor=1e-6, by_epoch=False,
                 begin=0, end=1500),
            dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
                 begin=1500, end=160000)]
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    else:
        assert 'auxiliary_head' not in model or model.auxiliary_head is None
        assert model.neck.type == 'FPN' and model.neck.in_channels == dims
        assert model.decode_head.type == 'FPNHead'
        assert cfg.optim_wrapper == dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4,
                           fused=True))
        assert cfg.param_scheduler == [
            dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False,
                 begin=0, end=40000)]
        assert cfg.train_cfg.max_iters == 40000
        assert cfg.train_dataloader.batch_size == 4  # x 8 GPUs = 32

    # ADE20K with reduced zero label, 512 crops from (2048, 512) x [0.5, 2]
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'ADE20KDataset'
    steps = {t.type: t for t in dataset.pipeline}
    assert steps['LoadAnnotations'].reduce_zero_label is True
    assert steps['RandomResize'].scale == (2048, 512)
    assert steps['RandomResize'].ratio_range == (0.5, 2.0)
    assert steps['RandomCrop'].crop_size == (512, 512)
    test_steps = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test_steps['Resize'].scale == (2048, 512)
    assert cfg.test_evaluator.type == 'IoUMetric'

    # ms+flip: (2048, 512) x ratios, both flips, for tools/test.py --tta
    assert cfg.tta_model.type == 'SegTTAModel'
    scales, flips = cfg.tta_pipeline[1].transforms[:2]
    assert [t.scale for t in scales] == [
        (int(2048 * r), int(512 * r))
        for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert all(t.keep_ratio for t in scales)
    assert [t.prob for t in flips] == [0., 1.]


def build_cpu_model(cfg, size, init=True):
    """Build ``cfg.model`` through mmseg's registry, SyncBN -> BN, no
    pretrained download."""
    init_default_scope('mmseg')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    model_cfg.data_preprocessor.size = size
    model = MODELS.build(model_cfg)
    if init:
        model.init_weights()
    return revert_sync_batchnorm(model)


def make_batch(n, h, w, num_classes=150, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, h, w), generator=gen)
        label[:, :h // 4] = 255  # some ignored pixels
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w),
                                 pad_shape=(h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def check_weight_decay(model, cfg, upernet):
    """0 on every norm layer for UperNet (``norm_decay_mult=0``), the base
    weight decay everywhere else and for Semantic FPN."""
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    wd_of = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            wd_of[id(p)] = group['weight_decay']
    num_norm = 0
    for module in model.modules():
        is_norm = isinstance(module, _BatchNorm)
        for p in module.parameters(recurse=False):
            num_norm += is_norm
            expected = 0. if upernet and is_norm else base_wd
            assert wd_of[id(p)] == pytest.approx(expected)
    assert num_norm > 0
    return optim_wrapper


def watch_grads(params):
    """Record the summed absolute gradient each parameter receives."""
    grads = {}
    for key, param in params.items():
        param.register_hook(
            lambda g, key=key: grads.__setitem__(key, g.abs().sum().item()))
    return grads


def backbone_params(backbone):
    return dict(stem=backbone.stem[0].weight, out_norm0=backbone.norm0.weight,
                stage3_downsample=backbone.stages[3].downsample[1].weight)


def check_losses(log_vars, upernet):
    expected = {'decode.loss_ce', 'decode.acc_seg'}
    if upernet:
        expected |= {'aux.loss_ce', 'aux.acc_seg'}
    assert expected <= set(log_vars)
    assert torch.isfinite(log_vars['loss'])


TINY = [n for n in sorted(UPERNET) + sorted(SEM_FPN) if '-t_' in n]
LARGER = [n for n in sorted(UPERNET) + sorted(SEM_FPN) if '-t_' not in n]


@pytest.mark.parametrize('name', TINY)
def test_tiny_config_trains_and_predicts_whole_and_slide(name):
    """The full check on the InceptionNeXt-T configs: a real optimizer step
    and whole / sliding-window inference."""
    torch.manual_seed(0)
    cfg = load_config(name)
    upernet = name in UPERNET
    model = build_cpu_model(cfg, size=(64, 64))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm)
                   for m in model.modules())
    backbone = model.backbone
    assert isinstance(backbone, InceptionNeXt)
    assert [hasattr(backbone, f'norm{i}') for i in range(4)] == [True] * 4
    optim_wrapper = check_weight_decay(model, cfg, upernet)

    # one training step on two 64x64 images (batch 2: BN needs > 1 value)
    model.train()
    watched = backbone_params(backbone)
    grads = watch_grads(watched)
    before = {k: p.detach().clone() for k, p in watched.items()}
    log_vars = model.train_step(make_batch(2, 64, 64), optim_wrapper)
    check_losses(log_vars, upernet)
    # gradients reach the whole backbone and the optimizer moved it
    assert set(grads) == set(watched) and min(grads.values()) > 0, grads
    for key, param in watched.items():
        assert not torch.equal(before[key], param), key

    # inference on a 80x96 image (not a multiple of 32)
    model.eval()
    batch = make_batch(1, 80, 96, seed=1)
    with torch.no_grad():
        model.test_cfg = ConfigDict(mode='whole')
        whole = model.test_step(batch)[0]
        # a window covering the image: same as whole inference
        model.test_cfg = ConfigDict(mode='slide', crop_size=(96, 96),
                                    stride=(64, 64))
        one_window = model.test_step(batch)[0]
        # 2 x 2 overlapping 64x64 windows
        model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64),
                                    stride=(32, 32))
        slide = model.test_step(batch)[0]
    for result in (whole, one_window, slide):
        assert result.pred_sem_seg.shape == (80, 96)
        assert result.seg_logits.data.shape == (150, 80, 96)
        pred = result.pred_sem_seg.data
        assert pred.min() >= 0 and pred.max() < 150
    torch.testing.assert_close(one_window.seg_logits.data,
                               whole.seg_logits.data, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(slide.seg_logits.data, whole.seg_logits.data)


@pytest.mark.parametrize('name', LARGER)
def test_larger_config_trains_and_predicts(name):
    """The small and base configs differ from the tiny ones in backbone size
    and head widths: build them at full size, check the optimizer groups,
    back-propagate the training loss through the whole backbone and run a
    whole-image prediction (the optimizer update and the sliding window do
    not depend on the size and are covered by the tiny configs)."""
    torch.manual_seed(0)
    cfg = load_config(name)
    upernet = name in UPERNET
    model = build_cpu_model(cfg, size=(32, 32), init=False)
    assert model.backbone.arch == InceptionNeXt.parse_arch(
        (UPERNET if upernet else SEM_FPN)[name][0])
    check_weight_decay(model, cfg, upernet)

    model.train()
    grads = watch_grads(backbone_params(model.backbone))
    data = model.data_preprocessor(make_batch(2, 32, 32), training=True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    check_losses(log_vars, upernet)
    assert len(grads) == 3 and min(grads.values()) > 0, grads

    model.eval()
    with torch.no_grad():
        result = model.test_step(make_batch(1, 48, 40, seed=1))[0]
    assert result.seg_logits.data.shape == (150, 48, 40)


def test_metafiles_list_every_config_with_paper_numbers_labelled():
    import yaml
    paper = {  # the paper's ADE20K numbers (UperNet ms+flip, FPN single)
        'upernet_inceptionnext-t_8xb2-160k_ade20k-512x512': 47.9,
        'upernet_inceptionnext-s_8xb2-160k_ade20k-512x512': 50.0,
        'upernet_inceptionnext-b_8xb2-160k_ade20k-512x512': 50.6,
        'fpn_inceptionnext-t_8xb4-40k_ade20k-512x512': 43.1,
        'fpn_inceptionnext-s_8xb4-40k_ade20k-512x512': 45.6,
        'fpn_inceptionnext-b_8xb4-40k_ade20k-512x512': 46.4,
    }
    seen = {}
    for folder in ('upernet', 'sem_fpn'):
        with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            meta = yaml.safe_load(f)
        for entry in meta['Models']:
            assert osp.isfile(osp.join(ROOT, entry['Config']))
            assert entry['Config'] == osp.relpath(
                config_path(entry['Name']), ROOT)
            assert entry['Metadata']['Results Source'] == \
                'paper (not trained here)'
            assert 'Weights' not in entry  # nothing of ours was trained
            metrics = entry['Results']['Metrics']
            key = 'mIoU(ms+flip)' if folder == 'upernet' else 'mIoU'
            assert list(metrics) == [key]
            seen[entry['Name']] = metrics[key]
    assert seen == paper
