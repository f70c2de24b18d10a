"""End to end through MMYOLO's own command-line tools (shipped in its wheel
under ``mmyolo/.mim/tools``): ``train.py`` trains the atto P2 YOLOv8 config
for a few iterations on generated COCO-format small-object data, shrunk by
``--cfg-options`` only (128 px, 3 classes, batch 2, local "ImageNet"
weights), and validates with the fine small-object bins; ``test.py``
evaluates the checkpoint and writes the metrics json.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

# skips only where MMYOLO is not installed (it is in the project's
# environment, see requirements/runtime.txt)
mmyolo = pytest.importorskip('mmyolo')

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(osp.dirname(mmyolo.__file__), '.mim', 'tools')
CONFIG = osp.join(
    ROOT, 'configs', 'yolov8',
    'yolov8_inceptionnext-atto_pafpn-p2_small-obj_8xb16-500e_coco.py')
SIZE = 128
FINE_KEYS = ('bbox_mAP_vtiny', 'bbox_mAP_tiny', 'bbox_mAP_small',
             'bbox_AR_vtiny', 'bbox_AR_tiny', 'bbox_AR_small')


def run(cmd, timeout=600):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.pop('LOCAL_RANK', None)
    env['OMP_NUM_THREADS'] = env.get('OMP_NUM_THREADS', '1')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:])
    return proc.stdout + proc.stderr


def data_options(data_root, checkpoint):
    """--cfg-options for the generated data at 128 px; the pipeline
    indices are those of the config's train / test pipelines."""
    ann = data_root + 'annotations/instances_{}.json'
    opts = [
        'model.bbox_head.head_module.num_classes=3',
        'model.train_cfg.assigner.num_classes=3',
        # untrained: keep every box (COCO needs detections to score)
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.nms_pre=1000',
        'model.test_cfg.max_per_img=100',
        f'model.backbone.init_cfg.checkpoint={checkpoint}',
        # Mosaic and YOLOv5RandomAffine; YOLOv5KeepRatioResize, LetterResize
        f'train_dataloader.dataset.pipeline.2.img_scale=({SIZE},{SIZE})',
        f'train_dataloader.dataset.pipeline.3.border=({-SIZE // 2},'
        f'{-SIZE // 2})',
        'train_dataloader.batch_size=2',
    ]
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val'),
                          ('test_dataloader', 'val')):
        opts += [
            f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
            f'{loader}.dataset.data_root={data_root}',
            f'{loader}.dataset.ann_file=annotations/instances_{split}.json',
            f'{loader}.dataset.data_prefix.img={split}/',
            f'{loader}.dataset.metainfo.classes=circle,square,triangle',
        ]
        if loader != 'train_dataloader':
            opts += [f'{loader}.dataset.pipeline.1.scale=({SIZE},{SIZE})',
                     f'{loader}.dataset.pipeline.2.scale=({SIZE},{SIZE})']
    opts += [f'val_evaluator.ann_file={ann.format("val")}',
             f'test_evaluator.ann_file={ann.format("val")}']
    return opts


def test_mmyolo_train_then_test_with_fine_bins(tmp_path):
    data = tmp_path / 'data'
    run([sys.executable, 'tools/dataset_converters/make_small_object_data.py',
         '--out', str(data), '--num-train', '4', '--num-val', '2',
         '--img-size', str(SIZE), '--num-large', '0', '--num-seg-train', '0',
         '--num-seg-val', '0'])
    data_root = str(data / 'det') + '/'
    # a local official-layout atto checkpoint ("ImageNet weights")
    from mmincnext.models.backbones import InceptionNeXt
    torch.manual_seed(0)
    state = InceptionNeXt('atto').state_dict()
    state['head.fc2.weight'] = torch.zeros(1000, 960)
    checkpoint = str(tmp_path / 'inceptionnext_atto.pth')
    torch.save(state, checkpoint)
    opts = data_options(data_root, checkpoint)

    # 2 epochs of 2 iterations, validation after the last
    work_dir = tmp_path / 'train'
    log = run([sys.executable, osp.join(TOOLS, 'train.py'), CONFIG,
               '--work-dir', str(work_dir), '--cfg-options', *opts,
               'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2',
               'default_hooks.logger.interval=1'])
    assert 'load InceptionNeXt weights from' in log
    assert 'layer_wise lr decay (rate 0.8, num_layers 5)' in log
    assert 'Epoch(train) [2][2/2]' in log
    assert 'coco/bbox_mAP_vtiny' in log  # SmallObjectCocoMetric
    assert (work_dir / 'epoch_2.pth').exists()

    test_dir = tmp_path / 'test'
    run([sys.executable, osp.join(TOOLS, 'test.py'), CONFIG,
         str(work_dir / 'epoch_2.pth'), '--work-dir', str(test_dir),
         '--cfg-options', *opts])
    files = glob.glob(str(test_dir / '*' / '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        metrics = json.load(f)
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_s') + FINE_KEYS:
        assert f'coco/{key}' in metrics, sorted(metrics)
        assert -1 <= metrics[f'coco/{key}'] <= 1
    # the generated objects are 10-40 px: the tiny and small bins hold
    # ground truth (-1 would mean an empty bin)
    assert metrics['coco/bbox_mAP_tiny'] >= 0
    assert metrics['coco/bbox_mAP_small'] >= 0
