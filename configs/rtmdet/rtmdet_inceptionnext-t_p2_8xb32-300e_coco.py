# RTMDet for small objects: InceptionNeXt-T with a stride-4 (P2) level.
# Changes to rtmdet_inceptionnext-t_8xb32-300e_coco.py (see README.md):
#   1. the backbone returns all four stages (strides 4/8/16/32, each with
#      its output norm, all used by the neck);
#   2. CSPNeXtPAFPN takes four inputs and outputs P2-P5 (its top-down and
#      bottom-up paths simply get one more step);
#   3. the head predicts on four levels: point priors at strides 4-32
#      (RTMDetSepBNHead builds one conv tower per prior stride);
#   4. SmallObjectCocoMetric: COCO AP plus very tiny (<8 px), tiny
#      (8-16 px) and small (16-32 px) bins.
_base_ = './rtmdet_inceptionnext-t_8xb32-300e_coco.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    bbox_head=dict(
        anchor_generator=dict(
            type='MlvlPointGenerator', offset=0, strides=[4, 8, 16, 32])))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
