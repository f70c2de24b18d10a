"""Training utilities (need neither mmdet nor mmseg): the layer-/stage-wise
lr-decay optimizer constructor, CPU (gloo) distributed support and the
reliability hooks and checks used by tools/train.py and tools/test.py,
bf16 autocast of a network for tools/test.py --precision bf16, and the
malloc settings that keep freed memory for reuse."""
from .cpu_distributed import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import (EpochSeedHook, PreflightCheckHook, add_reliability_hooks,
                    check_backbone_consumer_channels, check_data_cfg,
                    check_dataset_not_empty, check_files_exist)
from .memory import keep_freed_memory
from .precision import autocast_network
from .layer_decay_optimizer_constructor import (
    InceptionNeXtLearningRateDecayOptimizerConstructor,
    get_layer_id_for_inceptionnext, get_stage_id_for_inceptionnext)

__all__ = ['InceptionNeXtLearningRateDecayOptimizerConstructor',
           'get_layer_id_for_inceptionnext', 'get_stage_id_for_inceptionnext',
           'CPUDistributedDataParallel', 'setup_cpu_distributed',
           'EpochSeedHook', 'PreflightCheckHook', 'add_reliability_hooks',
           'check_backbone_consumer_channels', 'check_data_cfg',
           'check_dataset_not_empty', 'check_files_exist', 'autocast_network',
           'keep_freed_memory']
