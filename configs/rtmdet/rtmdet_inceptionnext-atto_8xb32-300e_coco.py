# RTMDet, InceptionNeXt-atto (P3-P5), 300 epochs on COCO: a delta on mmdet's
# RTMDet-tiny with the InceptionNeXt changes of the T config (README.md).
_base_ = [
    'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    '../_base_/models/inceptionnext.py'
]

model = dict(
    data_preprocessor=_base_.inceptionnext.data_preprocessor,
    backbone=dict(
        _base_.inceptionnext.atto, _delete_=True, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[80, 160, 320]))

# `--amp` (tools/train.py) switches to AmpOptimWrapper on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=5),
    optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05, fused=True))

# lr above is for 8 GPUs x 32 images; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=256)
