// CPU kernels of MetaNeXt (InceptionNeXt) blocks for inference and for the
// token mixer and the MLP in training (float32, AVX-512), exposed by
// mmincnext.ops:
//
//     fused_mlp:        out = shortcut + fc2(gelu(fc1(x)))
//     inception_mixer:  y = affine(token_mixer(x))
//     metanext_block:   out = x + fc2(gelu(fc1(affine(token_mixer(x)))))
//     mixer_backward:   the token mixer's gradients (training)
//     mlp_forward, mlp_backward: the MLP with autograd (training)
//
// Each has its file (fused_mlp.cpp, inception_mixer.cpp, metanext_block.cpp,
// mixer_training.cpp, mlp_training.cpp);
// gemm.cpp holds the GEMM kernels and the packing of weights, gelu.h the
// GELU, pybind.cpp the Python module. This header declares what more than
// one of them uses.
#pragma once

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "simd.h"

namespace mmincnext {

// f(i, state) for i in [0, n) on the intra-op threads, each of which makes
// its `state = init()` once and takes the next index from an atomic counter
// until none is left. A thread slowed by other work (a core shared with
// other processes) thus takes fewer items, where at::parallel_for's equal
// ranges leave the others idle at the end of each call.
template <class Init, class F>
void parallel_dynamic(int64_t n, Init init, F f) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    auto state = init();
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) f(i, state);
  });
}

template <class F>
void parallel_dynamic(int64_t n, F f) {
  parallel_dynamic(n, [] { return 0; }, [&](int64_t i, int) { f(i); });
}

// ---------------------------------------------------------------------------
// Argument checks of the entry points.

inline void check_float_cpu(const torch::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat, op, ": ", name,
              " must be a float32 CPU tensor");
}

inline void check_contiguous(const torch::Tensor& t, const char* op, const char* name) {
  check_float_cpu(t, op, name);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// x as [N, C, H, W] in dense channels-last memory (an NHWC buffer).
inline void check_channels_last(const torch::Tensor& x, const char* op, const char* name = "x") {
  check_float_cpu(x, op, name);
  TORCH_CHECK(x.dim() == 4, op, ": ", name, " must be [N, C, H, W], got ", x.dim(), " dims");
  // an NHWC buffer: the strides of dims of size 1 do not matter
  TORCH_CHECK(x.permute({0, 2, 3, 1}).is_contiguous(), op, ": ", name,
              " must be contiguous in channels-last memory");
}

inline torch::Tensor empty_channels_last(const torch::Tensor& x) {
  return torch::empty({x.size(0), x.size(2), x.size(3), x.size(1)}, x.options()).permute({0, 3, 1, 2});
}

// ---------------------------------------------------------------------------
// GEMM (gemm.cpp).

// What the GEMM kernels do to a @ b before the store: gelu(. + bias);
// the same with . + bias stored into g as well (the training forward pass's
// pre-activations, kept for the backward pass: by streaming stores, g
// 64-byte aligned, read back there only); . + bias + r (the residual); . + r
// (r = c: accumulate into the output); . + bias; . * gelu'(r) with gelu(r)
// stored into g as well (the backward pass's d_pre from r = pre: the GELU
// evaluated where its input is loaded, with no pass of its own); nothing.
enum Epilogue { kBiasGelu, kBiasGeluKeep, kBiasResidual, kAdd, kBias, kGeluGrad, kStore };
constexpr bool has_bias(Epilogue e) {
  return e == kBiasGelu || e == kBiasGeluKeep || e == kBiasResidual || e == kBias;
}
constexpr bool writes_g(Epilogue e) { return e == kBiasGeluKeep || e == kGeluGrad; }
constexpr bool reads_r(Epilogue e) { return e == kBiasResidual || e == kAdd || e == kGeluGrad; }

// Register blocking by the width of the output: NV vectors of 16 columns
// per panel and MR rows, MR * NV = 24 accumulators (of 32 zmm registers).
// With AVX2 (16 ymm registers, two per vector of 16) the tiles are 6 rows
// of one vector: 12 accumulators.
#ifdef MMINCNEXT_AVX2
inline int panel_vectors(int64_t) { return 1; }
constexpr int tile_rows_of(int) { return 6; }
#else
inline int panel_vectors(int64_t n) { return n % 64 == 0 ? 4 : n % 48 == 0 ? 3 : n % 32 == 0 ? 2 : 1; }
constexpr int tile_rows_of(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }  // MR for NV
#endif

// Rows of the register tiles of gemm_rows_any for an output width n.
inline int64_t tile_rows(int64_t n) { return tile_rows_of(panel_vectors(n)); }

// c[m, N] = epilogue(a[m, K] @ W^T + bias), a with row stride lda, W packed
// by pack_panels in panels of 16 * panel_vectors(N) columns, c (and the
// residual r, and g for kGeluGrad) with row stride ldc (ldr, ldg). While the
// row tiles go through one panel, the next one (after the last: the
// `next_floats` floats at `next`) is prefetched into L2. Instantiated in
// gemm.cpp for each epilogue.
template <Epilogue EPI>
void gemm_rows_any(int64_t m, const float* a, int64_t lda, const float* packed,
                   int64_t K, int64_t N, const float* bias, const float* r,
                   int64_t ldr, float* c, int64_t ldc, const float* next, int64_t next_floats,
                   float* g = nullptr, int64_t ldg = 0);

// c[M, N] = a[K, M]^T @ b[K, N], or c += that where `add` (a, b, c
// row-major with row strides lda, ldb, ldc; N a multiple of 16): the weight
// gradients of the MLP, K its rows.
void gemm_tn(int64_t K, const float* a, int64_t lda, int64_t M, const float* b, int64_t ldb, int64_t N, float* c,
             int64_t ldc, bool add);

MMINCNEXT_SIMD_BEGIN

// Panels of the weights for gemm_rows_any: for each of `chunks` column
// ranges [c K, (c + 1) K) of W [N, chunks K] (row stride ldw), panels of NR
// rows transposed, out[c][p][k][j] = W[p NR + j][c K + k] (K and NR
// multiples of 16), times scale[p NR + j] where `scale` is given (the layer
// scale on fc2's outputs, folded in as the weights are packed).
void pack_panels(const float* w, int64_t ldw, int64_t N, int64_t K, int64_t chunks, int64_t NR, float* out,
                 const float* scale = nullptr);

// The same panels from W^T [chunks K, N] (row stride ldt), times
// scale[c K + k] where given.
void pack_panels_of_transposed(const float* wt, int64_t ldt, int64_t N, int64_t K, int64_t chunks, int64_t NR,
                               float* out, const float* scale = nullptr);

MMINCNEXT_SIMD_END

// ---------------------------------------------------------------------------
// The fused MLP (fused_mlp.cpp).

// Hidden activations computed per task: about a quarter of a 1 MiB L2, so
// that they, the input rows and a weight panel stay in L2 between fc1 and fc2.
constexpr int64_t kHiddenBlockBytes = 256 * 1024;

// MLPs whose two weights take more than this go through the hidden units in
// chunks (see mlp_blocks and mlp_backward).
constexpr int64_t kWholeHiddenWeightBytes = 2 * 1024 * 1024;

// Whether an MLP of C channels and H hidden units goes through them whole:
// its two weights take at most kWholeHiddenWeightBytes.
constexpr bool whole_hidden(int64_t C, int64_t H) {
  return 2 * C * H * int64_t(sizeof(float)) <= kWholeHiddenWeightBytes;
}

// Hidden gradients per row block of mlp_backward: longer blocks than the
// forward's, over which the weight-gradient sums add up before they are
// stored (docs/speed.md has the measurements).
constexpr int64_t kBackwardBlockBytes = 512 * 1024;

// The MLP's weights packed for hidden chunks of Hc units: w1 as the panels
// of fc1 [H, C] (chunk j: Hc / NR consecutive panels), w2 as those of the
// Hc columns of fc2 [C, H] for each chunk in turn; nr1 and nr2 are their
// panel widths (the register tiles of outputs Hc and C wide).
struct Mlp {
  torch::Tensor w1, w2, b2_scaled;  // b2_scaled: fc2's bias times the scale, where one is given
  const float *b1, *b2;
  int64_t C, H, Hc, nr1, nr2;
};

// Validates the MLP's weights for C input channels and packs them for
// hidden chunks of hidden_chunk units (0: chosen by the weights' size).
// Where `transposed`, the two weights are given as their transposes, fc1's
// as [C, H] and fc2's as [H, C] (the backward pass's GEMMs, whose weights
// are the forward's fc2 and fc1). `scale` (C floats, or null) is the layer
// scale on the forward fc2's outputs, multiplied into the packed panels:
// into fc2's rows and bias, or, where `transposed`, into the rows of the
// [C, H] fc1_weight (the forward's fc2).
Mlp make_mlp(int64_t C, const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
             const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias, int64_t hidden_chunk,
             const char* op, bool transposed = false, const float* scale = nullptr);

// Row blocks of M rows for the threads: {rows per block, blocks}, rows a
// multiple of `tile` (the GEMMs' tile rows) near target_rows, and blocks a
// multiple of the threads where that evens out their work (the threads take
// them dynamically: see parallel_dynamic).
inline std::pair<int64_t, int64_t> row_blocks(int64_t M, int64_t tile, int64_t target_rows) {
  const int64_t threads = at::get_num_threads();
  int64_t rows = std::max(tile, target_rows / tile * tile);
  int64_t blocks = (M + rows - 1) / rows;
  blocks = (blocks + threads - 1) / threads * threads;
  rows = ((M + blocks - 1) / blocks + tile - 1) / tile * tile;
  return {rows, (M + rows - 1) / rows};
}

// out[M, C] = shortcut + fc2(gelu(fc1(a))) over row blocks whose hidden
// activations (one chunk of Hc units at a time) take about
// hidden_block_bytes, as many blocks for each thread. Per chunk: fc1's Hc
// hidden units, GELU, and fc2's sums over them, added to the block's output
// (which the first chunk starts with bias + shortcut, or bias alone where
// shortcut is null). input(r0, m, buffer) returns the rows [r0, r0 + m) of a
// (row stride C), possibly computed into `buffer` (buffer_width floats per
// row). Where `keep` is given, fc1's outputs before GELU go there ([M, H],
// for the backward pass).
template <class Input>
void mlp_blocks(const Mlp& mlp, int64_t M, Input input, int64_t buffer_width, const float* shortcut, float* out,
                int64_t hidden_block_bytes, float* keep = nullptr) {
  TORCH_CHECK(hidden_block_bytes > 0, "hidden_block_bytes must be positive");
  if (M == 0) return;  // no rows: nothing to compute (and no row blocks)
  const int64_t C = mlp.C, H = mlp.H, Hc = mlp.Hc;
  const float *W1 = mlp.w1.data_ptr<float>(), *W2 = mlp.w2.data_ptr<float>();
  const auto [rows, blocks] = row_blocks(M, std::lcm(tile_rows(Hc), tile_rows(C)), hidden_block_bytes / (Hc * 4));
  struct Scratch {
    std::unique_ptr<float[]> hidden, buffer;
  };
  parallel_dynamic(
      blocks, [&] { return Scratch{std::unique_ptr<float[]>(new float[rows * Hc]),
                                   std::unique_ptr<float[]>(new float[rows * buffer_width])}; },
      [&](int64_t blk, Scratch& s) {
        const int64_t r0 = blk * rows, m = std::min(rows, M - r0);
        const float* a = input(r0, m, s.buffer.get());
        float* o = out + r0 * C;
        for (int64_t j = 0; j < H; j += Hc) {
          // each call prefetches the other's first panel (fc1's: chunk
          // j + Hc, or chunk 0 for the next row block)
          const float* next_w1 = W1 + (j + Hc < H ? j + Hc : 0) * C;
          if (keep == nullptr)
            gemm_rows_any<kBiasGelu>(m, a, C, W1 + j * C, C, Hc, mlp.b1 + j, nullptr, 0, s.hidden.get(), Hc,
                                     W2 + j * C, Hc * mlp.nr2);
          else  // and the pre-activations into `keep`
            gemm_rows_any<kBiasGeluKeep>(m, a, C, W1 + j * C, C, Hc, mlp.b1 + j, nullptr, 0, s.hidden.get(), Hc,
                                         W2 + j * C, Hc * mlp.nr2, keep + r0 * H + j, H);
          if (j == 0 && shortcut == nullptr)
            gemm_rows_any<kBias>(m, s.hidden.get(), Hc, W2, Hc, C, mlp.b2, nullptr, 0, o, C, next_w1, C * mlp.nr1);
          else if (j == 0)
            gemm_rows_any<kBiasResidual>(m, s.hidden.get(), Hc, W2, Hc, C, mlp.b2, shortcut + r0 * C, C, o, C,
                                         next_w1, C * mlp.nr1);
          else
            gemm_rows_any<kAdd>(m, s.hidden.get(), Hc, W2 + j * C, Hc, C, nullptr, o, C, o, C, next_w1, C * mlp.nr1);
        }
        if (keep != nullptr) _mm_sfence();  // the streaming stores, before another thread reads `keep`
      });
}

// ---------------------------------------------------------------------------
// The Inception token mixer (inception_mixer.cpp).

// The mixer's shapes and parameters: x [N, C, H, W] with the channels split
// identity first into (id, gc, gc, gc), a ks x ks, a 1 x kb and a kb x 1
// depthwise conv, and an optional per-channel affine.
struct Mixer {
  int64_t H, W, C, id, gc, ks, kb;
  const float *w_hw, *b_hw, *w_w, *b_w, *w_h, *b_h;  // weights [taps, gc]
  const float *scale, *shift;                         // [C] or nullptr
};

// Validates the token mixer's parameters for x [N, C, H, W] and returns the
// kernel's view of them; the tap-major copies of the weights go to `keep`.
Mixer make_mixer(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                 const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                 const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                 const c10::optional<torch::Tensor>& shift, std::vector<torch::Tensor>& keep, const char* op);

MMINCNEXT_SIMD_BEGIN

// Rows y[0 .. p1 - p0) (row stride ldy) for the flattened pixels [p0, p1) of
// x [N * H * W, C], one image-row segment at a time.
void mixer_pixels(const Mixer& m, const float* x, int64_t p0, int64_t p1, float* y, int64_t ldy);

MMINCNEXT_SIMD_END

// ---------------------------------------------------------------------------
// The functions of the Python module, bound in pybind.cpp (cpu_supported
// is defined there, the kernels in their files).

// Whether this CPU runs the kernels (AVX-512 F, DQ and FMA).
bool cpu_supported();

torch::Tensor fused_mlp(const torch::Tensor& x, const torch::Tensor& shortcut, const torch::Tensor& fc1_weight,
                        const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                        const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk);

torch::Tensor inception_mixer(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                              const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                              const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                              const c10::optional<torch::Tensor>& shift);

torch::Tensor metanext_block(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                             const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                             const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                             const c10::optional<torch::Tensor>& shift, const torch::Tensor& fc1_weight,
                             const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                             const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk);

std::vector<torch::Tensor> mixer_backward(const torch::Tensor& grad_y, const torch::Tensor& x,
                                          const torch::Tensor& w_hw, const torch::Tensor& w_w,
                                          const torch::Tensor& w_h);
std::vector<torch::Tensor> mlp_forward(const torch::Tensor& x, const c10::optional<torch::Tensor>& shortcut,
                                       const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
                                       const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias,
                                       const c10::optional<torch::Tensor>& scale);

std::vector<torch::Tensor> mlp_backward(const torch::Tensor& grad_out, const torch::Tensor& x,
                                        const torch::Tensor& pre, const torch::Tensor& fc1_weight,
                                        const torch::Tensor& fc2_weight, int64_t hidden_block_bytes,
                                        int64_t hidden_chunk, int64_t hidden_lanes,
                                        const c10::optional<torch::Tensor>& scale,
                                        const c10::optional<torch::Tensor>& fc2_bias);

torch::Tensor fma_loop(int64_t iterations, double a0, double b, double c);

}  // namespace mmincnext
