# Faster R-CNN, InceptionNeXt-T + FPN, small-object form,
# whole images of VisDrone2019-DET (the baseline of the _sliced_ config).
# See README.md.
_base_ = [
    '../faster_rcnn/faster-rcnn_inceptionnext-t_fpn_small-obj_1x_coco.py',
    '../_base_/datasets/visdrone.py'
]

model = dict(
    roi_head=dict(bbox_head=dict(num_classes=_base_.visdrone.num_classes)),
    test_cfg=dict(rcnn=dict(max_per_img=_base_.visdrone.max_per_img)))

train_dataloader = dict(dataset=_base_.visdrone.train)
val_dataloader = dict(dataset=_base_.visdrone.val)
test_dataloader = dict(dataset=_base_.visdrone.test)
val_evaluator = _base_.visdrone.evaluator
test_evaluator = _base_.visdrone.test_evaluator
