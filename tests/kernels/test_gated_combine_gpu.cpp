// Gated combine CUDA kernel against the CPU reference (double) on the same inputs, fp32 and bf16,
// forward and all gradients, Gumbel/no-noise/hard gates, permuted views of p and w as the fuser
// passes them. Skips without a GPU or kernels.
// Tolerances: fp32 1e-5 of max|ref| + 1e-4 relative (the gate gradient sums N*H*D products);
// bf16 2^-6 of max|ref| + 2^-6 relative (each output rounded once to bf16, 2^-8).
#include "tests/kernels/gpu_test_util.h"

namespace {
namespace k = c2c::kernels;

TEST(KernelsGatedCombineGpu, MatchesReference) {
  C2C_REQUIRE_CUDA_KERNELS();
  torch::manual_seed(41);
  struct Case {
    int64_t S, B, H, N, D;
  };
  for (const Case c : {Case{1, 1, 1, 1, 1}, Case{2, 1, 3, 19, 19}, Case{2, 2, 2, 5, 111},
                       Case{1, 1, 2, 3, 989}, Case{56, 1, 8, 170, 128}})
    for (int mode = 0; mode < 3; ++mode) {
      const bool hard = mode == 2;
      c2c::test::Op op = [&](const c2c::test::Tensors& in) {
        return k::gated_combine(in[0], in[1].permute({0, 1, 3, 2}), in[2].permute({0, 1, 3, 2, 4}),
                                in[3], mode == 0 ? in[4] : torch::Tensor(), 0.4, hard);
      };
      c2c::test::Tensors in{torch::randn({c.S, c.B, c.H, c.N, c.D}).requires_grad_(true),
                            (2 * torch::randn({c.S, c.B, c.N, c.H})).requires_grad_(true),
                            torch::randn({c.S, c.B, c.N, c.H, c.D}).requires_grad_(true),
                            (0.5 * torch::randn({c.S})).requires_grad_(!hard),
                            torch::rand({c.S, c.B, c.H, c.N, 1})};
      auto up = torch::randn({c.S, c.B, c.H, c.N, c.D});
      const std::string what = "D " + std::to_string(c.D) + " mode " + std::to_string(mode);
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kFloat32, {1e-5, 1e-4},
                                             "fp32 " + what);
      c2c::test::compare_cuda_with_reference(op, in, up, torch::kBFloat16, {1.0 / 64, 1.0 / 64},
                                             "bf16 " + what);
    }
}

}  // namespace
