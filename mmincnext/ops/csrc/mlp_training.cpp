// mlp_forward, mlp_backward: the MLP of a MetaNeXt block with autograd,
//
//     out = [shortcut +] fc2(gelu(pre)),  pre = fc1(x),
//
// x, shortcut and out row-major [M, C] (the channels-last view), fc1 [H, C],
// fc2 [C, H] (with the layer scale folded in). oneDNN and MKL run each of
// the six GEMMs of the forward and backward pass alone, with GELU and its
// derivative as passes of their own, so every [M, H] tensor makes round
// trips through memory, and at C = 96 or 192 their kernels run far below
// their large-GEMM rate (docs/speed.md has the measurements).
//
// mlp_forward is fused_mlp's row-block pass (mlp_blocks) that also writes
// `pre` for the backward pass. mlp_backward takes row blocks (of
// kBackwardBlockBytes of hidden gradients per chunk, at most
// kBackwardMaxRows rows) and, per block and, within it, per chunk of hidden
// units, computes
//
//     gelu(pre) and gelu'(pre)           (one pass over the block's `pre`)
//     d_pre = (grad_out @ fc2) * gelu'    (GEMM, the product in its epilogue)
//     grad_fc2 += grad_out^T @ gelu(pre)  (gemm_tn, per-lane sums, while the
//                                         rows of grad_out are in cache)
//     grad_x (+)= d_pre @ fc1             (GEMM)
//     grad_fc1^T += x^T @ d_pre           (gemm_tn)
//     and the bias gradients (column sums)
//
// so that x, grad_out, pre and grad_x travel to and from memory once per
// block and chunk at most: a block's chunks follow each other, and each
// GEMM prefetches the first weight panel of the next one. The chunks are
// small where the weights are large (backward_hidden_chunk), so that each
// chunk's weights and weight-gradient sums stay in L2 over the block. Each
// thread sums the weight gradients of its lane of row blocks, the lanes are
// added at the end.
#include "cpu_kernels.h"
#include "gelu.h"

namespace mmincnext {
namespace {

void check_rows(const torch::Tensor& t, int64_t M, int64_t width, const char* name) {
  check_contiguous(t, "mlp_backward", name);
  TORCH_CHECK(t.dim() == 2 && t.size(0) == M && t.size(1) == width, "mlp_backward: ", name, " must be [", M, ", ",
              width, "], got ", t.sizes());
}

MMINCNEXT_AVX512_BEGIN

// g = gelu(pre), d = gelu'(pre) for m rows of n columns: pre with row stride
// ldp, g and d with row stride n.
void gelu_with_grad_rows(int64_t m, int64_t n, const float* pre, int64_t ldp, float* g, float* d) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; j += 16) {
      __m512 gv, dv;
      gelu_and_grad512(_mm512_loadu_ps(pre + i * ldp + j), gv, dv);
      _mm512_storeu_ps(g + i * n + j, gv);
      _mm512_storeu_ps(d + i * n + j, dv);
    }
}

// sum[j] (+)= the sum over the m rows of a[i, j] (added where `add`), n
// columns (a multiple of 16), row stride lda.
void column_sums(int64_t m, int64_t n, const float* a, int64_t lda, float* sum, bool add) {
  for (int64_t j = 0; j < n; j += 16) {
    __m512 s = add ? _mm512_loadu_ps(sum + j) : _mm512_setzero_ps();
    for (int64_t i = 0; i < m; ++i) s = _mm512_add_ps(s, _mm512_loadu_ps(a + i * lda + j));
    _mm512_storeu_ps(sum + j, s);
  }
}

MMINCNEXT_AVX512_END

// Row blocks of the backward pass of at most kBackwardMaxRows rows: longer
// ones (small chunks at detection sizes) read their rows of x and grad_out
// from beyond L2 once per chunk.
constexpr int64_t kBackwardMaxRows = 512;

// The backward pass's hidden chunks: all H units where both weights take at
// most kWholeHiddenWeightBytes (as in the forward), else 64 (or the widest
// multiple of 16 below it that divides H): the chunk's two weights and the
// lane's two sums for it, 4 C Hc floats, then stay in L2 while the rows of
// a long row block go through them.
int64_t backward_hidden_chunk(int64_t C, int64_t H) {
  if (8 * C * H <= kWholeHiddenWeightBytes) return H;
  for (int64_t hc = 64; hc > 16; hc -= 16)
    if (H % hc == 0) return hc;
  return 16;
}

}  // namespace

MMINCNEXT_AVX512_BEGIN

void gelu_rows_keep(int64_t m, int64_t n, float* x, float* keep, int64_t ldk) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; j += 16) {
      const __m512 v = _mm512_loadu_ps(x + i * n + j);
      _mm512_stream_ps(keep + i * ldk + j, v);
      _mm512_storeu_ps(x + i * n + j, gelu512(v));
    }
  _mm_sfence();
}

MMINCNEXT_AVX512_END

std::vector<torch::Tensor> mlp_forward(const torch::Tensor& x, const c10::optional<torch::Tensor>& shortcut,
                                       const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
                                       const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias) {
  TORCH_CHECK(cpu_supported(), "mlp_forward needs a CPU with AVX-512 (F, DQ) and FMA");
  check_contiguous(x, "mlp_forward", "x");
  TORCH_CHECK(x.dim() == 2, "mlp_forward: x must be [M, C], got ", x.dim(), " dims");
  if (shortcut) {
    check_contiguous(*shortcut, "mlp_forward", "shortcut");
    TORCH_CHECK(shortcut->sizes() == x.sizes(), "mlp_forward: shortcut must be [M, C] like x");
  }
  at::NoGradGuard no_grad;
  const Mlp mlp = make_mlp(x.size(1), fc1_weight, fc1_bias, fc2_weight, fc2_bias, 0, "mlp_forward");
  const int64_t M = x.size(0), C = mlp.C;
  torch::Tensor out = torch::empty_like(x), pre = torch::empty({M, mlp.H}, x.options());
  const float* X = x.data_ptr<float>();
  mlp_blocks(
      mlp, M, [&](int64_t r0, int64_t, float*) { return X + r0 * C; }, 0,
      shortcut ? shortcut->data_ptr<float>() : nullptr, out.data_ptr<float>(), kHiddenBlockBytes,
      pre.data_ptr<float>());
  return {out, pre};
}

std::vector<torch::Tensor> mlp_backward(const torch::Tensor& grad_out, const torch::Tensor& x,
                                        const torch::Tensor& pre, const torch::Tensor& fc1_weight,
                                        const torch::Tensor& fc2_weight, int64_t hidden_block_bytes,
                                        int64_t hidden_chunk) {
  TORCH_CHECK(cpu_supported(), "mlp_backward needs a CPU with AVX-512 (F, DQ) and FMA");
  TORCH_CHECK(hidden_block_bytes > 0, "mlp_backward: hidden_block_bytes must be positive");
  check_contiguous(x, "mlp_backward", "x");
  TORCH_CHECK(x.dim() == 2, "mlp_backward: x must be [M, C], got ", x.dim(), " dims");
  TORCH_CHECK(fc1_weight.dim() == 2, "mlp_backward: fc1_weight must be [H, C], got ", fc1_weight.dim(), " dims");
  const int64_t M = x.size(0), C = x.size(1), H = fc1_weight.size(0);
  check_rows(grad_out, M, C, "grad_out");
  check_rows(pre, M, H, "pre");
  at::NoGradGuard no_grad;
  // d_pre = grad_out @ fc2 and grad_x = d_pre @ fc1 are the forward GEMMs
  // with fc2^T and fc1^T as weights: packed alike from fc2 and fc1, in
  // hidden chunks of their own (biases unused)
  const torch::Tensor zeros_h = torch::zeros({H}, x.options()), zeros_c = torch::zeros({C}, x.options());
  const Mlp mlp = make_mlp(C, fc2_weight, zeros_h, fc1_weight, zeros_c,
                           hidden_chunk == 0 ? backward_hidden_chunk(C, H) : hidden_chunk,
                           "mlp_backward", true);
  const int64_t Hc = mlp.Hc, chunks = H / Hc;
  const float *Wg = mlp.w1.data_ptr<float>(), *Wx = mlp.w2.data_ptr<float>();
  const float *X = x.data_ptr<float>(), *G = grad_out.data_ptr<float>(), *P = pre.data_ptr<float>();
  const auto [rows, blocks] =
      row_blocks(M, std::lcm(tile_rows(Hc), tile_rows(C)), std::min(hidden_block_bytes / (Hc * 4), kBackwardMaxRows));
  // one lane of consecutive row blocks per thread, with its own sums
  // (grad_fc1^T and grad_fc2 as [chunks, C, Hc], the biases'): a lane's
  // blocks, and so the order of every sum, do not depend on which thread
  // takes it
  const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks));
  torch::Tensor grad_x = torch::empty_like(x);
  torch::Tensor sum_w1 = torch::empty({lanes, chunks, C, Hc}, x.options()),
                sum_w2 = torch::empty({lanes, chunks, C, Hc}, x.options()),
                sum_b1 = torch::empty({lanes, H}, x.options()), sum_b2 = torch::empty({lanes, C}, x.options());
  if (M == 0) {
    sum_w1.zero_(), sum_w2.zero_(), sum_b1.zero_(), sum_b2.zero_();
  }
  float *dX = grad_x.data_ptr<float>(), *Sw1 = sum_w1.data_ptr<float>(), *Sw2 = sum_w2.data_ptr<float>(),
        *Sb1 = sum_b1.data_ptr<float>(), *Sb2 = sum_b2.data_ptr<float>();
  struct Scratch {
    std::unique_ptr<float[]> gelu, grad;
  };
  if (M > 0)
    parallel_dynamic(
        lanes,
        [&] { return Scratch{std::unique_ptr<float[]>(new float[rows * Hc]),
                             std::unique_ptr<float[]>(new float[rows * Hc])}; },
        [&](int64_t lane, Scratch& s) {
          float *g = s.gelu.get(), *d = s.grad.get();
          const int64_t b0 = lane * blocks / lanes, b1 = (lane + 1) * blocks / lanes;
          for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t r0 = blk * rows, m = std::min(rows, M - r0);
            const bool add = blk > b0;
            float* dx = dX + r0 * C;
            for (int64_t c = 0; c < chunks; ++c) {  // grad_x adds up over the chunks
              const int64_t j = c * Hc;
              float *sw1 = Sw1 + (lane * chunks + c) * C * Hc, *sw2 = Sw2 + (lane * chunks + c) * C * Hc;
              const float* next_wg = Wg + (c + 1 < chunks ? j + Hc : 0) * C;
              gelu_with_grad_rows(m, Hc, P + r0 * H + j, H, g, d);
              gemm_rows_any<kMul>(m, G + r0 * C, C, Wg + j * C, C, Hc, nullptr, d, Hc, d, Hc, Wx + j * C,
                                  Hc * mlp.nr2);
              gemm_tn(m, G + r0 * C, C, C, g, Hc, Hc, sw2, Hc, add);
              if (c == 0)
                gemm_rows_any<kStore>(m, d, Hc, Wx, Hc, C, nullptr, nullptr, 0, dx, C, next_wg, C * mlp.nr1);
              else
                gemm_rows_any<kAdd>(m, d, Hc, Wx + j * C, Hc, C, nullptr, dx, C, dx, C, next_wg, C * mlp.nr1);
              gemm_tn(m, X + r0 * C, C, C, d, Hc, Hc, sw1, Hc, add);
              column_sums(m, Hc, d, Hc, Sb1 + lane * H + j, add);
              if (c == 0) column_sums(m, C, G + r0 * C, C, Sb2 + lane * C, add);
            }
          }
        });
  // [chunks, C, Hc] -> grad_fc1 [H, C] and grad_fc2 [C, H]
  torch::Tensor grad_w1 = sum_w1.sum(0).permute({0, 2, 1}).reshape({H, C});
  torch::Tensor grad_w2 = sum_w2.sum(0).permute({1, 0, 2}).reshape({C, H});
  return {grad_x, grad_w1, sum_b1.sum(0), grad_w2, sum_b2.sum(0)};
}

}  // namespace mmincnext
