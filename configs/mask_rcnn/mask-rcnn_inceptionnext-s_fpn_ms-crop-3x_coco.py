# Mask R-CNN, InceptionNeXt-S + FPN, multi-scale + crop 3x on COCO, drop path
# 0.6 (ConvNeXt-S's detection value; see README.md).
_base_ = './mask-rcnn_inceptionnext-t_fpn_ms-crop-3x_coco.py'

model = dict(backbone=dict(_base_.inceptionnext.small, drop_path_rate=0.6))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
