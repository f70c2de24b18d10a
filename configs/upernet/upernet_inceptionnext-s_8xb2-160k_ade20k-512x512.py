# UperNet, InceptionNeXt-S, ADE20K: the recipe of the T config with drop path
# 0.3 (see README.md).
_base_ = './upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=_base_.inceptionnext.small)
