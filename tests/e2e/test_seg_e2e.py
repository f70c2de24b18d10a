"""End to end on a tiny ADE20K-format dataset written by the test.

The real configs are shrunk (atto backbone loaded from an official-layout
checkpoint written here, narrow heads, 1/8 image scales, a few iterations)
and run through the command-line tools: MMSegmentation's own shipped
``tools/train.py`` / ``tools/test.py`` (which must work on the configs
unchanged) and this project's ``tools/train.py`` / ``tools/test.py``, with and
without ``--tta``. The multi-scale + flip pipeline is also checked in process.
"""
import glob
import json
import os
import os.path as osp
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

import mmincnext  # noqa: F401
from mmincnext.models import InceptionNeXt

import mmseg
import mmcv  # noqa: E402
from mmcv.transforms import Compose  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
PROJECT_TOOLS = osp.join(ROOT, 'tools')
UPERNET_T = osp.join(
    ROOT, 'configs', 'upernet',
    'upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py')
FPN_T = osp.join(ROOT, 'configs', 'sem_fpn',
                 'fpn_inceptionnext-t_8xb4-40k_ade20k-512x512.py')
ATTO_DIMS = list(InceptionNeXt.arch_settings['atto']['dims'])
IMG_H, IMG_W = 96, 128
MAX_ITERS = 4
# ADE20K ids (1..150; 0 = "other", ignored via reduce_zero_label) and the
# colour each one is painted with, so the task is learnable
CLASS_COLORS = {1: (120, 120, 120), 4: (80, 50, 50), 7: (140, 140, 140),
                13: (150, 5, 61), 21: (0, 102, 200)}


def write_ade20k(root, split, n, seed):
    """``images/<split>/*.jpg`` + ``annotations/<split>/*.png`` (uint8 ids,
    0 = other) in ADE20K's layout."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images', split), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
    ids = list(CLASS_COLORS)
    for i in range(n):
        label = np.full((IMG_H, IMG_W), ids[0], np.uint8)
        for cls in rng.choice(ids[1:], size=3, replace=False):
            y, x = rng.integers(0, IMG_H - 24), rng.integers(0, IMG_W - 24)
            h, w = rng.integers(16, 48), rng.integers(16, 64)
            label[y:y + h, x:x + w] = cls
        label[:6, :10] = 0  # "other"
        img = np.zeros((IMG_H, IMG_W, 3), np.uint8)
        for cls, color in CLASS_COLORS.items():
            img[label == cls] = color
        noise = rng.integers(-20, 20, img.shape)
        img = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
        name = f'ADE_{split}_{i:08d}'
        mmcv.imwrite(img, osp.join(root, 'images', split, name + '.jpg'))
        mmcv.imwrite(label, osp.join(root, 'annotations', split,
                                     name + '.png'))


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ADEChallengeData2016'))
    write_ade20k(root, 'training', 4, seed=0)
    write_ade20k(root, 'validation', 2, seed=1)
    return root


@pytest.fixture(scope='module')
def atto_checkpoint(tmp_path_factory):
    """An ImageNet checkpoint in the official layout (with the classifier
    head, which the backbone must skip)."""
    torch.manual_seed(0)
    net = InceptionNeXt('atto')
    net.init_weights()
    state = net.state_dict()
    state.update({'head.fc1.weight': torch.randn(960, 320),
                  'head.fc1.bias': torch.zeros(960),
                  'head.norm.weight': torch.ones(960),
                  'head.norm.bias': torch.zeros(960),
                  'head.fc2.weight': torch.randn(1000, 960),
                  'head.fc2.bias': torch.zeros(1000)})
    path = str(
        tmp_path_factory.mktemp('pretrained') / 'inceptionnext_atto.pth')
    torch.save(state, path)
    return path, len(net.state_dict())


def shrink_pipeline(pipeline, factor=8, crop=(64, 64)):
    """Divide every resize scale by ``factor`` and crop ``crop``."""
    for step in pipeline:
        if step.get('type') == 'TestTimeAug':
            for options in step['transforms']:
                shrink_pipeline(options, factor, crop)
        if isinstance(step.get('scale'), (tuple, list)):
            step['scale'] = tuple(v // factor for v in step['scale'])
        if step.get('type') == 'RandomCrop':
            step['crop_size'] = crop


def tiny_config(src, data_root, checkpoint):
    """The real config at toy size: atto backbone (official-layout
    checkpoint), narrow heads, 1/8 scales, ``MAX_ITERS`` iterations."""
    cfg = Config.fromfile(src)
    model = cfg.model
    model.backbone.arch = 'atto'
    model.backbone.init_cfg.checkpoint = checkpoint
    model.data_preprocessor.size = (64, 64)
    if model.get('neck') is not None:  # Semantic FPN
        model.neck.in_channels = ATTO_DIMS
        model.neck.out_channels = 32
        model.decode_head.in_channels = [32] * 4
        model.decode_head.channels = 16
    else:  # UperNet
        model.decode_head.in_channels = ATTO_DIMS
        model.decode_head.channels = 32
        model.auxiliary_head.in_channels = ATTO_DIMS[2]
        model.auxiliary_head.channels = 16
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[loader]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        shrink_pipeline(loader.dataset.pipeline)
    cfg.train_dataloader.batch_size = 2
    shrink_pipeline(cfg.tta_pipeline)
    cfg.train_cfg.max_iters = MAX_ITERS
    cfg.train_cfg.val_interval = MAX_ITERS
    warmup = [s for s in cfg.param_scheduler if s.type == 'LinearLR']
    for sched in warmup:
        sched.end = MAX_ITERS // 2
    for sched in cfg.param_scheduler:
        if sched.type == 'PolyLR':
            sched.begin = MAX_ITERS // 2 if warmup else 0
            sched.end = MAX_ITERS
    cfg.default_hooks.checkpoint.interval = MAX_ITERS
    cfg.default_hooks.logger.interval = 1
    return cfg


def run_tool(script, *args, cwd, fresh_process=False):
    """Run a command-line tool on ``args``.

    ``fresh_process=True`` starts a new interpreter in which nothing is
    imported yet (so the config's ``custom_imports`` must bring in
    mmincnext); otherwise the script runs in this process as ``__main__``
    (the same code path without paying the imports again), under a unique
    experiment and visualizer name so that MMEngine's global logger /
    message hub / visualizer instances of earlier runs are not reused.
    """
    if fresh_process:
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
        proc = subprocess.run([sys.executable, script, *args], cwd=cwd,
                              env=env, capture_output=True, text=True,
                              timeout=600)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, \
            f'{script} {args} failed:\n{output[-6000:]}'
        return
    run_tool.count = getattr(run_tool, 'count', 0) + 1
    argv, workdir = sys.argv, os.getcwd()
    name = f'seg_e2e_{run_tool.count}'
    sys.argv = [script, *args, '--cfg-options', f'experiment_name={name}',
                f'visualizer.name={name}']
    os.chdir(cwd)
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        sys.argv = argv
        os.chdir(workdir)


def read_run(work_dir):
    """The log text and the metrics that MMEngine's LoggerHook dumped at the
    end of a ``tools/test.py`` run (``{work_dir}/{timestamp}/``)."""
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        log = f.read()
    metrics = glob.glob(osp.join(work_dir, '*', '*.json'))
    if not metrics:
        return log, None
    with open(metrics[0]) as f:
        metrics = json.load(f)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert 0. <= metrics[key] <= 100., metrics
    return log, metrics


def train_and_test(tools_dir, src, ade_root, checkpoint, tmp_path,
                   fresh_train_process, tta_only=False):
    """tools/train.py for MAX_ITERS iterations (validation at the end), then
    tools/test.py on the last checkpoint, single scale and ``--tta``."""
    checkpoint, num_tensors = checkpoint
    cfg_path = str(tmp_path / osp.basename(src))
    tiny_config(src, ade_root, checkpoint).dump(cfg_path)
    work_dir = str(tmp_path / 'train')
    run_tool(osp.join(tools_dir, 'train.py'), cfg_path, '--work-dir',
             work_dir, cwd=str(tmp_path), fresh_process=fresh_train_process)
    log, _ = read_run(work_dir)
    # SyncBN fell back to BN, the backbone was initialised from the
    # official-layout checkpoint (head dropped)
    assert 'SyncBatchNorm (SyncBN) layers in the model will be automatically' \
        in log
    assert f'loaded {num_tensors} InceptionNeXt tensors' in log, log[-3000:]
    ckpt = osp.join(work_dir, f'iter_{MAX_ITERS}.pth')
    assert osp.isfile(ckpt)
    # validation ran at the end of training and reported mIoU
    with open(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                 'scalars.json'))[0]) as f:
        val = [json.loads(line) for line in f if '"mIoU"' in line]
    assert len(val) == 1 and 0 <= val[0]['mIoU'] <= 100, val

    results = {}
    for tta in ((True, ) if tta_only else (False, True)):
        test_dir = str(tmp_path / ('test_tta' if tta else 'test'))
        args = [cfg_path, ckpt, '--work-dir', test_dir]
        run_tool(osp.join(tools_dir, 'test.py'),
                 *(args + ['--tta'] if tta else args), cwd=str(tmp_path))
        log, results[tta] = read_run(test_dir)
        assert 'mIoU' in log and f'Load checkpoint from {ckpt}' in log
    if False in results:
        # the saved checkpoint reproduces the end-of-training validation
        for key in ('aAcc', 'mIoU', 'mAcc'):
            assert results[False][key] == pytest.approx(val[0][key]), key
    return results


def test_upernet_with_mmseg_shipped_tools(ade_root, atto_checkpoint,
                                          tmp_path):
    """MMSegmentation's own tools/train.py (a fresh interpreter: mmincnext
    comes in through the config's custom_imports) and tools/test.py --tta
    (single-scale testing is the validation at the end of training)."""
    results = train_and_test(MMSEG_TOOLS, UPERNET_T, ade_root,
                             atto_checkpoint, tmp_path,
                             fresh_train_process=True, tta_only=True)
    print('UperNet tiny-data mIoU (ms+flip):', results[True]['mIoU'])


def test_sem_fpn_with_project_tools(ade_root, atto_checkpoint, tmp_path):
    results = train_and_test(PROJECT_TOOLS, FPN_T, ade_root, atto_checkpoint,
                             tmp_path, fresh_train_process=False)
    print('Semantic FPN tiny-data mIoU (single scale, ms+flip):',
          results[False]['mIoU'], results[True]['mIoU'])


def test_multiscale_flip_views_and_merge(ade_root, atto_checkpoint):
    """The config's ms+flip pipeline gives 6 scales x 2 flips of each image,
    and SegTTAModel merges them into one prediction of the image's size."""
    cfg = tiny_config(UPERNET_T, ade_root, atto_checkpoint[0])
    init_default_scope('mmseg')
    pipeline = Compose(cfg.tta_pipeline)
    name = 'ADE_validation_00000000'
    views = pipeline(dict(
        img_path=osp.join(ade_root, 'images', 'validation', name + '.jpg'),
        seg_map_path=osp.join(ade_root, 'annotations', 'validation',
                              name + '.png'),
        reduce_zero_label=True, seg_fields=[]))
    assert len(views['inputs']) == 12
    ratios = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    # short side = (512 / 8) * ratio for every view
    assert [tuple(x.shape[1:]) for x in views['inputs']] == [
        (int(64 * r), round(int(64 * r) * IMG_W / IMG_H))
        for r in ratios for _ in range(2)]
    assert [s.flip for s in views['data_samples']] == [False, True] * 6

    tta_cfg = cfg.tta_model.copy()
    tta_cfg.module = cfg.model
    tta_model = revert_sync_batchnorm(MODELS.build(tta_cfg))
    tta_model.module.init_weights()
    tta_model.eval()
    with torch.no_grad():
        pred = tta_model.test_step(pseudo_collate([views]))[0]
    assert pred.pred_sem_seg.shape == (IMG_H, IMG_W)
    gt = pred.gt_sem_seg.data
    assert gt.shape == (1, IMG_H, IMG_W)
    assert set(gt.unique().tolist()) <= {c - 1 for c in CLASS_COLORS} | {255}



def test_sem_fpn_distributed_two_cpu_processes(ade_root, atto_checkpoint,
                                               tmp_path):
    """tools/dist_train.sh with 2 CPU processes (gloo): the SyncBN layers of
    the segmentation configs cannot run on CPUs and are reverted to BN."""
    import socket
    cfg = tiny_config(FPN_T, ade_root, atto_checkpoint[0])
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.param_scheduler[0].end = 2
    cfg_path = str(tmp_path / 'fpn_dist.py')
    cfg.dump(cfg_path)
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', osp.join(PROJECT_TOOLS, 'dist_train.sh'), cfg_path, '2',
         '--work-dir', str(tmp_path / 'work')], cwd=str(tmp_path), env=env,
        capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    log, _ = read_run(str(tmp_path / 'work'))
    assert 'gloo process group (rank 0/2)' in out and 'SyncBN -> BN' in out
    assert 'Iter(train) [2/2]' in log and 'mIoU' in log
    assert osp.isfile(str(tmp_path / 'work' / 'iter_2.pth'))
