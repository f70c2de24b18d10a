"""tools/deployment/export_onnx.py and onnx_inference.py through their
command lines: the files they write (DetInferencer's vis/ and preds/
layout, COCO results), the classes from the checkpoint, sliced inference,
the benchmark's runtime rows, and the errors for bad arguments."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from tables import check_limit_table, markdown_tables

from mmincnext import ops

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_deployment'))
RTMDET = osp.join(ROOT, 'configs', 'rtmdet',
                  'rtmdet_inceptionnext-atto_8xb32-300e_coco.py')
CLASSES = [f'class{i}' for i in range(80)]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'deployment', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A checkpoint with class names in its meta, exported at 320 x 320."""
    from deploy_helpers import build_detector
    root = tmp_path_factory.mktemp('deploy_tools')
    _, model, _, _ = build_detector(RTMDET)
    ckpt = str(root / 'rtmdet.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=CLASSES))), ckpt)
    out = str(root / 'rtmdet.onnx')
    load_tool('export_onnx').main([RTMDET, ckpt, '--out', out,
                                   '--input-size', '320', '320'])
    rng = np.random.default_rng(0)
    imgs = root / 'imgs'
    imgs.mkdir()
    for name, (h, w) in (('a.jpg', (200, 300)), ('b.png', (240, 180))):
        low = rng.integers(0, 255, (h // 10, w // 10, 3), dtype=np.uint8)
        cv2.imwrite(str(imgs / name), cv2.resize(low, (w, h)))
    return dict(root=root, ckpt=ckpt, onnx=out, imgs=str(imgs))


def test_export_writes_the_metadata(exported):
    from mmincnext.deployment import read_metadata
    meta = read_metadata(exported['onnx'])
    assert meta['classes'] == CLASSES  # from the checkpoint
    assert meta['input_size'] == [320, 320]
    assert meta['part'] == 'detector' and meta['max_per_img'] == 300
    assert meta['default_scope'] == 'mmdet' and meta['clip'] == 'img_shape'
    steps = meta['test_pipeline']
    assert [t['type'] for t in steps] == [
        'LoadImageFromFile', 'Resize', 'Pad', 'LoadAnnotations',
        'PackDetInputs']
    # exported at 320: the config's 640 resize and pad follow the input
    assert steps[1]['scale'] == [320, 320] and steps[2]['size'] == [320, 320]
    # BGR input, RGB mean: the pad value is the mean in BGR order
    assert meta['pad_value'] == pytest.approx([103.53, 116.28, 123.675])


def test_onnx_inference_writes_pictures_predictions_and_coco_results(
        exported, tmp_path):
    tool = load_tool('onnx_inference')
    out = tmp_path / 'out'
    # the exported input is 320 x 320: images resized to fit it
    tool.main([exported['onnx'], exported['imgs'], '--out-dir', str(out),
               '--save-pred', '--score-thr', '0.5', '--batch-size', '2'])
    assert sorted(os.listdir(out / 'vis')) == ['a.jpg', 'b.png']
    assert cv2.imread(str(out / 'vis' / 'a.jpg')).shape == (200, 300, 3)
    with open(out / 'preds' / 'a.json') as f:
        pred = json.load(f)
    assert set(pred) == {'labels', 'scores', 'bboxes'}
    assert len(pred['bboxes']) == len(pred['scores']) > 0
    assert all(s > 0 for s in pred['scores'])
    with open(out / 'results.bbox.json') as f:
        results = json.load(f)
    with open(out / 'images.json') as f:
        images = json.load(f)
    assert [im['file_name'] for im in images['images']] == ['a.jpg', 'b.png']
    assert len(images['categories']) == 80
    assert {r['image_id'] for r in results} == {1, 2}
    assert len([r for r in results if r['image_id'] == 1]) == \
        len(pred['scores'])


def test_onnx_inference_sliced_and_openvino(exported, tmp_path):
    tool = load_tool('onnx_inference')
    big = tmp_path / 'big'
    big.mkdir()
    rng = np.random.default_rng(1)
    low = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(big / 'big.jpg'), cv2.resize(low, (700, 500)))
    out = tmp_path / 'out'
    tool.main([exported['onnx'], str(big), '--out-dir', str(out),
               '--sliced', '--patch-size', '320', '--runtime', 'openvino',
               '--batch-size', '4', '--max-dets', '250', '--no-vis'])
    with open(out / 'results.bbox.json') as f:
        results = json.load(f)
    assert len(results) == 250
    xs = [r['bbox'][0] + r['bbox'][2] for r in results]
    assert max(xs) > 400  # detections beyond the first window
    assert not (out / 'vis').exists()


def test_tools_name_bad_arguments(exported, tmp_path):
    export = load_tool('export_onnx')
    with pytest.raises(FileNotFoundError, match='checkpoint nope.pth not '
                       'found'):
        export.main([RTMDET, 'nope.pth', '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(ValueError, match='--input-size 300 320: both must be'
                       ' multiples of 32'):
        export.main([RTMDET, 'none', '--out', str(tmp_path / 'x.onnx'),
                     '--input-size', '300', '320'])
    infer = load_tool('onnx_inference')
    with pytest.raises(FileNotFoundError, match='inputs nowhere not found'):
        infer.main([exported['onnx'], 'nowhere'])
    with pytest.raises(ValueError, match='ONNX Runtime runs this graph in '
                       'fp32 only'):
        infer.main([exported['onnx'], exported['imgs'], '--precision',
                    'bf16', '--out-dir', str(tmp_path)])


def test_benchmark_runtime_rows():
    """One tiny interleaved round of --runtime: a row per model, runtime
    and precision the machine runs (no timing assertions)."""
    cmd = [sys.executable, 'tools/analysis_tools/benchmark.py', '--runtime',
           'torch', 'inductor', 'onnxruntime', 'openvino', '--precision',
           'fp32',
           'bf16', '--arch', 'atto', '--input-size', '64', '--batch', '1',
           '--warmup', '0', '--repeats', '1', '--threads', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table, limits = markdown_tables(proc.stdout)
    assert table[0] == ['model', 'runtime', 'precision', 'ms/batch', 'img/s',
                        'x ConvNeXt (mmpretrain)', 'x PyTorch fp32',
                        '% of peak']
    peaks = check_limit_table(limits, ops)
    rows = {(r[0], r[1], r[2]): r for r in table[1:]}
    import openvino as ov
    ov_bf16 = 'BF16' in ov.Core().get_property('CPU',
                                                'OPTIMIZATION_CAPABILITIES')
    for model in ('InceptionNeXt deploy', 'ConvNeXt (mmpretrain)'):
        want = {(model, 'torch', 'fp32'), (model, 'torch', 'bf16'),
                (model, 'inductor', 'fp32'), (model, 'inductor', 'bf16'),
                (model, 'onnxruntime', 'fp32'), (model, 'openvino', 'fp32')}
        if ov_bf16:
            want.add((model, 'openvino', 'bf16'))
        assert want <= set(rows)
        assert rows[model, 'torch', 'fp32'][6] == '1.00'
        for key in want:  # a fraction of the peak of its precision
            assert (rows[key][7] != '-') == (key[2] in peaks)
    assert rows['ConvNeXt (mmpretrain)', 'openvino', 'fp32'][5] == '1.00'
    assert 'not run: InceptionNeXt deploy onnxruntime bf16' in proc.stdout
