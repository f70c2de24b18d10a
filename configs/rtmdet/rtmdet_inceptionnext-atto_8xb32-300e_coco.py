# RTMDet with an InceptionNeXt-atto backbone (P3-P5), 300 epochs on COCO.
# A delta on mmdet's RTMDet-tiny (its neck: out 96, 1 CSP block; its lighter
# augmentation: MixUp with p 0.5, scale range 0.5-2.0; stage-2 switch and
# EMA kept). The InceptionNeXt changes are those of
# rtmdet_inceptionnext-t_8xb32-300e_coco.py: SyncBN backbone with output
# norms on the used outputs, drop path 0.1 (as the other atto configs),
# RGB ImageNet normalisation, layer-wise lr decay 0.8 (5 layers for atto).
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'  # noqa
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='atto',
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[80, 160, 320]))

# `--amp` (tools/train.py) switches to AmpOptimWrapper on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=5),
    optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05))

# lr above is for 8 GPUs x 32 images; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=256)
