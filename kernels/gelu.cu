// GELU kernels: grid-stride elementwise loops; memory-bound, one read of a (and of the bias row)
// and one write. The bias index of element i of (groups, rows, m) is (i / (rows*m)) * m + i % m.
#include "kernels/gelu.cuh"

#include <algorithm>

#include "kernels/cuda_common.cuh"

namespace c2c::kernels {
namespace {
using namespace detail;

constexpr int kThreads = 256;

__device__ __forceinline__ float gelu_f(float v) {
  return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_grad_f(float v) {
  const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
  return cdf + v * pdf;
}

template <typename T>
__device__ __forceinline__ float biased(const T* a, const T* bias, int64_t i, int64_t rows,
                                        int64_t m) {
  float v = to_float(a[i]);
  if (bias) v += to_float(bias[(i / (rows * m)) * m + i % m]);
  return v;
}

template <typename T>
__global__ void gelu_forward_kernel(const T* __restrict__ a, const T* __restrict__ bias,
                                    T* __restrict__ y, int64_t n, int64_t rows, int64_t m) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(gelu_f(biased(a, bias, i, rows, m)));
}

template <typename T>
__global__ void gelu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ a,
                                     const T* __restrict__ bias, T* __restrict__ da, int64_t n,
                                     int64_t rows, int64_t m) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    da[i] = from_float<T>(to_float(dy[i]) * gelu_grad_f(biased(a, bias, i, rows, m)));
}

}  // namespace

template <typename T>
void gelu_forward(const T* a, const T* bias, T* y, int64_t groups, int64_t rows, int64_t m,
                  cudaStream_t stream) {
  const int64_t n = groups * rows * m;
  if (n == 0) return;
  gelu_forward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(a, bias, y, n, rows, m);
  C2C_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void gelu_backward(const T* dy, const T* a, const T* bias, T* da, int64_t groups, int64_t rows,
                   int64_t m, cudaStream_t stream) {
  const int64_t n = groups * rows * m;
  if (n == 0) return;
  gelu_backward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(dy, a, bias, da, n, rows, m);
  C2C_CUDA_CHECK(cudaGetLastError());
}

#define C2C_INSTANTIATE(T)                                                                    \
  template void gelu_forward<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,            \
                                cudaStream_t);                                                \
  template void gelu_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, \
                                 cudaStream_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(__nv_bfloat16)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
