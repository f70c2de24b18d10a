# Semantic FPN, InceptionNeXt-S, ADE20K: the recipe of the T config with drop
# path 0.2 (see README.md).
_base_ = './fpn_inceptionnext-t_8xb4-40k_ade20k-512x512.py'

model = dict(backbone=dict(_base_.inceptionnext.small, drop_path_rate=0.2))
