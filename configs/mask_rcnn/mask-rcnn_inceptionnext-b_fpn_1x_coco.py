# Mask R-CNN, InceptionNeXt-B + FPN, 1x. 12 lr-decay layers, drop path 0.4.
_base_ = './mask-rcnn_inceptionnext-t_fpn_1x_coco.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_base.pth'  # noqa
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
