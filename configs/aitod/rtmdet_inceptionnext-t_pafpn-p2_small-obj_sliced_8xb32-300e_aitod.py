# RTMDet, InceptionNeXt-T, P2-P5 on AI-TOD v2: sliced training
# (512 px windows, SlicedDataset) and sliced evaluation
# (SlicedInferenceDetector) through the stock tools. See README.md.
_base_ = [
    './rtmdet_inceptionnext-t_pafpn-p2_small-obj_8xb32-300e_aitod.py',
    '../_base_/datasets/sliced.py'
]

# RTMDet's own augmentation (mosaic, random resize and crop) on the windows,
# in both stages of its schedule
__stage1 = [dict(type='CropToSlice')] + [
    t for t in _base_.train_dataloader.dataset.pipeline
    if t['type'] not in _base_.sliced.loaders
]
__stage2 = [dict(type='CropToSlice')] + [
    t for t in _base_.custom_hooks[1].switch_pipeline
    if t['type'] not in _base_.sliced.loaders
]
custom_hooks = [
    _base_.custom_hooks[0],
    dict(_base_.custom_hooks[1], switch_pipeline=__stage2)
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SlicedDataset',
        dataset=dict(
            _base_.train_dataloader.dataset,
            pipeline=_base_.sliced.load_pipeline),
        slice_size=512,
        overlap_ratio=0.25,
        min_visible=0.25,
        empty_ratio=0.1,
        whole_image=False,
        pipeline=__stage1))
val_dataloader = dict(
    batch_size=1, dataset=dict(pipeline=_base_.sliced.full_image_pipeline))
test_dataloader = dict(
    batch_size=1, dataset=dict(pipeline=_base_.sliced.full_image_pipeline))

window_pipeline = [
    dict(type='Resize', scale=(800, 800), keep_ratio=True),
    dict(type='Pad', size=(800, 800),
         pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
model = dict(
    _delete_=True,
    type='SlicedInferenceDetector',
    detector=_base_.model,
    slice_size=512,
    overlap_ratio=0.25,
    window_pipeline=window_pipeline,
    batch_size=8,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=_base_.aitod.max_per_img)
