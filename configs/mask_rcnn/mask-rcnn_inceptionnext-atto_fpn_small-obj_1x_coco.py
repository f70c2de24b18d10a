# The small-object Mask R-CNN with InceptionNeXt-atto (2.9 M backbone
# parameters): cheap enough for CPU experiments and demos. 6 blocks in
# stage 3 -> 5 lr-decay layers.
_base_ = './mask-rcnn_inceptionnext-t_fpn_small-obj_1x_coco.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'  # noqa
model = dict(
    backbone=dict(
        arch='atto',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[40, 80, 160, 320]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
