"""YOLOv8 and YOLOv5 (MMYOLO) configs with InceptionNeXt backbones.

One config builds through MMEngine's registry in a fresh interpreter with
nothing but its ``custom_imports`` (as MMYOLO's ``tools/train.py`` builds it).
For every config: its levels agree (backbone outputs = neck inputs = neck
outputs = head inputs, head strides = prior strides; the P2 forms add stride
4, YOLOv5's with its own anchors and four-level loss weights); MMYOLO's train
pipeline (Mosaic, affine, ...) and its test pipeline run on generated
128x128 images; a training step through ``yolov5_collate`` and
``YOLOv5DetDataPreprocessor`` gives a gradient to every trainable parameter
(as DDP requires) and steps the config's optimizer; a predict step returns
boxes. The layer-wise lr-decay groups cover every parameter (MMYOLO's
``YOLOv5OptimizerConstructor`` would drop the layer scales) and the
schedulers keep their lr ratios. ImageNet weights cannot be downloaded
here, so the backbone's ``init_cfg`` is dropped.
"""
import glob
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch

# skips only where MMYOLO is not installed (it is in the project's
# environment, see requirements/runtime.txt)
pytest.importorskip('mmyolo')

from mmengine.config import Config  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'yolov8', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'yolov5', '*.py')))
NECK_CONFIG = osp.join(
    ROOT, 'configs', 'yolov8',
    'yolov8_inceptionnext-t_inception-pafpn-p2_small-obj_8xb16-500e_coco.py')
SIZE = 128  # generated images and network input
CHANNELS = dict(tiny=(96, 192, 384, 768), atto=(40, 80, 160, 320))
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
P2_ANCHORS = [[(5, 6), (8, 14), (15, 11)], [(10, 13), (16, 30), (33, 23)],
              [(30, 61), (62, 45), (59, 119)],
              [(116, 90), (156, 198), (373, 326)]]


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    expected = {
        f'{algo}_inceptionnext-{arch}{p2}_{sched}_coco.py'
        for algo, sched in (('yolov8', '8xb16-500e'), ('yolov5', '8xb16-300e'))
        for arch in ('t', 'atto') for p2 in ('', '_pafpn-p2_small-obj')
    } | {osp.basename(NECK_CONFIG)}
    assert names == expected, sorted(names ^ expected)


def test_build_with_only_custom_imports_in_a_fresh_interpreter():
    """As MMYOLO's tools/train.py: the config's custom_imports registers
    mmincnext; MMYOLO's registry finds the backbone and the neck at the
    root."""
    code = f"""
import sys
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
assert 'mmincnext' not in sys.modules
cfg = Config.fromfile({NECK_CONFIG!r})
assert 'mmincnext' in sys.modules
init_default_scope(cfg.default_scope)
cfg.model.backbone.init_cfg = None
model = MODELS.build(cfg.model)
print(cfg.default_scope, type(model).__name__, type(model.backbone).__name__,
      type(model.neck).__name__, type(model.neck.top_down_layers[0]).__name__)
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['mmyolo', 'YOLODetector', 'InceptionNeXt',
                                   'YOLOv8InceptionPAFPN', 'C2fMetaNeXt']


# ------------------------------------------------------------ helpers
@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    """Generated COCO-format small-object data: 4 train, 2 val images of
    128x128 px (objects of 10-40 px)."""
    spec = importlib.util.spec_from_file_location(
        'make_small_object_data',
        osp.join(ROOT, 'tools', 'dataset_converters',
                 'make_small_object_data.py'))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = str(tmp_path_factory.mktemp('small_obj'))
    gen.main(['--out', out, '--num-train', '4', '--num-val', '2',
              '--img-size', str(SIZE), '--num-large', '0',
              '--num-seg-train', '0', '--num-seg-val', '0'])
    return out + '/det/'


def scale_sizes(obj, factor):
    """Every image size of an MMYOLO pipeline (img_scale, scale, border,
    a batch-shape img_size) times ``factor``."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(scale_sizes(o, factor) for o in obj)
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        if k in ('img_scale', 'scale', 'border') and \
                isinstance(v, (list, tuple)):
            out[k] = tuple(int(round(x * factor)) for x in v)
        elif k == 'img_size' and isinstance(v, int):
            out[k] = int(round(v * factor))
        else:
            out[k] = scale_sizes(v, factor)
    return out


def build_dataset(cfg, data_root, split, pipeline=None):
    from mmyolo.registry import DATASETS
    loader = cfg.train_dataloader if split == 'train' else \
        cfg.val_dataloader
    ds_cfg = scale_sizes(loader.dataset.to_dict(), SIZE / 640)
    if pipeline is not None:
        ds_cfg['pipeline'] = scale_sizes(pipeline, SIZE / 640)
    ds_cfg.update(data_root=data_root,
                  ann_file=f'annotations/instances_{split}.json',
                  data_prefix=dict(img=f'{split}/'),
                  metainfo=dict(classes=('circle', 'square', 'triangle')))
    return DATASETS.build(ds_cfg)


def build_model(cfg):
    from mmengine.model import revert_sync_batchnorm
    from mmyolo.registry import MODELS
    cfg.model.backbone.init_cfg = None  # no downloads here
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model


def config_facts(config):
    name = osp.basename(config)
    return dict(name=name, algo=name.split('_')[0],
                p2='-p2_small-obj_' in name,
                arch='tiny' if '-t_' in name else 'atto')


# ------------------------------------------------------------ per config
@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_levels_pipelines_train_and_predict(config, small_data):
    import random

    import numpy as np
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmyolo.datasets.utils import yolov5_collate

    cfg = Config.fromfile(config)
    facts = config_facts(config)
    algo, p2, arch = facts['algo'], facts['p2'], facts['arch']
    assert cfg.default_scope == 'mmyolo'
    assert cfg.custom_imports == dict(imports=['mmincnext'],
                                      allow_failed_imports=False)
    # ImageNet-pretrained backbone: RGB input with ImageNet statistics, in
    # MMYOLO's fast preprocessor (with yolov5_collate)
    pre = cfg.model.data_preprocessor
    assert pre.type == 'YOLOv5DetDataPreprocessor' and pre.bgr_to_rgb
    assert list(pre.mean) == IMAGENET_MEAN and list(pre.std) == IMAGENET_STD
    # without the `_scope_` key MMEngine adds to the mmyolo:: base's dicts
    # (the Runner passes the keys of collate_fn on to the function)
    assert cfg.train_dataloader.collate_fn.to_dict() == dict(
        type='yolov5_collate')
    # levels: every backbone output feeds the neck (DDP-safe output norms)
    indices = list(cfg.model.backbone.out_indices)
    assert indices == ([0, 1, 2, 3] if p2 else [1, 2, 3])
    widths = [CHANNELS[arch][i] for i in indices]
    strides = [4 * 2**i for i in indices]
    neck, head = cfg.model.neck, cfg.model.bbox_head
    stock_neck = dict(yolov8='YOLOv8PAFPN', yolov5='YOLOv5PAFPN')[algo]
    assert neck.type == ('YOLOv8InceptionPAFPN' if 'inception-pafpn' in
                         facts['name'] else stock_neck)
    assert list(neck.in_channels) == list(neck.out_channels) == widths
    assert neck.widen_factor == head.head_module.widen_factor == 1.0
    assert neck.deepen_factor == 0.33 and neck.num_csp_blocks == 3  # s
    assert list(head.head_module.in_channels) == widths
    assert list(head.head_module.featmap_strides) == strides
    assert list(head.prior_generator.strides) == strides
    if algo == 'yolov5':
        anchors = [[tuple(a) for a in level]
                   for level in head.prior_generator.base_sizes]
        assert anchors == (P2_ANCHORS if p2 else P2_ANCHORS[1:])
        assert list(head.obj_level_weights) == (
            [4.0, 1.0, 0.25, 0.06] if p2 else [4.0, 1.0, 0.4])
        assert head.prior_match_thr == 4.0
        levels = len(strides)
        assert head.loss_cls.loss_weight == pytest.approx(0.5 * 3 / levels)
        assert head.loss_bbox.loss_weight == pytest.approx(0.05 * 3 / levels)
        assert head.loss_obj.loss_weight == pytest.approx(1.0 * 3 / levels)
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == (
        'SmallObjectCocoMetric' if p2 else 'mmdet.CocoMetric')
    # the optimizer and the schedule of an ImageNet-pretrained backbone
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU-safe default
    assert cfg.optim_wrapper.constructor == \
        'InceptionNeXtLearningRateDecayOptimizerConstructor'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.default_hooks.param_scheduler.to_dict() == dict(
        type='ParamSchedulerHook')
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'LinearLR']
    hooks = [h.type for h in cfg.custom_hooks]
    assert hooks == (['EMAHook', 'mmdet.PipelineSwitchHook']
                     if algo == 'yolov8' else ['EMAHook'])
    pipelines = [cfg.train_dataloader.dataset.pipeline] + [
        h.switch_pipeline for h in cfg.custom_hooks
        if 'switch_pipeline' in h]
    for pipeline in pipelines:  # albumentations is not a requirement
        assert 'mmdet.Albu' not in [t.type for t in pipeline]

    init_default_scope('mmyolo')
    model = build_model(cfg)
    assert list(model.backbone.out_channels) == widths
    assert len(model.bbox_head.prior_generator.strides) == len(strides)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    # MMYOLO's train pipeline (Mosaic mixes dataset images) and collate
    np.random.seed(0)
    random.seed(0)
    train_set = build_dataset(cfg, small_data, 'train')
    samples = [train_set[i] for i in range(2)]
    assert all(s['inputs'].shape == (3, SIZE, SIZE) for s in samples)
    if algo == 'yolov8':  # the stage-2 pipeline of PipelineSwitchHook
        stage2 = build_dataset(cfg, small_data, 'train',
                               cfg.custom_hooks[1].switch_pipeline)
        assert stage2[0]['inputs'].shape == (3, SIZE, SIZE)
    batch = yolov5_collate(samples)
    assert len(batch['data_samples']['bboxes_labels']) > 0

    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    assert set(losses) == ({'loss_cls', 'loss_bbox', 'loss_dfl'}
                           if algo == 'yolov8' else
                           {'loss_cls', 'loss_bbox', 'loss_obj'})
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    optim_wrapper.backward(loss)
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, 'parameters without gradient (DDP would fail): ' \
        f'{no_grad[:5]}'
    optim_wrapper.step()
    optim_wrapper.zero_grad()

    # MMYOLO's test pipeline (keep-ratio resize, letterbox) and predict
    model.eval()
    # random weights: scores under the 0.001 test threshold; keep the best
    # 1000 (not 30000 into NMS)
    model.bbox_head.test_cfg.update(score_thr=0., nms_pre=1000,
                                    multi_label=False)
    val_set = build_dataset(cfg, small_data, 'val')
    batch = pseudo_collate([val_set[0]])
    with torch.no_grad():
        results = model.test_step(batch)
        inputs = model.data_preprocessor(batch, False)['inputs']
        feats = model.extract_feat(inputs)
    assert [f.shape[-1] for f in feats] == [inputs.shape[-1] // s
                                           for s in strides]
    assert [f.shape[1] for f in feats] == widths
    assert len(results) == 1
    pred = results[0].pred_instances
    assert len(pred.bboxes) > 0 and pred.bboxes.shape[-1] == 4
    assert bool(torch.isfinite(pred.bboxes).all())


# ------------------------------------------------------------ optimizer
@pytest.mark.parametrize('algo', ['yolov8', 'yolov5'])
def test_lr_decay_groups_and_schedule(algo):
    """Layer-wise decay groups over every parameter, no weight decay on
    norms, biases and layer scales; the warm-up and the linear decay keep
    every group's lr ratio. MMYOLO's own constructor would leave the layer
    scales out of the optimizer."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
    sched = '8xb16-500e' if algo == 'yolov8' else '8xb16-300e'
    config = osp.join(ROOT, 'configs', algo,
                      f'{algo}_inceptionnext-atto_{sched}_coco.py')
    cfg = Config.fromfile(config)
    init_default_scope('mmyolo')
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = optim_wrapper.optimizer.param_groups
    num_layers = cfg.optim_wrapper.paramwise_cfg.num_layers
    assert num_layers == 5  # atto
    assert len(groups) == 2 * (num_layers + 2)
    base_lr = cfg.optim_wrapper.optimizer.lr
    ids = {id(p): g for g in groups for p in g['params']}
    named = dict(model.named_parameters())
    assert len(ids) == len(named) == sum(len(g['params']) for g in groups)
    for name, p in named.items():
        group = ids[id(p)]
        layer = int(group['group_name'].split('_')[1])
        assert group['lr'] == pytest.approx(
            base_lr * 0.8**(num_layers + 1 - layer))
        if not name.startswith('backbone.') or name.startswith(
                'backbone.norm'):
            assert layer == num_layers + 1, name  # full lr: neck, head
        if p.ndim == 1 or name.endswith('.bias'):
            assert group['weight_decay'] == 0, name
        else:
            assert group['weight_decay'] == 0.05, name
    assert ids[id(named['backbone.stem.0.weight'])]['lr'] == pytest.approx(
        base_lr * 0.8**6)

    # the schedulers scale every group alike
    schedulers = [
        PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper),
                               default_args=dict(epoch_length=4))
        for s in cfg.param_scheduler
    ]
    for _ in range(6):  # 1.5 epochs of the 3-epoch warm-up
        optim_wrapper.step()
        for s in schedulers:
            if not s.by_epoch:
                s.step()
    ratios = [g['lr'] / (g['lr_scale'] * base_lr) for g in groups]
    assert 0.4 < ratios[0] < 0.6  # half-way through the warm-up
    assert ratios == pytest.approx([ratios[0]] * len(groups))

    # MMYOLO's YOLOv5OptimizerConstructor groups conv weights, norm weights
    # and biases: InceptionNeXt's layer scales `gamma` are in none of them
    from mmyolo.engine.optimizers import YOLOv5OptimizerConstructor
    yolo = YOLOv5OptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(
            type='SGD', lr=0.01, momentum=0.937, weight_decay=5e-4,
            nesterov=True, batch_size_per_gpu=16)))(model)
    covered = {id(p) for g in yolo.optimizer.param_groups
               for p in g['params']}
    missing = sorted(n for n, p in named.items() if id(p) not in covered)
    assert missing and all(n.endswith('.gamma') for n in missing)
