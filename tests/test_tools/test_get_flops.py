"""tools/analysis_tools/get_flops.py: MMEngine's counter on synthetic input."""
import importlib.util
import os.path as osp

import pytest
from mmengine.config import Config

import mmdet  # noqa: F401  (a test requirement: fails loudly if missing)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'get_flops', osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backbone_flops_match_paper():
    """InceptionNeXt-T at 224x224: the paper's 4.2 G MACs (its head adds
    under 0.01 G) and 23,974,296 backbone parameters."""
    tool = load_tool()
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_inceptionnext-t_fpn_1x_coco.py'))
    cfg.model.backbone.out_norm_cfg = None  # the classification network
    res = tool.complexity(cfg, [224], backbone_only=True)
    assert res['params'] == 23_974_296
    assert res['flops'] / 1e9 == pytest.approx(4.2, abs=0.05)


def test_detector_flops_synthetic_input():
    tool = load_tool()
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs', 'retinanet',
        'retinanet_inceptionnext-atto_fpn-p2_small-obj_1x_coco.py'))
    res = tool.complexity(cfg, [128, 160])
    backbone = tool.complexity(cfg, [128, 160], backbone_only=True)
    assert res['scope'] == 'mmdet' and res['shape'] == (128, 160)
    assert res['flops'] > backbone['flops'] > 0
    assert res['params'] > backbone['params'] > 2_885_440
