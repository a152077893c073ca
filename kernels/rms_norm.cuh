// RMSNorm launchers (tier 1: raw pointers, sizes, stream; no LibTorch), fp32 and bf16.
// y = round_T(x * rstd) * w with rstd = 1/sqrt(mean(x^2) + eps) in fp32, the fuser's numerics
// (statistics in fp32, normalised value cast to the input dtype, then scaled).
// Layout: x, y, dx (groups, rows, h) contiguous; w (groups, h) (the stacked (2, Lf) norms merged);
// rstd (groups, rows) fp32. CPU reference with the same arguments: rms_norm_ref.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace c2c::kernels {

template <typename T>  // float or __nv_bfloat16
void rms_norm_forward(const T* x, const T* w, T* y, float* rstd, int64_t groups, int64_t rows,
                      int64_t h, float eps, cudaStream_t stream);

// dx = rstd * (dy*w - xhat * mean(dy*w*xhat)), xhat = x*rstd; dw[g] = sum_rows dy*xhat, written
// (not accumulated) in fp32.
template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw,
                       int64_t groups, int64_t rows, int64_t h, cudaStream_t stream);

}  // namespace c2c::kernels
