# Mask R-CNN, InceptionNeXt-T + FPN, 1x schedule (12 epochs) on COCO.
# mmdet's Mask R-CNN R50 1x bases with the backbone swapped and the
# Swin/ConvNeXt fine-tuning schedule of _base_/schedules/adamw-lrd_1x.py
# (AdamW lr 1e-4 for 16 images per iteration, layer-wise lr decay 0.95).
# SyncBN inside the backbone and on its four outputs (the InceptionNeXt
# authors' dense-prediction recipe).
#
# ImageNet weights: the official release file. Offline, pass a local copy:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/inceptionnext_tiny.pth
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/adamw-lrd_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # every output feeds FPN, so every output norm gets gradients
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]))
