"""ONNX export of MMDetection and MMYOLO detectors, end to end.

:class:`ExportableDetector` wraps a built detector into one graph: the data
preprocessor's normalisation (and BGR to RGB), backbone, neck, head, box
decoding with the head's own prior generator and box coder, the score
thresholds and ``nms_pre`` of its ``test_cfg``, class-aware NMS (one ONNX
``NonMaxSuppression``) and the best ``max_per_img`` detections. The graph
has one input and three outputs:

- ``input``: float32 ``(N, 3, H, W)``, what the data preprocessor receives
  (BGR values 0-255 for MMDetection's loaders), resized and padded;
- ``boxes`` ``(N, K, 4)`` ``x1, y1, x2, y2`` in input pixels, ``scores``
  ``(N, K)`` and ``labels`` ``(N, K)`` int64, sorted by score, ``K`` the
  config's ``max_per_img``; unused rows have score 0 (and label -1).

The post-processing is the heads' ``predict_by_feat`` rewritten in static
shapes (thresholds become zeroed scores, ``nms_pre`` a padded ``topk``), so
that the detections equal PyTorch's: MMDetection's dense heads
(``BaseDenseHead._predict_by_feat_single``: RetinaNet, RTMDet, ...),
``YOLOXHead`` and MMYOLO's ``YOLOv5Head`` family (YOLOv5, YOLOv8). It is
written here because MMDeploy, which rewrites the same functions, does not
run with current PyTorch (it hooks the TorchScript exporter).

Two-stage detectors are exported up to their neck (``part='neck'``): RoI
heads need per-image proposal counts and RoIAlign level routing, which this
module does not rewrite.

:func:`export_onnx` traces with ``torch.export`` (outside the ONNX exporter,
so MMDetection's box coders take their normal code path) and converts with
``torch.onnx.export``; the export metadata (classes, test pipeline, input
size, slicing) is stored in the file for :mod:`.runtime`.
"""
import functools
import json
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .nms import ONNX_TRANSLATIONS, select_top

__all__ = ['ExportableDetector', 'export_onnx', 'export_metadata',
           'default_input_size', 'head_kind', 'load_detector', 'resize_to',
           'METADATA_KEY']

#: metadata_props key of the JSON export metadata
METADATA_KEY = 'mmincnext'
PARTS = ('detector', 'neck', 'backbone')


def _mmyolo_yolov5_head():
    try:
        from mmyolo.models.dense_heads import YOLOv5Head
    except Exception:  # mmyolo missing or unusable
        return None
    return YOLOv5Head


def head_kind(head: nn.Module) -> str:
    """``'dense'``, ``'yolox'`` or ``'yolov5'``: which post-processing of
    this module reproduces the head's ``predict_by_feat``.

    Raises:
        TypeError: A head whose post-processing is not one of these.
    """
    from mmdet.models.dense_heads import YOLOXHead
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    kind = type(head)
    yolov5 = _mmyolo_yolov5_head()
    if yolov5 is not None and isinstance(head, yolov5) and \
            kind.predict_by_feat is yolov5.predict_by_feat:
        return 'yolov5'
    if isinstance(head, YOLOXHead) and \
            kind.predict_by_feat is YOLOXHead.predict_by_feat:
        return 'yolox'
    if isinstance(head, BaseDenseHead) and \
            kind.predict_by_feat is BaseDenseHead.predict_by_feat and \
            kind._predict_by_feat_single is \
            BaseDenseHead._predict_by_feat_single and \
            kind._bbox_post_process is BaseDenseHead._bbox_post_process:
        return 'dense'
    raise TypeError(
        f'{kind.__name__} overrides the post-processing of MMDetection\'s '
        'BaseDenseHead, YOLOXHead or MMYOLO\'s YOLOv5Head; its export is '
        'not supported (export with --part neck for the features)')


def _topk_padded(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``topk`` over dim 1 that also works when it has fewer than ``k``
    entries (whatever the input size): padded with zeros, indices clamped
    to the real ones."""
    n = scores.shape[1]
    pad = scores.new_zeros((scores.shape[0], k))
    values, idx = torch.cat([scores, pad], dim=1).topk(k, dim=1)
    return values, idx.clamp(max=n - 1)


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x[b, idx[b]]`` for ``x`` ``(N, P, D)`` and ``idx`` ``(N, M)``."""
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))


def _one_hot_scores(scores: Tensor, labels: Tensor,
                    num_classes: int) -> Tensor:
    """``(N, M)`` scores of single-label candidates -> ``(N, C, M)``."""
    onehot = nn.functional.one_hot(labels, num_classes).to(scores.dtype)
    return (onehot * scores[..., None]).transpose(1, 2)


def _flatten(maps: Sequence[Tensor], channels: int) -> Tensor:
    """Per-level ``(N, A * channels, H, W)`` maps -> ``(N, sum HWA,
    channels)``, MMDetection's prior order."""
    num = maps[0].shape[0]
    return torch.cat([m.permute(0, 2, 3, 1).reshape(num, -1, channels)
                      for m in maps], dim=1)


def _select_candidates(scores: Tensor, score_thr: float, nms_pre: int,
                       strict: bool = True):
    """MMDetection's ``filter_scores_and_topk`` for a batch: ``scores``
    ``(N, P, C)`` -> the best ``nms_pre`` (prior, class) pairs above
    ``score_thr`` (others score 0). Returns ``scores (N, M)``, ``prior
    index (N, M)``, ``label (N, M)``."""
    num, _, num_classes = scores.shape
    flat = scores.reshape(num, -1)
    valid = flat > score_thr if strict else flat >= score_thr
    flat = torch.where(valid, flat, torch.zeros_like(flat))
    values, idx = _topk_padded(flat, nms_pre)
    prior = torch.div(idx, num_classes, rounding_mode='floor')
    return values, prior, idx - prior * num_classes


def _min_size_mask(bboxes: Tensor, cfg) -> Optional[Tensor]:
    """BaseDenseHead._bbox_post_process' ``min_bbox_size`` filter."""
    if cfg.get('min_bbox_size', -1) < 0:
        return None
    wh = bboxes[..., 2:] - bboxes[..., :2]
    return (wh > cfg['min_bbox_size']).all(-1)


class ExportableDetector(nn.Module):
    """A detector as one exportable graph (see the module docstring).

    Args:
        detector (nn.Module): A built, loaded MMDetection / MMYOLO
            single-stage detector (or any detector with ``part='neck'`` /
            ``'backbone'``), in eval mode.
        part (str): ``'detector'`` (boxes, scores, labels), ``'neck'`` or
            ``'backbone'`` (their feature maps ``feat0``, ``feat1``, ...).
        max_per_img (int, optional): Detections per image; default the
            head's ``test_cfg.max_per_img`` (100 when it has none, as
            MMDetection's YOLOX).
    """

    def __init__(self, detector: nn.Module, part: str = 'detector',
                 max_per_img: Optional[int] = None):
        super().__init__()
        if part not in PARTS:
            raise ValueError(f'part must be one of {PARTS}, got {part!r}')
        self.detector = detector
        self.part = part
        dp = detector.data_preprocessor
        self.bgr_to_rgb = bool(getattr(dp, '_channel_conversion', False))
        normalize = getattr(dp, '_enable_normalize', False)
        mean = dp.mean if normalize else torch.zeros(3, 1, 1)
        std = dp.std if normalize else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().reshape(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', std.detach().reshape(1, -1, 1, 1),
                             persistent=False)
        if part == 'neck' and not getattr(detector, 'with_neck', False):
            raise ValueError(f'{type(detector).__name__} has no neck')
        self.kind = None
        # where the head clips the boxes, for the runtime to do the same:
        # 'img_shape' (MMDetection: the pipeline's image shape, before NMS,
        # in the graph too), 'ori_shape' (MMYOLO: the image, after
        # rescaling) or None (YOLOX)
        self.clip = None
        if part == 'detector':
            head = getattr(detector, 'bbox_head', None)
            if head is None or hasattr(detector, 'roi_head'):
                raise TypeError(
                    f'{type(detector).__name__}: only single-stage detectors '
                    'are exported end to end (two-stage detectors up to '
                    'their neck: part="neck")')
            self.kind = head_kind(head)
            cfg = head.test_cfg
            if self.kind == 'yolov5':
                self.clip = 'ori_shape'
            elif self.kind == 'dense' and getattr(head.bbox_coder,
                                                  'clip_border', True):
                self.clip = 'img_shape'
            if max_per_img is None:
                max_per_img = cfg.get('max_per_img', 100)
        self.max_per_img = max_per_img

    @functools.cached_property
    def output_names(self) -> list:
        """The graph's outputs; for features, counted on a small input
        (once)."""
        if self.part == 'detector':
            return ['boxes', 'scores', 'labels']
        with torch.no_grad():
            num = len(self.features(torch.zeros(1, 3, 64, 64)))
        return [f'feat{i}' for i in range(num)]

    def normalize(self, x: Tensor) -> Tensor:
        if self.bgr_to_rgb:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def features(self, x: Tensor) -> tuple:
        x = self.normalize(x)
        if self.part == 'backbone':
            return tuple(self.detector.backbone(x))
        return tuple(self.detector.extract_feat(x))

    def forward(self, input: Tensor):
        if self.part != 'detector':
            return self.features(input)
        head = self.detector.bbox_head
        outs = head(self.features(input))
        img_shape = input.shape[-2:]
        boxes, class_scores, clip = getattr(self, '_' + self.kind)(
            head, outs, img_shape)
        boxes, scores, labels = select_top(
            boxes, class_scores, head.test_cfg['nms']['iou_threshold'],
            self.max_per_img)
        if clip:  # MMYOLO clamps after NMS
            boxes = torch.stack([
                boxes[..., 0].clamp(0, img_shape[1]),
                boxes[..., 1].clamp(0, img_shape[0]),
                boxes[..., 2].clamp(0, img_shape[1]),
                boxes[..., 3].clamp(0, img_shape[0])], dim=-1)
        return boxes, scores, labels

    # --------------------------------------------- post-processing by head
    @staticmethod
    def _priors(head, maps, **kwargs):
        sizes = [m.shape[-2:] for m in maps]
        return head.prior_generator.grid_priors(
            sizes, dtype=maps[0].dtype, device=maps[0].device, **kwargs)

    def _dense(self, head, outs, img_shape):
        """``BaseDenseHead.predict_by_feat`` + ``_bbox_post_process``."""
        cls_scores, bbox_preds = outs[0], outs[1]
        score_factors = outs[2] if len(outs) > 2 else None
        cfg = head.test_cfg
        if getattr(head.loss_cls, 'custom_cls_channels', False):
            raise TypeError(f'{type(head).__name__}: custom class channels '
                            'are not supported')
        num = cls_scores[0].shape[0]
        dim = head.bbox_coder.encode_size
        nms_pre = cfg.get('nms_pre', -1)
        priors = self._priors(head, cls_scores)
        level_boxes, level_scores, level_labels = [], [], []
        for lvl, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            cls = _flatten([cls], head.cls_out_channels)
            scores = cls.sigmoid() if head.use_sigmoid_cls else \
                cls.softmax(-1)[..., :-1]
            if nms_pre <= 0:  # every (prior, class) pair
                nms_pre = scores.shape[1] * scores.shape[2]
            values, prior, labels = _select_candidates(
                scores, cfg.get('score_thr', 0), nms_pre)
            deltas = _gather(_flatten([reg], dim), prior)
            anchors = priors[lvl][prior]
            boxes = head.bbox_coder.decode(
                anchors.reshape(-1, anchors.shape[-1]),
                deltas.reshape(-1, dim), max_shape=img_shape)
            if score_factors is not None:
                factor = _gather(_flatten([score_factors[lvl]], 1), prior)
                values = values * factor[..., 0].sigmoid()
            level_boxes.append(boxes.reshape(num, -1, 4))
            level_scores.append(values)
            level_labels.append(labels)
        boxes = torch.cat(level_boxes, 1)
        scores = torch.cat(level_scores, 1)
        keep = _min_size_mask(boxes, cfg)
        if keep is not None:
            scores = scores * keep.to(scores.dtype)
        return boxes, _one_hot_scores(scores, torch.cat(level_labels, 1),
                                      head.num_classes), False

    def _yolox(self, head, outs, img_shape):
        """``YOLOXHead.predict_by_feat`` (no clipping, as there)."""
        cls_scores, bbox_preds, objectness = outs
        priors = torch.cat(self._priors(head, cls_scores, with_stride=True))
        cls = _flatten(cls_scores, head.cls_out_channels).sigmoid()
        obj = _flatten(objectness, 1)[..., 0].sigmoid()
        boxes = head._bbox_decode(priors, _flatten(bbox_preds, 4))
        max_scores, labels = cls.max(-1)
        scores = max_scores * obj
        valid = obj * max_scores >= head.test_cfg['score_thr']
        scores = torch.where(valid, scores, torch.zeros_like(scores))
        return boxes, _one_hot_scores(scores, labels, head.num_classes), \
            False

    def _yolov5(self, head, outs, img_shape):
        """MMYOLO's ``YOLOv5Head.predict_by_feat`` (YOLOv5, YOLOv8, ...);
        boxes clamped to the input after NMS, as there."""
        cls_scores, bbox_preds = outs[0], outs[1]
        objectness = outs[2] if len(outs) > 2 else None
        cfg = head.test_cfg
        if cfg.get('yolox_style', False):
            raise TypeError('MMYOLO test_cfg.yolox_style is not supported')
        priors = torch.cat(self._priors(head, cls_scores))
        strides = torch.cat([
            priors.new_full((m.shape[-2] * m.shape[-1] *
                             head.num_base_priors, ), stride)
            for m, stride in zip(cls_scores, head.featmap_strides)])
        scores = _flatten(cls_scores, head.num_classes).sigmoid()
        boxes = head.bbox_coder.decode(priors[None], _flatten(bbox_preds, 4),
                                       strides)
        score_thr = cfg.get('score_thr', -1)
        if objectness is not None:
            obj = _flatten(objectness, 1).sigmoid()
            if score_thr > 0:  # priors of low objectness are dropped
                obj = torch.where(obj > score_thr, obj, torch.zeros_like(obj))
            scores = scores * obj
        nms_pre = cfg.get('nms_pre', 100000)
        if cfg.get('multi_label', False) and head.num_classes > 1:
            values, prior, labels = _select_candidates(scores, score_thr,
                                                       nms_pre)
        else:
            best, labels = scores.max(-1, keepdim=True)
            values, prior, _ = _select_candidates(best, score_thr, nms_pre)
            labels = labels[..., 0].gather(1, prior)
        boxes = _gather(boxes, prior)
        keep = _min_size_mask(boxes, cfg)
        if keep is not None:
            values = values * keep.to(values.dtype)
        return boxes, _one_hot_scores(values, labels, head.num_classes), True


def test_pipeline(cfg, sliced: Optional[dict] = None) -> list:
    """The pipeline an image goes through before the model: a sliced
    config's ``window_pipeline`` (every window is an image to the detector),
    else the config's test pipeline."""
    from mmdet.utils import get_test_pipeline_cfg
    if sliced and sliced.get('window_pipeline'):
        return list(sliced['window_pipeline'])
    return list(get_test_pipeline_cfg(cfg.copy()))


def resize_to(pipeline: list, input_size: Sequence[int]) -> list:
    """The pipeline with its resize (and fixed pad) sizes set to a fixed
    input size ``(H, W)``: an export at another size than the config's
    resizes the images to fit it (keep-ratio resizing stays keep-ratio)."""
    h, w = (int(v) for v in input_size)
    out = []
    for step in pipeline:
        step = dict(step)
        kind = step['type'].split('.')[-1]
        if 'Resize' in kind and 'scale' in step:
            step['scale'] = (w, h)
        elif kind == 'Pad' and step.get('size') is not None:
            step['size'] = (w, h)
        out.append(step)
    return out


def default_input_size(cfg, sliced: Optional[dict] = None
                       ) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of a test pipeline that ends at a fixed size (mmcv's
    ``Pad`` with ``size``, MMYOLO's ``LetterResize``), else ``None``
    (keep-ratio resizing to varying sizes: export a dynamic size)."""
    size = None
    for step in test_pipeline(cfg, sliced):
        kind = step['type'].split('.')[-1]
        if kind == 'Pad' and step.get('size') is not None:
            size = step['size']
        elif kind == 'LetterResize':
            size = step['scale']
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    return int(size[1]), int(size[0])  # mmcv sizes are (w, h)


def export_metadata(cfg, wrapper: ExportableDetector,
                    input_size: Optional[Sequence[int]],
                    classes: Sequence[str], sliced: Optional[dict] = None,
                    palette: Optional[list] = None) -> dict:
    """What :mod:`.runtime` needs to run the file on images: the classes,
    the test pipeline and default scope (resize as in PyTorch), the pad
    value (the mean: 0 after normalisation, as the data preprocessor
    pads), the input size (None: dynamic, padded to ``size_divisor``) and
    the slicing settings of a sliced config."""
    from mmengine.config import ConfigDict
    pipeline = test_pipeline(cfg, sliced)
    if input_size is not None:
        pipeline = resize_to(pipeline, input_size)

    def plain(obj):
        if isinstance(obj, (dict, ConfigDict)):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        return obj

    mean = wrapper.mean.flatten().tolist()
    pad_value = mean[::-1] if wrapper.bgr_to_rgb else mean
    dp = wrapper.detector.data_preprocessor
    return dict(
        format=1, part=wrapper.part, outputs=wrapper.output_names,
        classes=list(classes), default_scope=cfg.get('default_scope',
                                                     'mmdet'),
        test_pipeline=plain(pipeline),
        input_size=list(input_size) if input_size else None,
        size_divisor=int(getattr(dp, 'pad_size_divisor', 1) or 1),
        pad_value=pad_value, max_per_img=wrapper.max_per_img,
        clip=wrapper.clip, palette=palette,
        sliced=plain({k: v for k, v in sliced.items()
                      if not k.endswith('pipeline')}) if sliced else None)


def export_onnx(wrapper: ExportableDetector, out_file: str,
                input_size: Optional[Sequence[int]] = None,
                example_size: Sequence[int] = (320, 352),
                size_divisor: int = 32, metadata: Optional[dict] = None,
                opset: int = 18, verbose: bool = False) -> str:
    """Export ``wrapper`` to ``out_file``.

    Args:
        wrapper (ExportableDetector): The graph to export (eval mode).
        out_file (str): The ``.onnx`` file.
        input_size (H, W, optional): Fixed input size; ``None`` for a
            dynamic ``H, W`` (multiples of ``size_divisor``). The batch size
            is always dynamic.
        example_size (H, W): Example input size of a dynamic export; every
            feature map of it must be at least 2 x 2 (a 1-sized map is
            specialised by the tracer).
        size_divisor (int): What dynamic sizes are multiples of (the
            backbone's stride 32).
        metadata (dict, optional): Stored as JSON in the file's
            ``metadata_props`` under :data:`METADATA_KEY`.
        opset (int): ONNX opset.
    """
    import onnx
    from torch.export import Dim
    wrapper.eval()
    if input_size is not None:
        h, w = (int(v) for v in input_size)
        if h % size_divisor or w % size_divisor:
            raise ValueError(
                f'--input-size {h} {w}: both must be multiples of '
                f'{size_divisor} (the largest feature stride)')
        dims = {0: Dim('batch', min=1, max=1024)}
    else:
        h, w = (int(v) for v in example_size)
        dims = {0: Dim('batch', min=1, max=1024),
                2: size_divisor * Dim('height_div', min=1, max=8192 //
                                      size_divisor),
                3: size_divisor * Dim('width_div', min=1, max=8192 //
                                      size_divisor)}
    example = torch.rand(2, 3, h, w) * 255
    with torch.no_grad():
        program = torch.export.export(wrapper, (example, ),
                                      dynamic_shapes={'input': dims},
                                      strict=False)
        onnx_program = torch.onnx.export(
            program, (example, ), input_names=['input'],
            output_names=wrapper.output_names, opset_version=opset,
            custom_translation_table=ONNX_TRANSLATIONS, dynamo=True,
            verbose=verbose, optimize=True)
    onnx_program.save(out_file)
    if metadata is not None:
        model = onnx.load(out_file)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        onnx.save(model, out_file)
    return out_file


def load_detector(config, checkpoint: Optional[str],
                  cfg_options: Optional[dict] = None, deploy: bool = True):
    """Build a config's model, load a checkpoint and prepare it for export.

    Args:
        config (str | Config): The config (MMDetection or MMYOLO).
        checkpoint (str, optional): Checkpoint file (``weights_only``
            loading); ``None`` keeps the initial weights.
        cfg_options (dict, optional): Config overrides.
        deploy (bool): Fold the backbone's BatchNorms (``switch_to_deploy``).

    Returns:
        tuple: ``(cfg, detector, classes, palette, sliced)``: the inner
        detector of a ``SlicedInferenceDetector`` config, its class names
        (checkpoint meta, else the config's dataset metainfo, else the
        dataset's), and the slicing settings of a sliced config (else
        ``None``; its ``window_pipeline`` is the pipeline of the export).
    """
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    if scope == 'mmyolo':
        import mmyolo.models  # noqa: F401
    init_default_scope(scope)
    model_cfg = cfg.model
    sliced = None
    if model_cfg.get('type') == 'SlicedInferenceDetector':
        sliced = {k: v for k, v in model_cfg.items()
                  if k not in ('type', 'detector')}
        model_cfg = model_cfg.detector
    if model_cfg.get('backbone', {}).get('init_cfg') is not None:
        model_cfg.backbone.init_cfg = None  # weights come from checkpoint
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    meta = {}
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = ckpt.get('meta', {}).get('dataset_meta', {}) or {}
    model.eval()
    classes = meta.get('classes')
    if classes is None:
        ds = cfg.get('test_dataloader', {}).get('dataset', {})
        while 'dataset' in ds and 'metainfo' not in ds:
            ds = ds['dataset']  # dataset wrappers
        classes = (ds.get('metainfo') or {}).get('classes')
        if classes is None and 'type' in ds:
            with DATASETS.switch_scope_and_registry(scope) as registry:
                dataset_cls = registry.get(ds['type'])
            classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    head = getattr(model, 'bbox_head', None)
    num = getattr(head, 'num_classes', None)
    if classes is None:
        classes = [str(i) for i in range(num or 0)]
    if num is not None and len(classes) != num:
        raise ValueError(
            f'the head has {num} classes but the class names have '
            f'{len(classes)}: {list(classes)[:5]}...; set the dataset '
            'metainfo classes in the config')
    if deploy and hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return cfg, model, list(classes), meta.get('palette'), sliced
