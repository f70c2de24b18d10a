"""Run an exported detector (:func:`.export.export_onnx`) in ONNX Runtime or
OpenVINO on images, with PyTorch's preprocessing.

:class:`OnnxDetector` reads the export metadata from the file, builds the
config's own test pipeline from it (MMDetection / MMYOLO transforms, reading
arrays instead of files), pads each batch the way the data preprocessor does
(with the mean, which is 0 after normalisation) and maps the boxes back to
the image (padding offset, scale factor, clipping where the head clips).
:meth:`OnnxDetector.predict` is a
:data:`mmincnext.apis.sliced_inference.Predictor`, so sliced inference of
large images runs on the exported model through the same
:func:`mmincnext.apis.sliced_inference` as on the PyTorch model.
"""
import json
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.structures import InstanceData

from .export import METADATA_KEY

__all__ = ['OnnxDetector', 'create_session', 'read_metadata', 'RUNTIMES',
           'PRECISIONS']

RUNTIMES = ('onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16')


def read_metadata(path: str) -> dict:
    """The export metadata of an ``.onnx`` file (see
    :func:`.export.export_metadata`)."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    raise ValueError(f'{path}: no {METADATA_KEY!r} metadata; export it with '
                     'tools/deployment/export_onnx.py')


def _tuples(obj):
    """JSON lists back to the tuples of the config (mmcv's transforms
    take sizes as tuples)."""
    if isinstance(obj, dict):
        return {k: _tuples(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return tuple(_tuples(v) for v in obj)
    return obj


def create_session(path: str, runtime: str, precision: str,
             threads: Optional[int]):
    """A callable ``batch (N, 3, H, W) float32 -> list of outputs``."""
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, got '
                         f'{runtime!r}')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got '
                         f'{precision!r}')
    if runtime == 'onnxruntime':
        if precision != 'fp32':
            raise ValueError('ONNX Runtime runs this graph in fp32 only on '
                             'CPU; use --runtime openvino for bf16')
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts,
                                    providers=['CPUExecutionProvider'])
        names = [o.name for o in sess.get_outputs()]
        return lambda x: sess.run(names, {'input': x})
    import openvino as ov
    core = ov.Core()
    config = {'INFERENCE_PRECISION_HINT': 'f32' if precision == 'fp32'
              else 'bf16'}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    if precision == 'bf16' and 'BF16' not in core.get_property(
            'CPU', 'OPTIMIZATION_CAPABILITIES'):
        raise ValueError('this CPU has no bf16 support in OpenVINO')
    compiled = core.compile_model(path, 'CPU', config)
    outputs = compiled.outputs
    request = compiled.create_infer_request()

    def run(x):
        res = request.infer({'input': x})
        return [np.asarray(res[o]) for o in outputs]

    return run


class OnnxDetector:
    """An exported detector in ONNX Runtime or OpenVINO.

    Args:
        path (str): The ``.onnx`` file.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``.
        precision (str): ``'fp32'``, or ``'bf16'`` (OpenVINO on CPUs with
            bf16 instructions).
        threads (int, optional): Runtime threads (default: the runtime's).
    """

    def __init__(self, path: str, runtime: str = 'onnxruntime',
                 precision: str = 'fp32', threads: Optional[int] = None):
        self.path = path
        self.meta = read_metadata(path)
        if self.meta.get('part') != 'detector':
            raise ValueError(f'{path} holds the {self.meta.get("part")} '
                             'features, not detections')
        self.classes = tuple(self.meta['classes'])
        self.runtime, self.precision = runtime, precision
        self.run = create_session(path, runtime, precision, threads)
        self._pipeline = None

    @property
    def pipeline(self):
        """The config's test pipeline on arrays (built once)."""
        if self._pipeline is None:
            from mmcv.transforms import Compose
            from mmengine.registry import DefaultScope, init_default_scope
            scope = self.meta['default_scope']
            if scope == 'mmyolo':
                import mmyolo.datasets  # noqa: F401  (registers transforms)
            init_default_scope(scope)
            steps = [_tuples(t) for t in self.meta['test_pipeline']
                     if 'LoadAnnotations' not in t['type']]
            load = dict(type='mmdet.LoadImageFromNDArray')
            if steps and 'LoadImage' in steps[0]['type']:
                steps[0] = load
            else:  # a sliced config's window pipeline starts after loading
                steps.insert(0, load)
            with DefaultScope.overwrite_default_scope(scope):
                self._pipeline = Compose(steps)
        return self._pipeline

    def preprocess(self, imgs: Sequence[np.ndarray]):
        """BGR images -> the padded float32 batch and each image's meta
        (``ori_shape``, ``img_shape``, ``scale_factor``, ``pad_param``)."""
        datas = [self.pipeline(dict(img=img, img_id=0)) for img in imgs]
        tensors = [d['inputs'] for d in datas]
        metas = [d['data_samples'].metainfo for d in datas]
        fixed = self.meta['input_size']
        if fixed is not None:
            h, w = fixed
            for t, m in zip(tensors, metas):
                if t.shape[1] > h or t.shape[2] > w:
                    raise ValueError(
                        f'{self.path}: an image of {m["ori_shape"][1]}x'
                        f'{m["ori_shape"][0]} px is resized by the test '
                        f'pipeline to {t.shape[2]}x{t.shape[1]}, larger '
                        f'than the exported input {w}x{h}; export with a '
                        'larger --input-size or a dynamic size')
        else:
            div = self.meta['size_divisor']
            h = max(t.shape[1] for t in tensors)
            w = max(t.shape[2] for t in tensors)
            h, w = -(-h // div) * div, -(-w // div) * div
        pad = np.asarray(self.meta['pad_value'], np.float32)
        batch = np.empty((len(tensors), 3, h, w), np.float32)
        batch[:] = pad[None, :, None, None]
        for i, t in enumerate(tensors):
            batch[i, :, :t.shape[1], :t.shape[2]] = t.numpy()
        return batch, metas

    def postprocess(self, boxes: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray, meta: dict) -> InstanceData:
        """One image's outputs -> its detections in image pixels, as the
        head's ``predict(rescale=True)`` gives them."""
        keep = scores > 0
        boxes = boxes[keep].astype(np.float32)
        clip = self.meta.get('clip')
        if clip == 'img_shape':  # the graph clipped to the padded input
            h, w = meta['img_shape'][:2]
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        pad = meta.get('pad_param')
        if pad is not None:  # MMYOLO's LetterResize: top, bottom, left, right
            boxes -= np.array([pad[2], pad[0], pad[2], pad[0]], np.float32)
        sx, sy = meta.get('scale_factor', (1., 1.))
        boxes /= np.array([sx, sy, sx, sy], np.float32)
        if clip == 'ori_shape':
            h, w = meta['ori_shape'][:2]
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        return InstanceData(bboxes=torch.from_numpy(boxes),
                            scores=torch.from_numpy(
                                scores[keep].astype(np.float32)),
                            labels=torch.from_numpy(
                                labels[keep].astype(np.int64)))

    def predict(self, imgs: List[np.ndarray]) -> List[InstanceData]:
        """BGR images (any sizes) -> detections in each image's pixels."""
        batch, metas = self.preprocess(imgs)
        boxes, scores, labels = self.run(batch)
        return [self.postprocess(boxes[i], scores[i], labels[i], m)
                for i, m in enumerate(metas)]
