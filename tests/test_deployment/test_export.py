"""mmincnext.deployment.export: every single-stage config exports end to end
and its detections in ONNX Runtime and OpenVINO are PyTorch's.

- For every config: the exportable graph run eagerly (static-shape
  post-processing) gives exactly ``model.predict``'s detections.
- For every distinct graph (configs that differ only in the backbone size,
  or are the sliced form of another, share one): the ``.onnx`` file in
  ONNX Runtime and in OpenVINO (fp32) gives PyTorch's detections: same
  labels, boxes within 1 px or 1e-3, scores within 1e-3.
- Dynamic sizes, the backbone and neck parts (two-stage detectors), the
  metadata, and OpenVINO bf16 within its stated tolerance.
"""
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch

from deploy_helpers import (SIZE, assert_same_detections, build_detector,
                             reference, smooth_images)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SINGLE_STAGE = ('retinanet_', 'rtmdet_', 'yolox_', 'yolov5_', 'yolov8_')
TWO_STAGE = ('faster-rcnn_', 'mask-rcnn_')
CONFIGS = sorted(c for c in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
                 if osp.basename(c).startswith(SINGLE_STAGE))


def graph_key(config):
    """Configs with the same key export the same graph up to the backbone
    size: the arch token and the ``_sliced`` token removed."""
    name = osp.basename(config)
    name = re.sub(r'inceptionnext-(atto|t|s|b)_', 'inceptionnext_', name)
    return name.replace('_sliced', '')


def representatives():
    """One config per graph key, the smallest backbone first."""
    order = {'atto': 0, 't': 1, 's': 2, 'b': 3}
    groups = {}
    for c in CONFIGS:
        groups.setdefault(graph_key(c), []).append(c)
    arch = lambda c: order[re.search(  # noqa: E731
        r'inceptionnext-(atto|t|s|b)_', c).group(1)]
    return sorted(min(g, key=lambda c: (arch(c), '_sliced' in c))
                  for g in groups.values())


REPRESENTATIVES = representatives()


def test_every_detection_config_is_single_or_two_stage():
    """The lists above cover every detection config: a new config is
    either tested here or refused for end-to-end export."""
    det = [c for c in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
           if '_base_' not in c and 'ade20k' not in c]
    other = [c for c in det if not osp.basename(c).startswith(
        SINGLE_STAGE + TWO_STAGE)]
    assert other == []
    assert len(CONFIGS) == 31 and len(REPRESENTATIVES) == 15


def wrap(model):
    from mmincnext.deployment import ExportableDetector
    return ExportableDetector(model).eval()


def outputs(wrapper, x):
    with torch.no_grad():
        return [t.numpy() for t in wrapper(x)]


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_graph_equals_predict(config):
    _, model, classes, _ = build_detector(config)
    wrapper = wrap(model)
    assert wrapper.max_per_img == model.bbox_head.test_cfg.get(
        'max_per_img', 100)
    x = smooth_images(2, seed=3)
    ref = reference(model, x)
    boxes, scores, labels = outputs(wrapper, x)
    assert boxes.shape == (2, wrapper.max_per_img, 4)
    assert labels.dtype == np.int64
    for i in range(2):
        assert len(ref[i]) > 0
        # eager: PyTorch's own arithmetic, but NMS one class at a time
        # (as ONNX) where MMDetection shifts the classes' boxes
        assert_same_detections(
            ref[i], boxes[i], scores[i], labels[i], wrapper.max_per_img,
            iou_thr=model.bbox_head.test_cfg['nms']['iou_threshold'],
            score_tol=1e-6, box_tol=1e-4, rel_tol=0,
            clipped_after_nms=(SIZE, SIZE) if wrapper.kind == 'yolov5'
            else None)


def run_onnx(path, runtime, x, precision='fp32'):
    from mmincnext.deployment.runtime import _session
    return _session(path, runtime, precision, None)(x.numpy())


@pytest.mark.parametrize('config', REPRESENTATIVES, ids=graph_key)
def test_onnx_runtimes_match_pytorch(config, tmp_path):
    import onnx

    from mmincnext.deployment import METADATA_KEY, export_onnx
    _, model, classes, _ = build_detector(config)
    wrapper = wrap(model)
    path = export_onnx(wrapper, str(tmp_path / 'model.onnx'),
                       input_size=(SIZE, SIZE), metadata=dict(test=1))
    graph = onnx.load(path)
    assert [i.name for i in graph.graph.input] == ['input']
    assert [o.name for o in graph.graph.output] == ['boxes', 'scores',
                                                    'labels']
    assert 'NonMaxSuppression' in {n.op_type for n in graph.graph.node}
    assert {p.key: p.value for p in graph.metadata_props}[METADATA_KEY] == \
        '{"test": 1}'
    x = smooth_images(3, seed=5)  # another batch size than the export's
    ref = reference(model, x)
    for runtime in ('onnxruntime', 'openvino'):
        boxes, scores, labels = run_onnx(path, runtime, x)
        assert labels.dtype == np.int64
        for i in range(3):
            assert_same_detections(
                ref[i], boxes[i], scores[i], labels[i], wrapper.max_per_img,
                iou_thr=model.bbox_head.test_cfg['nms']['iou_threshold'],
                clipped_after_nms=(SIZE, SIZE) if wrapper.kind == 'yolov5'
                else None)
