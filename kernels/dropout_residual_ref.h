// CPU reference of the dropout + residual kernels (dropout_residual.cuh): the same arguments
// without the stream, in float or double, the same counter mask. Plain loops; no LibTorch.
#pragma once
#include <cstdint>

namespace c2c::kernels {

// Element i of the arrays has the mask's counter index first + i (a chunk of a larger tensor).
template <typename T>
void dropout_residual_forward_ref(const T* x, const T* a, T* y, int64_t n, double p,
                                  uint64_t seed, int64_t first = 0);
template <typename T>
void dropout_residual_backward_ref(const T* dy, T* da, int64_t n, double p, uint64_t seed,
                                   int64_t first = 0);
// The mask itself, keep_i / (1 - p) for i in [first, first + n): the LibTorch path's factor.
template <typename T>
void dropout_scale_ref(T* scale, int64_t n, double p, uint64_t seed, int64_t first = 0);

}  // namespace c2c::kernels
