// Helpers of the kernel tests: elementwise comparison with atol + rtol*|ref| naming the worst
// element, an op's forward and gradients under a fixed upstream gradient, and directional
// (gradcheck-style) central finite differences in double.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace c2c::test {

using Tensors = std::vector<torch::Tensor>;
using Op = std::function<torch::Tensor(const Tensors&)>;

// Passes when |actual - ref| <= atol + rtol*|ref| everywhere (compared in double on the CPU).
inline void expect_close(const torch::Tensor& actual, const torch::Tensor& ref, double atol,
                         double rtol, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": result undefined";
  ASSERT_TRUE(ref.defined()) << what << ": reference undefined";
  ASSERT_EQ(actual.sizes(), ref.sizes()) << what;
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64);
  auto r = ref.detach().to(torch::kCPU, torch::kFloat64);
  auto excess = (a - r).abs() - (atol + rtol * r.abs());
  if (excess.numel() == 0) return;
  const int64_t worst = excess.flatten().argmax().item<int64_t>();
  const double e = excess.flatten()[worst].item<double>();
  EXPECT_LE(e, 0.0) << what << ": element " << worst << " is "
                    << a.flatten()[worst].item<double>() << ", reference "
                    << r.flatten()[worst].item<double>() << " (atol " << atol << ", rtol " << rtol
                    << ", max |ref| " << r.abs().max().item<double>() << ")";
}

// Forward and d(sum(upstream * op(inputs)))/d(inputs); inputs are leaves (requires_grad set for
// those that get a gradient, others get an undefined entry).
struct Result {
  torch::Tensor out;
  Tensors grads;
};
inline Result run_with_grads(const Op& op, const Tensors& inputs, const torch::Tensor& upstream) {
  Result r;
  r.out = op(inputs);
  Tensors need;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) need.push_back(t);
  auto g = torch::autograd::grad({(r.out.to(upstream.scalar_type()) * upstream).sum()}, need,
                                 /*grad_outputs=*/{}, /*retain_graph=*/false,
                                 /*create_graph=*/false, /*allow_unused=*/true);
  size_t k = 0;
  for (const auto& t : inputs)
    r.grads.push_back(t.defined() && t.requires_grad() ? g[k++] : torch::Tensor());
  return r;
}

// Leaves copied from `inputs` to `device`/`dtype`, keeping which ones require a gradient.
inline Tensors leaves_like(const Tensors& inputs, torch::Device device, torch::Dtype dtype) {
  Tensors r;
  for (const auto& t : inputs) {
    if (!t.defined()) {
      r.emplace_back();
      continue;
    }
    auto c = t.detach().to(device, dtype).clone();
    if (t.requires_grad()) c.requires_grad_(true);
    r.push_back(c);
  }
  return r;
}

// Directional finite differences in double: for a few random directions v over all
// differentiable inputs, (L(x + eps v) - L(x - eps v)) / (2 eps) must equal <grad L, v> within
// tol * (1 + |<grad L, v>|), with L = sum(upstream * op(x)).
inline void expect_directional_derivatives(const Op& op, const Tensors& inputs,
                                           const torch::Tensor& upstream, double eps, double tol,
                                           const std::string& what, int directions = 3) {
  auto r = run_with_grads(op, inputs, upstream);
  for (int k = 0; k < directions; ++k) {
    Tensors plus, minus;
    double analytic = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& t = inputs[i];
      if (!t.defined() || !t.requires_grad()) {
        plus.push_back(t);
        minus.push_back(t);
        continue;
      }
      auto v = torch::randn_like(t.detach());
      analytic += (r.grads[i] * v).sum().item<double>();
      plus.push_back(t.detach() + eps * v);
      minus.push_back(t.detach() - eps * v);
    }
    torch::NoGradGuard no_grad;
    const double numeric =
        ((op(plus) * upstream).sum().item<double>() - (op(minus) * upstream).sum().item<double>()) /
        (2 * eps);
    EXPECT_NEAR(numeric, analytic, tol * (1 + std::abs(analytic)))
        << what << ": direction " << k;
  }
}

}  // namespace c2c::test
