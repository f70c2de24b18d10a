# RetinaNet, InceptionNeXt-T + FPN (P3-P7), 1x on COCO.
# As mmdet's Swin RetinaNet: the backbone returns only the strides 8/16/32
# that FPN uses (out_indices=(1, 2, 3); an unused output norm would get no
# gradient and break DDP), FPN starts at its first input. AdamW lr 1e-4,
# wd 0.05 with layer-wise lr decay 0.95, warm-up, steps at 8 and 11.
#
# ImageNet weights: the official release file. Offline, pass a local copy:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/inceptionnext_tiny.pth
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='tiny',
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]

# `--amp` (tools/train.py) switches to AmpOptimWrapper on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                       num_layers=6),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999),
                   weight_decay=0.05))

# lr above is for 16 images per iteration; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=16)
