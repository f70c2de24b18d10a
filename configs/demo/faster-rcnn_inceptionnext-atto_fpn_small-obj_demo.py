# Faster R-CNN atto for small objects on the generated large images in YOLO
# format (tools/demo_sliced.py converts them), whole images, sized for a CPU;
# the baseline of the _sliced_ demo config. See README.md.
_base_ = [
    '../faster_rcnn/faster-rcnn_inceptionnext-atto_fpn_small-obj_1x_coco.py'
]

data_root = 'data/demo_sliced/yolo/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 20, 60), (0, 170, 0), (30, 90, 255)])
input_size = 800  # whole images: longest side, padded to a square

neck_channels = 64
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        norm_cfg=dict(type='BN'),
        out_norm_cfg=dict(type='BN'),
        drop_path_rate=0.0,
        init_cfg=None),  # from scratch: no weights can be downloaded
    neck=dict(out_channels=neck_channels, norm_cfg=dict(type='BN')),
    # objects of 6-24 px: anchors of 8 and 16 px at P2
    rpn_head=dict(
        in_channels=neck_channels, feat_channels=neck_channels,
        anchor_generator=dict(scales=[2, 4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(
            in_channels=neck_channels, fc_out_channels=256,
            num_classes=len(metainfo['classes']))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000),
        rcnn=dict(sampler=dict(num=256))),
    test_cfg=dict(
        rpn=dict(nms_pre=2000, max_per_img=1000),
        rcnn=dict(max_per_img=500)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25],
         direction=['horizontal', 'vertical']),
    # one input shape: CPU kernels are set up once, not per image size
    dict(type='Pad', size=(input_size, input_size)),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=True),
    dict(type='Pad', size=(input_size, input_size)),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='SmallObjectCocoMetric',
    ann_file=data_root + 'annotations/val.json',
    metric='bbox',
    proposal_nums=(100, 300, 500),
    fine_max_dets=500)
test_evaluator = val_evaluator

max_iters = 120
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999),
                   weight_decay=0.05, fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20,
         end=max_iters, eta_min_ratio=0.05, T_max=max_iters - 20)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=20)
auto_scale_lr = dict(enable=False, base_batch_size=2)
