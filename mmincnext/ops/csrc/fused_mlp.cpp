// fused_mlp: out = shortcut + fc2(gelu(fc1(x))).
//
// x and shortcut are row-major [M, C] (the channels-last view of NCHW
// activations), fc1 is [H, C] and fc2 [C, H] (weights of 1x1 convs). oneDNN
// runs fc1 and fc2 as two GEMMs, so the [M, H] hidden activations (four times
// the input) make a round trip through memory, and at C = 96 or 192 its
// kernels are far from their large-GEMM rate. Here each task takes a block of
// rows whose hidden activations fit in L2, computes them with a
// register-blocked kernel that applies bias and GELU before the store, and
// feeds them to fc2 at once, whose kernel adds bias and shortcut before its
// store (mlp_blocks in cpu_kernels.h, the kernels in gemm.cpp). Where the
// weights do not fit in L2 (C = 384: 4.7 MB), the hidden units go in chunks
// of up to 384, fc2 adding each chunk's sums to the block's output, so that
// only the weights come from the last-level cache. The weights are packed
// once per call into panels of 16 * NV columns (make_mlp), and each panel is
// prefetched into L2 while the previous one is in use. The threads take row
// blocks one at a time (parallel_dynamic).
#include "cpu_kernels.h"

namespace mmincnext {
namespace {

// All H hidden units where both weights take at most
// kWholeHiddenWeightBytes, else chunks of at most 384 units (a multiple of
// 64, the widest register tile, where one divides H): each row block then
// reads every weight once from the last-level cache while its inputs,
// outputs and hidden chunk stay in L2.
int64_t auto_hidden_chunk(int64_t C, int64_t H) {
  if (whole_hidden(C, H)) return H;
  for (const int64_t step : {64, 16})
    for (int64_t hc = 384 / step * step; hc >= step; hc -= step)
      if (H % hc == 0) return hc;
  return H;
}

}  // namespace

Mlp make_mlp(int64_t C, const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
             const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias, int64_t hidden_chunk,
             const char* op, bool transposed, const float* scale) {
  for (const auto* t : {&fc1_weight, &fc1_bias, &fc2_weight, &fc2_bias}) check_contiguous(*t, op, "an MLP weight");
  TORCH_CHECK(fc1_weight.dim() == 2, op, ": weight shapes do not match x");
  const int64_t H = fc1_weight.size(transposed ? 1 : 0);
  const std::vector<int64_t> hc{H, C}, ch{C, H};
  TORCH_CHECK(fc1_weight.sizes() == at::IntArrayRef(transposed ? ch : hc) &&
                  fc2_weight.sizes() == at::IntArrayRef(transposed ? hc : ch) &&
                  fc1_bias.numel() == H && fc2_bias.numel() == C,
              op, ": weight shapes do not match x");
  TORCH_CHECK(C % 16 == 0 && H % 16 == 0, op, ": channels must be multiples of 16");
  const int64_t Hc = hidden_chunk == 0 ? auto_hidden_chunk(C, H) : hidden_chunk;
  TORCH_CHECK(Hc > 0 && Hc % 16 == 0 && H % Hc == 0, op, ": hidden_chunk must be 0 or a multiple of 16 that divides ",
              H, ", got ", hidden_chunk);
  Mlp mlp{torch::empty({H * C}, fc1_weight.options()), torch::empty({C * H}, fc2_weight.options()),
          torch::Tensor(), fc1_bias.data_ptr<float>(), fc2_bias.data_ptr<float>(), C, H, Hc,
          16 * panel_vectors(Hc), 16 * panel_vectors(C)};
  if (transposed) {
    pack_panels_of_transposed(fc1_weight.data_ptr<float>(), H, H, C, 1, mlp.nr1, mlp.w1.data_ptr<float>(), scale);
    pack_panels_of_transposed(fc2_weight.data_ptr<float>(), C, C, Hc, H / Hc, mlp.nr2, mlp.w2.data_ptr<float>());
  } else {
    pack_panels(fc1_weight.data_ptr<float>(), C, H, C, 1, mlp.nr1, mlp.w1.data_ptr<float>());
    pack_panels(fc2_weight.data_ptr<float>(), H, C, Hc, H / Hc, mlp.nr2, mlp.w2.data_ptr<float>(), scale);
    if (scale != nullptr) {
      mlp.b2_scaled = fc2_bias * torch::from_blob(const_cast<float*>(scale), {C}, fc2_bias.options());
      mlp.b2 = mlp.b2_scaled.data_ptr<float>();
    }
  }
  return mlp;
}

torch::Tensor fused_mlp(const torch::Tensor& x, const torch::Tensor& shortcut, const torch::Tensor& fc1_weight,
                        const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                        const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk) {
  TORCH_CHECK(cpu_supported(), "fused_mlp needs a CPU with " MMINCNEXT_ISA_NAME);
  check_contiguous(x, "fused_mlp", "x");
  check_contiguous(shortcut, "fused_mlp", "shortcut");
  TORCH_CHECK(x.dim() == 2 && shortcut.sizes() == x.sizes(), "fused_mlp: x and shortcut must be [M, C] alike");
  at::NoGradGuard no_grad;
  const Mlp mlp = make_mlp(x.size(1), fc1_weight, fc1_bias, fc2_weight, fc2_bias, hidden_chunk, "fused_mlp");
  torch::Tensor out = torch::empty_like(shortcut);
  const float* X = x.data_ptr<float>();
  const int64_t C = mlp.C;
  mlp_blocks(
      mlp, x.size(0), [&](int64_t r0, int64_t, float*) { return X + r0 * C; }, 0, shortcut.data_ptr<float>(),
      out.data_ptr<float>(), hidden_block_bytes);
  return out;
}

}  // namespace mmincnext
