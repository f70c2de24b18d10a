# YOLOv8, InceptionNeXt-T (P3-P5), 500 epochs on COCO: a delta on MMYOLO's
# YOLOv8-s (neck / head depth 0.33, widths = the backbone's) with RGB
# ImageNet input and AdamW with layer-wise lr decay 0.8. See README.md.
_base_ = [
    'mmyolo::yolov8/yolov8_s_syncbn_fast_8xb16-500e_coco.py',
    '../_base_/models/inceptionnext.py'
]

# YOLOv8PAFPN's reduce layers are identities, so its outputs keep the
# backbone's widths: in = out = 192/384/768, not scaled (widen_factor 1.0)
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

# MMYOLO's pipelines without the mmdet.Albu step (1 % blur / gray / CLAHE),
# which needs the optional albumentations package
train_pipeline = [
    t for t in _base_.train_pipeline if t['type'] != 'mmdet.Albu'
]
train_pipeline_stage2 = [
    t for t in _base_.train_pipeline_stage2 if t['type'] != 'mmdet.Albu'
]
train_dataloader = dict(
    # MMEngine tags the mmyolo:: base's dicts with `_scope_`; the Runner
    # would pass it to yolov5_collate as an argument
    collate_fn=dict(_delete_=True, type='yolov5_collate'),
    dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    _base_.custom_hooks[0],  # EMAHook
    dict(_base_.custom_hooks[1], switch_pipeline=train_pipeline_stage2)
]

# AdamW with layer-wise lr decay instead of SGD + YOLOv5OptimizerConstructor
# (whose groups miss the backbone's layer scales); `--amp` on GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(
        decay_rate=0.8, decay_type='layer_wise', num_layers=6),
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=10.0))

# YOLOv5ParamSchedulerHook's warm-up treats param group 2 as SGD's bias
# group; MMEngine's schedulers scale every group alike: a 3-epoch warm-up,
# then YOLOv8's linear decay to lr_factor (0.01) at max_epochs
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
