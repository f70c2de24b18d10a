# YOLOv5 for small objects, InceptionNeXt-T: a stride-4 (P2) level with its
# own anchors in the backbone outputs, YOLOv5PAFPN and head, losses for four
# levels, SmallObjectCocoMetric. See README.md.
_base_ = './yolov5_inceptionnext-t_8xb16-300e_coco.py'

anchors = [
    [(5, 6), (8, 14), (15, 11)],  # P2/4: the P3 anchors halved
    *_base_.anchors  # P3/8, P4/16, P5/32: MMYOLO's COCO anchors
]
strides = [4, 8, 16, 32]
num_det_layers = 4
# YOLOv5's objectness balance for four levels (equal weight per position)
obj_level_weights = [4.0, 1.0, 0.25, 0.06]
model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(
        in_channels=[96, 192, 384, 768], out_channels=[96, 192, 384, 768]),
    bbox_head=dict(
        head_module=dict(
            in_channels=[96, 192, 384, 768], featmap_strides=strides),
        prior_generator=dict(base_sizes=anchors, strides=strides),
        # MMYOLO's scaling of the loss weights by the number of levels
        loss_cls=dict(loss_weight=_base_.loss_cls_weight *
                      (_base_.num_classes / 80 * 3 / num_det_layers)),
        loss_bbox=dict(loss_weight=_base_.loss_bbox_weight *
                       (3 / num_det_layers)),
        loss_obj=dict(loss_weight=_base_.loss_obj_weight *
                      ((_base_.img_scale[0] / 640)**2 * 3 / num_det_layers)),
        obj_level_weights=obj_level_weights))

val_evaluator = dict(type='SmallObjectCocoMetric')
test_evaluator = val_evaluator
