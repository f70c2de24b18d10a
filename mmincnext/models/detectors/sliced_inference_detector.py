"""Sliced (tiled) evaluation through the stock test and validation loops.

:class:`SlicedInferenceDetector` wraps a detector (as MMDetection's
``DetTTAModel`` wraps one for test-time augmentation): its ``test_step`` /
``val_step`` take the runner's ordinary batch of FULL images, run the
detector on overlapping windows of each (several windows per forward pass),
merge the windows' detections in full-image coordinates with the pieces of
:mod:`mmincnext.apis.sliced_inference` (SAHI's windows, the border-cut
filter, class-aware ``batched_nms``) and return ``DetDataSample`` s with
``pred_instances`` in the original image coordinates. So ``tools/test.py``,
MMDetection's own ``tools/test.py`` and the validation loop of
``tools/train.py`` score tiled inference with the ordinary ``CocoMetric`` /
``SmallObjectCocoMetric``; ``tools/sliced_inference.py`` runs the same code.

The two pipelines:

- the **dataset's** val/test pipeline loads the FULL image and packs it
  unchanged: ``LoadImageFromFile``, (``LoadAnnotations``,) ``PackDetInputs``;
  no ``Resize``, ``Pad`` or flip. (A ``Resize`` there is undone: the boxes
  are divided by its ``scale_factor``, but the windows then tile the resized
  image.)
- the model's ``window_pipeline`` turns ONE window (a BGR ``HWC`` numpy
  array, as ``LoadImageFromFile`` reads images) into the detector's input:
  the detector's usual test transforms *after* loading, typically
  ``Resize`` (+ ``Pad``) and ``PackDetInputs`` with ``scale_factor`` in its
  meta keys. It must not load files (``LoadImageFromNDArray`` is accepted).
  Without it the windows go in at their own size.

Training is delegated to the detector (``train_step``, ``forward``), so one
config trains the plain detector (on windows cut by the train pipeline, e.g.
``RandomCrop``) and validates sliced. The wrapper's state dict is the
detector's, under the detector's own names (no ``module.`` prefix): plain
detector checkpoints load into the wrapper, checkpoints saved with the
wrapper are plain detector checkpoints, and mmengine's ``EMAHook`` (which
loads ``state_dict`` into its averaged copy without renaming any key) works
in both directions. Parameter *names* (``named_parameters``) keep the
``module.`` prefix.

Example: RTMDet for small objects, validated sliced on large images::

    _base_ = ['../rtmdet/rtmdet_inceptionnext-atto_pafpn-p2_small-obj_'
              '8xb32-300e_coco.py']
    custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

    # val / test datasets: the full image, not resized
    data_root = 'data/large/'  # COCO format
    full_image_pipeline = [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
    ]
    val_dataloader = dict(
        batch_size=1,
        dataset=dict(data_root=data_root, ann_file='annotations/val.json',
                     data_prefix=dict(img='val/'),
                     pipeline=full_image_pipeline))
    test_dataloader = val_dataloader

    # the detector's view of one window
    window_pipeline = [
        dict(type='Resize', scale=(640, 640), keep_ratio=True),
        dict(type='Pad', size=(640, 640),
             pad_val=dict(img=(114, 114, 114))),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ]
    model = dict(
        _delete_=True,
        type='SlicedInferenceDetector',
        detector=_base_.model,           # the detector, trained as usual
        slice_size=640,                  # or (h, w), in image pixels
        overlap_ratio=0.25,
        window_pipeline=window_pipeline,
        batch_size=8,                    # windows per forward pass
        whole_image=False,               # True: add a whole-image pass
        border_margin=2,                 # None: keep border-cut boxes
        nms=dict(type='nms', iou_threshold=0.6),   # class-aware merge
        max_per_img=500)                 # detections kept per image
    # the metric of tools/sliced_inference.py --max-dets 500: COCO's keys
    # (CocoMetric's default proposal_nums; the RTMDet bases set others)
    # and fine small-object bins counting every kept detection
    val_evaluator = dict(
        _delete_=True, type='SmallObjectCocoMetric', metric='bbox',
        ann_file=data_root + 'annotations/val.json', fine_max_dets=500)
    test_evaluator = val_evaluator

then ``python tools/test.py CONFIG CHECKPOINT`` with a checkpoint of the
plain detector (or one saved by training this config). The train settings
of the base (``train_dataloader`` and its pipeline) train the detector as
usual; for large images let that pipeline cut windows (e.g.
``RandomCrop``) or train on pre-sliced images.
"""
import copy
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData

from mmincnext.apis.sliced_inference import (get_windows, merge_predictions,
                                             predict_windows)
from mmincnext.registry import MODELS, register_everywhere

__all__ = ['SlicedInferenceDetector']

NMS_TYPES = ('nms', 'soft_nms')
# transforms that read a file: a window is already an array
FILE_LOADERS = ('LoadImageFromFile', 'LoadMultiChannelImageFromFiles',
                'LoadImageFromWebcam')


def _error(arg: str, message: str) -> str:
    return f'SlicedInferenceDetector: `{arg}` {message}'


def _detector_state_keys(module, state_dict, prefix, local_metadata):
    """``state_dict`` hook: the detector's entries under its own names.

    Renames ``{prefix}module.X`` to ``{prefix}X``; the version metadata is
    stored under both names, so either layout loads with its versions.
    """
    inner = prefix + 'module.'
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        for key in [k for k in metadata
                    if k == inner[:-1] or k.startswith(inner)]:
            alias = prefix[:-1] if key == inner[:-1] else \
                prefix + key[len(inner):]
            metadata[alias] = metadata[key]


def _wrapper_state_keys(module, state_dict, prefix, local_metadata, strict,
                        missing_keys, unexpected_keys, error_msgs):
    """``load_state_dict`` pre-hook for ``torch.nn.Module.load_state_dict``:
    entries under the detector's names go to ``module.`` (entries that have
    the prefix already are kept). MMEngine's loaders skip it: they hand the
    state dict to ``self.module`` directly."""
    inner = prefix + 'module.'
    for key in [k for k in state_dict
                if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
    # version metadata (only the top-level state dict carries it)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        for key in list(metadata):
            if key == prefix[:-1]:
                rest = ''
            elif key.startswith(prefix):
                rest = key[len(prefix):]
            else:
                continue
            if rest == 'module' or rest.startswith('module.'):
                continue  # the wrapper's layout already
            alias = inner + rest if rest else inner[:-1]
            metadata.setdefault(alias, metadata[key])


@register_everywhere(MODELS)
class SlicedInferenceDetector(BaseTTAModel):
    """Sliced (tiled) inference of a detector on full images, as a model.

    See the module docstring for the pipelines and a config.

    Args:
        detector (dict | nn.Module): The detector (its model config, built
            with MMDetection's registry, or a built detector); stored as
            ``self.module``.
        slice_size (int | (h, w)): Window size in pixels of the full image
            (windows are cut to images smaller than this).
            Defaults to 640.
        overlap_ratio (float): Overlap of neighbouring windows, as a
            fraction of the window size, in ``[0, 1)``. Defaults to 0.25.
        window_pipeline (list[dict | callable], optional): Transforms that
            turn one window (``results['img']``: ``HWC`` BGR ``uint8``
            array; ``img_shape``, ``ori_shape`` and ``scale_factor=(1, 1)``
            filled in) into the detector's input, ending with
            ``PackDetInputs``. ``None`` packs the window as it is.
        whole_image (bool): Also run the detector on the whole image and
            merge it in (keeps objects larger than a window).
            Defaults to False.
        whole_image_pipeline (list[dict | callable], optional): The
            transforms of the whole-image pass; defaults to
            ``window_pipeline`` (whose ``Resize`` then shrinks the image to
            the detector's input scale).
        batch_size (int): Windows per forward pass. Defaults to 4.
        border_margin (float, optional): Boxes within this many pixels of
            an inner window edge and shorter than the windows' overlap
            are cut views of objects another window sees whole, and are
            dropped (:mod:`mmincnext.apis.sliced_inference`); ``None``
            keeps them. Defaults to 2.
        nms (dict): The merging NMS: ``type`` (``'nms'`` or
            ``'soft_nms'``), ``iou_threshold`` and optionally
            ``class_agnostic`` (default False: class-aware).
            Defaults to ``dict(type='nms', iou_threshold=0.5)``.
        max_per_img (int, optional): Detections kept per image after
            merging; ``None`` keeps all. Defaults to 1000.
        data_preprocessor (dict, optional): Replaces the detector config's
            ``data_preprocessor`` (as in ``BaseTTAModel``); only with a
            ``detector`` config.
    """

    def __init__(self,
                 detector: Union[dict, nn.Module],
                 slice_size: Union[int, Sequence[int]] = 640,
                 overlap_ratio: float = 0.25,
                 window_pipeline: Optional[Sequence] = None,
                 whole_image: bool = False,
                 whole_image_pipeline: Optional[Sequence] = None,
                 batch_size: int = 4,
                 border_margin: Optional[float] = 2.,
                 nms: Optional[dict] = None,
                 max_per_img: Optional[int] = 1000,
                 data_preprocessor: Optional[dict] = None):
        if isinstance(detector, dict):
            from mmdet.registry import MODELS as DET_MODELS
            detector = copy.deepcopy(detector)
            if data_preprocessor is not None:
                detector['data_preprocessor'] = data_preprocessor
            # mmdet's registry: no default scope needed to find mmdet types
            detector = DET_MODELS.build(detector)
        elif not isinstance(detector, nn.Module):
            raise TypeError(_error(
                'detector', 'must be a detector config (dict) or a built '
                f'detector (nn.Module), got {type(detector).__name__}'))
        elif data_preprocessor is not None:
            raise ValueError(_error(
                'data_preprocessor', 'only applies to a `detector` config; '
                'the built detector has its own'))
        if not hasattr(detector, 'test_step'):
            raise TypeError(_error(
                'detector', f'{type(detector).__name__} has no test_step: '
                'it must be an MMDetection detector'))
        super().__init__(module=detector)
        # the detector's preprocessor serves the wrapper too (the property
        # below): no second preprocessor, no second set of state entries
        del self._modules['data_preprocessor']

        self.slice_size = self._check_slice_size(slice_size)
        if not isinstance(overlap_ratio, (int, float)) or \
                not 0 <= overlap_ratio < 1:
            raise ValueError(_error('overlap_ratio', 'must be in [0, 1), '
                                    f'got {overlap_ratio!r}'))
        self.overlap_ratio = float(overlap_ratio)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) \
                or batch_size < 1:
            raise ValueError(_error('batch_size', 'must be an int >= 1, got '
                                    f'{batch_size!r}'))
        self.batch_size = batch_size
        if border_margin is not None and (
                not isinstance(border_margin, (int, float))
                or border_margin < 0):
            raise ValueError(_error('border_margin', 'must be >= 0 or None, '
                                    f'got {border_margin!r}'))
        self.border_margin = border_margin
        self.whole_image = bool(whole_image)
        self.nms = self._check_nms(nms)
        if max_per_img is not None and (
                not isinstance(max_per_img, int) or max_per_img < 1):
            raise ValueError(_error('max_per_img', 'must be an int >= 1 or '
                                    f'None, got {max_per_img!r}'))
        self.max_per_img = max_per_img
        self.window_pipeline = self._build_pipeline(window_pipeline,
                                                    'window_pipeline')
        self.whole_image_pipeline = self.window_pipeline if \
            whole_image_pipeline is None else self._build_pipeline(
                whole_image_pipeline, 'whole_image_pipeline')

        # private torch hooks: mmengine's get_state_dict (the Runner's
        # checkpoints) calls `_state_dict_hooks` the same way
        self._register_state_dict_hook(_detector_state_keys)
        self._register_load_state_dict_pre_hook(_wrapper_state_keys,
                                                with_module=True)

    # ------------------------------------------------------ argument checks
    @staticmethod
    def _check_slice_size(slice_size):
        size = (slice_size, slice_size) if isinstance(slice_size, int) \
            else slice_size
        if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0
                for s in size):
            raise ValueError(_error('slice_size', 'must be a positive int or '
                                    f'(h, w) of them, got {slice_size!r}'))
        return tuple(size)

    @staticmethod
    def _check_nms(nms):
        nms = dict(type='nms', iou_threshold=0.5) if nms is None else \
            dict(nms)
        unknown = set(nms) - {'type', 'iou_threshold', 'class_agnostic'}
        if unknown:
            raise ValueError(_error(
                'nms', f'has unsupported key(s) {sorted(unknown)}; it takes '
                'type, iou_threshold, class_agnostic'))
        if nms.get('type', 'nms') not in NMS_TYPES:
            raise ValueError(_error('nms', f'type must be one of '
                                    f"{NMS_TYPES}, got {nms.get('type')!r}"))
        iou = nms.get('iou_threshold', 0.5)
        if not isinstance(iou, (int, float)) or not 0 < iou <= 1:
            raise ValueError(_error('nms', 'iou_threshold must be in (0, 1], '
                                    f'got {iou!r}'))
        return dict(nms_type=nms.get('type', 'nms'), iou_thr=float(iou),
                    class_agnostic=bool(nms.get('class_agnostic', False)))

    @staticmethod
    def _build_pipeline(pipeline, arg):
        from mmcv.transforms import Compose
        from mmdet.registry import TRANSFORMS
        if pipeline is None:
            pipeline = [dict(type='mmdet.PackDetInputs')]
        if isinstance(pipeline, (dict, str)) or not isinstance(
                pipeline, Sequence) or not pipeline:
            raise ValueError(_error(arg, 'must be a non-empty list of '
                                    f'transforms, got {pipeline!r}'))
        transforms = []
        for t in pipeline:
            if isinstance(t, dict):
                name = str(t.get('type', '')).split('.')[-1]
                if name in FILE_LOADERS:
                    raise ValueError(_error(
                        arg, f'receives each window as an array: drop its '
                        f'{name!r} step (LoadImageFromNDArray is accepted)'))
                keys = t.get('meta_keys')
                if name == 'PackDetInputs' and keys is not None and \
                        'scale_factor' not in keys:
                    raise ValueError(_error(
                        arg, "PackDetInputs meta_keys must include "
                        "'scale_factor' (the detector maps its boxes back to "
                        'the window with it)'))
                # mmdet's registry: 'Resize' is mmdet's, scope or not
                t = TRANSFORMS.build(copy.deepcopy(t))
            elif not callable(t):
                raise ValueError(_error(arg, 'items must be transform '
                                        f'configs or callables, got {t!r}'))
            transforms.append(t)
        return Compose(transforms)

    # -------------------------------------------------------------- modules
    @property
    def data_preprocessor(self) -> nn.Module:
        """The detector's data preprocessor (what a DDP-wrapped
        ``train_step`` applies before :meth:`forward`)."""
        return self.module.data_preprocessor

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """The detector's ``train_step`` (training sees windows cut by the
        train pipeline, not full images)."""
        return self.module.train_step(data, optim_wrapper)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """The detector's ``forward`` for ``'loss'`` and ``'tensor'``
        (used by a DDP-wrapped ``train_step``). Sliced predictions come
        from :meth:`test_step` / :meth:`val_step` only: they need the full
        images, not a preprocessed batch."""
        if mode == 'predict':
            raise NotImplementedError(
                'SlicedInferenceDetector predicts through test_step / '
                'val_step on full images; forward(mode="predict") is not '
                'supported')
        return self.module(inputs, data_samples, mode)

    # ---------------------------------------------------------- prediction
    def get_windows(self, height: int, width: int) -> np.ndarray:
        """The ``(N, 4)`` windows (``x1, y1, x2, y2``) of an image."""
        return get_windows(height, width, self.slice_size,
                           self.overlap_ratio)

    def predict_crops(self, crops: Sequence[np.ndarray],
                      pipeline: Optional[Callable] = None
                      ) -> List[InstanceData]:
        """The detector on a batch of image crops (one forward pass).

        Args:
            crops (list[ndarray]): ``HWC`` BGR images of any sizes.
            pipeline (callable, optional): Defaults to
                ``window_pipeline``.

        Returns:
            list[InstanceData]: ``bboxes`` (crop coordinates), ``scores``,
            ``labels`` of each crop.
        """
        pipeline = self.window_pipeline if pipeline is None else pipeline
        data = []
        for crop in crops:
            shape = crop.shape[:2]
            packed = pipeline(dict(img=crop, img_shape=shape,
                                   ori_shape=shape, scale_factor=(1., 1.)))
            if not isinstance(packed, dict) or 'inputs' not in packed:
                raise RuntimeError(
                    'window_pipeline must end with PackDetInputs (it '
                    f'returned {type(packed).__name__})')
            data.append(packed)
        batch = dict(inputs=[d['inputs'] for d in data],
                     data_samples=[d['data_samples'] for d in data])
        with torch.no_grad():
            return [s.pred_instances for s in self.module.test_step(batch)]

    def predict_sliced(self, img: np.ndarray,
                       windows: Optional[np.ndarray] = None,
                       progress: Optional[Callable[[int], None]] = None
                       ) -> InstanceData:
        """Detections of every window, border-cut boxes dropped, in image
        coordinates, not merged (with ``window_ids``).

        Args:
            img (ndarray): ``HWC`` BGR image.
            windows (ndarray, optional): Defaults to :meth:`get_windows`.
            progress (callable, optional): Called with the number of
                windows done after each batch.
        """
        if windows is None:
            windows = self.get_windows(*img.shape[:2])
        return predict_windows(img, self.predict_crops, windows,
                               self.batch_size, self.border_margin,
                               progress=progress)

    def predict_whole(self, img: np.ndarray) -> InstanceData:
        """The whole-image pass (``whole_image_pipeline``)."""
        return self.predict_crops([img], self.whole_image_pipeline)[0]

    def merge(self, parts: Sequence[InstanceData]) -> InstanceData:
        """Merge predictions in image coordinates (``nms``,
        ``max_per_img``) with :func:`merge_predictions`."""
        return merge_predictions(parts, max_dets=self.max_per_img,
                                 **self.nms)

    def predict_image(self, img: np.ndarray) -> InstanceData:
        """Sliced (and, with ``whole_image``, whole-image) detections of
        one ``HWC`` BGR image, merged, in its coordinates."""
        parts = [self.predict_sliced(img)]
        if self.whole_image:
            parts.append(self.predict_whole(img))
        return self.merge(parts)

    def merge_preds(self, data_samples_list):
        """Merge the predictions of several passes over each image (all in
        that image's coordinates) with :meth:`merge`.

        Args:
            data_samples_list (list[list[DetDataSample]]): Per image, the
                samples of its passes.

        Returns:
            list[DetDataSample]: The first sample of each image, with the
            merged ``pred_instances``.
        """
        merged = []
        for samples in data_samples_list:
            out = samples[0]
            out.pred_instances = self.merge(
                [s.pred_instances for s in samples])
            merged.append(out)
        return merged

    def test_step(self, data: dict) -> list:
        """Sliced predictions of a batch of full images.

        Args:
            data (dict): The data loader's batch: ``inputs`` (list of
                ``CHW`` image tensors, BGR, as ``PackDetInputs`` packs the
                loaded images) and ``data_samples`` (list of
                ``DetDataSample``, optional).

        Returns:
            list[DetDataSample]: The input samples (metainfo and ground
            truth kept) with ``pred_instances`` in the coordinates of the
            original image (``ori_shape``).
        """
        from mmdet.structures import DetDataSample
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError('SlicedInferenceDetector.test_step takes the '
                            "data loader's dict batch (inputs, data_samples)"
                            f', got {type(data).__name__}')
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs) if inputs.dim() == 4 else [inputs]
        samples = data.get('data_samples')
        if samples is None:
            samples = [DetDataSample() for _ in inputs]
        if len(samples) != len(inputs):
            raise ValueError(f'{len(inputs)} images but {len(samples)} '
                             'data samples in the batch')
        with torch.no_grad():
            for img, sample in zip(inputs, samples):
                sample.pred_instances = self._predict_full_image(img, sample)
        return list(samples)

    def val_step(self, data: dict) -> list:
        """Same as :meth:`test_step`."""
        return self.test_step(data)

    def _predict_full_image(self, img: torch.Tensor,
                            sample) -> InstanceData:
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise TypeError(
                'SlicedInferenceDetector needs one CHW tensor per image in '
                "data['inputs'] (a test-time-augmentation pipeline is not "
                f'supported), got {type(img).__name__}')
        # back to the HWC BGR array LoadImageFromFile produced
        array = np.ascontiguousarray(img.detach().cpu().permute(1, 2,
                                                                0).numpy())
        meta = sample.metainfo
        sx, sy = (float(s) for s in meta.get('scale_factor', (1., 1.)))
        ori_shape = meta.get('ori_shape')
        if ori_shape is not None:
            # ignore any padding the dataset pipeline added (bottom / right)
            valid_h = min(array.shape[0], int(round(ori_shape[0] * sy)))
            valid_w = min(array.shape[1], int(round(ori_shape[1] * sx)))
            array = array[:valid_h, :valid_w]
        pred = self.predict_image(array)
        if (sx, sy) != (1., 1.):
            pred.bboxes = pred.bboxes / pred.bboxes.new_tensor(
                [sx, sy, sx, sy])
            if ori_shape is not None:
                pred.bboxes[:, 0::2] = pred.bboxes[:, 0::2].clamp(
                    0, ori_shape[1])
                pred.bboxes[:, 1::2] = pred.bboxes[:, 1::2].clamp(
                    0, ori_shape[0])
        return pred
