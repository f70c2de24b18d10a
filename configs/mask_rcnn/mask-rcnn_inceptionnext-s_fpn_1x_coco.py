# Mask R-CNN, InceptionNeXt-S + FPN, 1x on COCO (see README.md).
_base_ = './mask-rcnn_inceptionnext-t_fpn_1x_coco.py'

model = dict(backbone=_base_.inceptionnext.small)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
