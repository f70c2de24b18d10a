"""Hooks that make failures loud and resumed runs exact.

``tools/train.py`` and ``tools/test.py`` register both; with MMDetection's or
MMSegmentation's own tools add them through the config::

    custom_hooks = [dict(type='PreflightCheckHook'), dict(type='EpochSeedHook')]
"""
import json
import os
import os.path as osp
from typing import Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.utils import set_random_seed

from mmincnext.registry import HOOKS, register_everywhere


def _consumer_in_channels(model):
    """(name, in_channels) of the module that consumes the backbone outputs:
    the neck (first of a list), else a segmentation decode head."""
    neck = getattr(model, 'neck', None)
    if neck is not None:
        if hasattr(neck, '__getitem__') and not hasattr(neck, 'in_channels'):
            neck = neck[0]
        if hasattr(neck, 'in_channels'):
            return f'neck ({type(neck).__name__})', neck.in_channels
        return None
    head = getattr(model, 'decode_head', None)
    if head is not None and hasattr(head, 'in_channels'):
        return f'decode_head ({type(head).__name__})', head.in_channels
    return None


def check_backbone_consumer_channels(model) -> None:
    """Raise ``ValueError`` when the neck (or decode head) expects other
    channels than the backbone returns.

    Without this, a wrong ``neck.in_channels`` surfaces deep in the first
    forward pass as a convolution shape error that names neither setting.
    """
    # DDP, and test-time wrappers (SlicedInferenceDetector): the detector
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    backbone = getattr(model, 'backbone', None)
    out_channels = getattr(backbone, 'out_channels', None)
    consumer = _consumer_in_channels(model)
    if out_channels is None or consumer is None:
        return
    name, in_channels = consumer
    if isinstance(in_channels, int):
        # a single-input head reads one backbone output (its in_index)
        head = getattr(model, 'decode_head', None)
        index = getattr(head, 'in_index', -1)
        if isinstance(index, int) and -len(out_channels) <= index < len(
                out_channels):
            if out_channels[index] == in_channels:
                return
        in_channels = [in_channels]
    else:
        in_channels = list(in_channels)
        if len(in_channels) <= len(out_channels) and \
                in_channels == list(out_channels)[:len(in_channels)]:
            return
        head = getattr(model, 'decode_head', None)
        if name.startswith('decode_head') and isinstance(
                getattr(head, 'in_index', None), (list, tuple)):
            picked = [out_channels[i] for i in head.in_index
                      if -len(out_channels) <= i < len(out_channels)]
            if picked == in_channels:
                return
    raise ValueError(
        f'{name} in_channels={in_channels} do not match the backbone '
        f'outputs: {type(backbone).__name__}(out_indices='
        f'{getattr(backbone, "out_indices", "?")}) returns channels '
        f'{list(out_channels)}. Set the in_channels to {list(out_channels)} '
        '(or change the backbone arch / out_indices).')


def _dataset_description(dataset) -> str:
    ann_file = getattr(dataset, 'ann_file', None)
    data_root = getattr(dataset, 'data_root', None)
    return f'{type(dataset).__name__}(ann_file={ann_file!r}, ' \
        f'data_root={data_root!r})'


def check_dataset_not_empty(dataset, split: str) -> None:
    """Raise ``ValueError`` for a dataset with no samples (an annotation
    file without images, or every image filtered out), instead of a run that
    silently trains or evaluates on nothing."""
    if len(dataset) == 0:
        hint = ''
        filter_cfg = getattr(dataset, 'filter_cfg', None) or {}
        if filter_cfg.get('filter_empty_gt'):
            hint = (' (filter_empty_gt=True drops images without objects; '
                    'check the annotations or set it to False)')
        raise ValueError(
            f'the {split} dataset is empty: '
            f'{_dataset_description(dataset)} holds no images{hint}')


def _leaf_datasets(dataset):
    """The datasets inside wrappers (Repeat/Concat/ClassBalanced/
    MultiImageMix/Sliced...), which hold the data infos."""
    if hasattr(dataset, 'datasets'):
        return [d for c in dataset.datasets for d in _leaf_datasets(c)]
    if hasattr(dataset, 'dataset'):
        return _leaf_datasets(dataset.dataset)
    return [dataset]


def check_files_exist(dataset, split: str, max_listed: int = 10) -> None:
    """Raise ``FileNotFoundError`` naming the missing image (and
    segmentation map) files of ``dataset``, so that a missing file fails the
    run before the first iteration instead of whenever the sampler draws it.

    One ``os.stat`` per file, no decoding; the paths come from the data
    infos (``img_path``, ``seg_map_path``) of every dataset inside the
    wrappers. Remote paths (``s3://``, ``http://`` ...) are not checked.
    """
    missing, checked = [], 0
    for leaf in _leaf_datasets(dataset):
        if not hasattr(leaf, 'get_data_info'):
            continue
        if not getattr(leaf, '_fully_initialized', True):
            leaf.full_init()
        for i in range(len(leaf)):
            info = leaf.get_data_info(i)
            for key in ('img_path', 'seg_map_path'):
                path = info.get(key)
                if not isinstance(path, str) or '://' in path:
                    continue
                checked += 1
                try:
                    os.stat(path)
                except OSError:
                    missing.append(path)
    if missing:
        listed = ', '.join(missing[:max_listed])
        more = f' and {len(missing) - max_listed} more' \
            if len(missing) > max_listed else ''
        raise FileNotFoundError(
            f'the {split} dataset {_dataset_description(dataset)} names '
            f'{len(missing)} of its {checked} files that do not exist: '
            f'{listed}{more}')


def _dataset_cfgs(dataset_cfg):
    """The leaf dataset configs inside wrappers (Repeat/Concat/...)."""
    if dataset_cfg is None:
        return []
    if isinstance(dataset_cfg, (list, tuple)):
        return [d for c in dataset_cfg for d in _dataset_cfgs(c)]
    if 'dataset' in dataset_cfg:
        return _dataset_cfgs(dataset_cfg['dataset'])
    if 'datasets' in dataset_cfg:
        return _dataset_cfgs(dataset_cfg['datasets'])
    return [dataset_cfg]


def check_data_cfg(cfg, splits=('train', 'val', 'test')) -> None:
    """Check a config's data before anything is built.

    For each ``{split}_dataloader`` present: the ``data_root`` and the
    annotation file exist, and a (small) COCO-style annotation file lists at
    least one image; ADE20K-style folders exist and hold images. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the setting and the path,
    instead of the errors MMEngine's dataset serialisation gives for them
    (e.g. ``need at least one array to concatenate`` for an annotation file
    without images).
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for dataset in _dataset_cfgs(loader.get('dataset')):
            _check_one_dataset_cfg(dataset, split)


def _check_one_dataset_cfg(dataset, split):
    if dataset.get('type') in (None, ) or not isinstance(dataset, dict):
        return
    data_root = dataset.get('data_root') or ''
    if data_root and '://' not in data_root and not osp.isdir(data_root):
        raise FileNotFoundError(
            f'{split} dataset: data_root {data_root!r} does not exist')
    ann_file = dataset.get('ann_file') or ''
    if ann_file and '://' not in ann_file:
        path = ann_file if osp.isabs(ann_file) or not data_root else \
            osp.join(data_root, ann_file)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{split} dataset: annotation file {path!r} not found '
                f'(ann_file={ann_file!r}, data_root={data_root!r})')
        # an annotation file without images is small: parse only those
        if path.endswith('.json') and osp.getsize(path) < 16 * 2**20:
            with open(path) as f:
                content = json.load(f)
            if isinstance(content, dict) and 'images' in content and \
                    not content['images']:
                raise ValueError(
                    f'{split} dataset: annotation file {path!r} lists no '
                    'images')
    elif not ann_file and data_root and '://' not in data_root:
        # folder datasets (ADE20K): the image folder must hold images
        img_dir = (dataset.get('data_prefix') or {}).get('img_path')
        if img_dir is not None:
            folder = osp.join(data_root, img_dir)
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f'{split} dataset: image folder {folder!r} not found')


@register_everywhere(HOOKS)
class PreflightCheckHook(Hook):
    """Check the model and the datasets before any work starts.

    - the neck's / decode head's ``in_channels`` match the backbone outputs;
    - the train / val / test datasets in use are not empty;
    - every image (and segmentation map) of the training and validation
      sets exists, before the first iteration (and of the test set before
      testing): :func:`check_files_exist`.

    Args:
        check_files (bool): Run :func:`check_files_exist`. Defaults to True.
    """
    priority = 'VERY_HIGH'

    def __init__(self, check_files: bool = True):
        self.check_files = check_files

    def before_run(self, runner) -> None:
        check_backbone_consumer_channels(runner.model)

    def before_train(self, runner) -> None:
        check_dataset_not_empty(runner.train_dataloader.dataset, 'train')
        if self.check_files:
            check_files_exist(runner.train_dataloader.dataset, 'train')
            val_loop = getattr(runner, '_val_loop', None)
            if val_loop is not None and hasattr(val_loop, 'dataloader'):
                check_files_exist(val_loop.dataloader.dataset, 'val')

    def before_val(self, runner) -> None:
        check_dataset_not_empty(runner.val_dataloader.dataset, 'val')

    def before_test(self, runner) -> None:
        check_dataset_not_empty(runner.test_dataloader.dataset, 'test')
        if self.check_files:
            check_files_exist(runner.test_dataloader.dataset, 'test')


@register_everywhere(HOOKS)
class EpochSeedHook(Hook):
    """Reseed every random generator at the start of each training epoch
    with ``seed + epoch`` (``seed + rank`` offset per process when
    ``diff_rank_seed``).

    MMEngine's checkpoints do not store the generators' states, so a run
    resumed from ``epoch_k.pth`` would draw other augmentations, sampler
    proposals and drop-path masks than the uninterrupted run. Seeding each
    epoch from the epoch number makes both runs draw the same numbers: with
    ``randomness=dict(seed=..., deterministic=True)`` and data loaders
    without persistent worker processes (``num_workers=0`` or
    ``persistent_workers=False``; persistent workers keep their own
    generators), a resumed run ends with the same weights and logs the same
    losses as an uninterrupted one.

    Args:
        seed (int, optional): Base seed; defaults to the runner's seed.
    """
    priority = 'VERY_HIGH'

    def __init__(self, seed: Optional[int] = None):
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        base = self.seed if self.seed is not None else runner.seed
        randomness = getattr(runner, '_randomness_cfg', {}) or {}
        rank_offset = get_rank() if randomness.get('diff_rank_seed') else 0
        set_random_seed(base + runner.epoch + rank_offset,
                        deterministic=bool(randomness.get('deterministic')))


def add_reliability_hooks(cfg) -> None:
    """Append :class:`PreflightCheckHook` and :class:`EpochSeedHook` to
    ``cfg.custom_hooks`` unless the config lists them already (what
    ``tools/train.py`` and ``tools/test.py`` do)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {h.get('type') for h in hooks if isinstance(h, dict)}
    for name in ('PreflightCheckHook', 'EpochSeedHook'):
        if name not in present and f'mmincnext.{name}' not in present:
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
