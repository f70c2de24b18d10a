# RTMDet for small objects, InceptionNeXt-T: a stride-4 (P2) level in the
# backbone outputs, CSPNeXtPAFPN and head priors, SmallObjectCocoMetric.
# See README.md.
_base_ = './rtmdet_inceptionnext-t_8xb32-300e_coco.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    bbox_head=dict(
        anchor_generator=dict(
            type='MlvlPointGenerator', offset=0, strides=[4, 8, 16, 32])))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
