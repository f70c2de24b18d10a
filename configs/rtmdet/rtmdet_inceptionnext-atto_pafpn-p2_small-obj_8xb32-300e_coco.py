# RTMDet for small objects, InceptionNeXt-atto: the P2 changes of the T
# config (README.md).
_base_ = './rtmdet_inceptionnext-atto_8xb32-300e_coco.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[40, 80, 160, 320]),
    bbox_head=dict(
        anchor_generator=dict(
            type='MlvlPointGenerator', offset=0, strides=[4, 8, 16, 32])))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
