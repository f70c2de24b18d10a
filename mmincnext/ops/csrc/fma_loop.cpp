// fma_loop: the FMA rate of the CPU, the ceiling of every GEMM. Each thread
// runs `iterations` rounds of kChains independent register-wide chains
//
//     a = a * b + c
//
// (enough chains to cover the FMA latency on both FMA pipes), with no
// memory access in the loop. The benchmark times it beside the GEMMs that
// set its limit row: a GEMM kernel's rate over this one is its efficiency.
// Neither PyTorch nor the BLAS libraries expose such a loop, hence the
// kernel.
#include "cpu_kernels.h"

namespace mmincnext {
namespace {

constexpr int kChains = 12;

MMINCNEXT_SIMD_BEGIN

void fma_chains(int64_t iterations, float a0, float b, float c, float* out) {
  reg acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = r_set1(a0);
  const reg bv = r_set1(b), cv = r_set1(c);
  for (int64_t k = 0; k < iterations; ++k)
    for (int i = 0; i < kChains; ++i) acc[i] = r_fmadd(acc[i], bv, cv);
  for (int i = 0; i < kChains; ++i) r_store(out + i * kRegFloats, acc[i]);
}

MMINCNEXT_SIMD_END

}  // namespace

torch::Tensor fma_loop(int64_t iterations, double a0, double b, double c) {
  TORCH_CHECK(cpu_supported(), "fma_loop needs a CPU with " MMINCNEXT_ISA_NAME);
  TORCH_CHECK(iterations >= 0, "fma_loop: iterations must be >= 0, got ", iterations);
  const int64_t threads = at::get_num_threads();
  torch::Tensor out = torch::empty({threads, kChains * kRegFloats});
  float* o = out.data_ptr<float>();
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      fma_chains(iterations, static_cast<float>(a0), static_cast<float>(b), static_cast<float>(c),
                 o + t * kChains * kRegFloats);
  });
  return out;
}

}  // namespace mmincnext
