// The fuser's hot-path ops as autograd functions (tier 4): each runs the CUDA kernel for CUDA
// tensors (fp32/bf16, when this build has the kernels and a CUDA LibTorch) and the CPU reference
// otherwise, with a custom backward. The *_unfused functions are the same math in plain LibTorch
// ops (autograd by LibTorch): the oracle of the tests, the baseline of the benchmark, and the path
// taken for CUDA tensors when the kernels are not built in. Double backward is not supported.
//
// Shape legend: G groups (2 branches x Lf layers merged), T tokens (B*N), h width; S gate groups,
// B batch, H receiver KV heads, N tokens, D head dim.
#pragma once
#include <torch/torch.h>

namespace c2c::kernels {

// True when CUDA tensors take the fused kernels (launchers and LibTorch CUDA bindings built in).
bool cuda_kernels_available();
// True when the CUDA launchers were compiled (C2C_CUDA), whatever the LibTorch.
bool built_with_cuda();

// RMSNorm with scale: y = x / sqrt(mean(x^2, -1) + eps) * weight, statistics in fp32 (double for
// double inputs), the normalised value cast to x's dtype before scaling (the fuser's numerics).
// x (..., h) with weight (h), or the batched layout x (G, T, h) with weight (G, h).
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps = 1e-6);
torch::Tensor rms_norm_unfused(const torch::Tensor& x, const torch::Tensor& weight,
                               double eps = 1e-6);

// out = target + g * sigmoid(w_logit) * p, with g = sigmoid((gate_logit + Gumbel(u)) / tau)
// (u undefined: no noise) or, with `hard`, g = (gate_logit > 0) (no gradient to the logit).
// target, p (S, B, H, N, D) (target may be undefined: the delta alone); w_logit (S, B, H, N);
// gate_logit (S); u (S, B, H, N) or (S, B, H, N, 1). Any strides. Formed in fp32 (double for
// double p) and rounded once; returns target's dtype (p's when target is undefined).
torch::Tensor gated_combine(const torch::Tensor& target, const torch::Tensor& w_logit,
                            const torch::Tensor& p, const torch::Tensor& gate_logit,
                            const torch::Tensor& u, double tau, bool hard);
torch::Tensor gated_combine_unfused(const torch::Tensor& target, const torch::Tensor& w_logit,
                                    const torch::Tensor& p, const torch::Tensor& gate_logit,
                                    const torch::Tensor& u, double tau, bool hard);

// y = x + gelu_erf(a), same shapes; x undefined: y = gelu(a).
torch::Tensor gelu_residual(const torch::Tensor& x, const torch::Tensor& a);
torch::Tensor gelu_residual_unfused(const torch::Tensor& x, const torch::Tensor& a);

}  // namespace c2c::kernels
