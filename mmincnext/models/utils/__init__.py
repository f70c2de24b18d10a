from .ckpt_convert import (extract_state_dict, guess_arch,
                           load_official_state_dict, stage_depths)
from .fuse_bn import (fold_bn_before, fold_bn_into_next_conv,
                      fold_bn_into_prev_conv)

__all__ = [
    'extract_state_dict', 'fold_bn_before', 'fold_bn_into_next_conv',
    'fold_bn_into_prev_conv', 'guess_arch', 'load_official_state_dict',
    'stage_depths'
]
