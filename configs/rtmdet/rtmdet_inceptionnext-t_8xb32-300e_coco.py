# RTMDet with an InceptionNeXt-T backbone (P3-P5), 300 epochs on COCO.
# A delta on mmdet's RTMDet-m, whose CSPNeXt backbone has the same output
# widths (192/384/768 at strides 8/16/32), so its CSPNeXtPAFPN neck (out 192,
# 2 CSP blocks) and RTMDetSepBNHead take InceptionNeXt-T unchanged. Kept from
# mmdet: data pipeline (CachedMosaic + CachedMixUp, stage-2 switch for the
# last 20 epochs by PipelineSwitchHook), EMA, 300 epochs at 8x32 images,
# AdamW lr 0.004 with flat-cosine schedule. Changed (see README.md):
#   1. backbone: InceptionNeXt-T, SyncBN inside and on each used output
#      (out_indices (1, 2, 3): every output norm feeds the neck, DDP-safe),
#      drop path 0.2, ImageNet weights;
#   2. RGB input with ImageNet mean/std (CSPNeXt was pretrained on BGR);
#   3. optimizer: layer-wise lr decay 0.8 (mmdet's value for its ConvNeXt
#      RTMDet), no weight decay on norms, biases and layer scales.
#
# ImageNet weights: the official release file. Offline, pass a local copy:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/inceptionnext_tiny.pth
_base_ = 'mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'  # noqa
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='tiny',
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768]))

# `--amp` (tools/train.py) switches to AmpOptimWrapper on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=6),
    optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05))

# lr above is for 8 GPUs x 32 images; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=256)
