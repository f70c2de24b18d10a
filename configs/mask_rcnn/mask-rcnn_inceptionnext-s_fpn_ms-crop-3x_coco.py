# Mask R-CNN, InceptionNeXt-S + FPN, ms-crop 3x. 12 lr-decay layers and
# drop path 0.6 (the ConvNeXt-S detection values).
_base_ = './mask-rcnn_inceptionnext-t_fpn_ms-crop-3x_coco.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'  # noqa
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
