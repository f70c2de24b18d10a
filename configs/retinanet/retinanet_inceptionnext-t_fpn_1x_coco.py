# RetinaNet, InceptionNeXt-T + FPN (P3-P7), 1x on COCO: mmdet's RetinaNet R50
# with the backbone swapped and the AdamW + layer-wise lr decay schedule of
# _base_/schedules/adamw-lrd_1x.py. See README.md.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw-lrd_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
    '../_base_/models/inceptionnext.py'
]

model = dict(
    # only the strides FPN uses: an unused output norm would break DDP
    backbone=dict(
        _base_.inceptionnext.tiny, _delete_=True, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))
