// Fused MLP of a MetaNeXt block for CPU inference (fp32, AVX-512):
//
//     out = shortcut + fc2(gelu(fc1(x)))
//
// x and shortcut are row-major [M, C] (the channels-last view of NCHW
// activations), fc1 is [H, C] and fc2 [C, H] (weights of 1x1 convs). oneDNN
// runs fc1 and fc2 as two GEMMs, so the [M, H] hidden activations (four times
// the input) make a round trip through memory, and at C = 96 or 192 its
// kernels reach only 40-70 % of the machine's large-GEMM rate. Here each task
// takes a block of rows whose hidden activations fit in L2, computes them with
// a register-blocked kernel that applies bias and GELU before the store, and
// feeds them to fc2 at once, whose kernel adds bias and shortcut before its
// store. The weights are packed once per call into panels of 16 * NV columns.
//
// GELU is the exact (erf) form; erf uses Abramowitz & Stegun 7.1.26 (absolute
// error 1.5e-7), the approximation oneDNN's fused GELU uses as well.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace {

// Hidden activations computed per task: about a quarter of a 1 MiB L2, so
// that they, the input rows and a weight panel stay in L2 between fc1 and fc2.
constexpr int64_t kHiddenBlockBytes = 256 * 1024;

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")

inline __m512 exp512(__m512 x) {  // Cephes expf, ~1 ulp on [-87, 88]
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)),
                    _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(
      _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x),
                      _mm512_add_ps(x, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

// gelu(x) = x/2 * (1 + erf(x / sqrt(2)))
inline __m512 gelu512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  // |x| / sqrt(2), clamped at 5 where erf is 1 in float32 (so that
  // gelu(+inf) = inf); NaN propagates through the polynomial
  const __m512 az = _mm512_min_ps(
      _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))),
      _mm512_set1_ps(5.f));
  const __m512 d = _mm512_fmadd_ps(az, _mm512_set1_ps(0.3275911f), one);
  __m512 t = _mm512_rcp14_ps(d);  // 1 / d, refined by one Newton step
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.f)));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  p = _mm512_mul_ps(p, t);
  const __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), az), az));
  const __m512 erf_abs = _mm512_fnmadd_ps(p, e, one);  // erf(|x| / sqrt 2)
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 erf = _mm512_mask_sub_ps(erf_abs, neg, _mm512_setzero_ps(), erf_abs);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)),
                       _mm512_add_ps(erf, one));
}

enum Epilogue { kBiasGelu, kBiasResidual };

// c[MR, 16 NV] = epilogue(a[MR, K] @ b[K, 16 NV] + bias), a with row stride
// lda, b a packed panel, c (and the residual r) with row stride ldc (ldr).
template <int MR, int NV, Epilogue EPI>
inline void micro_kernel(const float* a, int64_t lda, const float* b,
                         int64_t K, const float* bias, const float* r,
                         int64_t ldr, float* c, int64_t ldc) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + k * NR + 16 * v);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    const __m512 bb = _mm512_loadu_ps(bias + 16 * v);
    for (int i = 0; i < MR; ++i) {
      __m512 y = _mm512_add_ps(acc[i][v], bb);
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
    if (EPI == kBiasResidual)
      std::memcpy(r_pad + i * NR, r + i * ldr, NR * sizeof(float));
  }
  micro_kernel<MR, NV, EPI>(a_pad.get(), K, b, K, bias, r_pad, NR, c_pad, NR);
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(c + i * ldc, c_pad + i * NR, NR * sizeof(float));
}

inline const float* residual(const float* r, int64_t offset) {
  return r == nullptr ? nullptr : r + offset;
}

// c[m, N] = epilogue(a[m, K] @ W^T + bias), W packed by pack_weight.
template <int MR, int NV, Epilogue EPI>
void gemm_rows(int64_t m, const float* a, int64_t lda, const float* packed,
               int64_t K, int64_t N, const float* bias, const float* r,
               int64_t ldr, float* c, int64_t ldc) {
  constexpr int NR = 16 * NV;
  for (int64_t n = 0; n < N; n += NR) {  // a panel of W stays in cache
    const float* b = packed + n * K;
    int64_t i = 0;
    for (; i + MR <= m; i += MR)
      micro_kernel<MR, NV, EPI>(a + i * lda, lda, b, K, bias + n,
                                residual(r, i * ldr + n), ldr, c + i * ldc + n, ldc);
    if (i < m)
      micro_kernel_tail<MR, NV, EPI>(m - i, a + i * lda, lda, b, K, bias + n,
                                     residual(r, i * ldr + n), ldr,
                                     c + i * ldc + n, ldc);
  }
}

#pragma GCC pop_options

// Register blocking by the width of the output: NV vectors of 16 columns
// per panel and MR rows, MR * NV = 24 accumulators (of 32 zmm registers).
int panel_vectors(int64_t n) { return n % 64 == 0 ? 4 : n % 48 == 0 ? 3 : n % 32 == 0 ? 2 : 1; }

template <Epilogue EPI>
void gemm_rows_any(int64_t m, const float* a, int64_t lda, const float* packed,
                   int64_t K, int64_t N, const float* bias, const float* r,
                   int64_t ldr, float* c, int64_t ldc) {
  switch (panel_vectors(N)) {
    case 4: return gemm_rows<6, 4, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc);
    case 3: return gemm_rows<8, 3, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc);
    case 2: return gemm_rows<12, 2, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc);
    default: return gemm_rows<12, 1, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc);
  }
}

// W [N, K] -> panels of NR = 16 * panel_vectors(N) columns of W^T, each
// [K, NR] row-major, so that the kernel reads one contiguous row per k.
torch::Tensor pack_weight(const torch::Tensor& w) {
  const int64_t N = w.size(0), K = w.size(1), NR = 16 * panel_vectors(N);
  return w.view({N / NR, NR, K}).transpose(1, 2).contiguous();
}

}  // namespace

bool cpu_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}

torch::Tensor fused_mlp(const torch::Tensor& x, const torch::Tensor& shortcut,
                        const torch::Tensor& fc1_weight, const torch::Tensor& fc1_bias,
                        const torch::Tensor& fc2_weight, const torch::Tensor& fc2_bias,
                        int64_t hidden_block_bytes) {
  TORCH_CHECK(cpu_supported(), "fused_mlp needs a CPU with AVX-512 (F, DQ) and FMA");
  for (const auto* t : {&x, &shortcut, &fc1_weight, &fc1_bias, &fc2_weight, &fc2_bias})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "fused_mlp takes contiguous float32 CPU tensors");
  TORCH_CHECK(x.dim() == 2 && shortcut.sizes() == x.sizes(), "fused_mlp: x and shortcut must be [M, C] alike");
  const int64_t M = x.size(0), C = x.size(1), H = fc1_weight.size(0);
  TORCH_CHECK(fc1_weight.sizes() == at::IntArrayRef({H, C}) && fc2_weight.sizes() == at::IntArrayRef({C, H}) &&
                  fc1_bias.numel() == H && fc2_bias.numel() == C,
              "fused_mlp: weight shapes do not match x");
  TORCH_CHECK(C % 16 == 0 && H % 16 == 0, "fused_mlp: channels must be multiples of 16");
  TORCH_CHECK(hidden_block_bytes > 0, "fused_mlp: hidden_block_bytes must be positive");

  at::NoGradGuard no_grad;
  const torch::Tensor w1 = pack_weight(fc1_weight), w2 = pack_weight(fc2_weight);
  torch::Tensor out = torch::empty_like(shortcut);
  const float *X = x.data_ptr<float>(), *S = shortcut.data_ptr<float>(), *W1 = w1.data_ptr<float>(),
              *B1 = fc1_bias.data_ptr<float>(), *W2 = w2.data_ptr<float>(), *B2 = fc2_bias.data_ptr<float>();
  float* O = out.data_ptr<float>();

  // Row blocks: a multiple of 24 rows (both kernels' MR divide it), hidden
  // activations of about kHiddenBlockBytes.
  const int64_t rows = std::max<int64_t>(24, hidden_block_bytes / (H * 4) / 24 * 24);
  const int64_t blocks = (M + rows - 1) / rows;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> hidden(new float[rows * H]);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * rows, m = std::min(rows, M - r0);
      gemm_rows_any<kBiasGelu>(m, X + r0 * C, C, W1, C, H, B1, nullptr, 0, hidden.get(), H);
      gemm_rows_any<kBiasResidual>(m, hidden.get(), H, W2, H, C, B2, S + r0 * C, C, O + r0 * C, C);
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_supported", &cpu_supported, "whether this CPU runs fused_mlp (AVX-512 F, DQ and FMA)");
  m.def("fused_mlp", &fused_mlp, "shortcut + fc2(gelu(fc1(x))) for row-major [M, C] float32 CPU tensors",
        py::arg("x"), py::arg("shortcut"), py::arg("fc1_weight"), py::arg("fc1_bias"), py::arg("fc2_weight"),
        py::arg("fc2_bias"), py::arg("hidden_block_bytes") = kHiddenBlockBytes);
}
