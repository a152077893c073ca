// GELU + residual CUDA kernel against the CPU reference (double) on the same inputs, fp32 and
// bf16, forward and backward, with and without x. Skips without a GPU or kernels.
// Tolerances: fp32 1e-6 of max|ref| + 1e-5 relative (erff/expf ulps); bf16 2^-7 of max|ref| +
// 2^-7 relative (one rounding to bf16, 2^-8).
#include "tests/kernels/gpu_test_util.h"

namespace {
namespace k = c2c::kernels;

TEST(KernelsGeluResidualGpu, MatchesReference) {
  C2C_REQUIRE_CUDA_KERNELS();
  torch::manual_seed(51);
  for (auto s : std::vector<std::vector<int64_t>>{{1}, {19}, {111}, {989}, {56, 170, 1024}})
    for (bool with_x : {true, false}) {
      c2c::test::Op op = [](const c2c::test::Tensors& in) { return k::gelu_residual(in[0], in[1]); };
      c2c::test::Tensors in{with_x ? torch::randn(s).requires_grad_(true) : torch::Tensor(),
                            (3 * torch::randn(s)).requires_grad_(true)};
      auto up = torch::randn(s);
      const std::string what = std::to_string(in[1].numel()) + (with_x ? "" : " no x");
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kFloat32, {1e-6, 1e-5},
                                             "fp32 " + what);
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kBFloat16, {1.0 / 128, 1.0 / 128},
                                             "bf16 " + what);
    }
}

}  // namespace
