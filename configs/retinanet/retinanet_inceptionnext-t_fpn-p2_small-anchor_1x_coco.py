# RetinaNet for small objects, InceptionNeXt-T, 1x on COCO.
# Changes to retinanet_inceptionnext-t_fpn_1x_coco.py (see README.md):
#   1. A stride-4 level: FPN takes all four backbone stages and outputs
#      P2-P7 (6 levels, strides 4 ... 128) instead of P3-P7.
#   2. Anchors half the usual size relative to the stride (octave base
#      scale 2 instead of 4): 8-13 px at P2, 16-25 px at P3, ... 256-406 px
#      at P7, so objects of 8-32 px get anchors of their own size.
#   3. SmallObjectCocoMetric: COCO AP plus very tiny (<8 px), tiny
#      (8-16 px) and small (16-32 px) bins.
_base_ = './retinanet_inceptionnext-t_fpn_1x_coco.py'

model = dict(
    # the stride-4 output now feeds FPN: build it and its output norm
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768], start_level=0, num_outs=6),
    bbox_head=dict(
        anchor_generator=dict(
            octave_base_scale=2, strides=[4, 8, 16, 32, 64, 128])))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
