# YOLOv8 for small objects, InceptionNeXt-atto: the T P2 config with atto's
# widths (40/80/160/320). See README.md.
_base_ = './yolov8_inceptionnext-t_pafpn-p2_small-obj_8xb16-500e_coco.py'

model = dict(
    backbone=_base_.inceptionnext.atto,  # arch, drop path, weights
    neck=dict(
        in_channels=[40, 80, 160, 320], out_channels=[40, 80, 160, 320]),
    bbox_head=dict(head_module=dict(in_channels=[40, 80, 160, 320])))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=5))
