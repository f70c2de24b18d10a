# Small-object Mask R-CNN on InceptionNeXt-atto, trained from scratch on the
# embedded synthetic data (tools/dataset_converters/make_small_object_data.py)
# in a few minutes on 2 CPU cores. Entry point: `make demo` (tools/demo.py).
_base_ = '../mask_rcnn/mask-rcnn_inceptionnext-atto_fpn_small-obj_1x_coco.py'

data_root = 'data/demo/det/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(
    classes=classes, palette=[(220, 20, 60), (0, 170, 0), (30, 90, 255)])

# ---------------------------------------------------------------- model
# Widths cut for a CPU: FPN / heads at 64 channels instead of 256.
neck_channels = 64
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        norm_cfg=dict(type='BN'),
        out_norm_cfg=dict(type='BN'),
        drop_path_rate=0.0,
        init_cfg=None),  # from scratch: no weights can be downloaded
    neck=dict(out_channels=neck_channels, norm_cfg=dict(type='BN')),
    # all objects here are < 48 px: anchors 8-16 px at P2 (the COCO
    # small-object config's 16-32 px would leave the tiniest without one)
    rpn_head=dict(
        in_channels=neck_channels, feat_channels=neck_channels,
        anchor_generator=dict(scales=[2, 4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(
            in_channels=neck_channels, fc_out_channels=256,
            num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(
            num_convs=2,
            in_channels=neck_channels, conv_out_channels=neck_channels,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(max_per_img=100)))

# ---------------------------------------------------------------- data
# Native resolution (any image size; no up-scaling of the small objects).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25],
         direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
# the images are small: load them in the main process (2 cores in all)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='SmallObjectCocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule
# 120 iterations x 4 images = 1.2 epochs of the 400 training images
# (`tools/demo.py --iters 200` rescales the schedule: higher mAP, ~1.7x time)
max_iters = 120
val_interval = 40
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=val_interval)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999),
                   weight_decay=0.05, fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=15),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=15,
         end=max_iters, eta_min_ratio=0.05, T_max=max_iters - 15)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=20)
auto_scale_lr = dict(enable=False, base_batch_size=4)
