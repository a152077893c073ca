// Dropout + residual beyond the op table (test_ops.cpp): the counter mask keeps about 1 - p of
// the values, scaled by 1/(1-p); it is a function of the seed alone (same seed, same mask; other
// seed, other mask); the backward regenerates the forward's mask; p = 0 is the plain sum; errors.
#include "kernels/fused_ops.h"
#include "kernels/kernel_types.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
namespace k = c2c::kernels;

TEST(KernelsDropoutResidual, MaskRateScaleAndSeed) {
  for (auto path : {k::OpPath::reference, k::OpPath::torch}) {
    const k::ScopedOpPath scoped(path);
    const double p = 0.3;
    auto x = torch::zeros({4, 100, 250}), a = torch::ones({4, 100, 250});
    auto y = k::dropout_residual(x, a, p, 7);
    const double kept = (y > 0).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(kept, 1 - p, 0.005) << k::op_path_name(path);  // 1e5 draws: sd 0.0015
    EXPECT_NEAR(y.max().item<double>(), 1 / (1 - p), 1e-6);
    EXPECT_TRUE(torch::equal(y, k::dropout_residual(x, a, p, 7)));
    EXPECT_FALSE(torch::equal(y, k::dropout_residual(x, a, p, 8)));
    EXPECT_TRUE(torch::equal(k::dropout_residual(x, a, 0.0, 7), x + a));
  }
}

TEST(KernelsDropoutResidual, BackwardRegeneratesTheForwardMask) {
  const k::ScopedOpPath reference(k::OpPath::reference);
  torch::manual_seed(5);
  auto x = torch::zeros({2, 9, 33}).requires_grad_(true);  // y = a * factor, exactly
  auto a = (1 + torch::rand({2, 9, 33})).requires_grad_(true);
  auto y = k::dropout_residual(x, a, 0.5, 123);
  y.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::ones_like(x)));
  // The forward's factor per element, y / a (0 or 1/(1-p)), is the backward's da.
  auto factor = (y / a).detach();
  c2c::test::expect_close(a.grad(), factor, 1e-5, 1e-5, "da");
  // The counter itself: element i is kept iff counter_uniform(seed, i) >= p.
  auto flat = a.grad().flatten();
  for (int64_t i : {0, 1, 100, 593}) {
    const bool keep = k::counter_uniform(123, static_cast<uint64_t>(i)) >= 0.5f;
    EXPECT_EQ(flat[i].item<float>() != 0.f, keep) << "element " << i;
  }
}

TEST(KernelsDropoutResidual, RejectsBadArguments) {
  auto x = torch::randn({2, 3, 4});
  EXPECT_THROW(k::dropout_residual(x, torch::randn({2, 3, 5}), 0.1, 1), c2c::Error);
  EXPECT_THROW(k::dropout_residual(x, x, 1.0, 1), c2c::Error);
  EXPECT_THROW(k::dropout_residual(x, x, -0.1, 1), c2c::Error);
}

}  // namespace
