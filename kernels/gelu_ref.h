// CPU reference of the GELU kernels (gelu.cuh): the same arguments without the stream, in float
// or double. Plain loops; no LibTorch.
#pragma once
#include <cstdint>

namespace c2c::kernels {

// a, y (groups, rows, m); bias (groups, m) or nullptr.
template <typename T>
void gelu_forward_ref(const T* a, const T* bias, T* y, int64_t groups, int64_t rows, int64_t m);
template <typename T>
void gelu_backward_ref(const T* dy, const T* a, const T* bias, T* da, int64_t groups,
                       int64_t rows, int64_t m);

}  // namespace c2c::kernels
