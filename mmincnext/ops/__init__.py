"""Inference fast paths of the backbone and mmincnext's compiled CPU kernels.

- :mod:`mmincnext.ops.kernels`: the Python wrappers of the optional compiled
  extension ``mmincnext._ext`` (sources in ``csrc/``).
- :mod:`mmincnext.ops.inference`: :func:`metanext_inference`, the choice
  between the kernels, oneDNN's fused ops and plain PyTorch for a block.
- :mod:`mmincnext.ops.training`: :func:`mixer_training` and
  :func:`mlp_training`, the token mixer and the MLP with autograd
  (training) on the compiled kernels, where :func:`mixer_training_applies`
  and :func:`mlp_training_applies`; :func:`downsample_training`, the
  downsampling conv as a GEMM over its patches, where
  :func:`downsample_training_applies`.
- :mod:`mmincnext.ops.gemm_library`: :func:`gemm_library`, MKL or oneDNN
  for the MLP GEMMs with autograd elsewhere, and :func:`training_mlp_path`,
  the compiled training MLP or those GEMMs, and
  :func:`training_downsample_path`, measured once per machine.
"""
from .inference import (FUSED_MLP_MAX_WEIGHT_BYTES, MLP_BLOCK_BYTES,
                        InferencePlan, inference_plan, metanext_inference,
                        mixer_inference, mlp_inference)
from .gemm_library import (gemm_library, onednn_mlp_applies,
                           training_downsample_path, training_mlp_path)
from .kernels import (cpu_kernels_available, fused_mlp, inception_mixer,
                      metanext_block, mixer_backward, mlp_backward,
                      mlp_forward)
from .training import (downsample_training, downsample_training_applies,
                       mixer_training, mixer_training_applies, mlp_training,
                       mlp_training_applies)

__all__ = [
    'FUSED_MLP_MAX_WEIGHT_BYTES', 'InferencePlan', 'MLP_BLOCK_BYTES',
    'cpu_kernels_available', 'downsample_training',
    'downsample_training_applies', 'fused_mlp', 'gemm_library',
    'inception_mixer', 'inference_plan', 'metanext_block',
    'metanext_inference',
    'mixer_backward', 'mixer_inference', 'mixer_training',
    'mixer_training_applies', 'mlp_backward', 'mlp_forward', 'mlp_inference',
    'mlp_training', 'mlp_training_applies', 'onednn_mlp_applies',
    'training_downsample_path', 'training_mlp_path'
]
