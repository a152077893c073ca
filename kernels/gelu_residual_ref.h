// CPU reference of the GELU + residual kernels (gelu_residual.cuh): the same arguments without
// the stream, in float or double. Plain loops; no LibTorch.
#pragma once
#include <cstdint>

namespace c2c::kernels {

template <typename T>
void gelu_residual_forward_ref(const T* x, const T* a, T* y, int64_t n);  // x may be nullptr
template <typename T>
void gelu_residual_backward_ref(const T* dy, const T* a, T* da, int64_t n);

}  // namespace c2c::kernels
