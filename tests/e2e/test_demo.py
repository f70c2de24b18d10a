"""`make demo` end to end, shortened: tools/demo.py trains the demo config for
a few iterations on a few generated images, evaluates, draws and plots; then
tools/image_demo.py runs the checkpoint on a folder of images.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
PY = sys.executable
IMG = 96
ITERS = 12


def _run(args, cwd=ROOT, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([PY] + args, cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('demo')
    data = str(tmp / 'data')
    _run(['tools/dataset_converters/make_small_object_data.py', '--out',
          data, '--num-train', '8', '--num-val', '2', '--img-size',
          str(IMG), '--objects', '6', '10', '--num-large', '0',
          '--num-seg-train', '0', '--num-seg-val', '0'])
    work = str(tmp / 'work')
    out = _run(['tools/demo.py', '--data-root', data, '--work-dir', work,
                '--iters', str(ITERS), '--val-interval', str(ITERS // 2),
                '--batch-size', '2', '--num-vis', '2'])
    return dict(data=data, work=work, stdout=out)


def test_demo_outputs(demo_run):
    work = demo_run['work']
    with open(osp.join(work, 'metrics.json')) as f:
        m = json.load(f)
    val = m['val_metrics']
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
                'bbox_mAP_vtiny', 'bbox_mAP_tiny', 'bbox_mAP_small',
                'segm_mAP', 'segm_mAP_s'):
        assert f'coco/{key}' in val, key
        assert -1 <= val[f'coco/{key}'] <= 1
    assert m['iters'] == ITERS
    assert m['history']['train']['iter'] == list(range(1, ITERS + 1))
    assert [v['iter'] for v in m['history']['val']] == [ITERS // 2, ITERS]
    assert m['time_s']['train'] > 0 and m['time_s']['total'] >= \
        m['time_s']['train']
    assert m['data']['val']['images'] == 2
    assert m['batch_size'] == 2

    # the loss went down (from scratch, the RPN/RCNN losses fall fast)
    loss = m['history']['train']['loss']
    assert all(x == x for x in loss), 'NaN loss'
    first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
    assert last < 0.9 * first, (first, last)

    # pictures: ground truth | prediction side by side, upscaled x2
    pics = sorted(os.listdir(osp.join(work, 'vis')))
    assert len(pics) == 2 and m['pictures'] and all(
        p.endswith('.png') for p in pics)
    for p in pics:
        with Image.open(osp.join(work, 'vis', p)) as im:
            assert im.format == 'PNG'
            assert im.size == (2 * 2 * IMG, 2 * IMG)
    with Image.open(osp.join(work, 'training_curves.png')) as im:
        assert im.format == 'PNG' and im.size == (800, 450)
    assert osp.isfile(osp.join(work, f'iter_{ITERS}.pth'))
    assert 'val bbox mAP = ' in demo_run['stdout']
    assert 'metrics.json' in demo_run['stdout']


def test_image_demo(demo_run, tmp_path, capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import image_demo
    config = osp.join(ROOT, 'configs', 'demo',
                      'mask-rcnn_inceptionnext-atto_fpn_small-obj_demo.py')
    ckpt = osp.join(demo_run['work'], f'iter_{ITERS}.pth')
    out = str(tmp_path / 'folder')
    image_demo.main([osp.join(demo_run['data'], 'det', 'val'), config, ckpt,
                     '--out-dir', out, '--score-thr', '0.05',
                     '--save-pred'])
    stdout = capsys.readouterr().out
    pics = sorted(os.listdir(osp.join(out, 'vis')))
    assert len(pics) == 2
    for p in pics:  # DetInferencer keeps the input's name and format
        assert p.endswith('.jpg')
        with Image.open(osp.join(out, 'vis', p)) as im:
            assert im.format == 'JPEG' and im.size == (IMG, IMG)
    preds = sorted(os.listdir(osp.join(out, 'preds')))
    assert len(preds) == 2
    with open(osp.join(out, 'preds', preds[0])) as f:
        pred = json.load(f)
    assert len(pred['labels']) == len(pred['scores']) == len(pred['bboxes'])
    assert stdout.count('detections with score') == 2
