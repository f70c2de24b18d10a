"""Every shipped detection config builds through mmdet's registry and runs a
training step (loss, backward: every trainable parameter gets a gradient, as
DDP requires; the config's lr-decay parameter groups; the optimizer step for
the atto/tiny configs) and a predict step on a small synthetic batch (with
fewer RoIs than on COCO). The config's data pipelines run on a tiny image.
ImageNet weights cannot be downloaded here, so the backbone's ``init_cfg`` is
dropped (loading is covered by test_tools_converter.py and test_det_e2e.py).
"""
import glob
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)

from mmengine.config import Config  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'faster_rcnn', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'retinanet', '*.py')))
SIZE = 128


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    for algo, dirname in (('mask-rcnn', 'mask_rcnn'),
                          ('retinanet', 'retinanet')):
        for size in 'tsb':
            assert f'{algo}_inceptionnext-{size}_fpn_1x_coco.py' in names
    for size in 'tsb':
        assert f'mask-rcnn_inceptionnext-{size}_fpn_ms-crop-3x_coco.py' \
            in names
    assert 'retinanet_inceptionnext-t_fpn-p2_small-obj_1x_coco.py' in names
    assert 'mask-rcnn_inceptionnext-t_fpn_small-obj_1x_coco.py' in names
    for size in ('t', 'atto'):
        for form in ('', '_small-obj'):
            assert f'faster-rcnn_inceptionnext-{size}_fpn{form}_1x_coco.py' \
                in names


def synthetic_batch(with_mask):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(0)
    img = torch.from_numpy(
        rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8))
    # a 10 px, a 24 px and a 60 px object
    boxes = torch.tensor([[10., 12., 20., 22.], [40., 50., 64., 74.],
                          [60., 30., 120., 90.]])
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1, 2]))
    if with_mask:
        masks = np.zeros((3, SIZE, SIZE), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks, SIZE, SIZE)
    sample = DetDataSample(metainfo=dict(
        img_id=0, img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
        pad_shape=(SIZE, SIZE), scale_factor=(1., 1.), flip=False,
        flip_direction=None))
    sample.gt_instances = gt
    return dict(inputs=[img], data_samples=[sample])


def run_pipelines(cfg):
    """Run the train and test pipelines of ``cfg`` on a tiny image."""
    from mmcv.transforms import Compose
    from mmdet.structures.mask import PolygonMasks
    img = np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)

    def sample():
        return dict(
            img=img.copy(), img_shape=img.shape[:2], ori_shape=img.shape[:2],
            img_id=0, img_path='x.jpg',
            gt_bboxes=np.array([[10, 10, 22, 24], [40, 40, 90, 80]],
                               np.float32),
            gt_bboxes_labels=np.array([0, 1]),
            gt_ignore_flags=np.array([False, False]),
            gt_masks=PolygonMasks(
                [[np.array([10, 10, 22, 10, 22, 24, 10, 24], float)],
                 [np.array([40, 40, 90, 40, 90, 80], float)]], 96, 128))

    for key in ('train_dataloader', 'test_dataloader'):
        pipeline = list(cfg[key].dataset.pipeline)
        # the image and its annotations are given: skip the file loaders
        pipeline = [t for t in pipeline
                    if t['type'] not in ('LoadImageFromFile',
                                         'LoadAnnotations')]
        out = Compose(pipeline)(sample())
        assert out is not None, key
        assert out['inputs'].ndim == 3, key


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_train_and_predict(config):
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)  # custom_imports registers mmincnext
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmincnext'],
                                      allow_failed_imports=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU-safe default
    assert cfg.model.backbone.type == 'InceptionNeXt'
    assert cfg.model.backbone.init_cfg.checkpoint.startswith(
        'https://github.com/sail-sg/inceptionnext/releases/download/')
    init_default_scope('mmdet')
    run_pipelines(cfg)

    cfg.model.backbone.init_cfg = None  # no downloads here
    if 'roi_head' in cfg.model:
        # fewer RoIs than on COCO: the 256-channel RoI heads would dominate
        # the CPU time; every module still runs
        cfg.model.train_cfg.rcnn.sampler.num = 64
        cfg.model.test_cfg.rpn.max_per_img = 100
        cfg.model.test_cfg.rcnn.max_per_img = 20
    torch.manual_seed(0)
    # (PyTorch's default init: init_weights() of 100 M parameters costs
    # seconds and is exercised by the end-to-end tests)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    # the backbone outputs exactly what the neck consumes
    assert list(model.backbone.out_channels) == list(
        cfg.model.neck.in_channels)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    # every layer id 0 .. num_layers + 1 is used, with and without decay:
    # num_layers is the backbone's natural value (6 tiny, 12 small/base)
    n_groups = len(optim_wrapper.optimizer.param_groups)
    assert n_groups == 2 * (cfg.optim_wrapper.paramwise_cfg.num_layers + 2)

    with_mask = 'mask_head' in cfg.model.get('roi_head', {})
    model.train()
    data = model.data_preprocessor(synthetic_batch(with_mask), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss)
    if with_mask:
        assert 'loss_mask' in log_vars
    optim_wrapper.backward(loss)
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without gradient (DDP would fail): ' \
        f'{no_grad[:5]}'
    if cfg.model.backbone.arch in ('atto', 'tiny'):
        # the optimizer step is the same code for every size; on small and
        # base (45-80 M backbone parameters) it costs seconds of CPU
        optim_wrapper.step()
    optim_wrapper.zero_grad()

    model.eval()
    with torch.no_grad():
        results = model.test_step(synthetic_batch(with_mask))
    assert len(results) == 1
    pred = results[0].pred_instances
    assert pred.bboxes.shape[-1] == 4
    assert len(pred.bboxes) <= cfg.model.test_cfg.get(
        'rcnn', cfg.model.test_cfg).max_per_img
    if with_mask:
        assert pred.masks.shape[-2:] == (SIZE, SIZE)


def test_custom_imports_alone_registers_everything():
    """In a fresh interpreter, Config.fromfile + mmdet's registry build the
    model and find the optimizer constructor and metric (nothing imported
    by hand)."""
    config = osp.join(ROOT, 'configs', 'retinanet',
                      'retinanet_inceptionnext-atto_fpn-p2_small-obj_1x_'
                      'coco.py')
    code = f"""
import sys
from mmengine.config import Config
assert 'mmincnext' not in sys.modules
cfg = Config.fromfile({config!r})
from mmdet.registry import MODELS, METRICS, OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.utils import register_all_modules
register_all_modules()
cfg.model.backbone.init_cfg = None
model = MODELS.build(cfg.model)
assert type(model.backbone).__name__ == 'InceptionNeXt'
assert METRICS.get(cfg.val_evaluator.type) is not None
assert OPTIM_WRAPPER_CONSTRUCTORS.get(cfg.optim_wrapper.constructor)
print('ok')
"""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=env, timeout=300, cwd='/')
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-3000:]


def test_metafiles_list_every_config():
    import yaml
    for folder in ('mask_rcnn', 'faster_rcnn', 'retinanet'):
        with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            meta = yaml.safe_load(f)
        listed = {m['Config'] for m in meta['Models']}
        shipped = {osp.relpath(c, ROOT) for c in CONFIGS
                   if f'/{folder}/' in c}
        assert listed == shipped, folder
        for model in meta['Models']:  # nothing trained: no results claimed
            assert 'Results' not in model and 'Weights' not in model
