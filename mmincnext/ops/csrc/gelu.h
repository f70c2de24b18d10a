// The exact (erf) GELU on 16 floats (simd.h), through a piecewise polynomial of the
// normal CDF, within 2.4e-7 of it, the float32 rounding of the result: the
// epilogue of fc1 in the GEMM kernel (gemm.cpp); and with its derivative for
// the backward pass (mlp_training.cpp).
//
// The table below is generated: `python mmincnext/ops/csrc/gelu_table.py`
// prints it (kGeluScale, kGeluMaxAbs, kGeluQ). kGeluQ[2][0] and [4][0] are
// zero in exact arithmetic (q - 1/2 is odd at k = 0); the least-squares fit
// leaves values near 1e-16 there that differ from one numpy/LAPACK build to
// another.
#pragma once

#include "cpu_kernels.h"

namespace mmincnext {

MMINCNEXT_SIMD_BEGIN

// gelu(x) = x Phi(x) = max(x, 0) - a Phi(-a) with a = |x|, since Phi(x) =
// 1 - Phi(-a) for x >= 0: no cancellation in either tail. q(a) = Phi(-a) =
// erfc(a / sqrt(2)) / 2 is a degree-5 polynomial in u = a s - k on each of
// 16 intervals k = round(a s) (|u| <= 1/2, width 0.36), its coefficients
// looked up in registers (vpermps: v_lookup16); a is clamped at 5.6, where a q(a) =
// 6e-8. Least-squares fits on 256 Chebyshev nodes per interval, rounded to
// float32.
inline constexpr float kGeluScale = 2.766071319580078f, kGeluMaxAbs = 5.6f;
alignas(64) inline constexpr float kGeluQ[6][16] = {
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

// q(a) = Phi(-a) for a = min(|x|, 5.6).
inline vec16 normal_tail(vec16 a) {
  const vec16 s = v_set1(kGeluScale), magic = v_set1(12582912.f);  // 1.5 * 2^23
  const vec16 t = v_fmadd(a, s, magic);  // k = round(a s) in the low mantissa bits
  const vec16 u = v_fmsub(a, s, v_sub(t, magic));
  vec16 q = v_lookup16(t, kGeluQ[5]);
  for (int d = 4; d >= 0; --d) q = v_fmadd(q, u, v_lookup16(t, kGeluQ[d]));
  return q;
}

// gelu(x) = max(x, 0) - a q(a) from a = min(|x|, 5.6) and q(a).
inline vec16 gelu_of_tail(vec16 x, vec16 a, vec16 q) {
  return v_sub(v_max(v_zero(), x), v_mul(a, q));
}

// 19 vector instructions; a NaN x gives a = 5.6 (min takes the second
// operand) and a NaN result through max(0, x) (likewise).
inline vec16 gelu16(vec16 x) {
  const vec16 a = v_min(v_abs(x), v_set1(kGeluMaxAbs));
  return gelu_of_tail(x, a, normal_tail(a));
}

// exp(t) for t <= 0 (t < -87.3 gives about 1e-38, and so does a NaN t): t = n ln 2
// + r with |r| <= ln 2 / 2 (ln 2 in two parts), exp(r) by its degree-6
// Taylor polynomial (relative error below 2e-7), times 2^n.
inline vec16 exp_nonpositive(vec16 t) {
  t = v_max(t, v_set1(-87.3f));
  const vec16 n = v_round(v_mul(t, v_set1(1.44269504f)));
  vec16 r = v_fnmadd(n, v_set1(0.693145752f), t);
  r = v_fnmadd(n, v_set1(1.42860677e-6f), r);
  vec16 p = v_set1(1.f / 720);
  for (const float c : {1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = v_fmadd(p, r, v_set1(c));
  return v_scale2(p, n);
}

// gelu(x) and its derivative Phi(x) + x phi(x) (phi the normal density),
// for the backward pass: Phi(x) = 1 - q(|x|) for x >= 0, else q(|x|).
// A NaN x gives NaN for both.
inline void gelu_and_grad(vec16 x, vec16& gelu, vec16& grad) {
  const vec16 a = v_min(v_abs(x), v_set1(kGeluMaxAbs));
  const vec16 q = normal_tail(a);
  gelu = gelu_of_tail(x, a, q);
  const vec16 cdf = v_select(v_ge(x, v_zero()), v_sub(v_set1(1.f), q), q);
  // phi(x) = 0 from |x| = 13 on (phi(13) = 1e-37), so that x phi(x) is 0
  // there even where x^2 overflows (a NaN x: 0 too, then NaN through x)
  const vec16 pdf = v_select(v_lt(v_abs(x), v_set1(13.f)),
                             v_mul(v_set1(0.398942280f), exp_nonpositive(v_mul(v_set1(-0.5f), v_mul(x, x)))),
                             v_zero());
  grad = v_fmadd(x, pdf, cdf);
}

MMINCNEXT_SIMD_END

}  // namespace mmincnext
