// mixer_backward: the gradients of the Inception depthwise token mixer
// (inception_mixer without the affine) in training, on channels-last
// activations:
//
//     grad_x  = cat(gy_id, dwconv_hw'(gy_hw), dwconv_w'(gy_w), dwconv_h'(gy_h))
//     grad_w  = sum over pixels of gy * shifted x, per tap and channel
//     grad_b  = sum over pixels of gy, per channel
//
// where ' is the conv with the kernel flipped (the transposed conv of an odd,
// centred kernel with zero padding): grad_x is inception_mixer's own pass
// over gy. PyTorch runs the backward as three depthwise convs on copies of
// strided channel slices, a slice of gy per branch and a cat; here one
// pass over gy gives grad_x, and a pass over each branch's channels of gy
// and x the weight and bias sums. The sums go per lane of image rows, a
// fixed number of lanes added in order at the end, so that the bits do not
// depend on the threads.
#include "cpu_kernels.h"

namespace mmincnext {

namespace {

// Lanes of image rows with their own weight and bias sums.
constexpr int64_t kMixerLanes = 32;

MMINCNEXT_SIMD_BEGIN

// The sums of T consecutive taps (tx0 .. tx0 + T) of kernel row ty over one
// image row: s[t][c] += sum_w gy[w][c] * x_row[w + tx0 + t - cx][c] for
// the branch's channels [c0, c0 + gc), gy and x_row with pixel stride C and
// zero padding outside [0, W). T accumulators per 16 channels stay in
// registers over the row.
template <int T>
void tap_sums(const float* gy, const float* x_row, int64_t W, int64_t C, int64_t c0, int64_t gc, int64_t tx0,
              int64_t cx, float* s) {
  // pixels where all T taps fall inside the row
  const int64_t w_lo = std::clamp<int64_t>(cx - tx0, 0, W), w_hi = std::clamp<int64_t>(W + cx - tx0 - T + 1, w_lo, W);
  for (int64_t c = 0; c < gc; c += 16) {
    const lanes16 k = channel_mask(gc - c);
    reg acc[T][kRegsPerVec];  // (arrays of vec16 would stay on the stack)
    for (int t = 0; t < T; ++t) v_put(acc[t], v_zero());
    const float* xc = x_row + c0 + c + (tx0 - cx) * C;  // tap 0 of pixel 0
    auto edge = [&](int64_t w) {
      const vec16 g = v_maskz_load(k, gy + w * C + c0 + c);
      for (int t = 0; t < T; ++t) {
        const int64_t src = w + tx0 + t - cx;
        if (src >= 0 && src < W) v_fmadd_into(acc[t], g, v_maskz_load(k, xc + (w + t) * C));
      }
    };
    for (int64_t w = 0; w < w_lo; ++w) edge(w);
    for (int64_t w = w_lo; w < w_hi; ++w) {
      const vec16 g = v_maskz_load(k, gy + w * C + c0 + c);
      for (int t = 0; t < T; ++t)
        v_fmadd_into(acc[t], g, v_maskz_load(k, xc + (w + t) * C));
    }
    for (int64_t w = w_hi; w < W; ++w) edge(w);
    for (int t = 0; t < T; ++t)
      v_mask_store(s + t * gc + c, k, v_add(v_maskz_load(k, s + t * gc + c), v_of(acc[t])));
  }
}

// tap_sums<T> for a T of 1 .. kMaxTaps known at run time (12 or, with
// AVX2's 16 registers, 6 accumulators of 16 floats).
#ifdef MMINCNEXT_AVX2
constexpr int kMaxTaps = 6;
#else
constexpr int kMaxTaps = 12;
#endif
template <int T = kMaxTaps>
void tap_sums_of(int taps, const float* gy, const float* x_row, int64_t W, int64_t C, int64_t c0, int64_t gc,
                 int64_t tx0, int64_t cx, float* s) {
  if (taps == T)
    tap_sums<T>(gy, x_row, W, C, c0, gc, tx0, cx, s);
  else if constexpr (T > 1)
    tap_sums_of<T - 1>(taps, gy, x_row, W, C, c0, gc, tx0, cx, s);
}

// One branch's weight sums sw [kh kw, gc] (tap-major) and bias sums sb [gc]
// over image row h of an image (x_img, gy_img: its first pixel).
void branch_sums(const float* gy_img, const float* x_img, int64_t h, int64_t H, int64_t W, int64_t C, int64_t c0,
                 int64_t gc, int64_t kh, int64_t kw, float* sw, float* sb) {
  const float* gy = gy_img + h * W * C;
  const int64_t cy = kh / 2, cx = kw / 2;
  for (int64_t ty = std::max<int64_t>(0, cy - h); ty < std::min(kh, H - h + cy); ++ty)
    for (int64_t tx = 0; tx < kw; tx += kMaxTaps) {
      const int taps = static_cast<int>(std::min<int64_t>(kMaxTaps, kw - tx));
      tap_sums_of(taps, gy, x_img + (h + ty - cy) * W * C, W, C, c0, gc, tx, cx, sw + (ty * kw + tx) * gc);
    }
  for (int64_t c = 0; c < gc; c += 16) {
    const lanes16 k = channel_mask(gc - c);
    vec16 acc = v_zero();
    for (int64_t w = 0; w < W; ++w) acc = v_add(acc, v_maskz_load(k, gy + w * C + c0 + c));
    v_mask_store(sb + c, k, v_add(v_maskz_load(k, sb + c), acc));
  }
}

// sum[j] = sum over lanes l in order of sums[l][j], for n floats per lane.
void add_lanes(const float* sums, int64_t lanes, int64_t n, float* sum) {
  for (int64_t j = 0; j < n; j += 16) {
    const lanes16 k = channel_mask(n - j);
    vec16 acc = v_maskz_load(k, sums + j);
    for (int64_t l = 1; l < lanes; ++l) acc = v_add(acc, v_maskz_load(k, sums + l * n + j));
    v_mask_store(sum + j, k, acc);
  }
}

MMINCNEXT_SIMD_END

}  // namespace

std::vector<torch::Tensor> mixer_backward(const torch::Tensor& grad_y, const torch::Tensor& x,
                                          const torch::Tensor& w_hw, const torch::Tensor& w_w,
                                          const torch::Tensor& w_h) {
  TORCH_CHECK(cpu_supported(), "mixer_backward needs a CPU with " MMINCNEXT_ISA_NAME);
  check_channels_last(x, "mixer_backward");
  check_channels_last(grad_y, "mixer_backward", "grad_y");
  TORCH_CHECK(grad_y.sizes() == x.sizes(), "mixer_backward: grad_y must have x's shape ", x.sizes(), ", got ",
              grad_y.sizes());
  for (const auto* w : {&w_hw, &w_w, &w_h}) {
    check_contiguous(*w, "mixer_backward", "a token mixer weight");
    TORCH_CHECK(w->dim() == 4, "mixer_backward: conv weights must be 4-d");
  }
  at::NoGradGuard no_grad;
  // grad_x: the forward pass over gy with flipped kernels and no bias
  // (make_mixer validates the weights' shapes)
  const int64_t gc = w_hw.size(0);
  const torch::Tensor zeros = torch::zeros({gc}, x.options());
  std::vector<torch::Tensor> keep;
  const Mixer m = make_mixer(grad_y, w_hw.flip({2, 3}), zeros, w_w.flip({2, 3}), zeros, w_h.flip({2, 3}), zeros,
                             c10::nullopt, c10::nullopt, keep, "mixer_backward");
  const int64_t N = x.size(0), H = m.H, W = m.W, C = m.C, ks = m.ks, kb = m.kb;
  // per lane: the tap-major weight sums of the three branches, then their
  // bias sums
  const int64_t taps = ks * ks + 2 * kb, per_lane = (taps + 3) * gc;
  const int64_t rows = N * H, lanes = std::max<int64_t>(1, std::min(kMixerLanes, rows));
  torch::Tensor grad_x = empty_channels_last(x);
  torch::Tensor sums = torch::zeros({lanes, taps + 3, gc}, x.options()), sum = torch::empty({taps + 3, gc}, x.options());
  const float *X = x.data_ptr<float>(), *G = grad_y.data_ptr<float>();
  float *dX = grad_x.data_ptr<float>(), *S = sums.data_ptr<float>();
  if (rows * W > 0)
    parallel_dynamic(lanes, [&](int64_t lane) {
      const int64_t r0 = lane * rows / lanes, r1 = (lane + 1) * rows / lanes;
      mixer_pixels(m, G, r0 * W, r1 * W, dX + r0 * W * C, C);
      float* s = S + lane * per_lane;
      float *s_hw = s, *s_w = s_hw + ks * ks * gc, *s_h = s_w + kb * gc, *s_b = s_h + kb * gc;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / H, h = r % H;
        const float *gy = G + n * H * W * C, *xi = X + n * H * W * C;
        branch_sums(gy, xi, h, H, W, C, m.id, gc, ks, ks, s_hw, s_b);
        branch_sums(gy, xi, h, H, W, C, m.id + gc, gc, 1, kb, s_w, s_b + gc);
        branch_sums(gy, xi, h, H, W, C, m.id + 2 * gc, gc, kb, 1, s_h, s_b + 2 * gc);
      }
    });
  add_lanes(S, lanes, per_lane, sum.data_ptr<float>());
  // [taps, gc] -> the weights' [gc, 1, kh, kw]
  auto weight = [&](int64_t t0, int64_t kh, int64_t kw) {
    return sum.narrow(0, t0, kh * kw).t().reshape({gc, 1, kh, kw});
  };
  auto bias = [&](int64_t branch) { return sum[taps + branch].clone(); };
  return {grad_x, weight(0, ks, ks), bias(0), weight(ks * ks, 1, kb), bias(1), weight(ks * ks + kb, kb, 1), bias(2)};
}

}  // namespace mmincnext
