# RTMDet, InceptionNeXt-T, P2-P5, small-object form,
# whole images of VisDrone2019-DET (the baseline of the _sliced_ config).
# See README.md.
_base_ = [
    '../rtmdet/rtmdet_inceptionnext-t_pafpn-p2_small-obj_8xb32-300e_coco.py',
    '../_base_/datasets/visdrone.py'
]

model = dict(
    bbox_head=dict(num_classes=_base_.visdrone.num_classes),
    test_cfg=dict(max_per_img=_base_.visdrone.max_per_img))

train_dataloader = dict(dataset=_base_.visdrone.train)
val_dataloader = dict(dataset=_base_.visdrone.val)
test_dataloader = dict(dataset=_base_.visdrone.test)
val_evaluator = _base_.visdrone.evaluator
test_evaluator = _base_.visdrone.test_evaluator
