// Every case of the op table (op_table.h) on the CPU: the kernel path (forced through the CPU
// references) against the LibTorch oracle, forward and every gradient, in double (1e-10 absolute,
// 1e-9 relative: two double evaluations of one formula) and float (1e-5 / 1e-4: fp32 sums of up
// to ~1e4 terms); and directional finite differences of the reference path in double.
#include "modules/common/error.h"
#include "tests/kernels/op_table.h"

namespace {
namespace k = c2c::kernels;
using c2c::test::Tensors;

void compare_with_oracle(torch::Dtype dt, double atol, double rtol) {
  const k::ScopedOpPath reference(k::OpPath::reference);
  for (const auto& c : c2c::test::op_cases(/*large=*/false)) {
    auto in = c2c::test::leaves_like(c.inputs, torch::kCPU, dt);
    auto up = c.upstream.to(dt);
    auto a = c2c::test::run_with_grads(c.op, in, up);
    auto b = c2c::test::run_with_grads(c.oracle, c2c::test::leaves_like(in, torch::kCPU, dt), up);
    c2c::test::expect_close(a.out, b.out, atol, rtol, c.name + " forward");
    for (size_t i = 0; i < in.size(); ++i)
      if (b.grads[i].defined())
        c2c::test::expect_close(a.grads[i], b.grads[i], atol, rtol,
                                c.name + " grad of input " + std::to_string(i));
  }
}

TEST(KernelOps, ReferencePathMatchesLibTorchInDouble) {
  torch::manual_seed(1);
  compare_with_oracle(torch::kFloat64, 1e-10, 1e-9);
}

TEST(KernelOps, ReferencePathMatchesLibTorchInFloat) {
  torch::manual_seed(2);
  compare_with_oracle(torch::kFloat32, 1e-5, 1e-4);
}

TEST(KernelOps, FiniteDifferencesInDouble) {
  torch::manual_seed(3);
  const k::ScopedOpPath reference(k::OpPath::reference);
  for (const auto& c : c2c::test::op_cases(/*large=*/false)) {
    if (!c.finite_differences) continue;
    auto in = c2c::test::leaves_like(c.inputs, torch::kCPU, torch::kFloat64);
    c2c::test::expect_directional_derivatives(c.op, in, c.upstream.to(torch::kFloat64), 1e-6,
                                              1e-6, c.name);
  }
}

TEST(KernelOps, EveryOpPathGivesTheSameResult) {
  // auto, reference and torch agree (auto picks one of the two per op).
  torch::manual_seed(4);
  for (const auto& c : c2c::test::op_cases(false)) {
    std::vector<torch::Tensor> outs;
    for (auto path : {k::OpPath::automatic, k::OpPath::reference, k::OpPath::torch}) {
      const k::ScopedOpPath scoped(path);
      torch::NoGradGuard no_grad;
      outs.push_back(c.op(c.inputs));
    }
    c2c::test::expect_close(outs[0], outs[1], 1e-5, 1e-4, c.name + " auto vs reference");
    c2c::test::expect_close(outs[2], outs[1], 1e-5, 1e-4, c.name + " torch vs reference");
  }
  EXPECT_EQ(k::parse_op_path("reference"), k::OpPath::reference);
  EXPECT_THROW(k::parse_op_path("fast"), c2c::Error);
}

}  // namespace
