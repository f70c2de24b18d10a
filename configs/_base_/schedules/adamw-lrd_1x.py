# 1x (12 epochs) with the Swin/ConvNeXt fine-tuning recipe for InceptionNeXt:
# AdamW lr 1e-4, layer-wise lr decay 0.95 (num_layers=6 fits tiny), warm-up,
# steps at 8 and 11, on mmdet's schedule_1x. See ../README.md.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

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
                   weight_decay=0.05, fused=True))

# lr above is for 16 images per iteration; `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=16)
