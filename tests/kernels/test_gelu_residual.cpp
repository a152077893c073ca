// GELU (exact erf) + residual (kernels/fused_ops.h, CPU reference path) against LibTorch's own
// autograd of x + gelu(a): forward and both gradients in double (1e-10) and float, odd sizes and
// the batched (G, T, h) layout, without x (plain GELU); directional finite differences; errors.
#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
using c2c::test::Tensors;
namespace k = c2c::kernels;

std::vector<std::vector<int64_t>> shapes() {
  return {{1}, {19}, {111}, {989}, {3, 5, 111}, {2, 7, 989}};
}

Tensors make_inputs(const std::vector<int64_t>& s, torch::Dtype dt, bool with_x) {
  auto o = torch::TensorOptions().dtype(dt);
  return {with_x ? torch::randn(s, o).requires_grad_(true) : torch::Tensor(),
          (3 * torch::randn(s, o)).requires_grad_(true)};  // a spans GELU's curved part and tails
}

c2c::test::Op fused = [](const Tensors& in) { return k::gelu_residual(in[0], in[1]); };
c2c::test::Op unfused = [](const Tensors& in) { return k::gelu_residual_unfused(in[0], in[1]); };

void compare(torch::Dtype dt, double atol, double rtol) {
  for (const auto& s : shapes())
    for (bool with_x : {true, false}) {
      auto in = make_inputs(s, dt, with_x);
      auto up = torch::randn(s, torch::TensorOptions().dtype(dt));
      auto a = c2c::test::run_with_grads(fused, in, up);
      auto b = c2c::test::run_with_grads(unfused, c2c::test::leaves_like(in, torch::kCPU, dt), up);
      const std::string what = "numel " + std::to_string(in[1].numel()) + (with_x ? "" : " no x");
      c2c::test::expect_close(a.out, b.out, atol, rtol, what + " y");
      if (with_x) c2c::test::expect_close(a.grads[0], b.grads[0], atol, rtol, what + " dx");
      c2c::test::expect_close(a.grads[1], b.grads[1], atol, rtol, what + " da");
    }
}

TEST(KernelsGeluResidual, MatchesLibTorchAutogradInDouble) {
  torch::manual_seed(21);
  compare(torch::kFloat64, 1e-10, 1e-9);
}

TEST(KernelsGeluResidual, MatchesLibTorchAutogradInFloat) {
  torch::manual_seed(22);
  compare(torch::kFloat32, 1e-6, 1e-5);
}

TEST(KernelsGeluResidual, FiniteDifferencesInDouble) {
  torch::manual_seed(23);
  for (const auto& s : shapes()) {
    auto in = make_inputs(s, torch::kFloat64, true);
    auto up = torch::randn(s, torch::kFloat64);
    c2c::test::expect_directional_derivatives(fused, in, up, 1e-6, 1e-6, "gelu_residual");
  }
}

TEST(KernelsGeluResidual, RejectsMismatchedShapes) {
  EXPECT_THROW(k::gelu_residual(torch::randn({3}), torch::randn({4})), c2c::Error);
  EXPECT_THROW(k::gelu_residual(torch::randn({3}), torch::Tensor()), c2c::Error);
}

}  // namespace
