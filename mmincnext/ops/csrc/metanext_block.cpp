// metanext_block: a whole MetaNeXt block,
//
//     out = x + fc2(gelu(fc1(affine(token_mixer(x)))))
//
// as fused_mlp (mlp_blocks) whose row blocks first compute their rows of the
// token mixer (mixer_pixels) into a per-thread buffer, where fc1 takes them
// while they are in L2: the mixer's output makes no round trip through
// memory.
#include "cpu_kernels.h"

namespace mmincnext {

torch::Tensor metanext_block(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                             const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                             const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                             const c10::optional<torch::Tensor>& shift, const torch::Tensor& fc1_weight,
                             const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                             const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk) {
  TORCH_CHECK(cpu_supported(), "metanext_block needs a CPU with " MMINCNEXT_ISA_NAME);
  at::NoGradGuard no_grad;
  std::vector<torch::Tensor> keep;
  const Mixer m = make_mixer(x, w_hw, b_hw, w_w, b_w, w_h, b_h, scale, shift, keep, "metanext_block");
  const Mlp mlp = make_mlp(m.C, fc1_weight, fc1_bias, fc2_weight, fc2_bias, hidden_chunk, "metanext_block");
  torch::Tensor out = empty_channels_last(x);
  const float* X = x.data_ptr<float>();
  mlp_blocks(
      mlp, x.size(0) * m.H * m.W,
      [&](int64_t r0, int64_t rows, float* buffer) {
        mixer_pixels(m, X, r0, r0 + rows, buffer, m.C);
        return static_cast<const float*>(buffer);
      },
      m.C, X, out.data_ptr<float>(), hidden_block_bytes);
  return out;
}

}  // namespace mmincnext
