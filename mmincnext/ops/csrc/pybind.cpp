// The Python module mmincnext._ext (AVX-512) or mmincnext._ext_avx2 (AVX2,
// built with MMINCNEXT_AVX2): the kernels and cpu_supported, which
// mmincnext.ops asks before it calls them.
#include "cpu_kernels.h"

bool mmincnext::cpu_supported() {
  __builtin_cpu_init();
#ifdef MMINCNEXT_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace mmincnext;
  m.def("cpu_supported", &cpu_supported, "whether this CPU runs the kernels (" MMINCNEXT_ISA_NAME ")");
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
        py::arg("fc2_weight"), py::arg("fc2_bias"), py::arg("hidden_block_bytes") = kHiddenBlockBytes,
        py::arg("hidden_chunk") = 0);
  m.def("mixer_backward", &mixer_backward,
        "[grad_x, grad_w_hw, grad_b_hw, grad_w_w, grad_b_w, grad_w_h, grad_b_h] of inception_mixer without affine",
        py::arg("grad_y"), py::arg("x"), py::arg("w_hw"), py::arg("w_w"), py::arg("w_h"));
  m.def("mlp_forward", &mlp_forward,
        "[out, pre]: out = [shortcut +] [scale *] fc2(gelu(pre)), pre = fc1(x), for row-major [M, C] float32 CPU x",
        py::arg("x"), py::arg("shortcut"), py::arg("fc1_weight"), py::arg("fc1_bias"), py::arg("fc2_weight"),
        py::arg("fc2_bias"), py::arg("scale") = py::none());
  m.def("mlp_backward", &mlp_backward,
        "[grad_x, grad_fc1_weight, grad_fc1_bias, grad_fc2_weight, grad_fc2_bias(, grad_scale)] of mlp_forward's out",
        py::arg("grad_out"), py::arg("x"), py::arg("pre"), py::arg("fc1_weight"), py::arg("fc2_weight"),
        py::arg("hidden_block_bytes") = kBackwardBlockBytes, py::arg("hidden_chunk") = 0,
        py::arg("hidden_lanes") = -1, py::arg("scale") = py::none(), py::arg("fc2_bias") = py::none());
  m.def("fma_loop", &fma_loop,
        "[threads, chains * floats]: per thread, register-wide chains a = a * b + c, iterations times, from a0",
        py::arg("iterations"), py::arg("a0"), py::arg("b"), py::arg("c"));
}
