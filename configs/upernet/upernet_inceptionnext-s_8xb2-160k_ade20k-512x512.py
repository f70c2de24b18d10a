# UperNet with an InceptionNeXt-S backbone on ADE20K: the recipe of the tiny
# config with the small backbone and drop path 0.3.
_base_ = './upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'  # noqa
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
