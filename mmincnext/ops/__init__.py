"""Inference fast paths of the backbone and mmincnext's compiled CPU kernels.

- :mod:`mmincnext.ops.kernels`: the Python wrappers of the optional compiled
  extension ``mmincnext._ext`` (sources in ``csrc/``).
- :mod:`mmincnext.ops.inference`: :func:`metanext_inference`, the choice
  between the kernels, oneDNN's fused ops and plain PyTorch for a block.
"""
from .inference import (FUSED_MLP_MAX_WEIGHT_BYTES, MLP_BLOCK_BYTES,
                        InferencePlan, inference_plan, metanext_inference,
                        mixer_inference, mlp_inference)
from .kernels import (cpu_kernels_available, fused_mlp, inception_mixer,
                      metanext_block)

__all__ = [
    'FUSED_MLP_MAX_WEIGHT_BYTES', 'InferencePlan', 'MLP_BLOCK_BYTES',
    'cpu_kernels_available', 'fused_mlp', 'inception_mixer',
    'inference_plan', 'metanext_block', 'metanext_inference',
    'mixer_inference', 'mlp_inference'
]
