# mmseg's ADE20K dataset base, with the multi-scale + flip test protocol behind
# the InceptionNeXt/ConvNeXt/Swin papers' ms+flip numbers (mmseg 0.x
# MultiScaleFlipAug): each view is the single-scale test scale (2048, 512) times
# a ratio, so the 1.0 view is exactly the single-scale input. (mmseg 1.x's
# ADE20K base rescales the raw image by the ratio instead.) Used by
# `tools/test.py --tta`.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(2048 * r), int(512 * r)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
