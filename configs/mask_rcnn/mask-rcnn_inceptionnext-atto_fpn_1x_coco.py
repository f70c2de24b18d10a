# Mask R-CNN, InceptionNeXt-atto + FPN, 1x. 5 lr-decay layers, drop path 0.1.
_base_ = './mask-rcnn_inceptionnext-t_fpn_1x_coco.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'  # noqa
model = dict(
    backbone=dict(
        arch='atto',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[40, 80, 160, 320]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
