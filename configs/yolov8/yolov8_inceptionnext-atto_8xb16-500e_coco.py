# YOLOv8, InceptionNeXt-atto (P3-P5): the T config with atto's widths
# (80/160/320) in the neck and head. See README.md.
_base_ = './yolov8_inceptionnext-t_8xb16-500e_coco.py'

model = dict(
    backbone=_base_.inceptionnext.atto,  # arch, drop path, weights
    neck=dict(in_channels=[80, 160, 320], out_channels=[80, 160, 320]),
    bbox_head=dict(head_module=dict(in_channels=[80, 160, 320])))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
