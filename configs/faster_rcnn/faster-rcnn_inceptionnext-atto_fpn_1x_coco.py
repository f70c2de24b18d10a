# Faster R-CNN, InceptionNeXt-atto + FPN, 1x on COCO (see README.md).
_base_ = './faster-rcnn_inceptionnext-t_fpn_1x_coco.py'

model = dict(
    backbone=_base_.inceptionnext.atto,
    neck=dict(in_channels=[40, 80, 160, 320]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
