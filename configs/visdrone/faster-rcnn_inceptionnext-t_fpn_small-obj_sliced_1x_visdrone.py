# Faster R-CNN, InceptionNeXt-T + FPN on VisDrone2019-DET: sliced training
# (640 px windows, SlicedDataset) and sliced evaluation
# (SlicedInferenceDetector) through the stock tools. See README.md.
_base_ = [
    './faster-rcnn_inceptionnext-t_fpn_small-obj_1x_visdrone.py',
    '../_base_/datasets/sliced.py'
]

__train_pipeline = [
    dict(type='CropToSlice'),
    dict(type='Resize', scale=(640, 640), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SlicedDataset',
        dataset=dict(
            _base_.train_dataloader.dataset,
            pipeline=_base_.sliced.load_pipeline),
        slice_size=640,
        overlap_ratio=0.25,
        min_visible=0.25,
        empty_ratio=0.1,
        whole_image=False,
        pipeline=__train_pipeline))
val_dataloader = dict(
    batch_size=1, dataset=dict(pipeline=_base_.sliced.full_image_pipeline))
test_dataloader = dict(
    batch_size=1, dataset=dict(pipeline=_base_.sliced.full_image_pipeline))

window_pipeline = [
    dict(type='Resize', scale=(640, 640), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
model = dict(
    _delete_=True,
    type='SlicedInferenceDetector',
    detector=_base_.model,
    slice_size=640,
    overlap_ratio=0.25,
    window_pipeline=window_pipeline,
    batch_size=8,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=_base_.visdrone.max_per_img)
