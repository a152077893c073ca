// Dropout + residual kernels: grid-stride elementwise loops; the keep mask is recomputed from
// the counter (seed, i) in both passes, so no mask tensor is written or read.
#include "kernels/dropout_residual.cuh"

#include <algorithm>

#include "kernels/cuda_common.cuh"
#include "kernels/kernel_types.h"

namespace c2c::kernels {
namespace {
using namespace detail;

constexpr int kThreads = 256;

__device__ __forceinline__ float keep_scale(uint64_t seed, int64_t i, float p, float scale) {
  return counter_uniform(seed, static_cast<uint64_t>(i)) >= p ? scale : 0.f;
}

template <typename T>
__global__ void dropout_residual_forward_kernel(const T* __restrict__ x, const T* __restrict__ a,
                                                T* __restrict__ y, int64_t n, float p,
                                                float scale, uint64_t seed, int64_t first) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(to_float(x[i]) + to_float(a[i]) * keep_scale(seed, first + i, p, scale));
}

template <typename T>
__global__ void dropout_residual_backward_kernel(const T* __restrict__ dy, T* __restrict__ da,
                                                 int64_t n, float p, float scale, uint64_t seed,
                                                 int64_t first) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    da[i] = from_float<T>(to_float(dy[i]) * keep_scale(seed, first + i, p, scale));
}

}  // namespace

template <typename T>
void dropout_residual_forward(const T* x, const T* a, T* y, int64_t n, float p, uint64_t seed,
                              int64_t first, cudaStream_t stream) {
  if (n == 0) return;
  dropout_residual_forward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(
      x, a, y, n, p, 1.f / (1.f - p), seed, first);
  C2C_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void dropout_residual_backward(const T* dy, T* da, int64_t n, float p, uint64_t seed,
                               int64_t first, cudaStream_t stream) {
  if (n == 0) return;
  dropout_residual_backward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(
      dy, da, n, p, 1.f / (1.f - p), seed, first);
  C2C_CUDA_CHECK(cudaGetLastError());
}

#define C2C_INSTANTIATE(T)                                                                     \
  template void dropout_residual_forward<T>(const T*, const T*, T*, int64_t, float, uint64_t,  \
                                            int64_t, cudaStream_t);                            \
  template void dropout_residual_backward<T>(const T*, T*, int64_t, float, uint64_t, int64_t,  \
                                             cudaStream_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(__nv_bfloat16)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
