// inception_mixer: the Inception depthwise token mixer on channels-last
// activations,
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
#include "cpu_kernels.h"

namespace mmincnext {

MMINCNEXT_SIMD_BEGIN

namespace {

inline void store_affine(const Mixer& m, vec16 v, int64_t c, lanes16 k, float* y) {
  if (m.scale != nullptr)
    v = v_fmadd(v, v_maskz_load(k, m.scale + c), v_maskz_load(k, m.shift + c));
  v_mask_store(y + c, k, v);
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
    const lanes16 k = channel_mask(m.gc - c);
    reg acc[P][kRegsPerVec];  // (arrays of vec16 would stay on the stack)
    const vec16 b = v_maskz_load(k, bias + c);
    for (int j = 0; j < P; ++j) v_put(acc[j], b);
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* xr = xp + (ty - cy) * row + c0 + c;
      const float* wr = wt + ty * kw * m.gc + c;
      for (int64_t tx = tx0; tx < tx1; ++tx) {
        const vec16 wv = v_maskz_load(k, wr + tx * m.gc);
        const float* xt = xr + (tx - cx) * m.C;
        for (int j = 0; j < P; ++j)
          v_fmadd_into(acc[j], v_maskz_load(k, xt + j * m.C), wv);
      }
    }
    for (int j = 0; j < P; ++j) store_affine(m, v_of(acc[j]), c0 + c, k, y + j * ldy);
  }
}

// A branch with a kh x kw kernel over the pixels [w0, w1) of image row h:
// blocks of P pixels where the whole kernel lies inside the image, single
// pixels with the taps clipped (zero padding) elsewhere.
inline void branch_row(const Mixer& m, const float* x_row, int64_t h, int64_t w0, int64_t w1, float* y,
                       int64_t ldy, int64_t c0, const float* wt, const float* bias, int64_t kh, int64_t kw) {
#ifdef MMINCNEXT_AVX2
  constexpr int P = 4;  // 8 of AVX2's 16 registers
#else
  constexpr int P = 8;
#endif
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

}  // namespace

// Per image-row segment: the identity channels, then the three branches.
void mixer_pixels(const Mixer& m, const float* x, int64_t p0, int64_t p1, float* y, int64_t ldy) {
  const int64_t W = m.W, C = m.C;
  int64_t h = (p0 / W) % m.H;
  for (int64_t p = p0; p < p1; h = h + 1 == m.H ? 0 : h + 1) {
    const int64_t w0 = p % W, w1 = std::min(W, w0 + p1 - p);
    const float* x_row = x + (p - w0) * C;
    for (int64_t w = w0; w < w1; ++w) {
      float* yw = y + (w - w0) * ldy;
      for (int64_t c = 0; c < m.id; c += 16) {
        const lanes16 k = channel_mask(m.id - c);
        store_affine(m, v_maskz_load(k, x_row + w * C + c), c, k, yw);
      }
    }
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id, m.w_hw, m.b_hw, m.ks, m.ks);
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id + m.gc, m.w_w, m.b_w, 1, m.kb);
    branch_row(m, x_row, h, w0, w1, y, ldy, m.id + 2 * m.gc, m.w_h, m.b_h, m.kb, 1);
    y += (w1 - w0) * ldy;
    p += w1 - w0;
  }
}

MMINCNEXT_SIMD_END

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

torch::Tensor inception_mixer(const torch::Tensor& x, const torch::Tensor& w_hw, const torch::Tensor& b_hw,
                              const torch::Tensor& w_w, const torch::Tensor& b_w, const torch::Tensor& w_h,
                              const torch::Tensor& b_h, const c10::optional<torch::Tensor>& scale,
                              const c10::optional<torch::Tensor>& shift) {
  TORCH_CHECK(cpu_supported(), "inception_mixer needs a CPU with " MMINCNEXT_ISA_NAME);
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

}  // namespace mmincnext
