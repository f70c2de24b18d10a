# Faster R-CNN, InceptionNeXt-T + FPN, 1x on COCO (boxes only): mmdet's
# Faster R-CNN R50 with the backbone swapped and the AdamW + layer-wise lr
# decay schedule of _base_/schedules/adamw-lrd_1x.py. See README.md.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw-lrd_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/models/inceptionnext.py'
]

model = dict(
    # every output feeds FPN, so every output norm gets gradients
    backbone=dict(
        _base_.inceptionnext.tiny, _delete_=True, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]))
