"""Sliced (SAHI-style) training for any MMDetection detection dataset.

Small objects in large images are shrunk away by the usual training resize
(a 12 px object in a 2000 px image is 4 px at 640 px). Sliced training cuts
every image into overlapping windows, as sliced inference
(:mod:`mmincnext.apis.sliced_inference`, ``tools/sliced_inference.py``)
does at test time, and trains on the windows at (or near) their native
resolution. :class:`SlicedDataset` wraps a dataset (the OpenMMLab pattern of
``MultiImageMixDataset``) and turns each image into one sample per window;
the wrapped dataset's pipeline only loads, the wrapper's pipeline starts
with :class:`~mmincnext.datasets.transforms.CropToSlice` and then augments,
resizes and packs as usual::

    custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

    train_dataloader = dict(
        batch_size=8,
        num_workers=4,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'),
        dataset=dict(
            type='SlicedDataset',
            dataset=dict(
                type='CocoDataset',
                data_root=data_root,
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                # images without objects still give background windows
                filter_cfg=dict(filter_empty_gt=False),
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations', with_bbox=True),
                ]),
            slice_size=512,          # int or (h, w), image pixels
            overlap_ratio=0.25,      # as sliced inference
            min_visible=0.25,        # less visible: ignore region
            empty_ratio=0.1,         # keep 10 % of the windows w/o objects
            whole_image=True,        # plus each whole image, resized
            seed=0,
            pipeline=[
                dict(type='CropToSlice'),
                dict(type='RandomFlip', prob=0.5),
                dict(type='Resize', scale=(512, 512), keep_ratio=True),
                dict(type='PackDetInputs',
                     meta_keys=('img_id', 'img_path', 'ori_shape',
                                'img_shape', 'scale_factor', 'flip',
                                'flip_direction', 'slice_offset',
                                'slice_window')),
            ]))

With ``Resize(scale=slice_size)`` the windows keep their native resolution
and the whole-image samples are shrunk to the same size. Use the same
``slice_size`` / ``overlap_ratio`` for sliced inference, so that objects
have the same size in pixels at training and at test time. Validation and
testing stay on whole images (the wrapper is for training).

How windows and boxes are decided, from the annotations alone (no image is
read when the dataset is built):

- Windows come from :func:`~mmincnext.apis.sliced_inference.get_windows`
  (SAHI's slicing, the windows of sliced inference) on the data infos'
  ``width`` / ``height``.
- A box is an **object** of a window when at least ``min_visible`` of its
  area (the part inside the image) lies in the window.
- A box cut by the window with less than ``min_visible`` visible becomes
  an **ignore region** of that window, not dropped. Dropping it (SAHI's
  ``slice_coco``) labels the visible sliver as background, so the detector
  is taught to suppress the parts of objects it is also taught to find;
  keeping it as an object teaches it to fire on slivers. As an ignore
  region it is neither: assigners that honour ignore regions
  (``MaxIoUAssigner`` / ``ATSSAssigner`` with ``ignore_iof_thr > 0``) take
  no positive or negative sample from it, and the others (their default
  ``ignore_iof_thr=-1``, RTMDet's and YOLOX's assigners) treat it as
  background, which is what dropping it would have done. Every object
  smaller than the windows' overlap is whole (fully visible) in some
  window, so nothing is lost for small objects.
- Ignore regions of the dataset (``iscrowd``) are cropped like boxes and
  stay ignore regions.
- A window is **empty** when it has no object (ignore regions do not
  count). ``empty_ratio`` of the empty windows are kept (rounded),
  chosen once, from ``seed``, among the empty windows of the whole dataset;
  the choice is the same on every rank and in every epoch.

Every rank (and every data loader worker) holds the same small window
index (``int32``, five numbers a sample) and no image: a sample reads its
one image with the wrapped dataset's pipeline, then crops it.
"""
import copy
import logging
import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset, Compose, force_full_init
from mmengine.logging import print_log

from mmincnext.registry import DATASETS, register_everywhere
from .transforms.crop_to_slice import window_box_visibility

__all__ = ['SlicedDataset']


@register_everywhere(DATASETS)
class SlicedDataset:
    """Each image of ``dataset`` as overlapping windows (plus, optionally,
    the whole image); see the module docstring for a config.

    A sample is the image's loaded results (the wrapped dataset's pipeline,
    e.g. ``LoadImageFromFile`` + ``LoadAnnotations``) with
    ``slice_window`` ``(x1, y1, x2, y2)`` and ``slice_min_visible`` added,
    passed through ``pipeline``, whose first transform must crop (
    :class:`~mmincnext.datasets.transforms.CropToSlice`).

    Args:
        dataset (BaseDataset | dict): The dataset to slice (config or
            object); its data infos need ``width``, ``height`` and
            ``instances`` (``bbox`` xyxy, ``bbox_label``, ``ignore_flag``)
            as mmdet's ``CocoDataset`` gives them, and its pipeline must
            load the image at that size.
        pipeline (list[dict | callable]): Transforms applied to every
            sample, ``CropToSlice`` first.
        slice_size (int | (h, w)): Window size in image pixels; images
            smaller than it give one window of their own size. Defaults
            to 512.
        overlap_ratio (float): Overlap of neighbouring windows as a
            fraction of the window size, in ``[0, 1)``. Defaults to 0.25.
        min_visible (float): Least fraction of a box's area in a window
            for the box to be an object of that window, in ``[0, 1]``; a
            box seen less is an ignore region there. 0 keeps every box
            with something inside the window. Defaults to 0.25.
        empty_ratio (float): Fraction of the windows without any object to
            keep, in ``[0, 1]``. Defaults to 1 (every window).
        whole_image (bool): Add one sample of each whole image (always
            kept, whatever its objects); an image that is a single window
            gets that one sample only. Defaults to False.
        seed (int): Seed of the choice of empty windows. Defaults to 0.
        max_refetch (int): Tries at another random sample when the
            loading or the pipeline returns ``None``. Defaults to 15.
        lazy_init (bool): Build the window index at the first use instead
            of at construction. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[BaseDataset, dict],
                 pipeline: Sequence[Union[dict, Callable]],
                 slice_size: Union[int, Sequence[int]] = 512,
                 overlap_ratio: float = 0.25,
                 min_visible: float = 0.25,
                 empty_ratio: float = 1.0,
                 whole_image: bool = False,
                 seed: int = 0,
                 max_refetch: int = 15,
                 lazy_init: bool = False) -> None:
        # mmdet's registries find mmdet's datasets / transforms without a
        # default scope, and mmincnext's (registered in the root) as well
        from mmdet.registry import DATASETS as MMDET_DATASETS
        from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS

        if isinstance(slice_size, int):
            slice_size = (slice_size, slice_size)
        slice_size = tuple(int(s) for s in slice_size)
        if len(slice_size) != 2 or min(slice_size) <= 0:
            raise ValueError('slice_size must be a positive int or (h, w), '
                             f'got {slice_size}')
        if not 0 <= overlap_ratio < 1:
            raise ValueError(
                f'overlap_ratio must be in [0, 1), got {overlap_ratio}')
        if not 0 <= min_visible <= 1:
            raise ValueError(
                f'min_visible must be in [0, 1], got {min_visible}')
        if not 0 <= empty_ratio <= 1:
            raise ValueError(
                f'empty_ratio must be in [0, 1], got {empty_ratio}')
        if isinstance(pipeline, (dict, str)) or not isinstance(
                pipeline, Sequence):
            raise TypeError('pipeline must be a list of transforms, got '
                            f'{type(pipeline).__name__}')
        self.slice_size = slice_size
        self.overlap_ratio = float(overlap_ratio)
        self.min_visible = float(min_visible)
        self.empty_ratio = float(empty_ratio)
        self.whole_image = bool(whole_image)
        self.seed = int(seed)
        self.max_refetch = int(max_refetch)

        self.pipeline = Compose([
            MMDET_TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in pipeline
        ])
        if isinstance(dataset, dict):
            self.dataset = MMDET_DATASETS.build(dataset)
        elif hasattr(dataset, 'get_data_info') and hasattr(
                dataset, 'full_init'):
            self.dataset = dataset
        else:
            raise TypeError('dataset must be a config dict or a dataset '
                            'with get_data_info and full_init, got '
                            f'{type(dataset).__name__}')
        self._metainfo = self.dataset.metainfo

        # (image index, x1, y1, x2, y2) of every sample
        self._slices = np.zeros((0, 5), dtype=np.int32)
        # (h, w) of every image of the wrapped dataset
        self._image_sizes = np.zeros((0, 2), dtype=np.int32)
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The meta information of the wrapped dataset (a copy)."""
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        """``full_init`` the wrapped dataset and build the window index."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        self._build_index()
        self._fully_initialized = True

    def _build_index(self) -> None:
        """Windows of every image and the choice of the empty ones."""
        # the windows of sliced inference (imported here: ``import
        # mmincnext`` does not load the inference helpers)
        from mmincnext.apis.sliced_inference import get_windows
        num_images = len(self.dataset)
        sizes = np.zeros((num_images, 2), dtype=np.int32)
        windows_of_size = {}  # many images share a size
        rows, empty, whole = [], [], []
        for i in range(num_images):
            info = self.dataset.get_data_info(i)
            h, w = _image_size(info, i)
            sizes[i] = h, w
            if (h, w) not in windows_of_size:
                windows_of_size[(h, w)] = get_windows(
                    h, w, self.slice_size, self.overlap_ratio)
            windows = windows_of_size[(h, w)]
            single = len(windows) == 1 and \
                tuple(windows[0]) == (0, 0, w, h)
            if not (self.whole_image and single):
                has_objects = self._windows_with_objects(
                    info.get('instances') or [], windows, (h, w))
                rows.append(np.concatenate(
                    [np.full((len(windows), 1), i), windows], axis=1))
                empty.append(~has_objects)
                whole.append(np.zeros(len(windows), dtype=bool))
            if self.whole_image:
                rows.append(np.array([[i, 0, 0, w, h]]))
                empty.append(np.zeros(1, dtype=bool))
                whole.append(np.ones(1, dtype=bool))
        if not rows:
            self._slices = np.zeros((0, 5), dtype=np.int32)
            self._image_sizes = sizes
            return
        rows = np.concatenate(rows).astype(np.int32)
        empty = np.concatenate(empty)
        whole = np.concatenate(whole)

        # keep a seeded share of the empty windows, in dataset order
        empty_ids = np.flatnonzero(empty)
        num_kept = math.floor(self.empty_ratio * len(empty_ids) + 0.5)
        chosen = np.random.default_rng(self.seed).choice(
            len(empty_ids), size=num_kept, replace=False)
        keep = ~empty
        keep[empty_ids[chosen]] = True
        self._slices = np.ascontiguousarray(rows[keep])
        self._image_sizes = sizes
        print_log(
            f'SlicedDataset: {num_images} images -> {len(self._slices)} '
            f'samples ({int((~empty & ~whole).sum())} windows with '
            f'objects, {num_kept} of {len(empty_ids)} empty windows, '
            f'{int(whole.sum())} whole images); slice_size '
            f'{self.slice_size}, overlap_ratio {self.overlap_ratio}, '
            f'min_visible {self.min_visible}',
            logger='current')

    def _windows_with_objects(self, instances: List[dict],
                              windows: np.ndarray,
                              image_shape: Tuple[int, int]) -> np.ndarray:
        """Bool ``(m, )``: whether each window has an object (see
        ``min_visible``)."""
        if not instances:
            return np.zeros(len(windows), dtype=bool)
        boxes = np.asarray([inst['bbox'] for inst in instances],
                           dtype=np.float32).reshape(-1, 4)
        ignore = np.asarray(
            [bool(inst.get('ignore_flag', 0)) for inst in instances])
        _, visible, inside = window_box_visibility(boxes, windows,
                                                   image_shape)
        objects = inside & ~ignore[None] & (visible >= self.min_visible)
        return objects.any(axis=1)

    @force_full_init
    def __len__(self) -> int:
        return len(self._slices)

    @force_full_init
    def get_slice(self, idx: int) -> Tuple[int, Tuple[int, int, int, int]]:
        """The image index (in the wrapped dataset) and the window
        ``(x1, y1, x2, y2)`` of sample ``idx``.

        Args:
            idx (int): Sample index (negative counts from the end).
        """
        image_idx, *window = (int(v) for v in self._slices[idx])
        return image_idx, tuple(window)

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The data info of sample ``idx``, as seen through its window.

        The image's data info with ``width`` / ``height`` of the window (so
        that ``AspectRatioBatchSampler`` groups samples by their own
        shape), ``slice_window``, ``slice_offset``, and ``instances`` cut
        to the window as :class:`CropToSlice` cuts them: boxes in window
        coordinates, boxes below ``min_visible`` turned into ignore regions
        (``ignore_flag`` 1), boxes outside removed. The instances' ``mask``
        is left out (it is not cropped here). ``sample_idx`` stays the
        image's index in the wrapped dataset.

        Args:
            idx (int): Sample index.
        """
        image_idx, window = self.get_slice(idx)
        info = self.dataset.get_data_info(image_idx)
        x1, y1, x2, y2 = window
        instances = info.get('instances') or []
        cropped = []
        if instances:
            boxes = np.asarray([inst['bbox'] for inst in instances],
                               dtype=np.float32).reshape(-1, 4)
            clipped, visible, inside = window_box_visibility(
                boxes, np.asarray([window]),
                tuple(int(v) for v in self._image_sizes[image_idx]))
            for k in np.flatnonzero(inside[0]):
                inst = {key: value for key, value in instances[k].items()
                        if key != 'mask'}
                inst['bbox'] = clipped[0, k].tolist()
                partial = bool(visible[0, k] < self.min_visible)
                inst['ignore_flag'] = int(
                    bool(inst.get('ignore_flag', 0)) or partial)
                cropped.append(inst)
        info.update(instances=cropped, width=x2 - x1, height=y2 - y1,
                    slice_window=window, slice_offset=(x1, y1))
        return info

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels of the objects (not ignore regions) of sample ``idx``,
        e.g. for ``ClassBalancedDataset``.

        Args:
            idx (int): Sample index.
        """
        return [int(inst['bbox_label'])
                for inst in self.get_data_info(idx)['instances']
                if not inst.get('ignore_flag', 0)]

    def __getitem__(self, idx: int) -> Any:
        if not self._fully_initialized:
            print_log('Please call `full_init` method manually to '
                      'accelerate the speed.', logger='current',
                      level=logging.WARNING)
            self.full_init()
        for _ in range(self.max_refetch + 1):
            results = self._load_slice(idx)
            if results is not None:
                results = self.pipeline(results)
            if results is not None:
                return results
            # a broken image or a transform rejecting the sample
            idx = int(np.random.randint(0, len(self)))
        raise RuntimeError(
            f'SlicedDataset: no valid sample after {self.max_refetch + 1} '
            'tries; check the loading pipeline of the wrapped dataset and '
            'the pipeline of the wrapper')

    def _load_slice(self, idx: int) -> Optional[dict]:
        """The loaded image of sample ``idx`` with its window."""
        image_idx, window = self.get_slice(idx)
        # prepare_data, not __getitem__: a dataset in training mode would
        # replace a failed image by a random other one, which the window
        # does not belong to
        prepare = getattr(self.dataset, 'prepare_data', None)
        results = prepare(image_idx) if prepare is not None else \
            self.dataset[image_idx]
        if results is None:
            return None
        expected = tuple(int(v) for v in self._image_sizes[image_idx])
        img = results.get('img', None)
        if img is not None and tuple(img.shape[:2]) != expected:
            raise ValueError(
                f'image {results.get("img_path")} was loaded with size '
                f'(h, w) = {tuple(img.shape[:2])}, but its annotations give '
                f'{expected}; SlicedDataset cuts the windows from the '
                'annotations, so the wrapped pipeline must load the image '
                'as annotated (no resizing; check EXIF rotation)')
        results['slice_window'] = window
        results['slice_min_visible'] = self.min_visible
        return results


def _image_size(info: dict, idx: int) -> Tuple[int, int]:
    """``(h, w)`` of a data info, from its ``height`` / ``width``."""
    try:
        h, w = int(info['height']), int(info['width'])
    except (KeyError, TypeError, ValueError):
        raise KeyError(
            f'SlicedDataset: the data info of image {idx} '
            f'({info.get("img_path")}) has no integer width / height; '
            'the windows are computed from them without reading the '
            'images') from None
    if h <= 0 or w <= 0:
        raise ValueError(f'SlicedDataset: image {idx} '
                         f'({info.get("img_path")}) has size (h, w) = '
                         f'{(h, w)}')
    return h, w
