// Gated combine launchers (tier 1, no LibTorch), fp32 and bf16:
//   out = target + g * sigmoid(w) * p,  g = sigmoid((logit + G) / tau),
//   G = -log(-log(u + 1e-20) + 1e-20)  (Gumbel noise from given u; u == nullptr: G = 0),
// or the hard gate g = (logit > 0) at inference, or no gate (gate_logit == nullptr: g = 1, the
// projection_fusion ablation). One gate logit and one temperature per S group (branch x layer),
// one head weight w and one u per (S, B, H, N) row, broadcast over D. Everything in fp32, rounded
// once.
// Shapes and strides: kernel_types.h. CPU reference with the same arguments: gated_combine_ref.h.
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/kernel_types.h"

namespace c2c::kernels {

// target may be nullptr (out = the gated delta alone). out (S, B, H, N, D) contiguous.
// T (w_logit, p): float or __nv_bfloat16; O (target, out): T, or float for a bf16 T (the sum or
// the delta formed in fp32 and kept there, no bf16 rounding).
template <typename T, typename O>
void gated_combine_forward(const O* target, const T* w_logit, const T* p, const float* gate_logit,
                           const float* u, const float* tau, bool hard, O* out,
                           const GatedCombineShape& shape, const GatedCombineStrides& strides,
                           cudaStream_t stream);

// Gradients from d_out (S, B, H, N, D) contiguous: d_p (same, contiguous) = d_out*g*alpha;
// d_w (S, B, H, N) = <d_out, p>_D * g * alpha(1-alpha); d_gate_logit (S) fp32 = sum over rows of
// <d_out, p>_D * alpha * g(1-g)/tau (0 for the hard gate and unwritten without a gate).
// d_target is d_out itself.
// row_scratch: shape.rows() floats of device memory (per-row gate terms, summed in a fixed order,
// so d_gate_logit is deterministic).
template <typename T>
void gated_combine_backward(const T* d_out, const T* w_logit, const T* p, const float* gate_logit,
                            const float* u, const float* tau, bool hard, T* d_p, T* d_w,
                            float* d_gate_logit, float* row_scratch,
                            const GatedCombineShape& shape, const GatedCombineStrides& strides,
                            cudaStream_t stream);

}  // namespace c2c::kernels
