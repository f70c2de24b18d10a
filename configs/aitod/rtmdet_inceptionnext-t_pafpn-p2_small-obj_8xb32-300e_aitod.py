# RTMDet, InceptionNeXt-T, P2-P5, small-object form,
# whole images of AI-TOD v2 (the baseline of the _sliced_ config).
# See README.md.
_base_ = [
    '../rtmdet/rtmdet_inceptionnext-t_pafpn-p2_small-obj_8xb32-300e_coco.py',
    '../_base_/datasets/aitod.py'
]

model = dict(
    bbox_head=dict(num_classes=_base_.aitod.num_classes),
    test_cfg=dict(max_per_img=_base_.aitod.max_per_img))

train_dataloader = dict(dataset=_base_.aitod.train)
val_dataloader = dict(dataset=_base_.aitod.val)
test_dataloader = dict(dataset=_base_.aitod.test)
val_evaluator = _base_.aitod.evaluator
test_evaluator = _base_.aitod.test_evaluator
