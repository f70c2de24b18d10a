"""The checks of mmincnext.engine.hooks that tools/train.py and tools/test.py
run before a job: channels of the consumers of the backbone, datasets filtered
to nothing, missing annotation files and image folders."""
import json
import os.path as osp

import pytest

from mmincnext.engine import (check_backbone_consumer_channels,
                              check_data_cfg, check_dataset_not_empty,
                              check_files_exist)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
BASE_CFG = osp.join(ROOT, 'configs', 'mask_rcnn',
                    'mask-rcnn_inceptionnext-atto_fpn_small-obj_1x_coco.py')


def _build_detector(neck_in_channels):
    import mmincnext  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    cfg = Config.fromfile(BASE_CFG)
    cfg.model.neck.in_channels = neck_in_channels
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def test_neck_channels_must_match_backbone():
    ok = _build_detector([40, 80, 160, 320])
    check_backbone_consumer_channels(ok)
    bad = _build_detector([96, 192, 384, 768])  # tiny's channels on atto
    with pytest.raises(ValueError, match=r'neck \(FPN\) in_channels=\[96, '
                       r'192, 384, 768\] do not match the backbone outputs.*'
                       r'\[40, 80, 160, 320\]'):
        check_backbone_consumer_channels(bad)
    # through the sliced-evaluation wrapper too
    from mmincnext.models import SlicedInferenceDetector
    with pytest.raises(ValueError, match=r'neck \(FPN\) in_channels'):
        check_backbone_consumer_channels(
            SlicedInferenceDetector(bad, slice_size=64, overlap_ratio=0.25))
    check_backbone_consumer_channels(
        SlicedInferenceDetector(ok, slice_size=64, overlap_ratio=0.25))


def test_segmentor_head_channels_must_match():
    import mmincnext  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    head = dict(type='FCNHead', in_channels=768, in_index=3, channels=16,
                num_convs=1, num_classes=3, norm_cfg=dict(type='BN'))
    seg = dict(type='EncoderDecoder',
               backbone=dict(type='InceptionNeXt', arch='atto'),
               decode_head=head)
    with DefaultScope.overwrite_default_scope('mmseg'):
        bad = MODELS.build(seg)
        head['in_channels'] = 320
        good = MODELS.build(seg)
    with pytest.raises(ValueError, match=r'decode_head \(FCNHead\) '
                       r'in_channels=\[768\]'):
        check_backbone_consumer_channels(bad)
    check_backbone_consumer_channels(good)


def test_dataset_filtered_to_nothing_is_refused():
    class Filtered(list):
        ann_file = 'ann.json'
        data_root = 'data/x'
        filter_cfg = dict(filter_empty_gt=True)

    with pytest.raises(ValueError, match=r"train dataset is empty: Filtered"
                       r"\(ann_file='ann.json'.*filter_empty_gt=True drops"):
        check_dataset_not_empty(Filtered(), 'train')
    check_dataset_not_empty(Filtered([1]), 'train')


def test_data_cfg_checks(tmp_path):
    from mmengine.config import ConfigDict
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(images=[], annotations=[])))

    def cfg(**dataset):
        return ConfigDict(train_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=2,
            dataset=dict(type='CocoDataset', **dataset))))

    with pytest.raises(ValueError, match=r"annotation file .*ann.json' "
                       'lists no images'):
        check_data_cfg(cfg(data_root=str(tmp_path), ann_file='ann.json'))
    with pytest.raises(FileNotFoundError, match="data_root '/no/where'"):
        check_data_cfg(cfg(data_root='/no/where', ann_file='ann.json'))
    with pytest.raises(FileNotFoundError, match=r"annotation file .*x.json"):
        check_data_cfg(cfg(data_root=str(tmp_path), ann_file='x.json'))
    ann.write_text(json.dumps(dict(images=[dict(id=1)], annotations=[])))
    check_data_cfg(cfg(data_root=str(tmp_path), ann_file='ann.json'))
    with pytest.raises(FileNotFoundError, match='image folder'):
        check_data_cfg(ConfigDict(val_dataloader=dict(dataset=dict(
            type='ADE20KDataset', data_root=str(tmp_path),
            data_prefix=dict(img_path='images/validation')))))


def _coco_dataset(root, names, missing=()):
    """A CocoDataset over images ``names`` in ``root/img``; the files in
    ``missing`` are listed but not written."""
    from mmdet.datasets import CocoDataset
    (root / 'img').mkdir(parents=True, exist_ok=True)
    images = []
    for i, name in enumerate(names):
        images.append(dict(id=i + 1, file_name=name, width=8, height=8))
        if name not in missing:
            (root / 'img' / name).write_bytes(b'')
    ann = root / 'ann.json'
    ann.write_text(json.dumps(dict(
        images=images, annotations=[],
        categories=[dict(id=1, name='thing')])))
    return CocoDataset(
        data_root=str(root), ann_file='ann.json',
        data_prefix=dict(img='img/'), metainfo=dict(classes=('thing', )),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[],
        lazy_init=True)


def test_check_files_exist_names_the_missing_files(tmp_path):
    """Every missing file is counted, the first ten named; wrappers are
    looked through; a lazily initialised dataset is initialised."""
    from mmengine.dataset import ConcatDataset, RepeatDataset
    names = [f'{i:03d}.jpg' for i in range(30)]
    complete = _coco_dataset(tmp_path / 'a', names)
    check_files_exist(complete, 'train')
    missing = names[5:17]
    broken = _coco_dataset(tmp_path / 'b', names, missing=missing)
    with pytest.raises(FileNotFoundError, match='12 of its 30 files'):
        check_files_exist(RepeatDataset(broken, times=3), 'train')
    with pytest.raises(FileNotFoundError) as e:
        check_files_exist(ConcatDataset([complete, broken]), 'val')
    message = str(e.value)
    assert 'the val dataset' in message
    assert '12 of its 60 files that do not exist' in message
    assert all(name in message for name in missing[:10])
    assert missing[10] not in message and 'and 2 more' in message
