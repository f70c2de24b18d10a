# Semantic FPN with an InceptionNeXt-T backbone on ADE20K, the paper's recipe
# (PoolFormer's Semantic FPN setting): ImageNet-1K weights, BN -> SyncBN in the
# backbone plus one SyncBN on every stage output, AdamW lr 2e-4 / wd 1e-4,
# poly decay (power 0.9) to 0, 40k iterations at batch 32 (8 GPUs x 4 images;
# the same 80k x 16 images as mmseg's 4 x 4 x 80k FPN schedule), 512x512
# crops, drop path 0.1.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k_ms-flip-0x.py',  # mmseg's + 0.x ms+flip TTA
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'  # noqa
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='InceptionNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        out_norm_cfg=norm_cfg,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))

# Plain AdamW (PoolFormer's Semantic FPN recipe has no parameter-wise
# settings); fp32, `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0,
        end=40000)
]

# 8 GPUs x 4 images = batch 32
train_dataloader = dict(batch_size=4)
