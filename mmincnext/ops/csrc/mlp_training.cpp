// mlp_forward, mlp_backward: the MLP of a MetaNeXt block with autograd,
//
//     out = [shortcut +] fc2(gelu(pre)),  pre = fc1(x),
//
// x, shortcut and out row-major [M, C] (the channels-last view), fc1 [H, C],
// fc2 [C, H], and the layer scale s [C] on fc2's outputs where given (fc2
// and its bias times s, multiplied in as the weights are packed; the
// backward pass turns fc2's gradients into those of fc2, its bias and s in
// one pass over them: fold_scale_gradients). oneDNN and MKL run each of
// the six GEMMs of the forward and backward pass alone, with GELU and its
// derivative as passes of their own, so every [M, H] tensor makes round
// trips through memory, and at C = 96 or 192 their kernels run far below
// their large-GEMM rate (docs/speed.md has the measurements).
//
// mlp_forward is fused_mlp's row-block pass (mlp_blocks) that also writes
// `pre` for the backward pass (from fc1's epilogue, beside GELU).
// mlp_backward takes row blocks (of kBackwardBlockBytes of hidden gradients
// per chunk, at most kBackwardMaxRows rows) and, per block and, within it,
// per chunk of hidden units, computes
//
//     d_pre = (grad_out @ fc2) * gelu'(pre), and gelu(pre)
//                                        (GEMM; its epilogue loads `pre`,
//                                         prefetched during the tile's loop,
//                                         and evaluates both: no pass of
//                                         their own over the block)
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
// chunk's weights and weight-gradient sums stay in L2 over the block. The
// threads split the work in lanes of row blocks, each summing all the
// weight gradients of its rows (added up at the end), or, where the rows
// are fewer than the hidden units or the weights are chunked, in lanes of
// hidden chunks, each summing its share of grad_x (backward_row_lanes,
// backward_hidden_lanes).
#include "cpu_kernels.h"
#include "gelu.h"

namespace mmincnext {
namespace {

void check_rows(const torch::Tensor& t, int64_t M, int64_t width, const char* name) {
  check_contiguous(t, "mlp_backward", name);
  TORCH_CHECK(t.dim() == 2 && t.size(0) == M && t.size(1) == width, "mlp_backward: ", name, " must be [", M, ", ",
              width, "], got ", t.sizes());
}

// The layer scale's floats (C of them), or null where none is given.
const float* scale_of(const c10::optional<torch::Tensor>& scale, int64_t C, const char* op) {
  if (!scale) return nullptr;
  check_contiguous(*scale, op, "scale");
  TORCH_CHECK(scale->numel() == C, op, ": scale must have ", C, " values (one per channel), got ", scale->numel());
  return scale->data_ptr<float>();
}

MMINCNEXT_SIMD_BEGIN

// sum[j] (+)= the sum over the m rows of a[i, j] (added where `add`), n
// columns (a multiple of 16), row stride lda.
void column_sums(int64_t m, int64_t n, const float* a, int64_t lda, float* sum, bool add) {
  for (int64_t j = 0; j < n; j += 16) {
    vec16 s = add ? v_load(sum + j) : v_zero();
    for (int64_t i = 0; i < m; ++i) s = v_add(s, v_load(a + i * lda + j));
    v_store(sum + j, s);
  }
}

// From the gradients of the scaled fc2 (s w2 [C, H], s b2), in place, those
// of w2 and b2 (times s), and s's: grad_s[c] = sum_h g_w2[c, h] w2[c, h] +
// g_b2[c] b2[c], taken before the products. H a multiple of 16.
void fold_scale_gradients(int64_t C, int64_t H, const float* w2, const float* b2, const float* scale, float* g_w2,
                          float* g_b2, float* g_scale) {
  at::parallel_for(0, C, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const vec16 s = v_set1(scale[c]);
      vec16 sum = v_zero();
      for (int64_t h = 0; h < H; h += 16) {
        const vec16 g = v_load(g_w2 + c * H + h);
        sum = v_fmadd(g, v_load(w2 + c * H + h), sum);
        v_store(g_w2 + c * H + h, v_mul(g, s));
      }
      g_scale[c] = v_sum(sum) + g_b2[c] * b2[c];
      g_b2[c] *= scale[c];
    }
  });
}

MMINCNEXT_SIMD_END

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
  if (whole_hidden(C, H)) return H;
  for (int64_t hc = 64; hc > 16; hc -= 16)
    if (H % hc == 0) return hc;
  return 16;
}

}  // namespace

std::vector<torch::Tensor> mlp_forward(const torch::Tensor& x, const c10::optional<torch::Tensor>& shortcut,
                                       const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
                                       const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias,
                                       const c10::optional<torch::Tensor>& scale) {
  TORCH_CHECK(cpu_supported(), "mlp_forward needs a CPU with " MMINCNEXT_ISA_NAME);
  check_contiguous(x, "mlp_forward", "x");
  TORCH_CHECK(x.dim() == 2, "mlp_forward: x must be [M, C], got ", x.dim(), " dims");
  if (shortcut) {
    check_contiguous(*shortcut, "mlp_forward", "shortcut");
    TORCH_CHECK(shortcut->sizes() == x.sizes(), "mlp_forward: shortcut must be [M, C] like x");
  }
  at::NoGradGuard no_grad;
  const Mlp mlp = make_mlp(x.size(1), fc1_weight, fc1_bias, fc2_weight, fc2_bias, 0, "mlp_forward", false,
                           scale_of(scale, x.size(1), "mlp_forward"));
  const int64_t M = x.size(0), C = mlp.C;
  torch::Tensor out = torch::empty_like(x), pre = torch::empty({M, mlp.H}, x.options());
  const float* X = x.data_ptr<float>();
  mlp_blocks(
      mlp, M, [&](int64_t r0, int64_t, float*) { return X + r0 * C; }, 0,
      shortcut ? shortcut->data_ptr<float>() : nullptr, out.data_ptr<float>(), kHiddenBlockBytes,
      pre.data_ptr<float>());
  return {out, pre};
}

namespace {

// The backward pass's inputs and packed weights, shared by the two ways of
// splitting it across threads.
struct Backward {
  int64_t M, C, H, Hc, nr1, nr2;
  const float *X, *G, *P, *Wg, *Wx;  // x, grad_out, pre; fc2^T and fc1 packed
};

// Per block and hidden chunk j (m rows from r0): d_pre (into d, with
// gelu(pre) into g), grad_x's share (stored where `first`, else added),
// and the chunk's weight-gradient sums (stored or added where `add`) into
// sw1 and sw2 with row strides ldw1 and ldw2, in [C, Hc] layout where
// `transposed_sums` is false (sw1 = x^T d_pre, sw2 = grad_out^T gelu),
// else sw1 in [Hc, C] (= d_pre^T x, rows j.. of grad_fc1 [H, C]); the bias
// sums into sb1 (and sb2 where given).
void backward_chunk(const Backward& b, int64_t r0, int64_t m, int64_t j, float* g, float* d, float* dx, bool first,
                    float* sw1, int64_t ldw1, bool transposed_sums, float* sw2, int64_t ldw2, float* sb1, float* sb2,
                    bool add, const float* next, int64_t next_floats) {
  const int64_t C = b.C, H = b.H, Hc = b.Hc;
  gemm_rows_any<kGeluGrad>(m, b.G + r0 * C, C, b.Wg + j * C, C, Hc, nullptr, b.P + r0 * H + j, H, d, Hc,
                           b.Wx + j * C, Hc * b.nr2, g, Hc);
  gemm_tn(m, b.G + r0 * C, C, C, g, Hc, Hc, sw2, ldw2, add);
  if (first)
    gemm_rows_any<kStore>(m, d, Hc, b.Wx + j * C, Hc, C, nullptr, nullptr, 0, dx, C, next, next_floats);
  else
    gemm_rows_any<kAdd>(m, d, Hc, b.Wx + j * C, Hc, C, nullptr, dx, C, dx, C, next, next_floats);
  if (transposed_sums)
    gemm_tn(m, d, Hc, Hc, b.X + r0 * C, C, C, sw1, ldw1, add);
  else
    gemm_tn(m, b.X + r0 * C, C, C, d, Hc, Hc, sw1, ldw1, add);
  column_sums(m, Hc, d, Hc, sb1, add);
  if (sb2 != nullptr) column_sums(m, C, b.G + r0 * C, C, sb2, add);
}

// A block of the hidden lanes keeps its rows of x and grad_out and the
// lane's rows of grad_x in L2 while it goes through the lane's chunks: the
// three take at most this (at C = 384, 168 rows; docs/speed.md has the
// measurements).
constexpr int64_t kHiddenLaneRowBytes = 768 * 1024;

// Row blocks for lanes of hidden chunks: {rows per block, blocks}, rows a
// multiple of `tile`, at most kBackwardMaxRows and at most what
// kHiddenLaneRowBytes holds of the three C-wide rows, whose Hc-wide hidden
// activations take about block_bytes.
std::pair<int64_t, int64_t> hidden_lane_rows(int64_t M, int64_t tile, int64_t C, int64_t Hc, int64_t block_bytes) {
  const int64_t cap = std::min(kBackwardMaxRows, kHiddenLaneRowBytes / (3 * C * int64_t(sizeof(float))));
  const int64_t target = std::max(tile, std::min(block_bytes / (Hc * 4), cap) / tile * tile);
  const int64_t rows = std::min((M + tile - 1) / tile * tile, target);
  return {rows, (M + rows - 1) / rows};
}

struct Scratch {
  std::unique_ptr<float[]> gelu, grad;
};

Scratch make_scratch(int64_t rows, int64_t Hc) {
  return Scratch{std::unique_ptr<float[]>(new float[rows * Hc]), std::unique_ptr<float[]>(new float[rows * Hc])};
}

// Lanes of row blocks: one lane of consecutive row blocks per thread, each
// with its own weight-gradient sums ([chunks, C, Hc]) and bias sums, added
// up at the end; a lane's blocks, and so the order of every sum, do not
// depend on which thread takes it. Each block goes through all the hidden
// chunks (grad_x adds up over them) before the next.
std::vector<torch::Tensor> backward_row_lanes(const Backward& b, int64_t hidden_block_bytes, torch::Tensor grad_x) {
  const int64_t M = b.M, C = b.C, H = b.H, Hc = b.Hc, chunks = H / Hc;
  const auto options = grad_x.options();
  const auto [rows, blocks] =
      row_blocks(M, std::lcm(tile_rows(Hc), tile_rows(C)), std::min(hidden_block_bytes / (Hc * 4), kBackwardMaxRows));
  const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks));
  torch::Tensor sum_w1 = torch::empty({lanes, chunks, C, Hc}, options),
                sum_w2 = torch::empty({lanes, chunks, C, Hc}, options), sum_b1 = torch::empty({lanes, H}, options),
                sum_b2 = torch::empty({lanes, C}, options);
  float *dX = grad_x.data_ptr<float>(), *Sw1 = sum_w1.data_ptr<float>(), *Sw2 = sum_w2.data_ptr<float>(),
        *Sb1 = sum_b1.data_ptr<float>(), *Sb2 = sum_b2.data_ptr<float>();
  parallel_dynamic(
      lanes, [&] { return make_scratch(rows, Hc); },
      [&](int64_t lane, Scratch& s) {
        const int64_t b0 = lane * blocks / lanes, b1 = (lane + 1) * blocks / lanes;
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t r0 = blk * rows, m = std::min(rows, M - r0);
          for (int64_t c = 0; c < chunks; ++c) {
            const int64_t j = c * Hc, sums = (lane * chunks + c) * C * Hc;
            backward_chunk(b, r0, m, j, s.gelu.get(), s.grad.get(), dX + r0 * C, c == 0, Sw1 + sums, Hc, false,
                           Sw2 + sums, Hc, Sb1 + lane * H + j, c == 0 ? Sb2 + lane * C : nullptr, blk > b0,
                           b.Wg + (c + 1 < chunks ? j + Hc : 0) * C, C * b.nr1);
          }
        }
      });
  // [chunks, C, Hc] -> grad_fc1 [H, C] and grad_fc2 [C, H]
  torch::Tensor grad_w1 = sum_w1.sum(0).permute({0, 2, 1}).reshape({H, C});
  torch::Tensor grad_w2 = sum_w2.sum(0).permute({1, 0, 2}).reshape({C, H});
  return {grad_x, grad_w1, sum_b1.sum(0), grad_w2, sum_b2.sum(0)};
}

// Lanes of hidden chunks: one lane of consecutive chunks per thread, each
// going through all the row blocks (and each block through the lane's
// chunks), with the weight-gradient sums of its chunks stored in the
// gradients' own layout. Each lane sums its share of grad_x (lane 0 into
// grad_x, the others into [M, C] buffers, added in lane order at the end).
// Where the rows are few against the weights, this moves less memory than
// lanes of rows, each of which reads all the weights and sums all the
// weight gradients, to be added up after.
std::vector<torch::Tensor> backward_hidden_lanes(const Backward& b, int64_t hidden_block_bytes, torch::Tensor grad_x) {
  const int64_t M = b.M, C = b.C, H = b.H, Hc = b.Hc, chunks = H / Hc;
  const auto options = grad_x.options();
  const auto [rows, blocks] = hidden_lane_rows(M, std::lcm(tile_rows(Hc), tile_rows(C)), C, Hc, hidden_block_bytes);
  const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), chunks));
  torch::Tensor grad_w1 = torch::empty({H, C}, options), grad_w2 = torch::empty({C, H}, options),
                grad_b1 = torch::empty({H}, options), grad_b2 = torch::empty({C}, options),
                partial = torch::empty({lanes - 1, M, C}, options);
  float *W1 = grad_w1.data_ptr<float>(), *W2 = grad_w2.data_ptr<float>(), *B1 = grad_b1.data_ptr<float>(),
        *B2 = grad_b2.data_ptr<float>(), *dX = grad_x.data_ptr<float>(), *Part = partial.data_ptr<float>();
  parallel_dynamic(
      lanes, [&] { return make_scratch(rows, Hc); },
      [&](int64_t lane, Scratch& s) {
        const int64_t c0 = lane * chunks / lanes, c1 = (lane + 1) * chunks / lanes;
        float* dx = lane == 0 ? dX : Part + (lane - 1) * M * C;
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const int64_t r0 = blk * rows, m = std::min(rows, M - r0);
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t j = c * Hc;
            backward_chunk(b, r0, m, j, s.gelu.get(), s.grad.get(), dx + r0 * C, c == c0, W1 + j * C, C, true,
                           W2 + j, H, B1 + j, c == 0 ? B2 : nullptr, blk > 0,
                           b.Wg + (c + 1 < c1 ? j + Hc : c0 * Hc) * C, C * b.nr1);
          }
        }
      });
  for (int64_t lane = 1; lane < lanes; ++lane) grad_x.add_(partial[lane - 1]);
  return {grad_x, grad_w1, grad_b1, grad_w2, grad_b2};
}

}  // namespace

std::vector<torch::Tensor> mlp_backward(const torch::Tensor& grad_out, const torch::Tensor& x,
                                        const torch::Tensor& pre, const torch::Tensor& fc1_weight,
                                        const torch::Tensor& fc2_weight, int64_t hidden_block_bytes,
                                        int64_t hidden_chunk, int64_t hidden_lanes,
                                        const c10::optional<torch::Tensor>& scale,
                                        const c10::optional<torch::Tensor>& fc2_bias) {
  TORCH_CHECK(cpu_supported(), "mlp_backward needs a CPU with " MMINCNEXT_ISA_NAME);
  TORCH_CHECK(hidden_block_bytes > 0, "mlp_backward: hidden_block_bytes must be positive");
  TORCH_CHECK(hidden_lanes >= -1 && hidden_lanes <= 1,
              "mlp_backward: hidden_lanes must be -1 (chosen), 0 or 1, got ", hidden_lanes);
  check_contiguous(x, "mlp_backward", "x");
  TORCH_CHECK(x.dim() == 2, "mlp_backward: x must be [M, C], got ", x.dim(), " dims");
  TORCH_CHECK(fc1_weight.dim() == 2, "mlp_backward: fc1_weight must be [H, C], got ", fc1_weight.dim(), " dims");
  const int64_t M = x.size(0), C = x.size(1), H = fc1_weight.size(0);
  check_rows(grad_out, M, C, "grad_out");
  check_rows(pre, M, H, "pre");
  const float* s = scale_of(scale, C, "mlp_backward");
  TORCH_CHECK(!scale || (fc2_bias && fc2_bias->numel() == C), "mlp_backward: with a scale, fc2_bias must be given (",
              C, " values)");
  if (s != nullptr) check_contiguous(*fc2_bias, "mlp_backward", "fc2_bias");
  at::NoGradGuard no_grad;
  // d_pre = grad_out @ fc2 and grad_x = d_pre @ fc1 are the forward GEMMs
  // with fc2^T and fc1^T as weights: packed alike from fc2 and fc1, in
  // hidden chunks of their own (biases unused)
  const torch::Tensor zeros_h = torch::zeros({H}, x.options()), zeros_c = torch::zeros({C}, x.options());
  const Mlp mlp = make_mlp(C, fc2_weight, zeros_h, fc1_weight, zeros_c,
                           hidden_chunk == 0 ? backward_hidden_chunk(C, H) : hidden_chunk,
                           "mlp_backward", true, s);
  const Backward b{M,
                   C,
                   H,
                   mlp.Hc,
                   mlp.nr1,
                   mlp.nr2,
                   x.data_ptr<float>(),
                   grad_out.data_ptr<float>(),
                   pre.data_ptr<float>(),
                   mlp.w1.data_ptr<float>(),
                   mlp.w2.data_ptr<float>()};
  torch::Tensor grad_x = torch::empty_like(x);
  std::vector<torch::Tensor> grads;
  if (M == 0) {
    grads = {grad_x, torch::zeros({H, C}, x.options()), torch::zeros({H}, x.options()),
             torch::zeros({C, H}, x.options()), torch::zeros({C}, x.options())};
  } else {
    // Lanes of rows each sum all the weight gradients, as large as the
    // weights: where those are too large for L2 (what chunks the hidden
    // units), every row block takes them through memory, and the hidden
    // lanes, each with its chunks' share, move less; so also where M < H.
    const bool by_hidden = hidden_lanes == -1 ? M < H || !whole_hidden(C, H) : hidden_lanes == 1;
    grads = by_hidden ? backward_hidden_lanes(b, hidden_block_bytes, grad_x)
                      : backward_row_lanes(b, hidden_block_bytes, grad_x);
  }
  if (s != nullptr) {  // the sums were of the scaled fc2's gradients
    torch::Tensor grad_scale = torch::empty({C}, x.options());
    fold_scale_gradients(C, H, fc2_weight.data_ptr<float>(), fc2_bias->data_ptr<float>(), s,
                         grads[3].data_ptr<float>(), grads[4].data_ptr<float>(), grad_scale.data_ptr<float>());
    grads.push_back(grad_scale);
  }
  return grads;
}

}  // namespace mmincnext
