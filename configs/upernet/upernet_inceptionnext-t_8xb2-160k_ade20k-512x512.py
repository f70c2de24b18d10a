# UperNet, InceptionNeXt-T, ADE20K: the paper's recipe, AdamW lr 6e-5 without
# decay on norms, warm-up then poly decay, 160k iterations at batch 16,
# 512x512 crops, drop path 0.2. See README.md.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_ms-flip-0x.py',  # mmseg's + 0.x ms+flip TTA
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/models/inceptionnext.py',
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _base_.inceptionnext.tiny, _delete_=True, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    # the auxiliary FCN head reads stage index 2 (stride 16)
    auxiliary_head=dict(in_channels=384, num_classes=150))

# "No decay on norms": every norm layer's weight and bias (the backbone's BNs
# and output norms, and the heads' BNs) gets weight decay 0; conv weights,
# conv biases and the layer scales `gamma` keep 0.01. fp32 as in the paper;
# `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01,
        fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
        end=160000),
]

# 8 GPUs x 2 images = batch 16
train_dataloader = dict(batch_size=2)
