# RetinaNet, InceptionNeXt-T + FPN (P3-P7), 1x on COCO.
# As mmdet's Swin RetinaNet: the backbone returns only the strides 8/16/32
# that FPN uses (out_indices=(1, 2, 3); an unused output norm would get no
# gradient and break DDP), FPN starts at its first input. mmdet's RetinaNet
# R50 1x bases with the schedule of _base_/schedules/adamw-lrd_1x.py (AdamW
# lr 1e-4, wd 0.05, layer-wise lr decay 0.95, warm-up, steps at 8 and 11).
#
# ImageNet weights: the official release file. Offline, pass a local copy:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/inceptionnext_tiny.pth
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw-lrd_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py'
]
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='tiny',
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))
