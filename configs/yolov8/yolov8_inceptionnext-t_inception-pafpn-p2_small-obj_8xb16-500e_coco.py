# YOLOv8 for small objects, InceptionNeXt-T in the backbone and the neck: the
# P2 config with YOLOv8InceptionPAFPN (C2f layers of MetaNeXt blocks).
# See README.md.
_base_ = './yolov8_inceptionnext-t_pafpn-p2_small-obj_8xb16-500e_coco.py'

model = dict(neck=dict(type='YOLOv8InceptionPAFPN'))
