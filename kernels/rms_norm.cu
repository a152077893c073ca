// RMSNorm forward/backward kernels: one block per row for y and dx (the row's sum of squares or
// dot product is a block reduction), and a column-tiled kernel for dw that sums over rows in a
// fixed order (deterministic, no atomics).
#include "kernels/rms_norm.cuh"

#include <algorithm>

#include "kernels/cuda_common.cuh"

namespace c2c::kernels {
namespace {
using namespace detail;

int threads_for(int64_t h) { return h >= 1024 ? 256 : (h >= 256 ? 128 : 64); }

template <typename T>
__global__ void rms_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                        T* __restrict__ y, float* __restrict__ rstd,
                                        int64_t rows, int64_t h, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;  // over groups*rows
  const T* xr = x + row * h;
  const T* wg = w + (row / rows) * h;
  T* yr = y + row * h;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    const float v = to_float(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / static_cast<float>(h) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    yr[i] = from_float<T>(round_to<T>(to_float(xr[i]) * r) * to_float(wg[i]));
}

template <typename T>
__global__ void rms_norm_backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                            const T* __restrict__ w,
                                            const float* __restrict__ rstd, T* __restrict__ dx,
                                            int64_t rows, int64_t h) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * h;
  const T* dyr = dy + row * h;
  const T* wg = w + (row / rows) * h;
  const float r = rstd[row];
  float dot = 0.f;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    dot += to_float(dyr[i]) * to_float(wg[i]) * to_float(xr[i]) * r;
  const float mean_dot = block_sum(dot, scratch) / static_cast<float>(h);
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    const float xhat = to_float(xr[i]) * r;
    dx[row * h + i] = from_float<T>(r * (to_float(dyr[i]) * to_float(wg[i]) - xhat * mean_dot));
  }
}

constexpr int kTileCols = 32, kTileRows = 8;

// grid (ceil(h/32), groups), block (32, 8): thread (c, r) sums rows r, r+8, ... of column c.
template <typename T>
__global__ void rms_norm_backward_dw_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                            const float* __restrict__ rstd,
                                            float* __restrict__ dw, int64_t rows, int64_t h) {
  __shared__ float part[kTileRows][kTileCols + 1];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTileCols + threadIdx.x;
  const int64_t g = blockIdx.y;
  float acc = 0.f;
  if (col < h) {
    for (int64_t t = threadIdx.y; t < rows; t += kTileRows) {
      const int64_t row = g * rows + t;
      acc += to_float(dy[row * h + col]) * to_float(x[row * h + col]) * rstd[row];
    }
  }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < h) {
    float s = 0.f;
    for (int k = 0; k < kTileRows; ++k) s += part[k][threadIdx.x];
    dw[g * h + col] = s;
  }
}

}  // namespace

template <typename T>
void rms_norm_forward(const T* x, const T* w, T* y, float* rstd, int64_t groups, int64_t rows,
                      int64_t h, float eps, cudaStream_t stream) {
  if (groups * rows == 0 || h == 0) return;
  rms_norm_forward_kernel<T><<<static_cast<unsigned>(groups * rows), threads_for(h), 0, stream>>>(
      x, w, y, rstd, rows, h, eps);
  C2C_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw,
                       int64_t groups, int64_t rows, int64_t h, cudaStream_t stream) {
  if (groups == 0 || h == 0) return;
  if (rows == 0) {
    C2C_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * groups * h, stream));
    return;
  }
  rms_norm_backward_dx_kernel<T>
      <<<static_cast<unsigned>(groups * rows), threads_for(h), 0, stream>>>(dy, x, w, rstd, dx,
                                                                             rows, h);
  C2C_CUDA_CHECK(cudaGetLastError());
  const dim3 grid(static_cast<unsigned>((h + kTileCols - 1) / kTileCols),
                  static_cast<unsigned>(groups));
  rms_norm_backward_dw_kernel<T><<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(dy, x, rstd, dw,
                                                                                  rows, h);
  C2C_CUDA_CHECK(cudaGetLastError());
}

#define C2C_INSTANTIATE(T)                                                                     \
  template void rms_norm_forward<T>(const T*, const T*, T*, float*, int64_t, int64_t, int64_t, \
                                    float, cudaStream_t);                                      \
  template void rms_norm_backward<T>(const T*, const T*, const T*, const float*, T*, float*,   \
                                     int64_t, int64_t, int64_t, cudaStream_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(__nv_bfloat16)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
