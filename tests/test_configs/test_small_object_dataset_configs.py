"""The VisDrone2019-DET and AI-TOD v2 configs (configs/visdrone,
configs/aitod): Faster R-CNN, RetinaNet and RTMDet in their small-object
forms, on whole images and sliced (SlicedDataset training,
SlicedInferenceDetector evaluation).

Each config builds through mmdet's registry with only its custom_imports,
its training pipeline (the SlicedDataset's, starting with CropToSlice, for
the sliced ones) runs on a synthetic image, a training step gives every
trainable parameter a gradient with the config's lr-decay groups, and a
predict step on a full image larger than the windows returns at most the
dataset's detections per image, in full-image coordinates.
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)

from mmengine.config import Config  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'visdrone', '*.py')) +
                 glob.glob(osp.join(ROOT, 'configs', 'aitod', '*.py')))
CLASSES = dict(visdrone=10, aitod=8)
MAX_DETS = dict(visdrone=500, aitod=1500)


def test_every_family_whole_and_sliced():
    names = {osp.basename(c) for c in CONFIGS}
    for dataset in ('visdrone', 'aitod'):
        for stem in ('faster-rcnn_inceptionnext-t_fpn_small-obj_{}1x',
                     'retinanet_inceptionnext-t_fpn-p2_small-obj_{}1x',
                     'rtmdet_inceptionnext-t_pafpn-p2_small-obj_{}'
                     '8xb32-300e'):
            for form in ('', 'sliced_'):
                assert f'{stem.format(form)}_{dataset}.py' in names
    assert len(CONFIGS) == 12


def _sample(h, w):
    """Loaded-image results as LoadImageFromFile + LoadAnnotations give."""
    from mmdet.structures.bbox import HorizontalBoxes
    rng = np.random.default_rng(0)
    return dict(
        img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
        img_shape=(h, w), ori_shape=(h, w), img_id=0, img_path='x.jpg',
        gt_bboxes=HorizontalBoxes(np.array(
            [[10, 10, 22, 24], [300, 200, 312, 210], [600, 400, 640, 430]],
            np.float32)),
        gt_bboxes_labels=np.array([0, 1, 2]),
        gt_ignore_flags=np.array([False, False, True]))


def _full_image_batch(h, w, **meta):
    from mmdet.structures import DetDataSample
    img = torch.from_numpy(np.random.default_rng(1).integers(
        0, 255, (3, h, w), dtype=np.uint8))
    sample = DetDataSample(metainfo=dict(
        img_id=0, img_path='x.jpg', img_shape=(h, w), ori_shape=(h, w),
        **meta))
    return dict(inputs=[img], data_samples=[sample])


def _train_batch(size=128):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    img = torch.from_numpy(np.random.default_rng(0).integers(
        0, 255, (3, size, size), dtype=np.uint8))
    sample = DetDataSample(metainfo=dict(
        img_id=0, img_shape=(size, size), ori_shape=(size, size),
        pad_shape=(size, size), scale_factor=(1., 1.), flip=False,
        flip_direction=None))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 12., 20., 22.], [40., 50., 64., 74.],
                             [60., 30., 120., 90.]]),
        labels=torch.tensor([0, 1, 2]))
    return dict(inputs=[img], data_samples=[sample])


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_pipelines_train_and_predict(config):
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)  # custom_imports registers mmincnext
    dataset_name = osp.basename(osp.dirname(config))
    sliced = '_sliced_' in osp.basename(config)
    init_default_scope('mmdet')
    detector_cfg = cfg.model.detector if sliced else cfg.model
    assert cfg.model.type == ('SlicedInferenceDetector' if sliced else
                              detector_cfg.type)
    head = detector_cfg.get('roi_head', {}).get('bbox_head') or \
        detector_cfg.bbox_head
    assert head.num_classes == CLASSES[dataset_name]
    assert cfg.val_evaluator.type == 'SmallObjectCocoMetric'
    assert cfg.val_evaluator.fine_max_dets == MAX_DETS[dataset_name]
    assert cfg.val_evaluator.proposal_nums[-1] == MAX_DETS[dataset_name]
    train_set = cfg.train_dataloader.dataset

    # the training pipeline on one window / one image
    if sliced:
        assert train_set.type == 'SlicedDataset'
        assert [t.type for t in train_set.dataset.pipeline] == [
            'LoadImageFromFile', 'LoadAnnotations']
        assert train_set.pipeline[0].type == 'CropToSlice'
        size = train_set.slice_size
        results = _sample(700, 900)
        results.update(slice_window=(100, 50, 100 + size, 50 + size),
                       slice_min_visible=train_set.min_visible)
        pipeline = train_set.pipeline
    else:
        results = _sample(700, 900)
        pipeline = [t for t in train_set.pipeline
                    if t.type not in ('LoadImageFromFile', 'LoadAnnotations')]
    pipeline = Compose(pipeline)
    # random crops without objects give None (the dataset then draws
    # another sample): try as the dataset would
    for _ in range(20):
        out = pipeline(dict(results, img=results['img'].copy()))
        if out is not None:
            break
    assert out is not None and out['inputs'].ndim == 3

    # build: the wrapper around the detector, or the detector
    detector_cfg.backbone.init_cfg = None  # no downloads here
    if 'roi_head' in detector_cfg:  # fewer RoIs: CPU time
        detector_cfg.train_cfg.rcnn.sampler.num = 64
        detector_cfg.test_cfg.rpn.max_per_img = 100
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    detector = model.module if sliced else model
    assert type(detector.backbone).__name__ == 'InceptionNeXt'
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    n_groups = len(optim_wrapper.optimizer.param_groups)
    assert n_groups == 2 * (cfg.optim_wrapper.paramwise_cfg.num_layers + 2)

    # a training step on a small packed sample (the pipelines' sizes would
    # cost minutes of CPU): every parameter gets a gradient
    model.train()
    data = detector.data_preprocessor(_train_batch(), True)
    loss, _ = detector.parse_losses(detector(**data, mode='loss'))
    assert torch.isfinite(loss)
    optim_wrapper.backward(loss)
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad[:5]
    optim_wrapper.zero_grad()

    # predict on a full image; the sliced model cuts it into windows
    model.eval()
    with torch.no_grad():
        if sliced:  # the full image as the val pipeline packs it
            h, w = 500, 700
            results = model.test_step(_full_image_batch(h, w))
        else:  # an image as the resizing test pipeline packs it
            h, w = 160, 224
            results = model.test_step(_full_image_batch(
                h, w, scale_factor=(1., 1.)))
    pred = results[0].pred_instances
    assert len(pred.bboxes) <= MAX_DETS[dataset_name]
    if sliced and len(pred.bboxes):
        assert float(pred.bboxes[:, 2].max()) <= w + 1e-3
        assert float(pred.bboxes[:, 3].max()) <= h + 1e-3
