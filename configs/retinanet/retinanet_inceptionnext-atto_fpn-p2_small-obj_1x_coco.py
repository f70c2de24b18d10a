# The small-object RetinaNet (P2-P7, small anchors) with InceptionNeXt-atto
# (2.9 M backbone parameters), cheap enough for CPU experiments (README.md).
_base_ = './retinanet_inceptionnext-t_fpn-p2_small-obj_1x_coco.py'

model = dict(
    backbone=_base_.inceptionnext.atto,
    neck=dict(in_channels=[40, 80, 160, 320]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
