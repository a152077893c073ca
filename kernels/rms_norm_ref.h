// CPU reference of the RMSNorm kernels (rms_norm.cuh): the same arguments without the stream,
// in float or double (rstd and dw in T). Plain loops, sums in double; no LibTorch.
#pragma once
#include <cstdint>

namespace c2c::kernels {

// x, y (groups, rows, h); w (groups, h); rstd (groups, rows).
template <typename T>
void rms_norm_forward_ref(const T* x, const T* w, T* y, T* rstd, int64_t groups, int64_t rows,
                          int64_t h, double eps);
// dx (groups, rows, h); dw (groups, h), written.
template <typename T>
void rms_norm_backward_ref(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw,
                           int64_t groups, int64_t rows, int64_t h);

}  // namespace c2c::kernels
