"""mmincnext.deployment.runtime: an exported file run on image files of
any size gives the detections of PyTorch's own inference
(``inference_detector``: the config's test pipeline, the data
preprocessor's padding, the boxes rescaled to the image)."""
import os.path as osp

import numpy as np
import pytest
import torch

from deploy_helpers import assert_same_detections, build_detector

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def images(sizes, seed=0):
    """BGR uint8 images with smooth structure."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        import cv2
        low = rng.integers(0, 255, (max(h // 12, 2), max(w // 12, 2), 3),
                           dtype=np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(img.astype(int) + rng.integers(
            0, 40, img.shape), 0, 255).astype(np.uint8))
    return out


def exported(config, tmp_path, input_size='default'):
    from mmincnext.deployment import (ExportableDetector, default_input_size,
                                      export_metadata, export_onnx)
    cfg, model, classes, sliced = build_detector(config)
    wrapper = ExportableDetector(model).eval()
    size = default_input_size(cfg, sliced) if input_size == 'default' else \
        input_size
    meta = export_metadata(cfg, wrapper, size, classes, sliced)
    path = export_onnx(wrapper, str(tmp_path / 'model.onnx'),
                       input_size=size, metadata=meta)
    model.cfg = cfg
    return model, wrapper, path


CASES = {
    # Resize 640 keep-ratio + Pad 640 (114): fixed 640 x 640
    'rtmdet': ('rtmdet/rtmdet_inceptionnext-atto_8xb32-300e_coco.py',
               [(150, 200), (240, 160)]),
    # YOLOv5KeepRatioResize + LetterResize: fixed 640 x 640, pad_param
    'yolov8': ('yolov8/yolov8_inceptionnext-atto_8xb16-500e_coco.py',
               [(150, 200), (240, 160)]),
    # Resize (1333, 800) keep-ratio, dynamic size; square images need no
    # padding (see test_dynamic_padding_clips_to_the_input)
    'retinanet': ('retinanet/retinanet_inceptionnext-atto_fpn_1x_coco.py',
                  [(96, 96), (128, 128)]),
}


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """Each case exported once per module: name -> (model, wrapper,
    path, image sizes)."""
    cache = {}

    def get(name):
        if name not in cache:
            config, sizes = CASES[name]
            cache[name] = exported(osp.join(ROOT, 'configs', config),
                                   tmp_path_factory.mktemp(name)) + (sizes, )
        return cache[name]

    return get


@pytest.fixture(params=list(CASES))
def case(request, exports):
    return exports(request.param)


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_predict_on_images_matches_inference_detector(case, runtime):
    from mmincnext.apis import inference_detector_batched
    from mmincnext.deployment import OnnxDetector
    model, wrapper, path, sizes = case
    det = OnnxDetector(path, runtime)
    assert len(det.classes) == 80 and det.classes[0] == 'person'
    imgs = images(sizes)
    want = inference_detector_batched(model, imgs)
    got = det.predict(imgs)  # one batch: padded to the larger image
    iou_thr = model.bbox_head.test_cfg['nms']['iou_threshold']
    for img, w, g in zip(imgs, want, got):
        ref = w.pred_instances
        k = wrapper.max_per_img
        n = len(g)
        boxes = np.zeros((k, 4), np.float32)
        scores = np.zeros(k, np.float32)
        labels = np.full(k, -1, np.int64)
        boxes[:n], scores[:n], labels[:n] = (g.bboxes.numpy(),
                                             g.scores.numpy(),
                                             g.labels.numpy())
        h, w_ = img.shape[:2]
        assert_same_detections(
            ref, boxes, scores, labels, k, iou_thr=iou_thr,
            clipped_after_nms=(h, w_) if wrapper.kind == 'yolov5' else None)


def test_fixed_size_refuses_larger_images(exports):
    """An image that the stored pipeline resizes beyond a fixed input is
    refused, naming the sizes (a pipeline edited after the export)."""
    from mmincnext.deployment import OnnxDetector
    det = OnnxDetector(exports('rtmdet')[2])
    det.meta['input_size'] = [320, 320]
    with pytest.raises(ValueError, match=r'an image of 200x150 px is resized'
                       r' by the test pipeline to 640x640, larger than the '
                       r'exported input 320x320'):
        det.predict(images([(150, 200)]))


def test_refuses_files_without_metadata_and_feature_files(tmp_path):
    import json

    import onnx
    from onnx import TensorProto, helper

    from mmincnext.deployment import METADATA_KEY, OnnxDetector
    graph = helper.make_graph(
        [helper.make_node('Identity', ['input'], ['feat0'])], 'g',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info('feat0', TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    onnx.save(model, str(tmp_path / 'plain.onnx'))
    with pytest.raises(ValueError, match="plain.onnx: no 'mmincnext' "
                       'metadata; export it with tools/deployment/'):
        OnnxDetector(str(tmp_path / 'plain.onnx'))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(dict(part='backbone'))
    onnx.save(model, str(tmp_path / 'feats.onnx'))
    with pytest.raises(ValueError, match='holds the backbone features'):
        OnnxDetector(str(tmp_path / 'feats.onnx'))


def test_runtime_and_precision_are_checked(tmp_path):
    from mmincnext.deployment.runtime import create_session
    with pytest.raises(ValueError, match="runtime must be one of"):
        create_session('x.onnx', 'tensorrt', 'fp32', None)
    with pytest.raises(ValueError, match='ONNX Runtime runs this graph in '
                       'fp32 only'):
        create_session('x.onnx', 'onnxruntime', 'bf16', None)


def test_sliced_inference_on_the_exported_model(exports):
    """The exported model as the Predictor of mmincnext.apis'
    sliced_inference (windows through the config's test pipeline, the
    merging NMS) gives what the PyTorch model gives there: at least 98 % of
    the merged detections are the same (an NMS decision at the threshold
    may go the other way, see deploy_helpers)."""
    from deploy_helpers import box_iou
    from mmincnext.apis import sliced_inference
    from mmincnext.deployment import OnnxDetector
    model, _, path, _ = exports('rtmdet')
    img = images([(300, 420)], seed=3)[0]
    kwargs = dict(slice_size=(160, 160), overlap_ratio=0.25, batch_size=3,
                  max_dets=200)
    want = sliced_inference(model, img, **kwargs)
    got = sliced_inference(OnnxDetector(path).predict, img, **kwargs)
    assert len(got) == len(want) == 200
    found = 0
    for b, s, lab in zip(want.bboxes.numpy(), want.scores.numpy(),
                         want.labels.numpy()):
        same = (got.labels.numpy() == lab) & \
            (np.abs(got.scores.numpy() - s) < 1e-3)
        found += bool(same.any() and
                      (box_iou(b, got.bboxes.numpy()[same]) > 0.999).any())
    assert found >= 196, found
