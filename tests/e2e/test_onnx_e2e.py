"""Deployment end to end through the command-line tools: a small-object
RetinaNet trained with tools/train.py, evaluated with tools/test.py,
exported with tools/deployment/export_onnx.py and evaluated again with
tools/deployment/onnx_inference.py in ONNX Runtime and OpenVINO: the COCO
mAP of the exported model equals PyTorch's within 0.005 (fp32); OpenVINO
bf16 within 0.02."""
import json
import os.path as osp
import re
import sys

import pytest

from test_det_e2e import RETINA_P2_ATTO, run, tiny_config, write_tiny_coco

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
                "default_hooks = dict(logger=dict(interval=20))\n")
    work = root / 'work'
    run([sys.executable, 'tools/train.py', config, '--work-dir', str(work),
         '--cfg-options', 'model.backbone.init_cfg=None'],
        timeout=900)
    return dict(root=root, data=data, config=config,
                checkpoint=str(work / 'epoch_30.pth'))


def test_exported_map_equals_pytorch(trained, tmp_path):
    log = run([sys.executable, 'tools/test.py', trained['config'],
               trained['checkpoint'], '--work-dir', str(tmp_path / 'test')])
    torch_map = float(re.search(r'coco/bbox_mAP: (-?[0-9.]+)', log)
                      .group(1))
    assert torch_map > 0.1, log[-2000:]  # a trained model, not noise

    onnx_file = str(tmp_path / 'retinanet.onnx')
    log = run([sys.executable, 'tools/deployment/export_onnx.py',
               trained['config'], trained['checkpoint'], '--out',
               onnx_file, '--verify'])
    assert 'dynamic (multiples of 32)' in log
    for line in re.findall(r'verify \w+: max \|PyTorch - ONNX Runtime\| = '
                           r'([0-9.e+-]+)', log):
        assert float(line) < 1e-2

    maps = {}
    for runtime, precision in (('onnxruntime', 'fp32'),
                               ('openvino', 'fp32'), ('openvino', 'bf16')):
        out = tmp_path / f'{runtime}_{precision}'
        run([sys.executable, 'tools/deployment/onnx_inference.py', onnx_file,
             osp.join(trained['data'], 'images'), '--ann-file',
             osp.join(trained['data'], 'ann.json'), '--out-dir', str(out),
             '--runtime', runtime, '--precision', precision, '--no-vis'])
        with open(out / 'metrics.json') as f:
            maps[runtime, precision] = json.load(f)['metrics'][
                'coco/bbox_mAP']
    print('PyTorch', torch_map, maps)
    assert abs(maps['onnxruntime', 'fp32'] - torch_map) <= 0.005, maps
    assert abs(maps['openvino', 'fp32'] - torch_map) <= 0.005, maps
    assert abs(maps['openvino', 'bf16'] - torch_map) <= 0.02, maps
