"""Reliability of real training processes (tools/train.py on a tiny
generated small-object dataset, tools/dataset_converters/
make_small_object_data.py): runs that survive SIGKILL, clear errors for
missing data, distributed jobs that fail fast when a worker dies."""
import glob
import json
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
PY = sys.executable
BASE_CFG = osp.join(ROOT, 'configs', 'mask_rcnn',
                    'mask-rcnn_inceptionnext-atto_fpn_small-obj_1x_coco.py')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp('data')
    subprocess.run([
        PY, osp.join(ROOT, 'tools', 'dataset_converters',
                     'make_small_object_data.py'), '--out', str(out),
        '--seed', '3', '--num-train', '4', '--num-val', '2', '--img-size',
        '128', '--objects', '4', '8', '--num-large', '0', '--num-seg-train',
        '0', '--num-seg-val', '0'
    ], check=True, cwd=ROOT, capture_output=True, timeout=300)
    det = out / 'det'
    # one training image without any object: must train fine
    train = json.loads((det / 'annotations' / 'instances_train.json')
                       .read_text())
    first = train['images'][0]['id']
    train['annotations'] = [a for a in train['annotations']
                            if a['image_id'] != first]
    (det / 'annotations' / 'instances_train.json').write_text(
        json.dumps(train))
    return det


def write_config(path, data_root, train_ann='annotations/instances_train.json',
                 **extra):
    """A config inheriting the atto small-object Mask R-CNN, on the tiny
    data at its native 128 px size, deterministic, a checkpoint per epoch."""
    lines = [
        f'_base_ = {BASE_CFG!r}',
        f'data_root = {str(data_root) + "/"!r}',
        "metainfo = dict(classes=('circle', 'square', 'triangle'))",
        "train_pipeline = [dict(type='LoadImageFromFile'), "
        "dict(type='LoadAnnotations', with_bbox=True, with_mask=True), "
        "dict(type='Resize', scale=(128, 128), keep_ratio=True), "
        "dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]",
        "test_pipeline = [dict(type='LoadImageFromFile'), "
        "dict(type='Resize', scale=(128, 128), keep_ratio=True), "
        "dict(type='LoadAnnotations', with_bbox=True, with_mask=True), "
        "dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', "
        "'ori_shape', 'img_shape', 'scale_factor'))]",
        'train_dataloader = dict(batch_size=2, num_workers=0, '
        'persistent_workers=False, sampler=dict(type="DefaultSampler", '
        'shuffle=True), batch_sampler=None, dataset=dict('
        'data_root=data_root, metainfo=metainfo, '
        f'ann_file={train_ann!r}, pipeline=train_pipeline, '
        "data_prefix=dict(img='train/'), "
        'filter_cfg=dict(filter_empty_gt=False, min_size=0)))',
        'val_dataloader = dict(batch_size=1, num_workers=0, '
        'persistent_workers=False, dataset=dict(data_root=data_root, '
        "metainfo=metainfo, ann_file='annotations/instances_val.json', "
        "pipeline=test_pipeline, data_prefix=dict(img='val/')))",
        'test_dataloader = val_dataloader',
        "val_evaluator = dict(ann_file=data_root + "
        "'annotations/instances_val.json')",
        'test_evaluator = val_evaluator',
        'model = dict(backbone=dict(init_cfg=None))',
        'train_cfg = dict(max_epochs=2, val_interval=100)',
        'param_scheduler = []',
        'default_hooks = dict(logger=dict(interval=1), '
        'checkpoint=dict(interval=1, max_keep_ckpts=5))',
        'randomness = dict(seed=0, deterministic=True)',
        'env_cfg = dict(dist_cfg=dict(backend="gloo", timeout=60))',
    ]
    lines += [f'{k} = {v}' for k, v in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def train(cfg, work_dir, *args, env=None, timeout=600):
    return subprocess.run(
        [PY, osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir',
         str(work_dir), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env=env)


def logged_losses(work_dir):
    """{iter: loss} from every run's scalars.json in a work dir (a resumed
    run appends a new timestamped folder)."""
    losses = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        for line in open(path):
            record = json.loads(line)
            if 'loss' in record and 'iter' in record:
                losses[record['iter']] = record['loss']
    return losses


KILLER = textwrap.dedent('''
    import os, signal
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module()
    class SigkillAtIterHook(Hook):
        """Test helper: SIGKILL this process after training iteration N."""
        priority = 'LOWEST'

        def __init__(self, kill_at):
            self.kill_at = kill_at

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if runner.iter + 1 == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
''')


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_data, tmp_path):
    """4 images, batch 2: epoch_1.pth after iteration 2, SIGKILL after
    iteration 3, --resume to the end of epoch 2: same weights and losses as
    a run that was never interrupted."""
    cfg = write_config(tmp_path / 'cfg.py', tiny_data)
    straight = train(cfg, tmp_path / 'straight')
    assert straight.returncode == 0, straight.stderr[-3000:]

    (tmp_path / 'killer_hook.py').write_text(KILLER)
    kill_cfg = write_config(
        tmp_path / 'cfg_kill.py', tiny_data,
        custom_imports="dict(imports=['mmincnext', 'killer_hook'], "
        'allow_failed_imports=False)',
        custom_hooks='[dict(type="SigkillAtIterHook", kill_at=3)]')
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}:{ROOT}')
    killed = train(kill_cfg, tmp_path / 'resumed', env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert osp.exists(tmp_path / 'resumed' / 'epoch_1.pth')
    assert not osp.exists(tmp_path / 'resumed' / 'epoch_2.pth')

    resumed = train(cfg, tmp_path / 'resumed', '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1, iter: 2' in resumed.stdout + resumed.stderr

    want = logged_losses(tmp_path / 'straight')
    got = logged_losses(tmp_path / 'resumed')
    assert sorted(want) == sorted(got) == list(range(1, 5))
    assert got == want  # bit-identical losses, iteration by iteration

    from mmincnext.utils import safe_torch_load
    a = safe_torch_load(tmp_path / 'straight' / 'epoch_2.pth')['state_dict']
    b = safe_torch_load(tmp_path / 'resumed' / 'epoch_2.pth')['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_refuses_empty_annotation_file(tiny_data, tmp_path):
    empty = tmp_path / 'empty.json'
    coco = json.loads((tiny_data / 'annotations' /
                       'instances_train.json').read_text())
    coco['images'], coco['annotations'] = [], []
    empty.write_text(json.dumps(coco))
    cfg = write_config(tmp_path / 'cfg.py', tiny_data, train_ann=str(empty))
    run = train(cfg, tmp_path / 'work')
    assert run.returncode != 0
    assert 'lists no images' in run.stderr.splitlines()[-1]
    assert 'empty.json' in run.stderr.splitlines()[-1]


def test_train_names_missing_annotation_file_and_data_root(tiny_data,
                                                           tmp_path):
    cfg = write_config(tmp_path / 'cfg.py', tiny_data,
                       train_ann='nope/missing.json')
    run = train(cfg, tmp_path / 'work')
    assert run.returncode != 0
    assert 'missing.json' in run.stderr.splitlines()[-1]

    cfg = write_config(tmp_path / 'cfg2.py', tmp_path / 'no_such_root')
    run = train(cfg, tmp_path / 'work2')
    assert run.returncode != 0
    assert 'no_such_root' in run.stderr.splitlines()[-1]


def test_train_names_missing_images_before_the_first_iteration(tiny_data,
                                                               tmp_path):
    """A training set with a missing image fails in PreflightCheckHook,
    naming the file, before any iteration (not when the sampler draws it);
    the same for the validation set."""
    data = tmp_path / 'det'
    shutil.copytree(tiny_data, data)
    train_images = sorted((data / 'train').iterdir())
    train_images[-1].unlink()
    cfg = write_config(tmp_path / 'cfg.py', data)
    run = train(cfg, tmp_path / 'work')
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert 'FileNotFoundError' in last and train_images[-1].name in last
    assert 'train dataset' in last and '1 of its' in last
    assert 'Iter(train)' not in run.stdout + run.stderr

    shutil.copy(tiny_data / 'train' / train_images[-1].name,
                train_images[-1])
    val_image = sorted((data / 'val').iterdir())[0]
    val_image.unlink()
    run = train(cfg, tmp_path / 'work2')
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert 'val dataset' in last and val_image.name in last
    assert 'Iter(train)' not in run.stdout + run.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_killed_worker_fails_the_distributed_job(tiny_data, tmp_path):
    """2 gloo processes through tools/dist_train.sh; SIGKILL one worker:
    torchrun stops the other and the job exits non-zero, quickly."""
    cfg = write_config(tmp_path / 'cfg.py', tiny_data,
                       train_cfg='dict(max_epochs=200, val_interval=1000)')
    env = dict(os.environ, PORT=str(_free_port()), PYTHON_EXEC=PY)
    log = open(tmp_path / 'dist.log', 'w')
    job = subprocess.Popen(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', str(tmp_path / 'work')], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # wait until both workers are training (iteration logs appear)
        deadline = time.time() + 240
        while time.time() < deadline and job.poll() is None:
            if 'Epoch(train)' in open(tmp_path / 'dist.log').read():
                break
            time.sleep(1)
        assert job.poll() is None, open(tmp_path / 'dist.log').read()[-3000:]
        listing = subprocess.run(['pgrep', '-af', f'train.py {cfg}'],
                                 capture_output=True, text=True).stdout
        workers = [int(line.split()[0]) for line in listing.splitlines()
                   if 'torch.distributed.run' not in line
                   and 'dist_train.sh' not in line]
        assert len(workers) >= 2, workers
        os.kill(max(workers), signal.SIGKILL)
        start = time.time()
        code = job.wait(timeout=120)
        elapsed = time.time() - start
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        log.close()
    assert code != 0
    assert elapsed < 90, f'job took {elapsed:.0f}s to fail'


def test_tools_close_the_process_group(tmp_path):
    """tools/train.py and tools/test.py end a distributed run by releasing
    the runner's (DDP) model and destroying the process group (not left to
    interpreter shutdown); without one it is a no-op."""
    from types import SimpleNamespace

    import torch.distributed as dist

    from mmincnext.engine.runner import close_process_group
    close_process_group()  # nothing initialized: no error
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    assert dist.is_initialized()
    runner = SimpleNamespace(model=object())
    close_process_group(runner)
    assert not dist.is_initialized() and runner.model is None
    for tool in ('train.py', 'test.py'):
        with open(osp.join(ROOT, 'tools', tool)) as f:
            assert 'close_process_group(runner)' in f.read(), tool
