// GELU (exact erf) fused with the residual add, launchers (tier 1, no LibTorch), fp32 and bf16:
//   y = x + gelu(a),  gelu(a) = a/2 * (1 + erf(a/sqrt(2)));  x == nullptr: y = gelu(a).
// Elementwise over n contiguous values, computed in fp32 and rounded once. Backward:
//   da = dy * (Phi(a) + a*phi(a)); dx = dy (the caller passes dy on, no kernel).
// CPU reference with the same arguments: gelu_residual_ref.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace c2c::kernels {

template <typename T>  // float or __nv_bfloat16
void gelu_residual_forward(const T* x, const T* a, T* y, int64_t n, cudaStream_t stream);

template <typename T>
void gelu_residual_backward(const T* dy, const T* a, T* da, int64_t n, cudaStream_t stream);

}  // namespace c2c::kernels
