"""Training utilities (need neither mmdet nor mmseg): the layer-/stage-wise
lr-decay optimizer constructor and CPU (gloo) distributed support."""
from .cpu_distributed import CPUDistributedDataParallel, setup_cpu_distributed
from .layer_decay_optimizer_constructor import (
    InceptionNeXtLearningRateDecayOptimizerConstructor,
    get_layer_id_for_inceptionnext, get_stage_id_for_inceptionnext)

__all__ = ['InceptionNeXtLearningRateDecayOptimizerConstructor',
           'get_layer_id_for_inceptionnext', 'get_stage_id_for_inceptionnext',
           'CPUDistributedDataParallel', 'setup_cpu_distributed']
