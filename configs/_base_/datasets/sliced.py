# The pipelines of sliced training (SlicedDataset) and sliced evaluation
# (SlicedInferenceDetector), shared by the *_sliced_* configs: see
# ../README.md and configs/visdrone/README.md.
sliced = dict(
    # the dataset inside SlicedDataset only loads; the wrapper's pipeline
    # starts with CropToSlice
    load_pipeline=[
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True)
    ],
    # val / test: the full image, not resized; the model cuts the windows
    full_image_pipeline=[
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
    ],
    # the loaders' transforms, dropped from a detector's own train pipeline
    loaders=('LoadImageFromFile', 'LoadAnnotations'))
