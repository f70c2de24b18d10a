# The same detector, iterations and batch as
# faster-rcnn_inceptionnext-atto_fpn_small-obj_demo.py, trained on 512 px
# windows (SlicedDataset) and evaluated sliced. See README.md.
_base_ = [
    './faster-rcnn_inceptionnext-atto_fpn_small-obj_demo.py',
    '../_base_/datasets/sliced.py'
]
slice_size = 512

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SlicedDataset',
        dataset=dict(
            _base_.train_dataloader.dataset,
            pipeline=_base_.sliced.load_pipeline),
        slice_size=slice_size,
        overlap_ratio=0.25,
        min_visible=0.25,
        empty_ratio=0.1,
        pipeline=[
            dict(type='CropToSlice'),
            dict(type='RandomFlip', prob=[0.25, 0.25],
                 direction=['horizontal', 'vertical']),
            dict(type='PackDetInputs')
        ]))
val_dataloader = dict(
    dataset=dict(pipeline=_base_.sliced.full_image_pipeline))
test_dataloader = val_dataloader

model = dict(
    _delete_=True,
    type='SlicedInferenceDetector',
    detector=_base_.model,
    slice_size=slice_size,
    overlap_ratio=0.25,
    # the windows at their native size, as in training
    window_pipeline=[
        dict(type='Resize', scale=(slice_size, slice_size), keep_ratio=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ],
    batch_size=4,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=500)
