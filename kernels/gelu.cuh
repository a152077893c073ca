// GELU (exact erf) after the fuser's W1 product, launchers (tier 1, no LibTorch), fp32 and bf16:
//   y = gelu(a + bias),  gelu(v) = v/2 * (1 + erf(v/sqrt(2))),
// over a (groups, rows, m) contiguous, bias (groups, m) or nullptr (the fuser's W1 has no bias).
// Computed in fp32 and rounded once. Backward recomputes from a (nothing else is stored):
//   da = dy * (Phi(v) + v*phi(v)), v = a + bias; d_bias = sum over rows of da (the autograd
// function reduces it). CPU reference with the same arguments: gelu_ref.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace c2c::kernels {

template <typename T>  // float or __nv_bfloat16
void gelu_forward(const T* a, const T* bias, T* y, int64_t groups, int64_t rows, int64_t m,
                  cudaStream_t stream);

template <typename T>
void gelu_backward(const T* dy, const T* a, const T* bias, T* da, int64_t groups, int64_t rows,
                   int64_t m, cudaStream_t stream);

}  // namespace c2c::kernels
