# YOLOv5, InceptionNeXt-T (P3-P5), 300 epochs on COCO: a delta on MMYOLO's
# YOLOv5-s v6.1 (neck depth 0.33, widths = the backbone's) with RGB ImageNet
# input and AdamW with layer-wise lr decay 0.8. See README.md.
_base_ = [
    'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py',
    '../_base_/models/inceptionnext.py'
]

# YOLOv5PAFPN and YOLOv5HeadModule scale in_channels by widen_factor; at
# 1.0 they are the backbone's widths 192/384/768
widen_factor = 1.0
model = dict(
    data_preprocessor=_base_.inceptionnext.data_preprocessor,
    # only the strides the neck uses: an unused output norm would break DDP
    backbone=dict(
        _base_.inceptionnext.tiny, _delete_=True, out_indices=(1, 2, 3)),
    neck=dict(
        widen_factor=widen_factor,
        in_channels=[192, 384, 768],
        out_channels=[192, 384, 768]),
    bbox_head=dict(
        head_module=dict(
            widen_factor=widen_factor, in_channels=[192, 384, 768])))

# MMYOLO's pipeline without the mmdet.Albu step (1 % blur / gray / CLAHE),
# which needs the optional albumentations package
train_pipeline = [
    t for t in _base_.train_pipeline if t['type'] != 'mmdet.Albu'
]
train_dataloader = dict(
    # MMEngine tags the mmyolo:: base's dicts with `_scope_`; the Runner
    # would pass it to yolov5_collate as an argument
    collate_fn=dict(_delete_=True, type='yolov5_collate'),
    dataset=dict(pipeline=train_pipeline))

# AdamW with layer-wise lr decay instead of SGD + YOLOv5OptimizerConstructor
# (whose groups miss the backbone's layer scales); `--amp` on GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(
        decay_rate=0.8, decay_type='layer_wise', num_layers=6),
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05, fused=True))

# YOLOv5ParamSchedulerHook's warm-up treats param group 2 as SGD's bias
# group; MMEngine's schedulers scale every group alike: a 3-epoch warm-up,
# then YOLOv5's linear decay to lr_factor (0.01) at max_epochs
default_hooks = dict(
    param_scheduler=dict(_delete_=True, type='ParamSchedulerHook'))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=3,
        convert_to_iter_based=True),
    dict(
        type='LinearLR',
        start_factor=1.0,
        end_factor=_base_.lr_factor,
        by_epoch=True,
        begin=0,
        end=_base_.max_epochs)
]

# lr above is for 8 GPUs x 16 images; enable=True rescales it to the batch
auto_scale_lr = dict(enable=False, base_batch_size=128)
