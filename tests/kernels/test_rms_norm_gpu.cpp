// RMSNorm CUDA kernel against the CPU reference (double) on the same inputs, fp32 and bf16,
// forward and backward, odd widths and the batched layout. Skips without a GPU or kernels.
// Tolerances: fp32 1e-5 of max|ref| + 1e-4 relative (fp32 block sums over h and over rows for dw);
// bf16 2^-6 of max|ref| + 2^-6 relative (outputs rounded to bf16, 2^-8, twice in the forward).
#include "tests/kernels/gpu_test_util.h"

namespace {
namespace k = c2c::kernels;

TEST(KernelsRmsNormGpu, MatchesReference) {
  C2C_REQUIRE_CUDA_KERNELS();
  torch::manual_seed(31);
  c2c::test::Op op = [](const c2c::test::Tensors& in) { return k::rms_norm(in[0], in[1], 1e-6); };
  for (int64_t h : {1, 19, 111, 989, 1024})
    for (auto shapes : std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>{
             {{7, h}, {h}}, {{3, 170, h}, {3, h}}, {{56, 19, h}, {56, h}}}) {
      c2c::test::Tensors in{torch::randn(shapes.first).requires_grad_(true),
                            (1 + 0.3 * torch::randn(shapes.second)).requires_grad_(true)};
      auto up = torch::randn(shapes.first);
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kFloat32, {1e-5, 1e-4},
                                             "fp32 h " + std::to_string(h));
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kBFloat16, {1.0 / 64, 1.0 / 64},
                                             "bf16 h " + std::to_string(h));
    }
}

}  // namespace
