# RetinaNet for small objects, InceptionNeXt-T, 1x on COCO: FPN P2-P7 (a
# stride-4 level), anchors half the usual size, SmallObjectCocoMetric.
# See README.md.
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
