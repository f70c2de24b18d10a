# Mask R-CNN, InceptionNeXt-B + FPN, multi-scale + crop 3x on COCO, drop path
# 0.7 (ConvNeXt-B's detection value; see README.md).
_base_ = './mask-rcnn_inceptionnext-t_fpn_ms-crop-3x_coco.py'

model = dict(
    backbone=dict(_base_.inceptionnext.base, drop_path_rate=0.7),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
