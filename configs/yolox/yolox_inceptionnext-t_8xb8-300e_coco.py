# YOLOX, InceptionNeXt-T (P3-P5), 300 epochs on COCO: a delta on mmdet's
# YOLOX-m (same output widths 192/384/768) with RGB ImageNet input and AdamW
# with layer-wise lr decay 0.8 instead of SGD. See README.md.
_base_ = [
    'mmdet::yolox/yolox_m_8xb8-300e_coco.py',
    '../_base_/models/inceptionnext.py'
]

model = dict(
    data_preprocessor=_base_.inceptionnext.data_preprocessor,
    # only the strides the neck uses: an unused output norm would break DDP
    backbone=dict(
        _base_.inceptionnext.tiny, _delete_=True, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[192, 384, 768]))

# `--amp` (tools/train.py) switches to AmpOptimWrapper on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=6),
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05, fused=True))

# lr above is for 8 GPUs x 8 images; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=64)
