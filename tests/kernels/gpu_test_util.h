// GPU kernel tests: skip (with the reason) without a CUDA device or without the kernels in this
// build, and compare an op on CUDA (fp32 or bf16 inputs) with its CPU reference in double run on
// the same (rounded) inputs, forward and gradients.
#pragma once
#include <torch/cuda.h>

#include "kernels/fused_ops.h"
#include "tests/kernels/kernel_test_util.h"

#define C2C_REQUIRE_CUDA_KERNELS()                                                           \
  do {                                                                                       \
    if (!torch::cuda::is_available())                                                        \
      GTEST_SKIP() << "no CUDA device visible to LibTorch";                                  \
    if (!::c2c::kernels::cuda_kernels_available())                                           \
      GTEST_SKIP() << "this build has no CUDA kernels (needs C2C_CUDA=ON and a CUDA LibTorch)"; \
  } while (0)

namespace c2c::test {

// Tolerances per dtype: `atol` is relative to the largest |ref| of each tensor (gradients of
// different sizes), rtol elementwise.
struct Tolerance {
  double atol_scale, rtol;
};

inline void compare_cuda_with_reference(const Op& op, const Tensors& inputs_fp32,
                                        const torch::Tensor& upstream, torch::Dtype dt,
                                        Tolerance tol, const std::string& what) {
  // The inputs rounded to dt, then the reference in double on exactly those values.
  Tensors rounded;
  for (const auto& t : inputs_fp32) {
    if (!t.defined()) {
      rounded.emplace_back();
      continue;
    }
    auto r = t.detach().to(dt).to(torch::kFloat32);
    if (t.requires_grad()) r.requires_grad_(true);
    rounded.push_back(r);
  }
  auto ref = run_with_grads(op, leaves_like(rounded, torch::kCPU, torch::kFloat64),
                            upstream.to(torch::kFloat64));
  auto dev = run_with_grads(op, leaves_like(rounded, torch::kCUDA, dt), upstream.to(torch::kCUDA, dt));
  auto scaled = [&](const torch::Tensor& r) {
    return tol.atol_scale * std::max(1e-30, r.abs().max().item<double>());
  };
  expect_close(dev.out, ref.out, scaled(ref.out), tol.rtol, what + " forward");
  for (size_t i = 0; i < ref.grads.size(); ++i)
    if (ref.grads[i].defined())
      expect_close(dev.grads[i], ref.grads[i], scaled(ref.grads[i]), tol.rtol,
                   what + " grad of input " + std::to_string(i));
}

}  // namespace c2c::test
