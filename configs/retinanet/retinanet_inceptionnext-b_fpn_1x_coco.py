# RetinaNet, InceptionNeXt-B + FPN (P3-P7), 1x on COCO (see README.md).
_base_ = './retinanet_inceptionnext-t_fpn_1x_coco.py'

model = dict(
    backbone=_base_.inceptionnext.base,
    neck=dict(in_channels=[256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
