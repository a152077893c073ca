// The table of the fuser's kernel ops that the kernel tests iterate (in the style of ggml's
// backend tests): each case is an op on given inputs, its LibTorch oracle (the *_unfused form)
// and its tolerances on CUDA. test_ops.cpp runs every case through the CPU references against
// the oracle (double and float) and by finite differences; test_ops_gpu.cpp runs the same cases
// on CUDA against the CPU reference in double. Inputs are fp32 leaves (requires_grad marks the
// ones differentiated); tests cast them to the dtype they run in.
#pragma once
#include <string>
#include <vector>

#include "kernels/fused_ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace c2c::test {

// CUDA tolerance: `atol` relative to the largest |ref| of each tensor, `rtol` elementwise.
struct OpTolerance {
  double atol_scale, rtol;
};

struct OpCase {
  std::string name;    // op and shape, for messages
  Op op;               // the dispatched op (kernels for CUDA, the CPU path otherwise)
  Op oracle;           // the same math in LibTorch ops, autograd by LibTorch
  Tensors inputs;      // fp32 leaves
  torch::Tensor upstream;  // the cotangent of the output, fp32
  OpTolerance fp32, bf16;
  bool finite_differences = true;  // small enough for double finite differences on the CPU
};

inline std::string dims(const std::vector<int64_t>& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

// `large` adds the published-width shapes (170 tokens, 28 layers' K and V): the GPU runs them.
inline std::vector<OpCase> op_cases(bool large) {
  namespace k = c2c::kernels;
  std::vector<OpCase> cases;
  auto leaf = [](torch::Tensor t) { return t.requires_grad_(true); };

  // RMSNorm: odd widths, plain rows (weight (h)) and the stacked layout (weight (G, h)).
  // fp32 on CUDA: block sums over h and over rows for dw; bf16: two roundings of 2^-8.
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> norm_shapes;
  for (int64_t h : {1, 19, 111, 989}) {
    norm_shapes.push_back({{7, h}, {h}});
    norm_shapes.push_back({{3, 5, h}, {3, h}});
  }
  if (large) norm_shapes.push_back({{56, 170, 1024}, {56, 1024}});
  for (const auto& [xs, ws] : norm_shapes) {
    OpCase c;
    c.name = "rms_norm x " + dims(xs) + " w " + dims(ws);
    c.op = [](const Tensors& in) { return k::rms_norm(in[0], in[1], 1e-6); };
    c.oracle = [](const Tensors& in) { return k::rms_norm_unfused(in[0], in[1], 1e-6); };
    c.inputs = {leaf(torch::randn(xs)), leaf(1 + 0.3 * torch::randn(ws))};
    c.upstream = torch::randn(xs);
    c.fp32 = {1e-5, 1e-4};
    c.bf16 = {1.0 / 64, 1.0 / 64};
    c.finite_differences = xs[0] * xs.back() < 60000;
    cases.push_back(c);
  }

  // GELU after W1, with and without a bias. fp32: erff/expf ulps; bf16: one rounding.
  std::vector<std::vector<int64_t>> ew_shapes{{1, 1, 1}, {3, 5, 19}, {2, 17, 111}, {2, 3, 989}};
  if (large) ew_shapes.push_back({56, 170, 1024});
  for (const auto& s : ew_shapes)
    for (bool bias : {false, true}) {
      OpCase c;
      c.name = "gelu " + dims(s) + (bias ? " bias" : "");
      c.op = [](const Tensors& in) { return k::gelu(in[0], in[1]); };
      c.oracle = [](const Tensors& in) { return k::gelu_unfused(in[0], in[1]); };
      c.inputs = {leaf(3 * torch::randn(s)),
                  bias ? leaf(torch::randn({s[0], s[2]})) : torch::Tensor()};
      c.upstream = torch::randn(s);
      c.fp32 = {1e-6, 1e-5};
      c.bf16 = {1.0 / 128, 1.0 / 128};
      c.finite_differences = s[0] * s[1] * s[2] < 60000;
      cases.push_back(c);
    }

  // Dropout + residual after W2: the counter mask of one seed, p = 0.1 (the recipe default)
  // and 0.5. One fp32 product and sum; bf16 one rounding.
  for (const auto& s : ew_shapes)
    for (double p : {0.1, 0.5}) {
      OpCase c;
      c.name = "dropout_residual " + dims(s) + " p " + std::to_string(p);
      const uint64_t seed = 0x5eed0000u + static_cast<uint64_t>(s[2]);
      c.op = [p, seed](const Tensors& in) { return k::dropout_residual(in[0], in[1], p, seed); };
      c.oracle = [p, seed](const Tensors& in) {
        return k::dropout_residual_unfused(in[0], in[1], p, seed);
      };
      c.inputs = {leaf(torch::randn(s)), leaf(torch::randn(s))};
      c.upstream = torch::randn(s);
      c.fp32 = {1e-6, 1e-6};
      c.bf16 = {1.0 / 128, 1.0 / 128};
      c.finite_differences = s[0] * s[1] * s[2] < 60000;
      cases.push_back(c);
    }

  // Gated combine: Gumbel, no noise, hard and no gate; per-group temperatures; the fuser's
  // token-major views of p and w. fp32: the gate gradient sums N*H*D products.
  struct G {
    int64_t S, B, H, N, D;
  };
  std::vector<G> gshapes{{1, 1, 1, 1, 1}, {2, 1, 3, 19, 19}, {2, 2, 2, 5, 111}, {4, 1, 8, 11, 128}};
  if (large) gshapes.push_back({56, 1, 8, 170, 128});
  // delta_wide: no target, the delta kept in fp32 (fp64 for double inputs) whatever p's dtype
  // (a bf16 fuser's parallel multi-sharer delta; on CUDA the bf16-in, fp32-out kernel).
  const char* modes[] = {"gumbel", "no_noise", "hard", "no_gate", "delta_wide"};
  for (const G& g : gshapes)
    for (int mode = 0; mode < 5; ++mode) {
      OpCase c;
      c.name = "gated_combine " + dims({g.S, g.B, g.H, g.N, g.D}) + " " + modes[mode];
      auto make = [mode](bool oracle) {
        return [mode, oracle](const Tensors& in) {
          auto w = in[1].permute({0, 1, 3, 2});
          auto p = in[2].permute({0, 1, 3, 2, 4});
          auto u = mode == 0 || mode == 4 ? in[4] : torch::Tensor();
          auto gl = mode == 3 ? torch::Tensor() : in[3];
          const bool hard = mode == 2;
          auto target = mode == 4 ? torch::Tensor() : in[0];
          std::optional<torch::ScalarType> out;
          if (mode == 4)
            out = p.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
          return oracle ? k::gated_combine_unfused(target, w, p, gl, u, in[5], hard, out)
                        : k::gated_combine(target, w, p, gl, u, in[5], hard, out);
        };
      };
      c.op = make(false);
      c.oracle = make(true);
      auto gate = 0.5 * torch::randn({g.S});
      auto target = torch::randn({g.S, g.B, g.H, g.N, g.D});
      c.inputs = {mode == 4 ? target : leaf(target),  // delta_wide: no target
                  leaf(2 * torch::randn({g.S, g.B, g.N, g.H})),
                  leaf(torch::randn({g.S, g.B, g.N, g.H, g.D})),
                  mode >= 2 ? gate : leaf(gate),  // hard and no gate: no gradient to it
                  torch::rand({g.S, g.B, g.H, g.N, 1}),
                  0.3 + torch::rand({g.S})};  // temperatures, no gradient
      c.upstream = torch::randn({g.S, g.B, g.H, g.N, g.D});
      c.fp32 = {1e-5, 1e-4};
      c.bf16 = {1.0 / 64, 1.0 / 64};
      c.finite_differences = mode != 2 && g.S * g.N * g.H * g.D < 60000;
      cases.push_back(c);
    }
  return cases;
}

}  // namespace c2c::test
