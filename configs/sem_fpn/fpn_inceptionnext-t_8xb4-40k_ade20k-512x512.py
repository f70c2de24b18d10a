# Semantic FPN, InceptionNeXt-T, ADE20K: the paper's recipe (PoolFormer's
# Semantic FPN setting), AdamW lr 2e-4, poly decay, 40k iterations at batch
# 32, 512x512 crops, drop path 0.1. See README.md.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k_ms-flip-0x.py',  # mmseg's + 0.x ms+flip TTA
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    '../_base_/models/inceptionnext.py',
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _base_.inceptionnext.tiny,
        _delete_=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1),
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))

# Plain AdamW (PoolFormer's Semantic FPN recipe has no parameter-wise
# settings); fp32, `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4, fused=True))
param_scheduler = [
    dict(
        type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0,
        end=40000)
]

# 8 GPUs x 4 images = batch 32
train_dataloader = dict(batch_size=4)
