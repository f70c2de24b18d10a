# Faster R-CNN, InceptionNeXt-T + FPN for small objects, 1x on COCO: smaller
# RPN anchors, 1.5x input, more proposals and detections,
# SmallObjectCocoMetric. See README.md.
_base_ = './faster-rcnn_inceptionnext-t_fpn_1x_coco.py'

model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[4, 8])),
    train_cfg=dict(rpn_proposal=dict(nms_pre=3000, max_per_img=2000)),
    test_cfg=dict(
        rpn=dict(nms_pre=2000, max_per_img=2000),
        rcnn=dict(max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1333, 800), (2000, 1200)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(2000, 1200), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
