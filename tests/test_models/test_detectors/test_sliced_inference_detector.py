"""SlicedInferenceDetector: sliced evaluation through the stock loops.

A randomly initialised atto P2 RTMDet (3 classes, windows resized to 256 px)
on the demo generator's large images: the wrapper's predictions are those of
``mmincnext.apis.sliced_inference``; ``tools/test.py`` (ours and mmdet's) on
a config whose model is the wrapper scores what ``tools/sliced_inference.py``
scores; checkpoints of the plain detector and of the wrapper load into each
other (also through mmengine's EMAHook); training goes to the detector.
"""
import copy
import glob
import importlib.util
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)
from mmengine.config import Config
from mmengine.model import BaseTTAModel, revert_sync_batchnorm
from mmengine.runner import load_checkpoint, save_checkpoint
from mmengine.runner.checkpoint import get_state_dict

import mmincnext  # noqa: F401  (registers the wrapper)
from mmincnext.apis import sliced_inference
from mmincnext.models import SlicedInferenceDetector

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
RTMDET_P2 = osp.join(
    ROOT, 'configs', 'rtmdet',
    'rtmdet_inceptionnext-atto_pafpn-p2_small-obj_8xb32-300e_coco.py')
CLASSES = ('circle', 'square', 'triangle')
SLICE, SCALE, BATCH, MAX_DETS = 320, 256, 3, 500
META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
# the detector's test transforms after loading: what one window goes through
WINDOW_PIPELINE = [
    dict(type='Resize', scale=(SCALE, SCALE), keep_ratio=True),
    dict(type='Pad', size=(SCALE, SCALE), pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs', meta_keys=META_KEYS)
]
FINE_BINS = dict(all=(0, 1e5), vtiny=(0, 8), tiny=(8, 16), small=(16, 32))


def load_tool(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def detector_cfg():
    cfg = Config.fromfile(RTMDET_P2)
    cfg.model.bbox_head.num_classes = len(CLASSES)
    return cfg


def sliced_cfg(**kwargs):
    cfg = dict(type='SlicedInferenceDetector',
               detector=detector_cfg().model, slice_size=SLICE,
               overlap_ratio=0.25, window_pipeline=WINDOW_PIPELINE,
               batch_size=BATCH, nms=dict(type='nms', iou_threshold=0.5),
               max_per_img=MAX_DETS)
    cfg.update(kwargs)
    return cfg


def build(cfg):
    """Through mmdet's registry (the way a config builds it); SyncBN
    reverted as the Runner does without distribution."""
    from mmdet.registry import MODELS
    return revert_sync_batchnorm(MODELS.build(cfg))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Two train images (256 px) and two large images (512 px, 30 objects
    of 8-16 px) of the demo generator, COCO format."""
    out = str(tmp_path_factory.mktemp('data'))
    gen = load_tool('make_small_object_data',
                    osp.join(ROOT, 'tools', 'dataset_converters',
                             'make_small_object_data.py'))
    gen.main(['--out', out, '--num-train', '2', '--num-val', '0',
              '--num-large', '2', '--large-size', '512',
              '--large-objects', '30', '--num-seg-train', '0',
              '--num-seg-val', '0'])
    det = osp.join(out, 'det')
    return SimpleNamespace(
        root=det, ann_file=osp.join(det, 'annotations',
                                    'instances_large.json'),
        img_dir=osp.join(det, 'large'),
        img=mmcv.imread(osp.join(det, 'large', 'large_00000.jpg')))


@pytest.fixture(scope='module')
def plain(tmp_path_factory):
    """The plain detector (random init, test pipeline = WINDOW_PIPELINE
    after loading) and its checkpoint, as tools/train.py would save it."""
    from mmdet.apis import init_detector
    cfg = detector_cfg()
    for t in cfg.test_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = (SCALE, SCALE)
        if t.type == 'Pad':
            t.size = (SCALE, SCALE)
    torch.manual_seed(0)
    model = init_detector(cfg, None, device='cpu')
    ckpt = str(tmp_path_factory.mktemp('ckpt') / 'plain.pth')
    save_checkpoint(dict(state_dict=get_state_dict(model),
                         meta=dict(dataset_meta=dict(classes=CLASSES))),
                    ckpt)
    return model, ckpt


@pytest.fixture(scope='module')
def wrapper(plain):
    model = build(sliced_cfg())
    load_checkpoint(model, plain[1], strict=True)
    return model.eval()


def full_image_batch(*imgs, **meta):
    """The test loop's batch: uint8 CHW tensors and their data samples."""
    from mmdet.structures import DetDataSample
    inputs, samples = [], []
    for k, img in enumerate(imgs):
        inputs.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        samples.append(DetDataSample(metainfo=dict(
            dict(img_id=k + 1, img_path=f'img{k}.jpg',
                 ori_shape=img.shape[:2], img_shape=img.shape[:2]),
            **meta)))
    return dict(inputs=inputs, data_samples=samples)


def same(a, b):
    return len(a) == len(b) and torch.equal(a.bboxes, b.bboxes) and \
        torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)


def test_built_from_mmdet_registry(wrapper):
    from mmdet.registry import MODELS
    from mmincnext.registry import MODELS as OURS
    assert MODELS.get('SlicedInferenceDetector') is SlicedInferenceDetector
    assert OURS.get('mmincnext.SlicedInferenceDetector') is \
        SlicedInferenceDetector
    assert isinstance(wrapper, BaseTTAModel)
    assert type(wrapper.module).__name__ == 'RTMDet'
    # one child, the detector; its preprocessor serves the wrapper
    assert [n for n, _ in wrapper.named_children()] == ['module']
    assert wrapper.data_preprocessor is wrapper.module.data_preprocessor
    assert wrapper.slice_size == (SLICE, SLICE)


@pytest.mark.parametrize('whole_image', [False, True])
def test_predictions_equal_sliced_inference(wrapper, plain, data,
                                            whole_image):
    """Same boxes, scores and labels as the function behind
    tools/sliced_inference.py (config test pipeline, batched test_step),
    in the image's coordinates; metainfo and ground truth kept."""
    img = data.img[:400, :448]  # 4 windows of 320 px
    wrapper.whole_image = whole_image
    try:
        batch = full_image_batch(img)
        gt = batch['data_samples'][0]
        from mmengine.structures import InstanceData
        gt.gt_instances = InstanceData(bboxes=torch.zeros(1, 4),
                                       labels=torch.zeros(1).long())
        out = wrapper.test_step(batch)
    finally:
        wrapper.whole_image = False
    ref = sliced_inference(plain[0], img, slice_size=SLICE,
                           overlap_ratio=0.25, batch_size=BATCH,
                           whole_image=whole_image, max_dets=MAX_DETS)
    assert len(out) == 1 and out[0] is gt
    assert out[0].img_id == 1 and out[0].ori_shape == (400, 448)
    assert len(out[0].gt_instances) == 1
    pred = out[0].pred_instances
    assert 0 < len(pred) <= MAX_DETS
    assert same(pred, ref)
    assert float(pred.bboxes[:, 2].max()) > SLICE  # not one window only


def test_batch_padding_and_outer_resize(wrapper, data):
    """Images of a batch are independent; padding added by the dataset
    pipeline is ignored; a Resize there is undone (boxes divided by its
    scale_factor, clipped to ori_shape)."""
    a, b = data.img[:300, :300], data.img[200:500, 100:400]
    a_alone = wrapper.predict_image(a)
    out = wrapper.test_step(full_image_batch(a, b[:290]))
    assert same(out[0].pred_instances, a_alone)
    assert same(out[1].pred_instances, wrapper.predict_image(b[:290]))

    padded = np.full((320, 330, 3), 114, np.uint8)
    padded[:300, :300] = a
    batch = full_image_batch(padded)
    batch['data_samples'][0].set_metainfo(dict(ori_shape=(300, 300)))
    assert same(wrapper.test_step(batch)[0].pred_instances, a_alone)

    big = mmcv.imresize(a, (600, 450))  # the image, 2x wide, 1.5x high
    batch = full_image_batch(big, scale_factor=(2., 1.5))
    batch['data_samples'][0].set_metainfo(dict(ori_shape=(300, 300)))
    pred = wrapper.test_step(batch)[0].pred_instances
    ref = wrapper.predict_image(big)
    ref_boxes = ref.bboxes / torch.tensor([2., 1.5, 2., 1.5])
    assert torch.allclose(pred.bboxes, ref_boxes.clamp(0, 300))
    assert torch.equal(pred.scores, ref.scores)
    assert float(pred.bboxes.max()) <= 300


def test_checkpoints_load_both_ways(wrapper, plain, tmp_path):
    """A plain detector checkpoint loads into the wrapper through the
    Runner; the wrapper's checkpoints are plain detector checkpoints."""
    from mmengine.runner import Runner
    model, ckpt = plain
    runner = Runner(model=sliced_cfg(), work_dir=str(tmp_path / 'work'),
                    default_scope='mmdet')
    before = runner.model.module.backbone.stem[0].weight.clone()
    runner.load_checkpoint(ckpt)
    loaded = runner.model.module.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert not torch.equal(before, loaded['backbone.stem.0.weight'])
    load_checkpoint(build(sliced_cfg()), ckpt, strict=True)

    # the wrapper's state dict: the detector's names, no `module.`
    state = get_state_dict(wrapper)
    assert list(state) == list(model.state_dict())
    assert list(wrapper.state_dict()) == list(state)
    out = str(tmp_path / 'wrapper.pth')
    save_checkpoint(dict(state_dict=state), out)
    fresh = build(detector_cfg().model)
    load_checkpoint(fresh, out, strict=True)
    assert torch.equal(fresh.bbox_head.rtm_cls[0].weight,
                       model.bbox_head.rtm_cls[0].weight)
    # torch's own loading takes either layout
    fresh_wrapper = build(sliced_cfg())
    fresh_wrapper.load_state_dict(model.state_dict(), strict=True)
    prefixed = {'module.' + k: v for k, v in model.state_dict().items()}
    fresh_wrapper.load_state_dict(prefixed, strict=True)
    assert torch.equal(fresh_wrapper.module.neck.out_convs[0].conv.weight,
                       model.neck.out_convs[0].conv.weight)


def test_ema_hook_loads_the_checkpoint_into_its_copy(plain, tmp_path):
    """mmengine's EMAHook (in every RTMDet config) loads ``state_dict`` into
    its averaged copy without renaming keys: with the wrapper's state dict
    under the detector's names, its copy gets the saved weights, whether
    the checkpoint comes from the wrapper or the plain detector, and into
    either model."""
    from mmengine.hooks import EMAHook
    from mmengine.runner import CheckpointLoader
    src = build(sliced_cfg())
    load_checkpoint(src, plain[1], strict=True)
    saver = EMAHook(ema_type='ExpMomentumEMA', momentum=0.0002,
                    update_buffers=True)
    saver.before_run(SimpleNamespace(model=src))
    with torch.no_grad():  # averaged weights != current weights
        for p in saver.ema_model.module.parameters():
            p.add_(1.)
    checkpoint = dict(state_dict=get_state_dict(src))
    saver.before_save_checkpoint(None, checkpoint)
    saved = str(tmp_path / 'ema.pth')
    save_checkpoint(checkpoint, saved)
    # state_dict holds the averaged weights (what tools/test.py runs)
    stem = 'backbone.stem.0.weight'
    assert torch.equal(checkpoint['state_dict'][stem],
                       src.module.backbone.stem[0].weight + 1)

    for target in (sliced_cfg(), detector_cfg().model):
        model = build(target)
        loader = EMAHook(ema_type='ExpMomentumEMA', momentum=0.0002,
                         update_buffers=True)
        loader.before_run(SimpleNamespace(model=model))
        ckpt = CheckpointLoader.load_checkpoint(saved, map_location='cpu')
        loader.after_load_checkpoint(SimpleNamespace(_resume=False), ckpt)
        load_checkpoint(model, saved, strict=True)
        averaged = dict(loader.ema_model.module.named_parameters())
        key = ('module.' if isinstance(model, BaseTTAModel) else '') + stem
        assert torch.equal(averaged[key], checkpoint['state_dict'][stem])
        assert torch.equal(dict(model.named_parameters())[key],
                           checkpoint['state_dict'][stem])


def test_train_step_goes_to_the_detector(data):
    """train_step through the wrapper: the detector's losses, gradients in
    the backbone, updated weights; forward(mode='loss') too."""
    from mmengine.optim import OptimWrapper
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    model = build(sliced_cfg()).train()
    img = torch.from_numpy(data.img[:128, :128]).permute(2, 0, 1)
    sample = DetDataSample(metainfo=dict(img_shape=(128, 128),
                                         ori_shape=(128, 128),
                                         scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 20., 40., 50.], [60., 60., 90., 100.]]),
        labels=torch.tensor([0, 2]))
    batch = dict(inputs=[img.contiguous()], data_samples=[sample])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    weight = model.module.backbone.stem[0].weight
    before = weight.detach().clone()
    losses = model.train_step(copy.deepcopy(batch), optim)
    assert {'loss_cls', 'loss_bbox'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert not torch.equal(before, weight.detach())

    model.zero_grad()
    processed = model.data_preprocessor(copy.deepcopy(batch), True)
    loss = model(**processed, mode='loss')
    model.module.parse_losses(loss)[0].backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0
    with pytest.raises(NotImplementedError, match='test_step'):
        model(**processed, mode='predict')


@pytest.mark.parametrize('kwargs, arg', [
    (dict(slice_size=0), 'slice_size'),
    (dict(slice_size=(320, 320, 3)), 'slice_size'),
    (dict(overlap_ratio=1.0), 'overlap_ratio'),
    (dict(batch_size=0), 'batch_size'),
    (dict(border_margin=-1), 'border_margin'),
    (dict(nms=dict(type='nms', iou_threshold=0.0)), 'nms'),
    (dict(nms=dict(type='diou_nms', iou_threshold=0.5)), 'nms'),
    (dict(nms=dict(type='nms', iou_threshold=0.5, sigma=0.5)), 'nms'),
    (dict(max_per_img=0), 'max_per_img'),
    (dict(window_pipeline=[dict(type='LoadImageFromFile')] +
          WINDOW_PIPELINE), 'window_pipeline'),
    (dict(window_pipeline=[dict(type='PackDetInputs',
                                meta_keys=('img_id', 'img_shape'))]),
     'window_pipeline'),
    (dict(window_pipeline=[]), 'window_pipeline'),
    (dict(whole_image_pipeline=dict(type='PackDetInputs')),
     'whole_image_pipeline'),
])
def test_bad_arguments_name_the_argument(kwargs, arg):
    good = dict(slice_size=SLICE, window_pipeline=WINDOW_PIPELINE)
    SlicedInferenceDetector(detector=FakeDetector(), **good)
    with pytest.raises(ValueError, match=f'`{arg}`'):
        SlicedInferenceDetector(detector=FakeDetector(),
                                **dict(good, **kwargs))


class FakeDetector(torch.nn.Module):
    """The least a detector needs to be wrapped."""

    def __init__(self):
        super().__init__()
        from mmengine.model import BaseDataPreprocessor
        self.data_preprocessor = BaseDataPreprocessor()

    def test_step(self, data):
        return []


def test_bad_detector_and_inputs():
    with pytest.raises(TypeError, match='`detector`'):
        SlicedInferenceDetector(detector='RTMDet')
    with pytest.raises(TypeError, match='`detector`'):
        SlicedInferenceDetector(detector=torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match='`data_preprocessor`'):
        SlicedInferenceDetector(detector=FakeDetector(),
                                data_preprocessor=dict(type='X'))
    model = SlicedInferenceDetector(detector=FakeDetector())
    with pytest.raises(TypeError, match='CHW tensor'):
        model.test_step(dict(inputs=[[torch.zeros(3, 8, 8)]]))
    with pytest.raises(TypeError, match='dict batch'):
        model.test_step([torch.zeros(3, 8, 8)])


# ------------------------------------------------- the stock tools
PLAIN_CFG = """
_base_ = {base!r}
data_root = {root!r}
metainfo = dict(classes={classes!r})
model = dict(backbone=dict(init_cfg=None),  # random init, no download
             bbox_head=dict(num_classes={num_classes}))
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=({scale}, {scale}), keep_ratio=True),
    dict(type='PackDetInputs')
]
# the whole-image test pipeline of the plain detector
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=({scale}, {scale}), keep_ratio=True),
    dict(type='Pad', size=({scale}, {scale}),
         pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys={meta_keys!r})
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_large.json',
                 data_prefix=dict(img='large/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
# the metric of tools/sliced_inference.py --max-dets {max_dets}
val_evaluator = dict(
    _delete_=True, type='SmallObjectCocoMetric', metric='bbox',
    ann_file=data_root + 'annotations/instances_large.json',
    fine_bins={fine_bins!r}, fine_max_dets={max_dets})
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=1,
                 val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
"""

# the same detector, trained the same way, validated and tested sliced
SLICED_CFG = """
_base_ = './plain.py'
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)
full_image_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
]
val_dataloader = dict(dataset=dict(pipeline=full_image_pipeline))
test_dataloader = val_dataloader
model = dict(
    _delete_=True, type='SlicedInferenceDetector', detector=_base_.model,
    slice_size={slice}, overlap_ratio=0.25, window_pipeline={window!r},
    batch_size={batch}, nms=dict(type='nms', iou_threshold=0.5),
    max_per_img={max_dets})
"""


@pytest.fixture(scope='module')
def configs(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp('configs')
    plain_cfg, sliced = str(folder / 'plain.py'), str(folder / 'sliced.py')
    with open(plain_cfg, 'w') as f:
        f.write(PLAIN_CFG.format(
            base=RTMDET_P2, root=data.root + '/', classes=CLASSES,
            num_classes=len(CLASSES), scale=SCALE, meta_keys=META_KEYS,
            fine_bins=FINE_BINS, max_dets=MAX_DETS))
    with open(sliced, 'w') as f:
        f.write(SLICED_CFG.format(slice=SLICE, window=WINDOW_PIPELINE,
                                  batch=BATCH, max_dets=MAX_DETS))
    return plain_cfg, sliced


def sliced_tool(plain_cfg, ckpt, data, out_dir):
    """tools/sliced_inference.py's evaluation: metrics and results of the
    'sliced' mode."""
    tool = load_tool('sliced_inference_tool',
                     osp.join(ROOT, 'tools', 'sliced_inference.py'))
    report = tool.main([plain_cfg, ckpt, data.img_dir, '--ann-file',
                        data.ann_file, '--out-dir', out_dir,
                        '--patch-size', str(SLICE), '--batch-size',
                        str(BATCH), '--max-dets', str(MAX_DETS), '--device',
                        'cpu', '--no-vis'])
    with open(osp.join(out_dir, 'results_sliced.bbox.json')) as f:
        return report['metrics']['sliced'], json.load(f)


def bbox_metrics(metrics):
    return {k: v for k, v in metrics.items() if k.startswith('coco/bbox_')}


def test_runner_test_scores_what_the_sliced_tool_scores(configs, plain,
                                                        data, tmp_path):
    """The test loop of tools/test.py (build_task_runner, Runner.test) on
    the wrapper config gives the metrics of tools/sliced_inference.py's
    'sliced' column, every key."""
    from mmincnext.engine.runner import build_task_runner
    plain_cfg, sliced = configs
    cfg = Config.fromfile(sliced)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = plain[1]
    cfg.launcher = 'none'
    runner = build_task_runner(cfg, 'mmdet', ('test', ))
    from mmdet.evaluation import DumpDetResults  # as tools/test.py --out
    preds = str(tmp_path / 'preds.pkl')
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=preds))
    metrics = runner.test()
    want, results = sliced_tool(plain_cfg, plain[1], data,
                                str(tmp_path / 'tool'))
    # standard keys and the fine bins (an untrained detector scores 0 or
    # -1 for an empty bin: the predictions are compared below)
    assert len(bbox_metrics(want)) == 14
    assert bbox_metrics(metrics) == bbox_metrics(want)
    assert_same_predictions(preds, results)


def assert_same_predictions(dumped_file, results):
    """DumpDetResults' pickle (``tools/test.py --out``) holds the boxes and
    scores of tools/sliced_inference.py's COCO results (in the same, merged
    order; the json rounds boxes to 0.01 px, scores to 1e-5)."""
    with open(dumped_file, 'rb') as f:
        dumped = pickle.load(f)
    by_image = {}
    for r in results:
        by_image.setdefault(r['image_id'], []).append(r)
    assert len(dumped) == 2 and set(by_image) == {1, 2}
    for sample in dumped:
        pred = sample['pred_instances']
        rows = by_image[sample['img_id']]
        assert len(pred['scores']) == len(rows) > 0
        xywh = torch.tensor([r['bbox'] for r in rows])
        boxes = pred['bboxes'].clone()
        boxes[:, 2:] -= boxes[:, :2]
        assert torch.allclose(boxes, xywh, atol=0.011)
        assert torch.allclose(pred['scores'],
                              torch.tensor([r['score'] for r in rows]),
                              atol=1e-5)
        assert [r['category_id'] - 1 for r in rows] == \
            pred['labels'].tolist()


def env_with_root():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.pop('LOCAL_RANK', None)
    env['OMP_NUM_THREADS'] = env.get('OMP_NUM_THREADS', '2')
    return env


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env=env_with_root(), timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:])


def logged_metrics(work_dir):
    """The last metrics line of the runner's json logs in work_dir (test:
    <timestamp>/<timestamp>.json, train: <timestamp>/vis_data/*.json)."""
    lines = []
    for path in sorted(glob.glob(osp.join(work_dir, '**', '*.json'),
                                 recursive=True)):
        with open(path) as f:
            lines += [json.loads(line) for line in f
                      if '"coco/bbox_mAP"' in line]
    assert lines, work_dir
    return lines[-1]


@pytest.mark.slow
def test_stock_tools_train_then_test_sliced(configs, data, tmp_path):
    """One config: tools/train.py trains the plain detector (with the
    config's EMAHook and lr-decay constructor) and validates sliced;
    tools/test.py and mmdet's own tools/test.py on its checkpoint score
    what the last validation scored, and what tools/sliced_inference.py
    scores with the plain config on the same checkpoint, from the same
    predictions."""
    plain_cfg, sliced = configs
    train_dir = str(tmp_path / 'train')
    run([sys.executable, 'tools/train.py', sliced, '--work-dir', train_dir])
    ckpt = osp.join(train_dir, 'epoch_1.pth')
    validated = logged_metrics(train_dir)

    ours_dir = str(tmp_path / 'test')
    preds = str(tmp_path / 'preds.pkl')
    run([sys.executable, 'tools/test.py', sliced, ckpt, '--work-dir',
         ours_dir, '--out', preds])
    mmdet_dir = str(tmp_path / 'mmdet_test')
    run([sys.executable,
         osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py'),
         sliced, ckpt, '--work-dir', mmdet_dir])
    want, results = sliced_tool(plain_cfg, ckpt, data,
                                str(tmp_path / 'tool'))
    keys = sorted(bbox_metrics(want))
    for metrics in (logged_metrics(ours_dir), logged_metrics(mmdet_dir),
                    validated):
        assert {k: metrics[k] for k in keys} == bbox_metrics(want)

    # the very predictions: tools/test.py --out vs the tool's COCO json
    assert_same_predictions(preds, results)
