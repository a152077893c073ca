// CPU reference of the dropout + residual kernels (dropout_residual.cuh): the same arguments
// without the stream, in float or double, the same counter mask. Plain loops; no LibTorch.
#pragma once
#include <cstdint>

namespace c2c::kernels {

template <typename T>
void dropout_residual_forward_ref(const T* x, const T* a, T* y, int64_t n, double p,
                                  uint64_t seed);
template <typename T>
void dropout_residual_backward_ref(const T* dy, T* da, int64_t n, double p, uint64_t seed);
// The mask itself, keep_i / (1 - p) for i in [0, n): the LibTorch path's dropout factor.
template <typename T>
void dropout_scale_ref(T* scale, int64_t n, double p, uint64_t seed);

}  // namespace c2c::kernels
