// The vector operations of the kernels on 16 floats, for the two instruction
// sets they are built for: one zmm register (AVX-512 F and DQ, and FMA: the
// module mmincnext._ext) or two ymm registers (AVX2 and FMA, the module
// mmincnext._ext_avx2, built from the same sources with MMINCNEXT_AVX2
// defined). The kernels are written once against these functions; each one
// is the same IEEE operation per element in both builds (a table lookup, a
// select, a product by a power of two), so that both give the same bits.
//
// Code between MMINCNEXT_SIMD_BEGIN and MMINCNEXT_SIMD_END is compiled for
// the build's instruction set, and runs only where cpu_supported() returns
// true: each entry point checks it first. Declarations of such functions
// stand between them too, like their definitions.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#ifdef MMINCNEXT_AVX2
#define MMINCNEXT_SIMD_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define MMINCNEXT_ISA_NAME "AVX2 and FMA"
#else
#define MMINCNEXT_SIMD_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512dq,fma\")")
#define MMINCNEXT_ISA_NAME "AVX-512 (F, DQ) and FMA"
#endif
#define MMINCNEXT_SIMD_END _Pragma("GCC pop_options")

namespace mmincnext {

MMINCNEXT_SIMD_BEGIN

#ifndef MMINCNEXT_AVX2

using vec16 = __m512;
// The first n of 16 lanes (channel tails) and the lanes where a comparison
// holds.
using lanes16 = __mmask16;
using cmp16 = __mmask16;

inline vec16 v_load(const float* p) { return _mm512_loadu_ps(p); }
inline vec16 v_load_aligned(const float* p) { return _mm512_load_ps(p); }  // 64-byte aligned
inline void v_store(float* p, vec16 v) { _mm512_storeu_ps(p, v); }
inline void v_stream(float* p, vec16 v) { _mm512_stream_ps(p, v); }  // 64-byte aligned, bypasses the caches
inline vec16 v_set1(float f) { return _mm512_set1_ps(f); }
inline vec16 v_zero() { return _mm512_setzero_ps(); }
inline vec16 v_add(vec16 a, vec16 b) { return _mm512_add_ps(a, b); }
inline vec16 v_sub(vec16 a, vec16 b) { return _mm512_sub_ps(a, b); }
inline vec16 v_mul(vec16 a, vec16 b) { return _mm512_mul_ps(a, b); }
inline vec16 v_fmadd(vec16 a, vec16 b, vec16 c) { return _mm512_fmadd_ps(a, b, c); }   // a b + c
inline vec16 v_fmsub(vec16 a, vec16 b, vec16 c) { return _mm512_fmsub_ps(a, b, c); }   // a b - c
inline vec16 v_fnmadd(vec16 a, vec16 b, vec16 c) { return _mm512_fnmadd_ps(a, b, c); } // c - a b
inline vec16 v_min(vec16 a, vec16 b) { return _mm512_min_ps(a, b); }  // b where either is NaN
inline vec16 v_max(vec16 a, vec16 b) { return _mm512_max_ps(a, b); }  // likewise
inline vec16 v_abs(vec16 a) { return _mm512_abs_ps(a); }
inline vec16 v_round(vec16 a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline float v_sum(vec16 a) { return _mm512_reduce_add_ps(a); }  // the 16 lanes' sum
// p 2^n for integral n in [-126, 127]
inline vec16 v_scale2(vec16 p, vec16 n) { return _mm512_scalef_ps(p, n); }
// table[k] per lane, k the low 4 bits of the lane's float bits
inline vec16 v_lookup16(vec16 k_bits, const float* table) {
  return _mm512_permutexvar_ps(_mm512_castps_si512(k_bits), _mm512_load_ps(table));
}
inline cmp16 v_ge(vec16 a, vec16 b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
inline cmp16 v_lt(vec16 a, vec16 b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
inline vec16 v_select(cmp16 m, vec16 yes, vec16 no) { return _mm512_mask_blend_ps(m, no, yes); }

inline lanes16 channel_mask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}
inline vec16 v_maskz_load(lanes16 k, const float* p) { return _mm512_maskz_loadu_ps(k, p); }
inline void v_mask_store(float* p, lanes16 k, vec16 v) { _mm512_mask_storeu_ps(p, k, v); }

// r[i] = row i of a 16 x 16 block -> r[i] = column i: pairs, then quads
// within 128-bit lanes, then the lanes.
inline void v_transpose16(vec16 r[16]) {
  vec16 t[16];
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
    const vec16 a = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44), b = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
    const vec16 c = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44), d = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
    t[q] = _mm512_shuffle_f32x4(a, c, 0x88);
    t[4 + q] = _mm512_shuffle_f32x4(a, c, 0xDD);
    t[8 + q] = _mm512_shuffle_f32x4(b, d, 0x88);
    t[12 + q] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// The hardware register the vectors are made of, for the GEMM kernels'
// accumulator tiles: arrays of it stay in registers over a loop, where the
// compiler keeps arrays of the two-register vec16 on the stack.
using reg = __m512;
constexpr int kRegFloats = 16, kRegsPerVec = 1;
inline reg r_zero() { return _mm512_setzero_ps(); }
inline reg r_load(const float* p) { return _mm512_loadu_ps(p); }
inline void r_store(float* p, reg v) { _mm512_storeu_ps(p, v); }
inline reg r_set1(float f) { return _mm512_set1_ps(f); }
inline reg r_fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
// the vector of 16 floats in r[0 .. kRegsPerVec), into them, a b added to them
inline vec16 v_of(const reg* r) { return r[0]; }
inline void v_put(reg* r, vec16 v) { r[0] = v; }
inline void v_fmadd_into(reg* acc, vec16 a, vec16 b) { acc[0] = _mm512_fmadd_ps(a, b, acc[0]); }

#else

struct vec16 {
  __m256 lo, hi;
};
struct lanes16 {
  int64_t n;          // the first n lanes (all where n >= 16)
  __m256i lo, hi;     // for vmaskmovps where n < 16
};
using cmp16 = vec16;  // all ones where the comparison holds

inline vec16 v_load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline vec16 v_load_aligned(const float* p) { return {_mm256_load_ps(p), _mm256_load_ps(p + 8)}; }
inline void v_store(float* p, vec16 v) { _mm256_storeu_ps(p, v.lo), _mm256_storeu_ps(p + 8, v.hi); }
inline void v_stream(float* p, vec16 v) { _mm256_stream_ps(p, v.lo), _mm256_stream_ps(p + 8, v.hi); }
inline vec16 v_set1(float f) { return {_mm256_set1_ps(f), _mm256_set1_ps(f)}; }
inline vec16 v_zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline vec16 v_add(vec16 a, vec16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline vec16 v_sub(vec16 a, vec16 b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
inline vec16 v_mul(vec16 a, vec16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline vec16 v_fmadd(vec16 a, vec16 b, vec16 c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
inline vec16 v_fmsub(vec16 a, vec16 b, vec16 c) {
  return {_mm256_fmsub_ps(a.lo, b.lo, c.lo), _mm256_fmsub_ps(a.hi, b.hi, c.hi)};
}
inline vec16 v_fnmadd(vec16 a, vec16 b, vec16 c) {
  return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)};
}
inline vec16 v_min(vec16 a, vec16 b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }
inline vec16 v_max(vec16 a, vec16 b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
inline vec16 v_abs(vec16 a) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  return {_mm256_andnot_ps(sign, a.lo), _mm256_andnot_ps(sign, a.hi)};
}
inline vec16 v_round(vec16 a) {
  constexpr int mode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return {_mm256_round_ps(a.lo, mode), _mm256_round_ps(a.hi, mode)};
}
inline float v_sum(vec16 a) {
  const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}
// p 2^n for integral n in [-126, 127]: 2^n is a normal float, and the
// product rounds as vscalefps does
inline __m256 scale2_256(__m256 p, __m256 n) {
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
inline vec16 v_scale2(vec16 p, vec16 n) { return {scale2_256(p.lo, n.lo), scale2_256(p.hi, n.hi)}; }
// table[k] per lane, k the low 4 bits of the lane's float bits: the two
// halves of the table by vpermps (low 3 bits), then the half by bit 3
inline __m256 lookup16_256(__m256 k_bits, __m256 t_lo, __m256 t_hi) {
  const __m256i k = _mm256_castps_si256(k_bits);
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t_lo, k), _mm256_permutevar8x32_ps(t_hi, k),
                          _mm256_castsi256_ps(_mm256_slli_epi32(k, 28)));
}
inline vec16 v_lookup16(vec16 k_bits, const float* table) {
  const __m256 t_lo = _mm256_load_ps(table), t_hi = _mm256_load_ps(table + 8);
  return {lookup16_256(k_bits.lo, t_lo, t_hi), lookup16_256(k_bits.hi, t_lo, t_hi)};
}
inline cmp16 v_ge(vec16 a, vec16 b) { return {_mm256_cmp_ps(a.lo, b.lo, _CMP_GE_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_GE_OQ)}; }
inline cmp16 v_lt(vec16 a, vec16 b) { return {_mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ)}; }
inline vec16 v_select(cmp16 m, vec16 yes, vec16 no) {
  return {_mm256_blendv_ps(no.lo, yes.lo, m.lo), _mm256_blendv_ps(no.hi, yes.hi, m.hi)};
}

inline lanes16 channel_mask(int64_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), nv = _mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n, 16)));
  return {n, _mm256_cmpgt_epi32(nv, lane), _mm256_cmpgt_epi32(nv, _mm256_add_epi32(lane, _mm256_set1_epi32(8)))};
}
// whole vectors by plain loads and stores, channel tails by vmaskmovps
// (which reads and writes nothing in the lanes left out)
inline vec16 v_maskz_load(lanes16 k, const float* p) {
  if (k.n >= 16) return v_load(p);
  return {_mm256_maskload_ps(p, k.lo), _mm256_maskload_ps(p + 8, k.hi)};
}
inline void v_mask_store(float* p, lanes16 k, vec16 v) {
  if (k.n >= 16) return v_store(p, v);
  _mm256_maskstore_ps(p, k.lo, v.lo), _mm256_maskstore_ps(p + 8, k.hi, v.hi);
}

// r[i] = rows i of an 8 x 8 block -> columns: pairs, quads, then the
// 128-bit lanes.
inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int q = 0; q < 4; ++q) {
    r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
    r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
  }
}

// r[i] = row i of a 16 x 16 block -> r[i] = column i, as four 8 x 8 blocks.
inline void v_transpose16(vec16 r[16]) {
  __m256 b[4][8];  // [rows 0-7 | 8-15][columns 0-7 | 8-15]
  for (int i = 0; i < 8; ++i) {
    b[0][i] = r[i].lo, b[1][i] = r[i].hi, b[2][i] = r[8 + i].lo, b[3][i] = r[8 + i].hi;
  }
  for (auto& blk : b) transpose8(blk);
  for (int i = 0; i < 8; ++i) {
    r[i] = {b[0][i], b[2][i]};
    r[8 + i] = {b[1][i], b[3][i]};
  }
}

// The hardware register, as above.
using reg = __m256;
constexpr int kRegFloats = 8, kRegsPerVec = 2;
inline reg r_zero() { return _mm256_setzero_ps(); }
inline reg r_load(const float* p) { return _mm256_loadu_ps(p); }
inline void r_store(float* p, reg v) { _mm256_storeu_ps(p, v); }
inline reg r_set1(float f) { return _mm256_set1_ps(f); }
inline reg r_fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
// the vector of 16 floats in r[0 .. kRegsPerVec), into them, a b added to them
inline vec16 v_of(const reg* r) { return {r[0], r[1]}; }
inline void v_put(reg* r, vec16 v) { r[0] = v.lo, r[1] = v.hi; }
inline void v_fmadd_into(reg* acc, vec16 a, vec16 b) {
  acc[0] = _mm256_fmadd_ps(a.lo, b.lo, acc[0]), acc[1] = _mm256_fmadd_ps(a.hi, b.hi, acc[1]);
}

#endif

MMINCNEXT_SIMD_END

}  // namespace mmincnext
