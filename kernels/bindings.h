// Tier 2: thin LibTorch bindings of the CUDA launchers. They check devices, dtypes (fp32, bf16)
// and shapes, make inputs contiguous where the launcher needs it, and launch on the current CUDA
// stream. Compiled only with a CUDA-enabled LibTorch (C2C_WITH_CUDA_BINDINGS, set by
// kernels/CMakeLists.txt); callers use fused_ops.h, which dispatches here for CUDA tensors.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace c2c::kernels::cuda {

// x (groups, rows, h), w (groups, h), same dtype: {y (groups, rows, h), rstd (groups, rows) fp32}.
std::vector<torch::Tensor> rms_norm_forward(const torch::Tensor& x, const torch::Tensor& w,
                                            double eps);
// {dx (groups, rows, h), dw (groups, h) fp32}.
std::vector<torch::Tensor> rms_norm_backward(const torch::Tensor& dy, const torch::Tensor& x,
                                             const torch::Tensor& w, const torch::Tensor& rstd);

// a (groups, rows, m), bias (groups, m) or undefined, same dtype: y = gelu(a + bias);
// backward: da = dy * gelu'(a + bias).
torch::Tensor gelu_forward(const torch::Tensor& a, const torch::Tensor& bias);
torch::Tensor gelu_backward(const torch::Tensor& dy, const torch::Tensor& a,
                            const torch::Tensor& bias);

// y = x + a * keep/(1-p) with the counter mask of `seed` from element index `first`; backward
// da = dy * keep/(1-p).
torch::Tensor dropout_residual_forward(const torch::Tensor& x, const torch::Tensor& a, double p,
                                       uint64_t seed, int64_t first);
torch::Tensor dropout_residual_backward(const torch::Tensor& dy, double p, uint64_t seed,
                                        int64_t first);

// p (S, B, H, N, D), w_logit (S, B, H, N) of one dtype T (any strides); gate_logit (S) or
// undefined (no gate), u (S, B, H, N) or undefined and tau (S), fp32. out_type: T, or fp32 for a
// bf16 T; target (S, B, H, N, D) in out_type, or undefined. Returns out in out_type.
torch::Tensor gated_combine_forward(const torch::Tensor& target, const torch::Tensor& w_logit,
                                    const torch::Tensor& p, const torch::Tensor& gate_logit,
                                    const torch::Tensor& u, const torch::Tensor& tau, bool hard,
                                    torch::ScalarType out_type);
// {d_p (S, B, H, N, D) in T, d_w (S, B, H, N) in T, d_gate_logit (S) fp32 (undefined without a
// gate)}.
std::vector<torch::Tensor> gated_combine_backward(const torch::Tensor& d_out,
                                                  const torch::Tensor& w_logit,
                                                  const torch::Tensor& p,
                                                  const torch::Tensor& gate_logit,
                                                  const torch::Tensor& u, const torch::Tensor& tau,
                                                  bool hard);

}  // namespace c2c::kernels::cuda
