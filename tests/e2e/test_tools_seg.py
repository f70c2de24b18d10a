"""tools/test.py on a segmentation (mmseg) config: the task is taken from
the config's default_scope. A tiny ADE20K-format dataset is written by the
test; the shipped UperNet config is shrunk to atto and 64 px images by a user
config on top of it."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

import mmseg  # noqa: F401  (a test requirement: fails loudly if missing)
import cv2

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
UPERNET = osp.join(ROOT, 'configs', 'upernet',
                   'upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py')
SIZE = 64


def write_tiny_ade(root, num_images=2):
    rng = np.random.default_rng(0)
    for split in ('training', 'validation'):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(num_images):
            img = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            label = np.zeros((SIZE, SIZE), np.uint8)  # 0 = ignored
            label[8:40, 8:40] = 1 + i  # ADE labels start at 1
            label[40:60, 30:62] = 5
            cv2.imwrite(osp.join(root, 'images', split, f'{i}.jpg'), img)
            cv2.imwrite(osp.join(root, 'annotations', split, f'{i}.png'),
                        label)


def tiny_config(path, data_root):
    text = f"""
_base_ = {UPERNET!r}
data_root = {data_root!r}
model = dict(
    data_preprocessor=dict(size=({SIZE}, {SIZE})),
    backbone=dict(arch='atto', init_cfg=None),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=32),
    auxiliary_head=dict(in_channels=160, channels=16))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=({SIZE}, {SIZE}), keep_ratio=True),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({SIZE}, {SIZE}), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
img_ratios = [0.75, 1.0]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int({SIZE} * r), int({SIZE} * r)),
              keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])
]
train_dataloader = dict(batch_size=2, num_workers=0,
                        persistent_workers=False,
                        dataset=dict(data_root=data_root,
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2))
"""
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def run(cmd):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.pop('LOCAL_RANK', None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=400, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:])
    return proc.stdout + proc.stderr


def test_test_tool_segmentation_out_and_show_dir(tmp_path):
    """The segmentation branches of tools/test.py: ``--out`` (label maps via
    IoUMetric output_dir), ``--show-dir`` (mmseg's visualizer save_dir) and
    ``--precision bf16``.
    Training through tools/train.py on segmentation configs is covered by
    test_seg_e2e.py and test_reliability.py."""
    import torch
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    data_root = str(tmp_path / 'ade')
    write_tiny_ade(data_root)
    config = tiny_config(tmp_path / 'cfg.py', data_root)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(Config.fromfile(config).model)
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': revert_sync_batchnorm(model).state_dict()},
               checkpoint)

    out_dir = tmp_path / 'pred'
    log = run([sys.executable, 'tools/test.py', config, str(checkpoint),
               '--work-dir', str(tmp_path / 'test'), '--out', str(out_dir),
               '--show-dir', str(tmp_path / 'vis'), '--cfg-options',
               'default_hooks.visualization.interval=1'])
    assert re.search(r'mIoU: [0-9.]+', log), log[-2000:]
    assert len(glob.glob(str(out_dir / '*.png'))) == 2
    assert len(glob.glob(str(tmp_path / 'vis' / '**' / '*.png'),
                         recursive=True)) == 2

    # --precision bf16: the network under autocast, the resize and argmax in
    # float32; the label maps are nearly the fp32 ones
    bf16_dir = tmp_path / 'pred_bf16'
    log = run([sys.executable, 'tools/test.py', config, str(checkpoint),
               '--work-dir', str(tmp_path / 'test_bf16'), '--out',
               str(bf16_dir), '--precision', 'bf16'])
    assert 'bf16 autocast: backbone' in log and 'decode_head' in log
    for png in sorted(glob.glob(str(out_dir / '*.png'))):
        want = cv2.imread(png, cv2.IMREAD_UNCHANGED)
        got = cv2.imread(str(bf16_dir / osp.basename(png)),
                         cv2.IMREAD_UNCHANGED)
        print('bf16 label agreement', (got == want).mean())
        assert (got == want).mean() > 0.9
