// RMSNorm beyond the op table (test_ops.cpp): the raw-pointer reference against the formula,
// bf16 on the CPU, argument errors.
#include "kernels/fused_ops.h"
#include "kernels/rms_norm_ref.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
namespace k = c2c::kernels;

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
