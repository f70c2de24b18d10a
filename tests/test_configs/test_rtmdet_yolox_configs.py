"""RTMDet and YOLOX configs with InceptionNeXt backbones.

Every config builds through mmdet's registry with only its
``custom_imports``, its levels are consistent (backbone outputs = neck
inputs = head strides; the P2 forms add stride 4), its test pipeline runs,
and it does a training step (every trainable parameter gets a gradient, as
DDP requires; optimizer step with the config's lr-decay constructor) and a
predict step on a small synthetic batch. ImageNet weights cannot be
downloaded here, so the backbone's ``init_cfg`` is dropped.

The training-time hooks of the two families (RTMDet: PipelineSwitchHook +
EMA; YOLOX: YOLOXModeSwitchHook + SyncNormHook + EMA) are exercised by
Runner runs of the atto P2 configs on generated small-object data, with
evaluation by the fine-bin small-object metric.
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)

from mmengine.config import Config  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'rtmdet', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'yolox', '*.py')))
SIZE = 64
RUN_SIZE = 96  # images of the Runner runs
URL = 'https://github.com/sail-sg/inceptionnext/releases/download/model/'
CHANNELS = dict(tiny=(96, 192, 384, 768), atto=(40, 80, 160, 320))


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    expected = {
        f'{algo}_inceptionnext-{arch}{p2}_{sched}_coco.py'
        for algo, sched in (('rtmdet', '8xb32-300e'), ('yolox', '8xb8-300e'))
        for arch in ('t', 'atto') for p2 in ('', '_pafpn-p2_small-obj')
    }
    assert expected <= names, sorted(expected - names)


def head_strides(cfg):
    head = cfg.model.bbox_head
    if head.type == 'YOLOXHead':
        return list(head.strides)
    return list(head.anchor_generator.strides)


def synthetic_batch():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(0)
    img = torch.from_numpy(
        rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8))
    # an 8 px, a 12 px, a 20 px and a 40 px object
    boxes = torch.tensor([[4., 6., 12., 14.], [10., 30., 22., 42.],
                          [40., 40., 60., 60.], [20., 2., 60., 42.]])
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1, 2, 0]))
    sample = DetDataSample(metainfo=dict(
        img_id=0, img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
        pad_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
        scale_factor=(1., 1.), flip=False, flip_direction=None))
    sample.gt_instances = gt
    return dict(inputs=[img], data_samples=[sample])


def run_test_pipeline(cfg):
    from mmcv.transforms import Compose
    img = np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                if t['type'] not in ('LoadImageFromFile', 'LoadAnnotations')]
    out = Compose(pipeline)(dict(
        img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
        img_id=0, img_path='x.jpg'))
    assert out['inputs'].ndim == 3


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_train_and_predict(config):
    from mmdet.registry import MODELS
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)  # custom_imports registers mmincnext
    name = osp.basename(config)
    p2 = '_pafpn-p2_small-obj_' in name
    arch = 'tiny' if '-t_' in name else 'atto'
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmincnext'],
                                      allow_failed_imports=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU-safe default
    assert cfg.optim_wrapper.constructor == \
        'InceptionNeXtLearningRateDecayOptimizerConstructor'
    backbone = cfg.model.backbone
    assert backbone.type == 'InceptionNeXt' and backbone.arch == arch
    assert backbone.init_cfg.checkpoint == \
        f'{URL}inceptionnext_{arch}.pth'
    # ImageNet-pretrained backbone: RGB input with ImageNet statistics
    pre = cfg.model.data_preprocessor
    assert pre.bgr_to_rgb and list(pre.mean) == [123.675, 116.28, 103.53]
    # levels: every backbone output feeds the neck (DDP-safe output norms)
    indices = list(backbone.out_indices)
    assert indices == ([0, 1, 2, 3] if p2 else [1, 2, 3])
    assert list(cfg.model.neck.in_channels) == [
        CHANNELS[arch][i] for i in indices]
    assert head_strides(cfg) == [4 * 2**i for i in indices]
    assert cfg.val_evaluator.type == (
        'SmallObjectCocoMetric' if p2 else 'CocoMetric')
    hooks = [h['type'] for h in cfg.custom_hooks]
    if name.startswith('rtmdet'):
        assert hooks == ['EMAHook', 'PipelineSwitchHook']
    else:
        assert hooks == ['YOLOXModeSwitchHook', 'SyncNormHook', 'EMAHook']

    init_default_scope('mmdet')
    run_test_pipeline(cfg)
    cfg.model.backbone.init_cfg = None  # no downloads here
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    assert list(model.backbone.out_channels) == list(
        cfg.model.neck.in_channels)
    assert len(model.bbox_head.prior_generator.strides) == len(indices)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    num_layers = cfg.optim_wrapper.paramwise_cfg.num_layers
    assert len(optim_wrapper.optimizer.param_groups) == 2 * (num_layers + 2)

    model.train()
    if name.startswith('yolox'):
        model.bbox_head.use_l1 = True  # as after YOLOXModeSwitchHook
        # BatchSyncRandomResize reads the iteration from the message hub
        MessageHub.get_current_instance().update_info('iter', 0)
    data = model.data_preprocessor(synthetic_batch(), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss)
    optim_wrapper.backward(loss)
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, 'parameters without gradient (DDP would fail): ' \
        f'{no_grad[:5]}'
    optim_wrapper.step()
    optim_wrapper.zero_grad()

    model.eval()
    # random weights: YOLOX's objectness x class scores (about 1e-4) fall
    # under its 0.01 test threshold; keep every box to check them
    model.bbox_head.test_cfg.score_thr = 0.
    with torch.no_grad():
        results = model.test_step(synthetic_batch())
        # the neck outputs one map per head stride
        feats = model.extract_feat(data['inputs'])
    assert [f.shape[-1] for f in feats] == [SIZE // s
                                           for s in head_strides(cfg)]
    assert len(results) == 1
    pred = results[0].pred_instances
    assert pred.bboxes.shape[-1] == 4
    assert len(pred.bboxes) > 0
    assert bool(torch.isfinite(pred.bboxes).all())


# ------------------------------------------------------ Runner with hooks
def scale_sizes(obj, factor):
    """Scale every image size of a pipeline (img_scale, scale, crop_size,
    size, border) by ``factor``: the COCO pipelines at CPU-test size."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(scale_sizes(o, factor) for o in obj)
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        if k in ('img_scale', 'scale', 'crop_size', 'size', 'border') \
                and isinstance(v, (list, tuple)):
            out[k] = tuple(int(round(x * factor)) for x in v)
        else:
            out[k] = scale_sizes(v, factor)
    return out


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_small_object_data',
        osp.join(ROOT, 'tools', 'dataset_converters',
                 'make_small_object_data.py'))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = str(tmp_path_factory.mktemp('small_obj'))
    gen.main(['--out', out, '--num-train', '2', '--num-val', '1',
              '--img-size', str(RUN_SIZE), '--objects', '4', '8',
              '--num-large', '0', '--num-seg-train', '0',
              '--num-seg-val', '0'])
    return out


def runner_cfg(config, data_root, work_dir, max_epochs):
    cfg = Config.fromfile(config)
    classes = ('circle', 'square', 'triangle')
    factor = RUN_SIZE / 640
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_classes = len(classes)
    pre = cfg.model.data_preprocessor
    if pre.get('batch_augments'):
        pre.batch_augments[0].random_size_range = (96, 160)
    # validation by runner.val() after training (EMA weights swapped in)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                         val_begin=max_epochs + 1)
    # two iterations from random weights: keep every box (also degenerate
    # ones: RTMDet-tiny's raw distances start near 0) so the metric has
    # input
    cfg.model.test_cfg.update(score_thr=0., min_bbox_size=-1)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        ds = loader.dataset
        ds.pipeline = scale_sizes(ds.pipeline, factor)
        inner = ds.dataset if 'dataset' in ds else ds  # MultiImageMixDataset
        split = 'train' if key == 'train_dataloader' else 'val'
        inner.update(data_root=data_root + '/det/',
                     ann_file=f'annotations/instances_{split}.json',
                     data_prefix=dict(img=f'{split}/'),
                     metainfo=dict(classes=classes))
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = data_root + '/det/annotations/instances_val.json'
    for hook in cfg.custom_hooks:
        if hook.type == 'PipelineSwitchHook':
            hook.switch_epoch = max_epochs - 1
            hook.switch_pipeline = scale_sizes(hook.switch_pipeline, factor)
        if hook.type == 'YOLOXModeSwitchHook':
            # it switches before epoch max_epochs - 1 - num_last_epochs
            hook.num_last_epochs = 0
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=max_epochs + 1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg


def pipeline_types(dataset):
    pipeline = dataset.pipeline  # Compose, or a list (MultiImageMixDataset)
    return [type(t).__name__ for t in getattr(pipeline, 'transforms',
                                              pipeline)]


@pytest.mark.parametrize('algo', ['rtmdet', 'yolox'])
def test_runner_hooks_p2(algo, small_data, tmp_path):
    """Train the atto P2 config two epochs (one iteration each) with its
    own hooks, then validate (EMA weights) with the fine small-object
    metric."""
    from mmengine.runner import Runner
    sched = '8xb32-300e' if algo == 'rtmdet' else '8xb8-300e'
    config = osp.join(
        ROOT, 'configs', algo,
        f'{algo}_inceptionnext-atto_pafpn-p2_small-obj_{sched}_coco.py')
    max_epochs = 2  # one with the strong augmentation, one after the switch
    cfg = runner_cfg(config, small_data, str(tmp_path), max_epochs)
    runner = Runner.from_cfg(cfg)
    dataset = runner.train_dataloader.dataset
    if algo == 'rtmdet':
        assert 'CachedMosaic' in pipeline_types(dataset)
    else:
        assert 'Mosaic' in pipeline_types(dataset)
        assert not runner.model.bbox_head.use_l1
    runner.train()
    if algo == 'rtmdet':  # PipelineSwitchHook: stage-2 pipeline
        assert 'CachedMosaic' not in pipeline_types(dataset)
        assert 'RandomResize' in pipeline_types(dataset)
    else:  # YOLOXModeSwitchHook: no Mosaic/RandomAffine/MixUp, L1 loss on
        assert set(dataset._skip_type_keys) == {'Mosaic', 'RandomAffine',
                                                'MixUp'}
        assert runner.model.bbox_head.use_l1
        assert 'train/loss_l1' in runner.message_hub.log_scalars
    ema = [h for h in runner.hooks if type(h).__name__ == 'EMAHook']
    assert len(ema) == 1 and int(ema[0].ema_model.steps) == max_epochs
    metrics = runner.val()
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_s', 'coco/bbox_mAP_tiny',
                'coco/bbox_mAP_vtiny'):
        assert key in metrics, sorted(metrics)
