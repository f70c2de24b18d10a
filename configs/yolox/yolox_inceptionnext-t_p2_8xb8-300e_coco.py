# YOLOX for small objects: InceptionNeXt-T with a stride-4 (P2) level.
# Changes to yolox_inceptionnext-t_8xb8-300e_coco.py (see README.md):
#   1. the backbone returns all four stages (strides 4/8/16/32, each with
#      its output norm, all used by the neck);
#   2. YOLOXPAFPN takes four inputs and outputs P2-P5;
#   3. YOLOXHead predicts on four levels (strides 4-32: one conv tower and
#      point-prior level per stride; SimOTA assigns over all of them);
#   4. SmallObjectCocoMetric: COCO AP plus very tiny (<8 px), tiny
#      (8-16 px) and small (16-32 px) bins.
_base_ = './yolox_inceptionnext-t_8xb8-300e_coco.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    bbox_head=dict(strides=(4, 8, 16, 32)))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
