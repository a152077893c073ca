// Gated combine (kernels/fused_ops.h, CPU reference path) against LibTorch's own autograd of the
// same formula: forward and gradients to target, head-weight logits, p and the per-layer gate
// logit, in double (1e-10) and float; Gumbel noise, no noise and the hard gate; permuted
// (token-major, as in the fuser) views of p and w; directional finite differences; errors.
#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
using c2c::test::Tensors;
namespace k = c2c::kernels;

struct Case {
  int64_t S, B, H, N, D;
};
// Odd head dims (1, 19, 111, 989) and the published one (128).
const Case kCases[] = {{1, 1, 1, 1, 1}, {2, 1, 3, 19, 19}, {2, 2, 2, 5, 111}, {1, 1, 2, 3, 989},
                       {4, 1, 8, 11, 128}};

enum class GateMode { gumbel, no_noise, hard };

// Leaves: target (S,B,H,N,D), w_tok (S,B,N,H), p_tok (S,B,N,H,D), gate_logit (S), u (S,B,H,N,1)
// (u without gradient). The op permutes w_tok and p_tok to (S,B,H,N[,D]) views, as the fuser does.
Tensors make_inputs(const Case& c, torch::Dtype dt) {
  auto o = torch::TensorOptions().dtype(dt);
  return {torch::randn({c.S, c.B, c.H, c.N, c.D}, o).requires_grad_(true),
          (2 * torch::randn({c.S, c.B, c.N, c.H}, o)).requires_grad_(true),
          torch::randn({c.S, c.B, c.N, c.H, c.D}, o).requires_grad_(true),
          (0.5 * torch::randn({c.S}, o)).requires_grad_(true),
          torch::rand({c.S, c.B, c.H, c.N, 1}, o)};
}

c2c::test::Op make_op(bool use_fused, GateMode mode, double tau) {
  return [=](const Tensors& in) {
    auto w = in[1].permute({0, 1, 3, 2});
    auto p = in[2].permute({0, 1, 3, 2, 4});
    auto u = mode == GateMode::gumbel ? in[4] : torch::Tensor();
    const bool hard = mode == GateMode::hard;
    return use_fused ? k::gated_combine(in[0], w, p, in[3], u, tau, hard)
                     : k::gated_combine_unfused(in[0], w, p, in[3], u, tau, hard);
  };
}

void compare(torch::Dtype dt, double atol, double rtol) {
  for (const Case& c : kCases)
    for (GateMode mode : {GateMode::gumbel, GateMode::no_noise, GateMode::hard})
      for (double tau : {1.0, 0.3}) {
        auto in = make_inputs(c, dt);
        auto up = torch::randn({c.S, c.B, c.H, c.N, c.D}, torch::TensorOptions().dtype(dt));
        auto a = c2c::test::run_with_grads(make_op(true, mode, tau), in, up);
        auto b = c2c::test::run_with_grads(make_op(false, mode, tau),
                                           c2c::test::leaves_like(in, torch::kCPU, dt), up);
        const std::string what = "D " + std::to_string(c.D) + ", mode " +
                                 std::to_string(static_cast<int>(mode)) + ", tau " +
                                 std::to_string(tau);
        c2c::test::expect_close(a.out, b.out, atol, rtol, what + " out");
        const char* names[] = {"d_target", "d_w", "d_p", "d_gate_logit"};
        for (int i = 0; i < 4; ++i) {
          if (mode == GateMode::hard && i == 3) {
            // The hard gate is a step: no gradient reaches the logit (LibTorch gives none at all).
            EXPECT_EQ(a.grads[3].abs().max().item<double>(), 0.0) << what;
            continue;
          }
          c2c::test::expect_close(a.grads[i], b.grads[i], atol, rtol, what + " " + names[i]);
        }
      }
}

TEST(KernelsGatedCombine, MatchesLibTorchAutogradInDouble) {
  torch::manual_seed(11);
  compare(torch::kFloat64, 1e-10, 1e-9);
}

TEST(KernelsGatedCombine, MatchesLibTorchAutogradInFloat) {
  torch::manual_seed(12);
  compare(torch::kFloat32, 1e-5, 1e-4);  // the gate gradient sums up to 11*8*128 fp32 terms
}

TEST(KernelsGatedCombine, FiniteDifferencesInDouble) {
  torch::manual_seed(13);
  for (const Case& c : kCases)
    for (GateMode mode : {GateMode::gumbel, GateMode::no_noise})
      for (double tau : {1.0, 0.3}) {
        auto in = make_inputs(c, torch::kFloat64);
        auto up = torch::randn({c.S, c.B, c.H, c.N, c.D}, torch::kFloat64);
        c2c::test::expect_directional_derivatives(make_op(true, mode, tau), in, up, 1e-6, 1e-6,
                                                  "D " + std::to_string(c.D));
      }
}

TEST(KernelsGatedCombine, DeltaAloneAndDtypes) {
  torch::manual_seed(14);
  const Case c{2, 1, 3, 5, 19};
  auto in = make_inputs(c, torch::kFloat32);
  auto w = in[1].permute({0, 1, 3, 2}), p = in[2].permute({0, 1, 3, 2, 4});
  // Without a target: the gated delta alone (forward_delta).
  auto delta = k::gated_combine(torch::Tensor(), w, p, in[3], in[4], 0.5, false);
  auto full = k::gated_combine(in[0], w, p, in[3], in[4], 0.5, false);
  c2c::test::expect_close(full, in[0] + delta, 1e-6, 1e-6, "target + delta");
  // bf16 receiver cache with fp32 fuser output: formed in fp32, rounded to bf16 once.
  auto target_bf16 = in[0].detach().to(torch::kBFloat16);
  auto out = k::gated_combine(target_bf16, w, p, in[3], in[4], 0.5, false);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  auto want = (target_bf16.to(torch::kFloat32) + delta).to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out, want));
}

TEST(KernelsGatedCombine, RejectsMismatchedShapes) {
  auto p = torch::randn({2, 1, 3, 5, 4}), w = torch::randn({2, 1, 3, 5}), gl = torch::zeros({2});
  EXPECT_THROW(k::gated_combine(p, w.transpose(2, 3), p, gl, {}, 1.0, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, torch::zeros({3}), {}, 1.0, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, gl, torch::rand({2, 1, 3, 4}), 1.0, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p, gl, {}, 0.0, false), c2c::Error);
  EXPECT_THROW(k::gated_combine(p, w, p.flatten(3), gl, {}, 1.0, false), c2c::Error);
  EXPECT_NO_THROW(k::gated_combine(p, w, p, gl, torch::rand({2, 1, 3, 5, 1}), 1.0, false));
}

}  // namespace
