// Dropout + residual after the fuser's W2 product, launchers (tier 1, no LibTorch), fp32 and
// bf16, over n contiguous values:
//   y = x + a * keep_i / (1 - p),  keep_i = counter_uniform(seed, first + i) >= p
// (kernel_types.h; `first` places the n values inside a larger tensor, so a chunk draws the
// same mask as the whole).
// The mask is a pure function of (seed, i): the backward regenerates it, nothing is stored:
//   da = dy * keep_i / (1 - p);  dx = dy (passed on by the autograd function, no kernel).
// Computed in fp32 and rounded once. CPU reference with the same arguments: dropout_residual_ref.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace c2c::kernels {

template <typename T>  // float or __nv_bfloat16
void dropout_residual_forward(const T* x, const T* a, T* y, int64_t n, float p, uint64_t seed,
                              int64_t first, cudaStream_t stream);

template <typename T>
void dropout_residual_backward(const T* dy, T* da, int64_t n, float p, uint64_t seed,
                               int64_t first, cudaStream_t stream);

}  // namespace c2c::kernels
