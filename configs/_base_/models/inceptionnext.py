# InceptionNeXt backbones (`_base_.inceptionnext.{atto,tiny,small,base}`),
# their ImageNet input normalisation and the import that registers them.
# See ../README.md.
custom_imports = dict(imports=['mmincnext'], allow_failed_imports=False)

__weights = 'https://github.com/sail-sg/inceptionnext/releases/download/model/'
# drop path of the 1x detection recipe; configs that differ override it
__drop_path_rate = dict(atto=0.1, tiny=0.2, small=0.3, base=0.4)

inceptionnext = {
    arch: dict(
        type='InceptionNeXt',
        arch=arch,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=drop_path_rate,
        init_cfg=dict(
            type='Pretrained',
            checkpoint=f'{__weights}inceptionnext_{arch}.pth'))
    for arch, drop_path_rate in __drop_path_rate.items()
}
# the input the ImageNet weights were trained on: RGB, ImageNet mean / std
inceptionnext['data_preprocessor'] = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)
