// The gated combine beyond the op table (test_ops.cpp): the delta alone, a bf16 target rounded
// once, no gate, argument errors. On the CPU reference path.
#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
using c2c::test::Tensors;
namespace k = c2c::kernels;

// Leaves: target (S,B,H,N,D), w_tok (S,B,N,H), p_tok (S,B,N,H,D), gate_logit (S), u (S,B,H,N,1).
Tensors make_inputs(int64_t S, int64_t B, int64_t H, int64_t N, int64_t D) {
  return {torch::randn({S, B, H, N, D}).requires_grad_(true),
          (2 * torch::randn({S, B, N, H})).requires_grad_(true),
          torch::randn({S, B, N, H, D}).requires_grad_(true),
          (0.5 * torch::randn({S})).requires_grad_(true), torch::rand({S, B, H, N, 1})};
}

TEST(KernelsGatedCombine, DeltaAloneAndDtypes) {
  torch::manual_seed(14);
  const k::ScopedOpPath reference(k::OpPath::reference);
  auto in = make_inputs(2, 1, 3, 5, 19);
  const auto tau = torch::full({2}, 0.5);
  auto w = in[1].permute({0, 1, 3, 2}), p = in[2].permute({0, 1, 3, 2, 4});
  // Without a target: the gated delta alone (forward_delta).
  auto delta = k::gated_combine(torch::Tensor(), w, p, in[3], in[4], tau, false);
  auto full = k::gated_combine(in[0], w, p, in[3], in[4], tau, false);
  c2c::test::expect_close(full, in[0] + delta, 1e-6, 1e-6, "target + delta");
  // bf16 receiver cache with fp32 fuser output: formed in fp32, rounded to bf16 once.
  auto target_bf16 = in[0].detach().to(torch::kBFloat16);
  auto out = k::gated_combine(target_bf16, w, p, in[3], in[4], tau, false);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  auto want = (target_bf16.to(torch::kFloat32) + delta).to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out, want));
  // A bf16 fuser's delta asked in fp32: the fp32 value of the bf16 inputs, never rounded to bf16.
  auto w16 = w.detach().to(torch::kBFloat16), p16 = p.detach().to(torch::kBFloat16);
  auto wide = k::gated_combine(torch::Tensor(), w16, p16, in[3], in[4], tau, false, torch::kFloat32);
  EXPECT_EQ(wide.scalar_type(), torch::kFloat32);
  auto from_fp32 = k::gated_combine(torch::Tensor(), w16.to(torch::kFloat32),
                                    p16.to(torch::kFloat32), in[3], in[4], tau, false);
  EXPECT_TRUE(torch::equal(wide, from_fp32));
  EXPECT_FALSE(torch::equal(wide, wide.to(torch::kBFloat16).to(torch::kFloat32)));
  {
    const k::ScopedOpPath torch_ops(k::OpPath::torch);
    auto unfused =
        k::gated_combine(torch::Tensor(), w16, p16, in[3], in[4], tau, false, torch::kFloat32);
    EXPECT_EQ(unfused.scalar_type(), torch::kFloat32);
    c2c::test::expect_close(unfused, wide, 1e-6, 1e-6, "bf16 delta in fp32, LibTorch ops");
  }
  // No gate (projection_fusion): target + sigmoid(w) * p, no gate gradient.
  auto no_gate = k::gated_combine(in[0], w, p, {}, {}, {}, false);
  c2c::test::expect_close(no_gate, in[0] + torch::sigmoid(w).unsqueeze(-1) * p, 1e-6, 1e-6,
                          "no gate");
}

TEST(KernelsGatedCombine, RejectsMismatchedShapes) {
  auto p = torch::randn({2, 1, 3, 5, 4}), w = torch::randn({2, 1, 3, 5}), gl = torch::zeros({2});
  auto tau = torch::ones({2});
  EXPECT_THROW(k::gated_combine(p, w.transpose(2, 3), p, gl, {}, tau, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, torch::zeros({3}), {}, tau, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, gl, torch::rand({2, 1, 3, 4}), tau, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, gl, {}, {}, false), c2c::Error);  // soft gate, no tau
  EXPECT_THROW(k::gated_combine(p, w, p, gl, {}, torch::ones({3}), false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p.flatten(3), gl, {}, tau, false), c2c::Error);
  EXPECT_NO_THROW(k::gated_combine(p, w, p, gl, torch::rand({2, 1, 3, 5, 1}), tau, false));
  EXPECT_NO_THROW(k::gated_combine(p, w, p, gl, {}, {}, /*hard=*/true));
}

}  // namespace
