# mmseg's ADE20K dataset with the multi-scale + flip test protocol of mmseg 0.x
# (the InceptionNeXt/ConvNeXt/Swin papers' ms+flip numbers): `tools/test.py
# --tta`. See ../README.md.
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
