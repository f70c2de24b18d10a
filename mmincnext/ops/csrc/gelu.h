// The exact (erf) GELU on 16 floats (simd.h), through a piecewise polynomial of the
// normal CDF, within 2.4e-7 of it, the float32 rounding of the result: the
// epilogue of fc1 in the GEMM kernel (gemm.cpp); and with its derivative, a
// second piecewise polynomial on the same intervals, for the backward pass
// (mlp_training.cpp).
//
// The tables below are generated: `python mmincnext/ops/csrc/gelu_table.py`
// prints them (kGeluScale, kGeluMaxAbs, kGeluQ, kGeluR). The coefficients
// [2][0] and [4][0] of both are zero in exact arithmetic (q - 1/2 and
// r - 1/2 are odd at k = 0); the least-squares fit leaves values near 1e-16
// there that differ from one numpy/LAPACK build to another.
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

// r(a) = gelu'(-a) = Phi(-a) - a phi(a) (phi the normal density) in the
// same form: 1 - r(a) = gelu'(a); |r| < 3.4e-7 from a = 5.6 on, where the
// backward pass takes it as 0. Fitted and rounded alike; its error is below
// 6e-8.
alignas(64) inline constexpr float kGeluR[6][16] = {
    {0.5f, 0.22375084f, 0.01272335f, -0.10123592f, -0.12869796f, -0.10543112f, -0.06727965f, -0.03537308f,
     -0.015696907f, -0.005953182f, -0.0019438217f, -0.00054897094f, -0.00013451865f, -2.8662254e-05f, -5.3190115e-06f,
     -8.6073646e-07f},
    {-0.28845406f, -0.25254855f, -0.16404495f, -0.06597664f, 0.0046226573f, 0.035683207f, 0.037113026f, 0.025837567f,
     0.014010218f, 0.006223142f, 0.002317887f, 0.0007333063f, 0.00019862228f, 4.6302037e-05f, 9.323936e-06f,
     1.6262704e-06f},
    {-5.466683e-16f, 0.034160316f, 0.05046757f, 0.044340268f, 0.025294704f, 0.0067391954f, -0.0037930002f,
     -0.006452212f, -0.005023135f, -0.0028077357f, -0.0012410984f, -0.0004508096f, -0.00013722472f, -3.541129e-05f,
     -7.804855e-06f, -1.4768575e-06f},
    {0.0125664985f, 0.009129478f, 0.001484834f, -0.004972981f, -0.0069183493f, -0.0050263014f, -0.002031574f,
     2.3548591e-05f, 0.00073918904f, 0.00066262676f, 0.00038010828f, 0.00016581647f, 5.8252856e-05f, 1.6932596e-05f,
     4.1350677e-06f, 8.5660315e-07f},
    {1.8111665e-15f, -0.0015778419f, -0.001962711f, -0.0010984022f, 8.310598e-05f, 0.0007188804f, 0.0006770403f,
     0.0003352383f, 5.2961528e-05f, -6.1872575e-05f, -6.679497e-05f, -3.922594e-05f, -1.681124e-05f, -5.693288e-06f,
     -1.577466e-06f, -3.6441182e-07f},
    {-0.00036622238f, -0.0002215557f, 6.866706e-05f, 0.00024242883f, 0.00019968025f, 5.1478608e-05f, -5.3843327e-05f,
     -7.0445814e-05f, -3.940809e-05f, -8.948441e-06f, 4.2873353e-06f, 5.5758783e-06f, 3.2698601e-06f, 1.3495213e-06f,
     4.3314694e-07f, 1.12663685e-07f},
};

// The interval of a (k = round(a s) in the low mantissa bits of t) and the
// offset u = a s - k in it.
struct Interval {
  vec16 t, u;
};

inline Interval interval_of(vec16 a) {
  const vec16 s = v_set1(kGeluScale), magic = v_set1(12582912.f);  // 1.5 * 2^23
  const vec16 t = v_fmadd(a, s, magic);
  return {t, v_fmsub(a, s, v_sub(t, magic))};
}

// The polynomial of `table` on a's interval, at u.
inline vec16 interval_poly(const Interval& i, const float (&table)[6][16]) {
  vec16 p = v_lookup16(i.t, table[5]);
  for (int d = 4; d >= 0; --d) p = v_fmadd(p, i.u, v_lookup16(i.t, table[d]));
  return p;
}

// q(a) = Phi(-a) for a = min(|x|, 5.6).
inline vec16 normal_tail(vec16 a) { return interval_poly(interval_of(a), kGeluQ); }

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

// gelu(x) and its derivative gelu'(x) = 1 - r(|x|) for x >= 0, else r(|x|):
// q and r from the one interval of a = min(|x|, 5.6), and r taken as 0 from
// |x| = 5.6 on. 35 vector instructions (41 with the derivative through
// exp, as Phi(x) + x phi(x)). A NaN x gives NaN for both (min takes its
// second operand where either is NaN, and so a is NaN).
inline void gelu_and_grad(vec16 x, vec16& gelu, vec16& grad) {
  const vec16 ax = v_abs(x), a = v_min(v_set1(kGeluMaxAbs), ax);
  const Interval i = interval_of(a);
  gelu = gelu_of_tail(x, a, interval_poly(i, kGeluQ));
  const vec16 r = v_select(v_ge(ax, v_set1(kGeluMaxAbs)), v_zero(), interval_poly(i, kGeluR));
  grad = v_select(v_ge(x, v_zero()), v_sub(v_set1(1.f), r), r);
}

MMINCNEXT_SIMD_END

}  // namespace mmincnext
