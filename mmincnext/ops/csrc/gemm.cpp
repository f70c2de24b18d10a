// The GEMMs of the fused MLP: a register-blocked micro-kernel that applies
// its epilogue (bias and GELU, bias and residual, accumulation, ...) before
// the store, the row driver that prefetches the next weight panel while one
// is in use, the packing of the weights into those panels, and the kernel
// of the weight gradients (c += a^T b).
#include "cpu_kernels.h"
#include "gelu.h"

#include <cstring>
#include <type_traits>

namespace mmincnext {
namespace {

MMINCNEXT_SIMD_BEGIN

// c[MR, 16 NV] = epilogue(a[MR, K] @ b[K, 16 NV]), a with row stride lda, b
// a packed panel, c (and the residual r, and g) with row stride ldc (ldr,
// ldg). The first pf_lines iterations each prefetch a cache line of pf into
// L2.
template <int MR, int NV, Epilogue EPI>
inline void micro_kernel(const float* a, int64_t lda, const float* b,
                         int64_t K, const float* bias, const float* r,
                         int64_t ldr, float* c, int64_t ldc, const float* pf,
                         int64_t pf_lines, float* g, int64_t ldg) {
  constexpr int NR = 16 * NV, RV = NR / kRegFloats;  // registers per row
  reg acc[MR][RV];
  if (EPI == kGeluGrad)  // pre, read once from memory, to arrive during the loop
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(r + i * ldr + 16 * v), _MM_HINT_T0);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < RV; ++v) acc[i][v] = r_zero();
  for (int64_t k = 0; k < K; ++k) {
    if (k < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);
    reg bv[RV];
    for (int v = 0; v < RV; ++v) bv[v] = r_load(b + k * NR + kRegFloats * v);
    for (int i = 0; i < MR; ++i) {
      const reg av = r_set1(a[i * lda + k]);
      for (int v = 0; v < RV; ++v)
        acc[i][v] = r_fmadd(av, bv[v], acc[i][v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    const vec16 bb = has_bias(EPI) ? v_load(bias + 16 * v) : v_zero();
    for (int i = 0; i < MR; ++i) {
      const vec16 sum = v_of(&acc[i][v * (16 / kRegFloats)]);
      vec16 y = has_bias(EPI) ? v_add(sum, bb) : sum;
      if (EPI == kBiasGelu) {
        y = gelu16(y);
      } else if (EPI == kBiasGeluKeep) {
        v_stream(g + i * ldg + 16 * v, y);
        y = gelu16(y);
      } else if (EPI == kGeluGrad) {
        vec16 gelu, grad;
        gelu_and_grad(v_load(r + i * ldr + 16 * v), gelu, grad);
        v_store(g + i * ldg + 16 * v, gelu);
        y = v_mul(y, grad);
      } else if (reads_r(EPI)) {
        y = v_add(y, v_load(r + i * ldr + 16 * v));
      }
      v_store(c + i * ldc + 16 * v, y);
    }
  }
}

// The same for the m < MR rows at the end of the input: they are copied to
// zero-padded buffers and the valid rows copied back.
template <int MR, int NV, Epilogue EPI>
void micro_kernel_tail(int64_t m, const float* a, int64_t lda, const float* b,
                       int64_t K, const float* bias, const float* r,
                       int64_t ldr, float* c, int64_t ldc, float* g, int64_t ldg) {
  constexpr int NR = 16 * NV;
  std::unique_ptr<float[]> a_pad(new float[MR * K]());
  alignas(64) float r_pad[MR * NR] = {0}, c_pad[MR * NR], g_pad[MR * NR];  // g_pad: streaming stores
  for (int64_t i = 0; i < m; ++i) {
    std::memcpy(a_pad.get() + i * K, a + i * lda, K * sizeof(float));
    if (reads_r(EPI))
      std::memcpy(r_pad + i * NR, r + i * ldr, NR * sizeof(float));
  }
  micro_kernel<MR, NV, EPI>(a_pad.get(), K, b, K, bias, r_pad, NR, c_pad, NR, nullptr, 0, g_pad, NR);
  for (int64_t i = 0; i < m; ++i) {
    std::memcpy(c + i * ldc, c_pad + i * NR, NR * sizeof(float));
    if (writes_g(EPI)) std::memcpy(g + i * ldg, g_pad + i * NR, NR * sizeof(float));
  }
}

template <class T>
inline T* offset_or_null(T* r, int64_t offset) {
  return r == nullptr ? nullptr : r + offset;
}

// gemm_rows_any for MR x 16 NV register tiles. While the row tiles go
// through one panel, which then stays in L2, the next one (after the last:
// the `next_floats` floats at `next`, the first panel of the caller's next
// call) is prefetched into L2, a slice per tile, so that the first tile of a
// panel does not wait for the last-level cache (the weights of stage 1 and
// up do not fit in L2 with the activations).
template <int MR, int NV, Epilogue EPI>
void gemm_rows(int64_t m, const float* a, int64_t lda, const float* packed,
               int64_t K, int64_t N, const float* bias, const float* r,
               int64_t ldr, float* c, int64_t ldc, const float* next, int64_t next_floats, float* g,
               int64_t ldg) {
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
      micro_kernel<MR, NV, EPI>(a + i * lda, lda, b, K, bias + n, offset_or_null(r, i * ldr + n), ldr, c + i * ldc + n,
                                ldc, pf + 16 * l0, std::min(per_tile, lines - l0), offset_or_null(g, i * ldg + n), ldg);
    }
    if (i < m)
      micro_kernel_tail<MR, NV, EPI>(m - i, a + i * lda, lda, b, K, bias + n,
                                     offset_or_null(r, i * ldr + n), ldr,
                                     c + i * ldc + n, ldc, offset_or_null(g, i * ldg + n), ldg);
  }
}

MMINCNEXT_SIMD_END

}  // namespace

template <Epilogue EPI>
void gemm_rows_any(int64_t m, const float* a, int64_t lda, const float* packed,
                   int64_t K, int64_t N, const float* bias, const float* r,
                   int64_t ldr, float* c, int64_t ldc, const float* next, int64_t next_floats, float* g,
                   int64_t ldg) {
  const auto run = [&](auto nv) {
    constexpr int NV = decltype(nv)::value;
    gemm_rows<tile_rows_of(NV), NV, EPI>(m, a, lda, packed, K, N, bias, r, ldr, c, ldc, next, next_floats, g, ldg);
  };
  switch (panel_vectors(N)) {
    case 4: return run(std::integral_constant<int, 4>());
    case 3: return run(std::integral_constant<int, 3>());
    case 2: return run(std::integral_constant<int, 2>());
    default: return run(std::integral_constant<int, 1>());
  }
}

#define MMINCNEXT_GEMM_ROWS(EPI)                                                                               \
  template void gemm_rows_any<EPI>(int64_t, const float*, int64_t, const float*, int64_t, int64_t, const float*, \
                                   const float*, int64_t, float*, int64_t, const float*, int64_t, float*, int64_t);
MMINCNEXT_GEMM_ROWS(kBiasGelu)
MMINCNEXT_GEMM_ROWS(kBiasGeluKeep)
MMINCNEXT_GEMM_ROWS(kBiasResidual)
MMINCNEXT_GEMM_ROWS(kAdd)
MMINCNEXT_GEMM_ROWS(kBias)
MMINCNEXT_GEMM_ROWS(kGeluGrad)
MMINCNEXT_GEMM_ROWS(kStore)
#undef MMINCNEXT_GEMM_ROWS

MMINCNEXT_SIMD_BEGIN

namespace {

// c[MR, 16 NV] (+)= a[K, MR]^T @ b[K, 16 NV] (added where `add`), a and b
// row-major with row strides lda and ldb: the weight gradients' products, whose reduction runs
// over the rows of a row block (K), with a and b as computed, unpacked (a
// block's rows of b, 16 NV columns wide, stay in L1 for all its tiles).
template <int MR, int NV>
inline void tn_kernel(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* c, int64_t ldc,
                      bool add) {
  constexpr int RV = 16 * NV / kRegFloats;  // registers per row
  reg acc[MR][RV];
  if (add)  // the sums to add to arrive during the loop
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_T0);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < RV; ++v) acc[i][v] = r_zero();
  for (int64_t k = 0; k < K; ++k) {
    reg bv[RV];
    for (int v = 0; v < RV; ++v) bv[v] = r_load(b + k * ldb + kRegFloats * v);
    for (int i = 0; i < MR; ++i) {
      const reg av = r_set1(a[k * lda + i]);
      for (int v = 0; v < RV; ++v) acc[i][v] = r_fmadd(av, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const vec16 sum = v_of(&acc[i][v * (16 / kRegFloats)]);
      v_store(c + i * ldc + 16 * v, add ? v_add(sum, v_load(c + i * ldc + 16 * v)) : sum);
    }
}

// tn_kernel for the last r < R rows of the output.
template <int R, int NV>
inline void tn_tail(int r, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* c,
                    int64_t ldc, bool add) {
  if constexpr (R > 0) {
    if (r == R) return tn_kernel<R, NV>(a, lda, b, ldb, K, c, ldc, add);
    tn_tail<R - 1, NV>(r, a, lda, b, ldb, K, c, ldc, add);
  }
}

template <int NV>
void gemm_tn_nv(int64_t K, const float* a, int64_t lda, int64_t M, const float* b, int64_t ldb, int64_t N, float* c,
                int64_t ldc, bool add) {
  constexpr int MR = tile_rows_of(NV), NR = 16 * NV;
  for (int64_t n = 0; n < N; n += NR) {
    int64_t i = 0;
    for (; i + MR <= M; i += MR) tn_kernel<MR, NV>(a + i, lda, b + n, ldb, K, c + i * ldc + n, ldc, add);
    if (i < M) tn_tail<MR - 1, NV>(static_cast<int>(M - i), a + i, lda, b + n, ldb, K, c + i * ldc + n, ldc, add);
  }
}

}  // namespace

MMINCNEXT_SIMD_END

void gemm_tn(int64_t K, const float* a, int64_t lda, int64_t M, const float* b, int64_t ldb, int64_t N, float* c,
             int64_t ldc, bool add) {
  switch (panel_vectors(N)) {
    case 4: return gemm_tn_nv<4>(K, a, lda, M, b, ldb, N, c, ldc, add);
    case 3: return gemm_tn_nv<3>(K, a, lda, M, b, ldb, N, c, ldc, add);
    case 2: return gemm_tn_nv<2>(K, a, lda, M, b, ldb, N, c, ldc, add);
    default: return gemm_tn_nv<1>(K, a, lda, M, b, ldb, N, c, ldc, add);
  }
}

MMINCNEXT_SIMD_BEGIN

// Each panel holds one contiguous row of NR columns of W^T per k, what the
// micro-kernel reads. One pass, in parallel, in 16 x 16 blocks transposed in
// registers (each of W's rows times its scale on the way, where given).
void pack_panels(const float* w, int64_t ldw, int64_t N, int64_t K, int64_t chunks, int64_t NR, float* out,
                 const float* scale) {
  const int64_t panels = N / NR;
  parallel_dynamic(chunks * panels, [&](int64_t t) {
    const int64_t c = t / panels, p = t % panels;
    float* dst = out + (c * panels + p) * K * NR;
    for (int64_t j = 0; j < NR; j += 16) {
      const float* src = w + (p * NR + j) * ldw + c * K;
      const vec16 s = scale != nullptr ? v_load(scale + p * NR + j) : v_set1(1.f);
      for (int64_t k = 0; k < K; k += 16) {
        vec16 r[16];
        for (int i = 0; i < 16; ++i) r[i] = v_load(src + i * ldw + k);
        v_transpose16(r);
        for (int i = 0; i < 16; ++i) v_store(dst + (k + i) * NR + j, scale != nullptr ? v_mul(r[i], s) : r[i]);
      }
    }
  });
}

// The same panels from W^T [chunks K, N] (row stride ldt): out[c][p][k] is
// row c K + k of W^T from column p NR on, a copy (times scale[c K + k],
// where given).
void pack_panels_of_transposed(const float* wt, int64_t ldt, int64_t N, int64_t K, int64_t chunks, int64_t NR,
                               float* out, const float* scale) {
  const int64_t panels = N / NR;
  parallel_dynamic(chunks * panels, [&](int64_t t) {
    const int64_t c = t / panels, p = t % panels;
    float* dst = out + (c * panels + p) * K * NR;
    for (int64_t k = 0; k < K; ++k) {
      const float* src = wt + (c * K + k) * ldt + p * NR;
      if (scale == nullptr) {
        std::memcpy(dst + k * NR, src, NR * sizeof(float));
      } else {
        const vec16 s = v_set1(scale[c * K + k]);
        for (int64_t j = 0; j < NR; j += 16) v_store(dst + k * NR + j, v_mul(v_load(src + j), s));
      }
    }
  });
}

MMINCNEXT_SIMD_END

}  // namespace mmincnext
