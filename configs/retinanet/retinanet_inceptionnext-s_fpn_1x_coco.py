# RetinaNet, InceptionNeXt-S + FPN, 1x. 12 lr-decay layers, drop path 0.3.
_base_ = './retinanet_inceptionnext-t_fpn_1x_coco.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'  # noqa
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
