// RMSNorm (kernels/fused_ops.h, CPU reference path) against LibTorch's own autograd of the same
// formula, forward and backward, in double (1e-10) and float, on odd widths and the batched
// (G, T, h) x (G, h) layout; directional finite differences in double; argument errors.
#include "kernels/fused_ops.h"
#include "kernels/rms_norm_ref.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
using c2c::test::Tensors;
namespace k = c2c::kernels;

const int64_t kWidths[] = {1, 19, 111, 989};

// x shapes for width h: plain rows (weight (h)) and the batched layout (weight (G, h)).
std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> layouts(int64_t h) {
  return {{{1, h}, {h}}, {{7, h}, {h}}, {{2, 3, h}, {h}}, {{3, 5, h}, {3, h}}, {{1, 1, h}, {1, h}}};
}

Tensors make_inputs(const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                    torch::Dtype dt) {
  auto x = torch::randn(xs, torch::TensorOptions().dtype(dt)).requires_grad_(true);
  auto w = (1 + 0.3 * torch::randn(ws, torch::TensorOptions().dtype(dt))).requires_grad_(true);
  return {x, w};
}

c2c::test::Op fused = [](const Tensors& in) { return k::rms_norm(in[0], in[1], 1e-6); };
c2c::test::Op unfused = [](const Tensors& in) { return k::rms_norm_unfused(in[0], in[1], 1e-6); };

void compare(torch::Dtype dt, double atol, double rtol) {
  for (int64_t h : kWidths)
    for (const auto& [xs, ws] : layouts(h)) {
      auto in = make_inputs(xs, ws, dt);
      auto up = torch::randn(xs, torch::TensorOptions().dtype(dt));
      auto a = c2c::test::run_with_grads(fused, in, up);
      auto b = c2c::test::run_with_grads(unfused, c2c::test::leaves_like(in, torch::kCPU, dt), up);
      const std::string what = "h " + std::to_string(h) + ", x dims " + std::to_string(xs.size()) +
                               ", w dims " + std::to_string(ws.size());
      c2c::test::expect_close(a.out, b.out, atol, rtol, what + " y");
      c2c::test::expect_close(a.grads[0], b.grads[0], atol, rtol, what + " dx");
      c2c::test::expect_close(a.grads[1], b.grads[1], atol, rtol, what + " dw");
    }
}

TEST(KernelsRmsNorm, MatchesLibTorchAutogradInDouble) {
  torch::manual_seed(1);
  compare(torch::kFloat64, 1e-10, 1e-9);
}

TEST(KernelsRmsNorm, MatchesLibTorchAutogradInFloat) {
  torch::manual_seed(2);
  compare(torch::kFloat32, 1e-5, 1e-4);  // fp32 rounding of sums over up to 989x5 terms
}

TEST(KernelsRmsNorm, FiniteDifferencesInDouble) {
  torch::manual_seed(3);
  for (int64_t h : kWidths)
    for (const auto& [xs, ws] : layouts(h)) {
      auto in = make_inputs(xs, ws, torch::kFloat64);
      auto up = torch::randn(xs, torch::kFloat64);
      c2c::test::expect_directional_derivatives(fused, in, up, 1e-6, 1e-6,
                                                "h " + std::to_string(h));
    }
}

TEST(KernelsRmsNorm, ReferenceLoopsMatchFormula) {
  // The raw-pointer reference alone (the oracle of the CUDA kernel), groups > 1.
  torch::manual_seed(4);
  const int64_t G = 2, T = 3, h = 19;
  auto x = torch::randn({G, T, h}, torch::kFloat64), w = torch::randn({G, h}, torch::kFloat64);
  auto y = torch::empty_like(x), rstd = torch::empty({G, T}, torch::kFloat64);
  k::rms_norm_forward_ref<double>(x.data_ptr<double>(), w.data_ptr<double>(), y.data_ptr<double>(),
                                  rstd.data_ptr<double>(), G, T, h, 1e-6);
  auto want_rstd = torch::rsqrt(x.pow(2).mean(-1) + 1e-6);
  c2c::test::expect_close(rstd, want_rstd, 1e-14, 1e-12, "rstd");
  c2c::test::expect_close(y, x * want_rstd.unsqueeze(-1) * w.unsqueeze(1), 1e-14, 1e-12, "y");
}

TEST(KernelsRmsNorm, Bf16OnCpuStaysWithinBf16Rounding) {
  torch::manual_seed(5);
  auto x = torch::randn({3, 5, 111}), w = 1 + 0.3 * torch::randn({3, 111});
  auto y = k::rms_norm(x.to(torch::kBFloat16), w.to(torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  auto ref = k::rms_norm(x.to(torch::kBFloat16).to(torch::kFloat64),
                         w.to(torch::kBFloat16).to(torch::kFloat64));
  c2c::test::expect_close(y, ref, 1e-2, 1e-2, "bf16 y");  // one bf16 rounding: 2^-8 relative
}

TEST(KernelsRmsNorm, RejectsMismatchedShapes) {
  auto x = torch::randn({3, 5, 8});
  EXPECT_THROW(k::rms_norm(x, torch::ones({7})), c2c::Error);
  EXPECT_THROW(k::rms_norm(x, torch::ones({2, 8})), c2c::Error);
  EXPECT_THROW(k::rms_norm(x, torch::ones({3, 8}), -1.0), c2c::Error);
  try {
    k::rms_norm(x, torch::ones({7}));
  } catch (const c2c::Error& e) {
    EXPECT_NE(std::string(e.what()).find("(3, 5, 8)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}

}  // namespace
