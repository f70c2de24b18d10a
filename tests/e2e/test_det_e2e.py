"""End to end through the command-line tools on a tiny COCO dataset that the
test writes (boxes and polygon masks, half of the objects under 16 px):

- tools/train.py for a few iterations, loading "ImageNet" weights from a
  local official-layout checkpoint through the documented
  ``--cfg-options model.backbone.init_cfg.checkpoint=...`` override;
- tools/test.py on the checkpoint: standard COCO metrics and the fine
  small-object bins, ``--out`` predictions, ``--show-dir`` drawings;
- two CPU processes (gloo) through tools/dist_train.sh;
- mmdet's own shipped tools/train.py on the same config.
"""
import json
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)
import cv2

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MASK_RCNN_ATTO = osp.join(
    ROOT, 'configs', 'mask_rcnn',
    'mask-rcnn_inceptionnext-atto_fpn_small-obj_1x_coco.py')
RETINA_P2_ATTO = osp.join(
    ROOT, 'configs', 'retinanet',
    'retinanet_inceptionnext-atto_fpn-p2_small-obj_1x_coco.py')
IMG = 160
CLASSES = ('square', 'triangle')
FINE_KEYS = ('bbox_mAP_vtiny', 'bbox_mAP_tiny', 'bbox_mAP_small')


def write_tiny_coco(root, num_images, seed):
    """Images with squares and triangles of 6 to 48 px, COCO json with
    boxes and polygons."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        img = rng.integers(0, 60, (IMG, IMG, 3), dtype=np.uint8)
        for j, side in enumerate((6, 12, 24, 48)):
            x = int(rng.integers(2, IMG - side - 2))
            y = int(rng.integers(2, IMG - side - 2))
            cat = j % 2
            if cat == 0:
                poly = [x, y, x + side, y, x + side, y + side, x, y + side]
            else:
                poly = [x, y + side, x + side // 2, y, x + side, y + side]
            pts = np.array(poly, np.int32).reshape(-1, 2)
            cv2.fillPoly(img, [pts], (40, 200, 240) if cat else (250, 90, 30))
            xs, ys = poly[0::2], poly[1::2]
            w, h = max(xs) - min(xs), max(ys) - min(ys)
            area = w * h if cat == 0 else w * h / 2
            anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                             category_id=cat + 1, iscrowd=0, area=area,
                             bbox=[min(xs), min(ys), w, h],
                             segmentation=[[float(v) for v in poly]]))
        name = f'{i:03d}.png'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i + 1, file_name=name, height=IMG, width=IMG))
    ann = dict(images=images, annotations=anns,
               categories=[dict(id=k + 1, name=n)
                           for k, n in enumerate(CLASSES)])
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(ann, f)
    return ann


def tiny_config(path, base, data_root, max_epochs=2, with_mask=True):
    """A user config on top of a shipped one: the tiny dataset, 160 px
    images, no workers, fewer RoIs, every detection kept (score_thr 0: an
    untrained model's scores are low and an empty result has no COCO
    metrics)."""
    if with_mask:
        # fewer RoIs than the COCO settings: the 256-channel RoI heads
        # dominate the CPU time on 160 px images
        model = ("model = dict(roi_head=dict(bbox_head=dict(num_classes=2),"
                 " mask_head=dict(num_classes=2)),"
                 " train_cfg=dict(rpn_proposal=dict(nms_pre=400,"
                 " max_per_img=200), rcnn=dict(sampler=dict(num=64))),"
                 " test_cfg=dict(rpn=dict(nms_pre=400, max_per_img=100),"
                 " rcnn=dict(score_thr=0.0, max_per_img=30)))")
    else:
        model = ('model = dict(bbox_head=dict(num_classes=2), '
                 'test_cfg=dict(score_thr=0.0))')
    text = f"""
_base_ = {base!r}
data_root = {data_root + '/'!r}
metainfo = dict(classes={CLASSES!r})
{model}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={with_mask}),
    dict(type='Resize', scale=({IMG}, {IMG}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({IMG}, {IMG}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={with_mask}),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))
]
dataset = dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
               ann_file='ann.json', data_prefix=dict(img='images/'),
               backend_args=None)
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=0)))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/ann.json',
                     metric={['bbox', 'segm'] if with_mask else ['bbox']})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval={max_epochs})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={max_epochs}))
"""
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def env_with_root():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.pop('LOCAL_RANK', None)
    env['OMP_NUM_THREADS'] = env.get('OMP_NUM_THREADS', '1')
    return env


def run(cmd, timeout=400, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=env or env_with_root(), timeout=timeout,
                          cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:])
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_coco')
    ann = write_tiny_coco(str(root), num_images=2, seed=0)
    sides = [np.sqrt(a['area']) for a in ann['annotations']]
    assert sum(s < 16 for s in sides) >= 4  # objects under 16 px
    return str(root)


@pytest.fixture(scope='module')
def atto_checkpoint(tmp_path_factory):
    """An official-layout (plain state dict with head) atto checkpoint."""
    from mmincnext.models.backbones import InceptionNeXt
    torch.manual_seed(0)
    state = InceptionNeXt('atto').state_dict()
    state['head.fc2.weight'] = torch.zeros(1000, 960)
    path = tmp_path_factory.mktemp('weights') / 'inceptionnext_atto.pth'
    torch.save(state, path)
    return str(path), state


def test_train_then_test_with_fine_bins(data_root, atto_checkpoint,
                                        tmp_path):
    ckpt, state = atto_checkpoint
    config = tiny_config(tmp_path / 'cfg.py', MASK_RCNN_ATTO, data_root,
                         max_epochs=1)
    work_dir = tmp_path / 'work'
    log = run([sys.executable, 'tools/train.py', config,
               '--work-dir', str(work_dir), '--cfg-options',
               f'model.backbone.init_cfg.checkpoint={ckpt}'])
    assert 'load InceptionNeXt weights from' in log
    assert 'malloc: freed memory is kept for reuse' in log
    assert 'InceptionNeXtLearningRateDecayOptimizerConstructor' in log or \
        'layer_wise lr decay' in log
    # validation at the end of training uses SmallObjectCocoMetric
    assert 'coco/bbox_mAP_vtiny' in log
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.exists()

    # the checkpoint holds the trained model; a few steps moved the
    # pretrained backbone weights away from the local checkpoint's
    from mmincnext.utils import safe_torch_load
    trained = safe_torch_load(str(checkpoint))['state_dict']
    assert trained['backbone.stem.0.weight'].shape == \
        state['stem.0.weight'].shape
    assert not torch.equal(trained['backbone.stem.0.weight'],
                           state['stem.0.weight'])

    out_pkl = tmp_path / 'preds.pkl'
    show_dir = 'vis'
    log = run([sys.executable, 'tools/test.py', config, str(checkpoint),
               '--work-dir', str(tmp_path / 'test'), '--out', str(out_pkl),
               '--show-dir', show_dir])
    for key in ('bbox_mAP', 'bbox_mAP_s', 'segm_mAP') + FINE_KEYS + (
            'segm_mAP_vtiny', 'segm_AR_tiny'):
        assert re.search(rf'coco/{key}: -?[0-9.]+', log), key
    with open(out_pkl, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 2 and 'pred_instances' in preds[0]
    drawn = [f for _, _, fs in os.walk(tmp_path / 'test') for f in fs
             if f.endswith('.png')]
    assert len(drawn) == 2


def test_dist_train_two_cpu_processes(data_root, tmp_path):
    """tools/dist_train.sh, 2 processes, gloo (no GPU), RetinaNet P2 with
    SyncBN config (reverted to BN on CPU), 2 iterations each."""
    config = tiny_config(tmp_path / 'cfg.py', RETINA_P2_ATTO, data_root,
                         max_epochs=1, with_mask=False)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = env_with_root()
    env['PORT'] = str(port)
    env['PYTHON_EXEC'] = sys.executable
    work_dir = tmp_path / 'work'
    log = run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
               str(work_dir), '--cfg-options',
               'model.backbone.init_cfg=None'], env=env, timeout=500)
    assert 'gloo process group (rank 0/2)' in log
    assert 'CPUDistributedDataParallel' in log
    assert 'coco/bbox_mAP_vtiny' in log  # distributed evaluation
    assert (work_dir / 'epoch_1.pth').exists()


def test_mmdet_shipped_train_tool(data_root, tmp_path):
    """mmdet's own tools/train.py (inside the wheel) runs our config
    unchanged: custom_imports brings in mmincnext."""
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    'train.py')
    assert osp.exists(tool)
    config = tiny_config(tmp_path / 'cfg.py', MASK_RCNN_ATTO, data_root,
                         max_epochs=1)
    work_dir = tmp_path / 'work'
    run([sys.executable, tool, config, '--work-dir', str(work_dir),
         '--cfg-options', 'model.backbone.init_cfg=None',
         'train_cfg.val_interval=10'])  # no validation: covered above
    assert (work_dir / 'epoch_1.pth').exists()
