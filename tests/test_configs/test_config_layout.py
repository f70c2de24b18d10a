"""The layout of ``configs/``: one backbone definition, short headers,
consistent names.

Every config resolves (without importing mmincnext, so this runs without the
compiled stack); only ``configs/_base_/models/inceptionnext.py`` spells out
the backbone type and the ImageNet weights; every config opens with at most
three comment lines (the explanations live in the folder's README.md); the
resolved backbone loads the weights of its own size; names follow
MMDetection's ``algorithm_backbone_[neck]_[variant]_[schedule]_dataset``
form, with ``small-obj`` on every small-object config (and only there) and
``-p2`` on the neck of every config that adds a stride-4 level.
"""
import functools
import glob
import os.path as osp
import re
import warnings

import pytest

from mmengine.config import Config

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG_ROOT = osp.join(ROOT, 'configs')
BASE = osp.join(CONFIG_ROOT, '_base_', 'models', 'inceptionnext.py')
ALL_PY = sorted(glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'),
                          recursive=True))
CONFIGS = [p for p in ALL_PY
           if osp.relpath(p, CONFIG_ROOT).split(osp.sep)[0] != '_base_']
SIZES = dict(atto='atto', t='tiny', s='small', b='base')
WEIGHTS = ('https://github.com/sail-sg/inceptionnext/releases/download/'
           'model/inceptionnext_{}.pth')
# folder -> the algorithm token its configs start with
FOLDERS = {'mask_rcnn': 'mask-rcnn', 'faster_rcnn': 'faster-rcnn',
           'retinanet': 'retinanet',
           'rtmdet': 'rtmdet', 'yolox': 'yolox', 'sem_fpn': 'fpn',
           'upernet': 'upernet', 'yolov8': 'yolov8', 'yolov5': 'yolov5',
           'demo': None,
           # dataset folders: several families each
           'visdrone': None, 'aitod': None}
NAME = re.compile(
    r'^(?P<algo>[a-z][a-z0-9-]*)_inceptionnext-(?P<size>atto|t|s|b)'
    r'(?:_(?P<neck>fpn|pafpn|inception-pafpn)(?P<p2>-p2)?)?'
    r'(?P<small>_small-obj)?(?P<sliced>_sliced)?'
    r'(?:_(?P<aug>ms-crop-)?(?P<sched>(?:\d+xb\d+-)?\d+[ekx]))?'
    r'_(?P<dataset>coco|visdrone|aitod|ade20k-512x512|demo)\.py$')
# families whose finest level is stride 8: a stride-4 level is an addition
P3_FAMILIES = ('retinanet', 'rtmdet', 'yolox', 'yolov8', 'yolov5')


def rel(path):
    return osp.relpath(path, ROOT)


@functools.lru_cache(maxsize=None)
def resolved(path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return Config.fromfile(path, import_custom_modules=False)


def detector(cfg):
    """The detector config: the model, or the one a sliced-evaluation
    wrapper (SlicedInferenceDetector) holds."""
    if cfg.model.type == 'SlicedInferenceDetector':
        return cfg.model.detector
    return cfg.model


def header(path):
    """The comment lines before the first line of code."""
    lines = []
    with open(path) as f:
        for line in f:
            text = line.strip()
            if text and not text.startswith('#'):
                break
            if text:
                lines.append(text)
    return lines


def test_configs_found():
    assert len(CONFIGS) >= 30, CONFIGS
    folders = {osp.relpath(p, CONFIG_ROOT).split(osp.sep)[0]
               for p in CONFIGS}
    assert folders == set(FOLDERS)
    assert BASE in ALL_PY


@pytest.mark.parametrize('path', ALL_PY, ids=rel)
def test_header_at_most_three_lines(path):
    lines = header(path)
    assert 1 <= len(lines) <= 3, (rel(path), lines)


@pytest.mark.parametrize('path', ALL_PY, ids=rel)
def test_backbone_spelled_out_only_in_base(path):
    with open(path) as f:
        text = f.read()
    # type='InceptionNeXt', dict(type=...) or {'type': ...}: the quoted name
    spelled = re.search(r"""['"]InceptionNeXt['"]""", text)
    weights = 'sail-sg/inceptionnext/releases' in text
    if path == BASE:
        assert spelled and weights
    else:
        assert not spelled, rel(path)
        assert not weights, rel(path)
        assert 'checkpoint_file' not in text, rel(path)


def test_base_defines_every_size_once():
    cfg = resolved(BASE)
    # the helpers named `__...` are gone; one variable and the import stay
    assert set(cfg.keys()) == {'custom_imports', 'inceptionnext'}
    assert cfg.custom_imports == dict(imports=['mmincnext'],
                                      allow_failed_imports=False)
    helper = cfg.inceptionnext
    assert set(helper) == set(SIZES.values()) | {'data_preprocessor'}
    sync_bn = dict(type='SyncBN', requires_grad=True)
    drop_path = dict(atto=0.1, tiny=0.2, small=0.3, base=0.4)
    for arch in SIZES.values():
        assert helper[arch].to_dict() == dict(
            type='InceptionNeXt', arch=arch, norm_cfg=sync_bn,
            out_norm_cfg=sync_bn, drop_path_rate=drop_path[arch],
            init_cfg=dict(type='Pretrained',
                          checkpoint=WEIGHTS.format(arch)))
    assert helper.data_preprocessor.to_dict() == dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True)


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_config_resolves_with_the_shared_backbone(path):
    cfg = resolved(path)
    keys = set(cfg.keys())
    assert 'checkpoint_file' not in keys
    assert not any(k.startswith('__') for k in keys), keys
    assert 'inceptionnext' in keys  # through configs/_base_/models
    assert 'mmincnext' in cfg.custom_imports.imports
    assert not cfg.custom_imports.get('allow_failed_imports', False)
    backbone = detector(cfg).backbone
    assert backbone.type == 'InceptionNeXt'
    assert backbone.arch in SIZES.values()
    # what the base does not choose: the stages, set by each family
    assert 'out_indices' in backbone
    init = backbone.get('init_cfg')
    if init is not None:
        assert init.type == 'Pretrained'
        assert init.checkpoint == WEIGHTS.format(backbone.arch), rel(path)
    else:
        assert path.endswith('_demo.py'), 'only the demo trains from scratch'


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_config_name(path):
    folder = osp.relpath(path, CONFIG_ROOT).split(osp.sep)[0]
    name = osp.basename(path)
    m = NAME.match(name)
    assert m, f'{name}: not algorithm_inceptionnext-SIZE_..._dataset.py'
    if FOLDERS[folder] is not None:
        assert m['algo'] == FOLDERS[folder], name
    if folder != 'demo':
        assert m['sched'], f'{name}: no schedule token'
    cfg = resolved(path)
    backbone = detector(cfg).backbone
    assert SIZES[m['size']] == backbone.arch, name
    assert m['dataset'] == folder or folder not in ('visdrone', 'aitod'), \
        name
    # sliced: trained on SlicedDataset windows and evaluated sliced
    sliced = (cfg.model.type == 'SlicedInferenceDetector',
              cfg.train_dataloader.dataset.type == 'SlicedDataset')
    assert sliced == (bool(m['sliced']), ) * 2, name

    small_metric = cfg.get('val_evaluator', {}).get('type') == \
        'SmallObjectCocoMetric'
    assert bool(m['small']) == small_metric, \
        f'{name}: small-obj in the name iff SmallObjectCocoMetric'
    if small_metric:
        assert cfg.test_evaluator.type == 'SmallObjectCocoMetric', name

    stride4 = 0 in tuple(backbone.out_indices)
    if m['algo'] in P3_FAMILIES:
        # the finest level of these families is stride 8; -p2 adds stride 4
        assert bool(m['p2']) == stride4, name
        assert not m['p2'] or m['small'], name
    else:
        assert not m['p2'], f'{name}: this family starts at stride 4'


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_optimizer_is_fused_adamw(path):
    # torch's AdamW without `fused` runs a loop of per-tensor ops on CPU
    # (foreach is CUDA-only by default): about 4x the time of the fused step
    # per iteration; the fused one computes the same update
    optimizer = resolved(path).optim_wrapper.optimizer
    assert optimizer.type == 'AdamW', rel(path)
    assert optimizer.get('fused') is True, rel(path)
