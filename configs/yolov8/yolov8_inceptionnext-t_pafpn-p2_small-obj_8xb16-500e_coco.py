# YOLOv8 for small objects, InceptionNeXt-T: a stride-4 (P2) level in the
# backbone outputs, YOLOv8PAFPN, head and point priors; SmallObjectCocoMetric.
# See README.md.
_base_ = './yolov8_inceptionnext-t_8xb16-500e_coco.py'

strides = [4, 8, 16, 32]
num_det_layers = 4
model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(
        in_channels=[96, 192, 384, 768], out_channels=[96, 192, 384, 768]),
    bbox_head=dict(
        head_module=dict(
            in_channels=[96, 192, 384, 768], featmap_strides=strides),
        prior_generator=dict(strides=strides)))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
