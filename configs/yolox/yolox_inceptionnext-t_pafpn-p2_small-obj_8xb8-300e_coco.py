# YOLOX for small objects, InceptionNeXt-T: a stride-4 (P2) level in the
# backbone outputs, YOLOXPAFPN and YOLOXHead, SmallObjectCocoMetric.
# See README.md.
_base_ = './yolox_inceptionnext-t_8xb8-300e_coco.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    bbox_head=dict(strides=(4, 8, 16, 32)))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
