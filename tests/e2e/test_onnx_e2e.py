"""Deployment end to end through the command-line tools: a small-object
RetinaNet trained with tools/train.py, evaluated with tools/test.py,
exported with tools/deployment/export_onnx.py and evaluated again with
tools/deployment/onnx_inference.py in ONNX Runtime and OpenVINO: the COCO
mAP of the exported model equals PyTorch's within 0.005 (fp32); OpenVINO
bf16 within 0.02, and so does tools/test.py --precision bf16."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from test_det_e2e import (RETINA_P2_ATTO, ROOT, run, tiny_config,
                          write_tiny_coco)

pytestmark = pytest.mark.slow

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('onnx_e2e')
    data = str(root / 'data')
    write_tiny_coco(data, num_images=2, seed=1)
    config = tiny_config(root / 'cfg.py', RETINA_P2_ATTO, data,
                         max_epochs=30, with_mask=False)
    with open(config, "a") as f:  # a fast schedule for 60 iterations
        f.write("optim_wrapper = dict(optimizer=dict(lr=4e-4))\n"
                "default_hooks = dict(logger=dict(interval=20))\n"
                "randomness = dict(seed=0)\n")  # one trained model
    work = root / 'work'
    run([sys.executable, 'tools/train.py', config, '--work-dir', str(work),
         '--cfg-options', 'model.backbone.init_cfg=None'],
        timeout=900)
    return dict(root=root, data=data, config=config,
                checkpoint=str(work / 'epoch_30.pth'))


def bbox_map(log):
    return float(re.search(r'coco/bbox_mAP: (-?[0-9.]+)', log).group(1))


def scores_of(pkl):
    import mmengine
    preds = mmengine.load(str(pkl))  # DumpDetResults' pickle, of this test
    return torch.cat([p['pred_instances']['scores'] for p in preds])


@pytest.fixture(scope='module')
def fp32_test(trained, tmp_path_factory):
    """tools/test.py in fp32: the mAP and the scores of the predictions."""
    root = tmp_path_factory.mktemp('test_fp32')
    log = run([sys.executable, 'tools/test.py', trained['config'],
               trained['checkpoint'], '--work-dir', str(root), '--out',
               str(root / 'preds.pkl')])
    return bbox_map(log), scores_of(root / 'preds.pkl')


def test_bf16_test_map_within_tolerance(trained, fp32_test, tmp_path):
    """tools/test.py --precision bf16: the network ran in bf16 (the scores
    differ from fp32's, by less than 0.05) and the mAP is within 0.02 of
    fp32's."""
    log = run([sys.executable, 'tools/test.py', trained['config'],
               trained['checkpoint'], '--work-dir', str(tmp_path / 'test'),
               '--precision', 'bf16', '--out', str(tmp_path / 'preds.pkl')])
    assert 'bf16 autocast: backbone, neck, bbox_head' in log
    fp32_map, fp32_scores = fp32_test
    scores = scores_of(tmp_path / 'preds.pkl')
    top = min(len(scores), len(fp32_scores), 20)
    diff = (scores.sort(descending=True).values[:top] -
            fp32_scores.sort(descending=True).values[:top]).abs().max()
    print('fp32', fp32_map, 'bf16', bbox_map(log), 'top scores', diff)
    assert 0 < diff < 0.05
    assert abs(bbox_map(log) - fp32_map) <= 0.02


def test_exported_map_equals_pytorch(trained, fp32_test, tmp_path):
    torch_map = fp32_test[0]
    # a trained model, not noise (one that learned nothing scores near 0);
    # the exact mAP of these 60 iterations moves with float32 rounding, that
    # is with the paths the machine measured faster (docs/speed.md)
    assert torch_map > 0.05, torch_map

    # the network's own outputs (the neck's maps) against ONNX Runtime's on
    # a random input: the detector's outputs after NMS are not compared
    # position by position (on noise most scores nearly tie, and float32
    # rounding can swap two of them, or a candidate at the top-k cut); the
    # whole detector is compared by its mAP below
    log = run([sys.executable, 'tools/deployment/export_onnx.py',
               trained['config'], trained['checkpoint'], '--out',
               str(tmp_path / 'neck.onnx'), '--part', 'neck', '--verify'])
    diffs = re.findall(r'verify \w+: max \|PyTorch - ONNX Runtime\| = '
                       r'([0-9.e+-]+)', log)
    assert diffs and all(float(d) < 1e-2 for d in diffs), diffs
    onnx_file = str(tmp_path / 'retinanet.onnx')
    log = run([sys.executable, 'tools/deployment/export_onnx.py',
               trained['config'], trained['checkpoint'], '--out',
               onnx_file])
    assert 'dynamic (multiples of 32)' in log

    import openvino
    ov_bf16 = 'BF16' in openvino.Core().get_property(
        'CPU', 'OPTIMIZATION_CAPABILITIES')
    maps = {}
    for runtime, precision in (('onnxruntime', 'fp32'),
                               ('openvino', 'fp32'), ('openvino', 'bf16')):
        out = tmp_path / f'{runtime}_{precision}'
        cmd = [sys.executable, 'tools/deployment/onnx_inference.py', onnx_file,
               osp.join(trained['data'], 'images'), '--ann-file',
               osp.join(trained['data'], 'ann.json'), '--out-dir', str(out),
               '--runtime', runtime, '--precision', precision, '--no-vis']
        if precision == 'bf16' and not ov_bf16:
            # a CPU without bf16: one clear error, no results
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  cwd=ROOT, timeout=400)
            assert proc.returncode != 0
            assert 'this CPU has no bf16 support in OpenVINO' in proc.stderr
            continue
        run(cmd)
        with open(out / 'metrics.json') as f:
            maps[runtime, precision] = json.load(f)['metrics'][
                'coco/bbox_mAP']
    print('PyTorch', torch_map, maps)
    assert abs(maps['onnxruntime', 'fp32'] - torch_map) <= 0.005, maps
    assert abs(maps['openvino', 'fp32'] - torch_map) <= 0.005, maps
    if ov_bf16:
        assert abs(maps['openvino', 'bf16'] - torch_map) <= 0.02, maps
