// CPU kernels of MetaNeXt (InceptionNeXt) blocks for inference (float32,
// AVX-512), exposed by mmincnext.ops:
//
//     fused_mlp:        out = shortcut + fc2(gelu(fc1(x)))
//     inception_mixer:  y = affine(token_mixer(x))          (see Mixer below)
//     metanext_block:   out = x + fc2(gelu(fc1(affine(token_mixer(x)))))
//
// The MLP:
// x and shortcut are row-major [M, C] (the channels-last view of NCHW
// activations), fc1 is [H, C] and fc2 [C, H] (weights of 1x1 convs). oneDNN
// runs fc1 and fc2 as two GEMMs, so the [M, H] hidden activations (four times
// the input) make a round trip through memory, and at C = 96 or 192 its
// kernels reach only 40-70 % of the machine's large-GEMM rate. Here each task
// takes a block of rows whose hidden activations fit in L2, computes them with
// a register-blocked kernel that applies bias and GELU before the store, and
// feeds them to fc2 at once, whose kernel adds bias and shortcut before its
// store. Where the weights do not fit in L2 (C = 384: 4.7 MB), the hidden
// units go in chunks of up to 384, fc2 adding each chunk's sums to the block's
// output, so that only the weights come from the last-level cache. The
// weights are packed once per call into panels of 16 * NV columns, and each
// panel is prefetched into L2 while the previous one is in use. The threads
// take row blocks one at a time (parallel_dynamic).
//
// GELU is the exact (erf) form through a piecewise polynomial of the normal
// CDF (see gelu512), within 2.4e-7 of it, the float32 rounding of the result.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

namespace {

// Hidden activations computed per task: about a quarter of a 1 MiB L2, so
// that they, the input rows and a weight panel stay in L2 between fc1 and fc2.
constexpr int64_t kHiddenBlockBytes = 256 * 1024;

// MLPs whose two weights take more than this go through the hidden units in
// chunks (see mlp_blocks): each row block then reads every weight once from
// the last-level cache while its inputs, outputs and hidden chunk stay in L2.
constexpr int64_t kWholeHiddenWeightBytes = 2 * 1024 * 1024;

// f(i, state) for i in [0, n) on the intra-op threads, each of which makes
// its `state = init()` once and takes the next index from an atomic counter
// until none is left. A thread slowed by other work (a core shared with
// other tenants, often 10-15 % slower for a whole run) thus takes fewer
// items, where at::parallel_for's equal ranges leave the other idle at the
// end of each call (5-7 % of a forward pass of tiny).
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

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")

// gelu(x) = x Phi(x) = max(x, 0) - a Phi(-a) with a = |x|, since Phi(x) =
// 1 - Phi(-a) for x >= 0: no cancellation in either tail. q(a) = Phi(-a) =
// erfc(a / sqrt(2)) / 2 is a degree-5 polynomial in u = a s - k on each of
// 16 intervals k = round(a s) (|u| <= 1/2, width 0.36), its coefficients
// looked up in registers (vpermps); a is clamped at 5.6, where a q(a) =
// 6e-8. Least-squares fits on 256 Chebyshev nodes per interval, rounded to
// float32 (mmincnext/ops/csrc/gelu_table.py prints this table).
constexpr float kGeluScale = 2.766071319580078f, kGeluMaxAbs = 5.6f;
alignas(64) constexpr float kGeluQ[6][16] = {
    {0.5f, 0.35885406f, 0.23482546f, 0.13905591f, 0.07407538f, 0.035332996f, 0.015035971f, 0.005692325f,
     0.001912841f, 0.0005695383f, 0.00015003738f, 3.4930494e-05f, 7.18005e-06f, 1.3020534e-06f, 2.0817436e-07f,
     2.9328307e-08f},
    {-0.14422704f, -0.13510323f, -0.11105107f, -0.08009728f, -0.05069333f, -0.02815282f, -0.013719269f,
     -0.0058664866f, -0.0022012186f, -0.00072474685f, -0.00020938598f, -5.3081963e-05f, -1.1808224e-05f,
     -2.304945e-06f, -3.9479804e-07f, -5.9337346e-08f},
    {-5.4740874e-17f, 0.008828747f, 0.014514054f, 0.015702866f, 0.013251198f, 0.009198991f, 0.0053793853f,
     0.002683646f, 0.0011507886f, 0.0004262426f, 0.00013682041f, 3.8150916e-05f, 9.257133e-06f, 1.9572194e-06f,
     3.6094337e-07f, 5.8106767e-08f},
    {0.0031416768f, 0.0025583063f, 0.0011543893f, -0.00030755677f, -0.0012049325f, -0.0013905492f, -0.0011073011f,
     -0.0006906275f, -0.00035314274f, -0.00015134798f, -5.505092e-05f, -1.712891e-05f, -4.5832257e-06f,
     -1.0585662e-06f, -2.1162654e-07f, -3.6697735e-08f},
    {5.492163e-17f, -0.00027377196f, -0.00038902156f, -0.0003106205f, -0.0001315233f, 2.5659125e-05f,
     9.8957775e-05f, 9.9118326e-05f, 6.7267174e-05f, 3.5382032e-05f, 1.51416e-05f, 5.3984827e-06f, 1.6255563e-06f,
     4.169923e-07f, 9.166809e-08f, 1.734265e-08f},
    {-6.117569e-05f, -4.2698925e-05f, -2.2559525e-06f, 3.0199528e-05f, 3.711569e-05f, 2.3721701e-05f,
     6.1216956e-06f, -4.5774545e-06f, -7.094353e-06f, -5.314341e-06f, -2.8534673e-06f, -1.2047723e-06f,
     -4.156497e-07f, -1.1957222e-07f, -2.9034991e-08f, -5.999336e-09f},
};

// 19 vector instructions; a NaN x gives a = 5.6 (min takes the second
// operand) and a NaN result through max(0, x) (likewise).
inline __m512 gelu512(__m512 x) {
  const __m512 s = _mm512_set1_ps(kGeluScale), magic = _mm512_set1_ps(12582912.f);  // 1.5 * 2^23
  const __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(kGeluMaxAbs));
  const __m512 t = _mm512_fmadd_ps(a, s, magic);  // k = round(a s) in the low mantissa bits
  const __m512i k = _mm512_castps_si512(t);
  const __m512 u = _mm512_fmsub_ps(a, s, _mm512_sub_ps(t, magic));
  __m512 q = _mm512_permutexvar_ps(k, _mm512_load_ps(kGeluQ[5]));
  for (int d = 4; d >= 0; --d) q = _mm512_fmadd_ps(q, u, _mm512_permutexvar_ps(k, _mm512_load_ps(kGeluQ[d])));
  return _mm512_sub_ps(_mm512_max_ps(_mm512_setzero_ps(), x), _mm512_mul_ps(a, q));
}

// What the GEMM kernels do to a @ b before the store: gelu(. + bias);
// . + bias + r (the residual); . + r (r = c: accumulate into the output).
enum Epilogue { kBiasGelu, kBiasResidual, kAdd };

// c[MR, 16 NV] = epilogue(a[MR, K] @ b[K, 16 NV]), a with row stride lda, b
// a packed panel, c (and the residual r) with row stride ldc (ldr). The
// first pf_lines iterations each prefetch a cache line of pf into L2.
template <int MR, int NV, Epilogue EPI>
inline void micro_kernel(const float* a, int64_t lda, const float* b,
                         int64_t K, const float* bias, const float* r,
                         int64_t ldr, float* c, int64_t ldc, const float* pf,
                         int64_t pf_lines) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    if (k < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + k * NR + 16 * v);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    const __m512 bb = EPI == kAdd ? _mm512_setzero_ps() : _mm512_loadu_ps(bias + 16 * v);
    for (int i = 0; i < MR; ++i) {
      __m512 y = EPI == kAdd ? acc[i][v] : _mm512_add_ps(acc[i][v], bb);
      if (EPI == kBiasGelu)
        y = gelu512(y);
      else
        y = _mm512_add_ps(y, _mm512_loadu_ps(r + i * ldr + 16 * v));
      _mm512_storeu_ps(c + i * ldc + 16 * v, y);
    }
  }
}

// The same for the m < MR rows at the end of the input: they are copied to
// zero-padded buffers and the valid rows copied back.
template <int MR, int NV, Epilogue EPI>
void micro_kernel_tail(int64_t m, const float* a, int64_t lda, const float* b,
                       int64_t K, const float* bias, const float* r,
                       int64_t ldr, float* c, int64_t ldc) {
  constexpr int NR = 16 * NV;
  std::unique_ptr<float[]> a_pad(new float[MR * K]());
  float r_pad[MR * NR] = {0}, c_pad[MR * NR];
  for (int64_t i = 0; i < m; ++i) {
    std::memcpy(a_pad.get() + i * K, a + i * lda, K * sizeof(float));
    if (EPI != kBiasGelu)
      std::memcpy(r_pad + i * NR, r + i * ldr, NR * sizeof(float));
  }
  micro_kernel<MR, NV, EPI>(a_pad.get(), K, b, K, bias, r_pad, NR, c_pad, NR, nullptr, 0);
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(c + i * ldc, c_pad + i * NR, NR * sizeof(float));
}

inline const float* residual(const float* r, int64_t offset) {
  return r == nullptr ? nullptr : r + offset;
}

// c[m, N] = epilogue(a[m, K] @ W^T + bias), W packed by pack_panels. While
// the row tiles go through one panel, which then stays in L2, the next one
// (after the last: the `next_floats` floats at `next`, the first panel of
// the caller's next call) is prefetched into L2, a slice per tile, so that
// the first tile of a panel does not wait for the last-level cache (the
// weights of stage 1 and up do not fit in L2 with the activations).
template <int MR, int NV, Epilogue EPI>
void gemm_rows(int64_t m, const float* a, int64_t lda, const float* packed,
               int64_t K, int64_t N, const float* bias, const float* r,
               int64_t ldr, float* c, int64_t ldc, const float* next, int64_t next_floats) {
  constexpr int NR = 16 * NV;
  const int64_t tiles = m / MR;
  for (int64_t n = 0; n < N; n += NR) {  // a panel of W stays in cache
    const float* b = packed + n * K;
    const bool last = n + NR >= N;
    const float* pf = last ? next : b + K * NR;
    const int64_t lines = (last ? next_floats : K * NR) / 16;
    const int64_t per_tile = tiles > 0 ? std::min(K, (lines + tiles - 1) / tiles) : 0;
    int64_t i = 0;
    for (; i + MR <= m; i += MR) {
      const int64_t l0 = std::min(lines, i / MR * per_tile);
      micro_kernel<MR, NV, EPI>(a + i * lda, lda, b, K, bias + n, residual(r, i * ldr + n), ldr, c + i * ldc + n,
                                ldc, pf + 16 * l0, std::min(per_tile, lines - l0));
    }
    if (i < m)
      micro_kernel_tail<MR, NV, EPI>(m - i, a + i * lda, lda, b, K, bias + n,
                                     residual(r, i * ldr + n), ldr,
                                     c + i * ldc + n, ldc);
  }
}

// ---------------------------------------------------------------------------
// Inception depthwise token mixer on channels-last activations:
//
//     y = affine(cat(x_id, dwconv_hw(x_hw), dwconv_w(x_w), dwconv_h(x_h)))
//
// with the channels split identity first into (C - 3 gc, gc, gc, gc), a square
// ks x ks, a 1 x kb and a kb x 1 depthwise conv with zero padding (the official
// token mixer), and an optional per-channel affine (the block's BatchNorm in
// eval mode). PyTorch runs it as three depthwise convs on strided channel
// slices and a cat, four passes over the activations; here each pixel is
// computed once, vectorised over 16 channels, from neighbours that are in L1
// or L2 (a band of kb image rows).
struct Mixer {
  int64_t H, W, C, id, gc, ks, kb;
  const float *w_hw, *b_hw, *w_w, *b_w, *w_h, *b_h;  // weights [taps, gc]
  const float *scale, *shift;                         // [C] or nullptr
};

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

inline void store_affine(const Mixer& m, __m512 v, int64_t c, __mmask16 k, float* y) {
  if (m.scale != nullptr)
    v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, m.scale + c), _mm512_maskz_loadu_ps(k, m.shift + c));
  _mm512_mask_storeu_ps(y + c, k, v);
}

// One depthwise branch at P consecutive pixels of an image row: output
// channels [c0, c0 + gc), taps (ty, tx) in [ty0, ty1) x [tx0, tx1) of a kernel
// of width kw whose centre (cy, cx) lies on the pixel; xp is the first pixel,
// y its output row (row stride ldy). P accumulators hide the FMA latency.
template <int P>
inline void branch(const Mixer& m, const float* xp, float* y, int64_t ldy, int64_t c0, const float* wt,
                   const float* bias, int64_t kw, int64_t ty0, int64_t ty1, int64_t tx0, int64_t tx1, int64_t cy,
                   int64_t cx) {
  const int64_t row = m.W * m.C;
  for (int64_t c = 0; c < m.gc; c += 16) {
    const __mmask16 k = lanes(m.gc - c);
    __m512 acc[P];
    acc[0] = _mm512_maskz_loadu_ps(k, bias + c);
    for (int j = 1; j < P; ++j) acc[j] = acc[0];
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* xr = xp + (ty - cy) * row + c0 + c;
      const float* wr = wt + ty * kw * m.gc + c;
      for (int64_t tx = tx0; tx < tx1; ++tx) {
        const __m512 wv = _mm512_maskz_loadu_ps(k, wr + tx * m.gc);
        const float* xt = xr + (tx - cx) * m.C;
        for (int j = 0; j < P; ++j)
          acc[j] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, xt + j * m.C), wv, acc[j]);
      }
    }
    for (int j = 0; j < P; ++j) store_affine(m, acc[j], c0 + c, k, y + j * ldy);
  }
}

// A branch with a kh x kw kernel over the pixels [w0, w1) of image row h:
// blocks of 8 pixels where the whole kernel lies inside the image, single
// pixels with the taps clipped (zero padding) elsewhere.
inline void branch_row(const Mixer& m, const float* x_row, int64_t h, int64_t w0, int64_t w1, float* y,
                       int64_t ldy, int64_t c0, const float* wt, const float* bias, int64_t kh, int64_t kw) {
  constexpr int P = 8;
  const int64_t cy = kh / 2, cx = kw / 2;
  const int64_t ty0 = std::max<int64_t>(0, cy - h), ty1 = std::min(kh, m.H - h + cy);
  for (int64_t w = w0; w < w1;) {
    float* yw = y + (w - w0) * ldy;
    if (w >= cx && w + P - 1 - cx + kw <= m.W && w + P <= w1) {
      branch<P>(m, x_row + w * m.C, yw, ldy, c0, wt, bias, kw, ty0, ty1, 0, kw, cy, cx);
      w += P;
    } else {
      const int64_t tx0 = std::max<int64_t>(0, cx - w), tx1 = std::min(kw, m.W - w + cx);
      branch<1>(m, x_row + w * m.C, yw, ldy, c0, wt, bias, kw, ty0, ty1, tx0, tx1, cy, cx);
      w += 1;
    }
  }
}

// Rows y[0 .. p1 - p0) (row stride ldy) for the flattened pixels [p0, p1) of
// x [N * H * W, C], one image-row segment at a time.
void mixer_pixels(const Mixer& m, const float* x, int64_t p0, int64_t p1, float* y, int64_t ldy) {
  const int64_t W = m.W, C = m.C;
  int64_t h = (p0 / W) % m.H;
  for (int64_t p = p0; p < p1; h = h + 1 == m.H ? 0 : h + 1) {
    const int64_t w0 = p % W, w1 = std::min(W, w0 + p1 - p);
    const float* x_row = x + (p - w0) * C;
    for (int64_t w = w0; w < w1; ++w) {
      float* yw = y + (w - w0) * ldy;
      for (int64_t c = 0; c < m.id; c += 16) {
        const __mmask16 k = lanes(m.id - c);
        store_affine(m, _mm512_maskz_loadu_ps(k, x_row + w * C + c), c, k, yw);
      }
    }
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id, m.w_hw, m.b_hw, m.ks, m.ks);
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id + m.gc, m.w_w, m.b_w, 1, m.kb);
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id + 2 * m.gc, m.w_h, m.b_h, m.kb, 1);
    y += (w1 - w0) * ldy;
    p += w1 - w0;
  }
}

#pragma GCC pop_options

// Register blocking by the width of the output: NV vectors of 16 columns
// per panel and MR rows, MR * NV = 24 accumulators (of 32 zmm registers).
int panel_vectors(int64_t n) { return n % 64 == 0 ? 4 : n % 48 == 0 ? 3 : n % 32 == 0 ? 2 : 1; }
constexpr int tile_rows_of(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }  // MR for NV

template <Epilogue EPI>
void gemm_rows_any(int64_t m, const float* a, int64_t lda, const float* packed,
                   int64_t K, int64_t N, const float* bias, const float* r,
                   int64_t ldr, float* c, int64_t ldc, const float* next, int64_t next_floats) {
  switch (panel_vectors(N)) {
    case 4: return gemm_rows<tile_rows_of(4), 4, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc, next, next_floats);
    case 3: return gemm_rows<tile_rows_of(3), 3, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc, next, next_floats);
    case 2: return gemm_rows<tile_rows_of(2), 2, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc, next, next_floats);
    default: return gemm_rows<tile_rows_of(1), 1, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc, next, next_floats);
  }
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")

// r[i] = row i of a 16 x 16 block -> r[i] = column i: pairs, then quads
// within 128-bit lanes, then the lanes.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + q], lane l: rows i .. i + 3 of column 4 l + q
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int q = 0; q < 4; ++q) {
    const __m512 a = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44), b = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44), d = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
    t[q] = _mm512_shuffle_f32x4(a, c, 0x88);
    t[4 + q] = _mm512_shuffle_f32x4(a, c, 0xDD);
    t[8 + q] = _mm512_shuffle_f32x4(b, d, 0x88);
    t[12 + q] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Panels of the weights for gemm_rows: for each of `chunks` column ranges
// [c K, (c + 1) K) of W [N, chunks K] (row stride ldw), panels of NR rows
// transposed, out[c][p][k][j] = W[p NR + j][c K + k], so that the kernel reads
// one contiguous row of NR columns of W^T per k. One pass, in parallel, in
// 16 x 16 blocks transposed in registers (K and NR are multiples of 16).
void pack_panels(const float* w, int64_t ldw, int64_t N, int64_t K, int64_t chunks, int64_t NR, float* out) {
  const int64_t panels = N / NR;
  parallel_dynamic(chunks * panels, [&](int64_t t) {
    const int64_t c = t / panels, p = t % panels;
    float* dst = out + (c * panels + p) * K * NR;
    for (int64_t j = 0; j < NR; j += 16) {
      const float* src = w + (p * NR + j) * ldw + c * K;
      for (int64_t k = 0; k < K; k += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ldw + k);
        transpose16(r);
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + (k + i) * NR + j, r[i]);
      }
    }
  });
}

#pragma GCC pop_options

}  // namespace

bool cpu_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}

namespace {

void check_float_cpu(const torch::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat, op, ": ", name,
              " must be a float32 CPU tensor");
}

void check_contiguous(const torch::Tensor& t, const char* op, const char* name) {
  check_float_cpu(t, op, name);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// x as [N, C, H, W] in dense channels-last memory (an NHWC buffer).
void check_channels_last(const torch::Tensor& x, const char* op) {
  check_float_cpu(x, op, "x");
  TORCH_CHECK(x.dim() == 4, op, ": x must be [N, C, H, W], got ", x.dim(), " dims");
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(x.stride(1) == 1 && x.stride(3) == C && x.stride(2) == W * C && x.stride(0) == H * W * C, op,
              ": x must be contiguous in channels-last memory");
}

torch::Tensor empty_channels_last(const torch::Tensor& x) {
  return torch::empty({x.size(0), x.size(2), x.size(3), x.size(1)}, x.options()).permute({0, 3, 1, 2});
}

// Validates the token mixer's parameters for x [N, C, H, W] and returns the
// kernel's view of them; the tap-major copies of the weights go to `keep`.
Mixer make_mixer(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                 const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                 const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                 const c10::optional<torch::Tensor>& shift, std::vector<torch::Tensor>& keep, const char* op) {
  check_channels_last(x, op);
  for (const auto* t : {&w_hw, &b_hw, &w_w, &b_w, &w_h, &b_h}) check_contiguous(*t, op, "a token mixer weight");
  TORCH_CHECK(w_hw.dim() == 4 && w_w.dim() == 4 && w_h.dim() == 4, op, ": conv weights must be 4-d");
  const int64_t C = x.size(1), gc = w_hw.size(0);
  const int64_t ks = w_hw.size(2), kb = w_w.size(3);
  TORCH_CHECK(gc >= 1 && 3 * gc <= C, op, ": ", gc, " channels per conv branch do not fit ", C, " channels");
  TORCH_CHECK(w_hw.sizes() == at::IntArrayRef({gc, 1, ks, ks}) && ks % 2 == 1, op,
              ": dwconv_hw weight must be [gc, 1, k, k] with k odd, got ", w_hw.sizes());
  TORCH_CHECK(w_w.sizes() == at::IntArrayRef({gc, 1, 1, kb}) && kb % 2 == 1, op,
              ": dwconv_w weight must be [gc, 1, 1, k] with k odd, got ", w_w.sizes());
  TORCH_CHECK(w_h.sizes() == at::IntArrayRef({gc, 1, kb, 1}), op, ": dwconv_h weight must be [gc, 1, ", kb,
              ", 1], got ", w_h.sizes());
  TORCH_CHECK(b_hw.numel() == gc && b_w.numel() == gc && b_h.numel() == gc, op, ": conv biases must have ", gc,
              " elements");
  TORCH_CHECK(scale.has_value() == shift.has_value(), op, ": give both scale and shift or neither");
  Mixer m{x.size(2), x.size(3), C, C - 3 * gc, gc, ks, kb};
  for (const auto* w : {&w_hw, &w_w, &w_h}) keep.push_back(w->reshape({gc, -1}).t().contiguous());
  m.w_hw = keep[0].data_ptr<float>();
  m.w_w = keep[1].data_ptr<float>();
  m.w_h = keep[2].data_ptr<float>();
  m.b_hw = b_hw.data_ptr<float>();
  m.b_w = b_w.data_ptr<float>();
  m.b_h = b_h.data_ptr<float>();
  m.scale = m.shift = nullptr;
  if (scale.has_value()) {
    check_contiguous(*scale, op, "scale");
    check_contiguous(*shift, op, "shift");
    TORCH_CHECK(scale->numel() == C && shift->numel() == C, op, ": scale and shift must have ", C, " elements");
    m.scale = scale->data_ptr<float>();
    m.shift = shift->data_ptr<float>();
  }
  return m;
}

// All H hidden units where both weights take at most
// kWholeHiddenWeightBytes, else chunks of at most 384 units (a multiple of
// 64, the widest register tile, where one divides H).
int64_t auto_hidden_chunk(int64_t C, int64_t H) {
  if (8 * C * H <= kWholeHiddenWeightBytes) return H;
  for (const int64_t step : {64, 16})
    for (int64_t hc = 384 / step * step; hc >= step; hc -= step)
      if (H % hc == 0) return hc;
  return H;
}

// The MLP's weights packed for hidden chunks of Hc units: w1 as the panels
// of fc1 [H, C] (chunk j: Hc / NR consecutive panels), w2 as those of the
// Hc columns of fc2 [C, H] for each chunk in turn; nr1 and nr2 are their
// panel widths (the register tiles of outputs Hc and C wide).
struct Mlp {
  torch::Tensor w1, w2;
  const float *b1, *b2;
  int64_t C, H, Hc, nr1, nr2;
};

Mlp make_mlp(int64_t C, const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
             const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias, int64_t hidden_chunk,
             const char* op) {
  for (const auto* t : {&fc1_weight, &fc1_bias, &fc2_weight, &fc2_bias}) check_contiguous(*t, op, "an MLP weight");
  const int64_t H = fc1_weight.size(0);
  TORCH_CHECK(fc1_weight.sizes() == at::IntArrayRef({H, C}) && fc2_weight.sizes() == at::IntArrayRef({C, H}) &&
                  fc1_bias.numel() == H && fc2_bias.numel() == C,
              op, ": weight shapes do not match x");
  TORCH_CHECK(C % 16 == 0 && H % 16 == 0, op, ": channels must be multiples of 16");
  const int64_t Hc = hidden_chunk == 0 ? auto_hidden_chunk(C, H) : hidden_chunk;
  TORCH_CHECK(Hc > 0 && Hc % 16 == 0 && H % Hc == 0, op, ": hidden_chunk must be 0 or a multiple of 16 that divides ",
              H, ", got ", hidden_chunk);
  Mlp mlp{torch::empty({H * C}, fc1_weight.options()), torch::empty({C * H}, fc2_weight.options()),
          fc1_bias.data_ptr<float>(), fc2_bias.data_ptr<float>(), C, H, Hc, 16 * panel_vectors(Hc),
          16 * panel_vectors(C)};
  pack_panels(fc1_weight.data_ptr<float>(), C, H, C, 1, mlp.nr1, mlp.w1.data_ptr<float>());
  pack_panels(fc2_weight.data_ptr<float>(), H, C, Hc, H / Hc, mlp.nr2, mlp.w2.data_ptr<float>());
  return mlp;
}

// Rows of the register tiles of gemm_rows_any for an output width n.
int64_t tile_rows(int64_t n) { return tile_rows_of(panel_vectors(n)); }

// out[M, C] = shortcut + fc2(gelu(fc1(a))) over row blocks whose hidden
// activations (one chunk of Hc units at a time) take about
// hidden_block_bytes, as many blocks for each thread. Per chunk: fc1's Hc
// hidden units, GELU, and fc2's sums over them, added to the block's output
// (which the first chunk starts with bias + shortcut). input(r0, m, buffer)
// returns the rows [r0, r0 + m) of a (row stride C), possibly computed into
// `buffer` (buffer_width floats per row).
template <class Input>
void mlp_blocks(const Mlp& mlp, int64_t M, Input input, int64_t buffer_width, const float* shortcut, float* out,
                int64_t hidden_block_bytes) {
  TORCH_CHECK(hidden_block_bytes > 0, "hidden_block_bytes must be positive");
  const int64_t C = mlp.C, H = mlp.H, Hc = mlp.Hc;
  const float *W1 = mlp.w1.data_ptr<float>(), *W2 = mlp.w2.data_ptr<float>();
  // rows: a multiple of both kernels' tile rows, about hidden_block_bytes,
  // and blocks a multiple of the threads where that evens out their work
  // (the threads take them dynamically: see parallel_dynamic)
  const int64_t tile = std::lcm(tile_rows(Hc), tile_rows(C)), threads = at::get_num_threads();
  int64_t rows = std::max(tile, hidden_block_bytes / (Hc * 4) / tile * tile);
  int64_t blocks = (M + rows - 1) / rows;
  blocks = (blocks + threads - 1) / threads * threads;
  rows = ((M + blocks - 1) / blocks + tile - 1) / tile * tile;
  blocks = (M + rows - 1) / rows;
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
          gemm_rows_any<kBiasGelu>(m, a, C, W1 + j * C, C, Hc, mlp.b1 + j, nullptr, 0, s.hidden.get(), Hc,
                                   W2 + j * C, Hc * mlp.nr2);
          if (j == 0)
            gemm_rows_any<kBiasResidual>(m, s.hidden.get(), Hc, W2, Hc, C, mlp.b2, shortcut + r0 * C, C, o, C,
                                         next_w1, C * mlp.nr1);
          else
            gemm_rows_any<kAdd>(m, s.hidden.get(), Hc, W2 + j * C, Hc, C, nullptr, o, C, o, C, next_w1, C * mlp.nr1);
        }
      });
}

}  // namespace

torch::Tensor fused_mlp(const torch::Tensor& x, const torch::Tensor& shortcut, const torch::Tensor& fc1_weight,
                        const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                        const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk) {
  TORCH_CHECK(cpu_supported(), "fused_mlp needs a CPU with AVX-512 (F, DQ) and FMA");
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

torch::Tensor inception_mixer(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                              const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                              const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                              const c10::optional<torch::Tensor>& shift) {
  TORCH_CHECK(cpu_supported(), "inception_mixer needs a CPU with AVX-512 (F, DQ) and FMA");
  at::NoGradGuard no_grad;
  std::vector<torch::Tensor> keep;
  const Mixer m = make_mixer(x, w_hw, b_hw, w_w, b_w, w_h, b_h, scale, shift, keep, "inception_mixer");
  torch::Tensor y = empty_channels_last(x);
  const float* X = x.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const int64_t C = m.C;
  at::parallel_for(0, x.size(0) * m.H * m.W, 256, [&](int64_t p0, int64_t p1) {
    mixer_pixels(m, X, p0, p1, Y + p0 * C, C);
  });
  return y;
}

torch::Tensor metanext_block(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                             const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                             const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                             const c10::optional<torch::Tensor>& shift, const torch::Tensor& fc1_weight,
                             const torch::Tensor& fc1_bias, const torch::Tensor& fc2_weight,
                             const torch::Tensor& fc2_bias, int64_t hidden_block_bytes, int64_t hidden_chunk) {
  TORCH_CHECK(cpu_supported(), "metanext_block needs a CPU with AVX-512 (F, DQ) and FMA");
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_supported", &cpu_supported, "whether this CPU runs the kernels (AVX-512 F, DQ and FMA)");
  m.def("fused_mlp", &fused_mlp, "shortcut + fc2(gelu(fc1(x))) for row-major [M, C] float32 CPU tensors",
        py::arg("x"), py::arg("shortcut"), py::arg("fc1_weight"), py::arg("fc1_bias"), py::arg("fc2_weight"),
        py::arg("fc2_bias"), py::arg("hidden_block_bytes") = kHiddenBlockBytes, py::arg("hidden_chunk") = 0);
  m.def("inception_mixer", &inception_mixer,
        "affine(cat(x_id, dwconv_hw(x_hw), dwconv_w(x_w), dwconv_h(x_h))) for channels-last float32 CPU x",
        py::arg("x"), py::arg("w_hw"), py::arg("b_hw"), py::arg("w_w"), py::arg("b_w"), py::arg("w_h"),
        py::arg("b_h"), py::arg("scale") = py::none(), py::arg("shift") = py::none());
  m.def("metanext_block", &metanext_block, "x + fc2(gelu(fc1(inception_mixer(x)))) for channels-last float32 CPU x",
        py::arg("x"), py::arg("w_hw"), py::arg("b_hw"), py::arg("w_w"), py::arg("b_w"), py::arg("w_h"),
        py::arg("b_h"), py::arg("scale"), py::arg("shift"), py::arg("fc1_weight"), py::arg("fc1_bias"),
        py::arg("fc2_weight"), py::arg("fc2_bias"), py::arg("hidden_block_bytes") = kHiddenBlockBytes, py::arg("hidden_chunk") = 0);
}
