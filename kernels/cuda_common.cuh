// Shared pieces of the CUDA launchers: the one CUDA error-checking macro (STYLE.md item 3) and,
// for nvcc only, dtype conversions and block/warp reductions. No LibTorch.
#pragma once
#include <cuda_runtime_api.h>

#include "modules/common/error.h"

// Every CUDA runtime call and every launch (via cudaGetLastError) goes through this: the message
// names the failing statement, the CUDA error and file:line.
#define C2C_CUDA_CHECK(stmt)                                                                   \
  do {                                                                                         \
    const cudaError_t c2c_cuda_err_ = (stmt);                                                  \
    if (c2c_cuda_err_ != cudaSuccess)                                                          \
      ::c2c::fail("CUDA error '", cudaGetErrorString(c2c_cuda_err_), "' (",                    \
                  static_cast<int>(c2c_cuda_err_), ") in `", #stmt, "` at ", __FILE__, ":", \
                  __LINE__);                                                                   \
  } while (0)

#ifdef __CUDACC__
#include <cuda_bf16.h>

namespace c2c::kernels::detail {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);  // round to nearest even, as torch's .to(bfloat16)
}

// v rounded to T and back: reproduces an intermediate cast of the unfused LibTorch path.
template <typename T>
__device__ __forceinline__ float round_to(float v) { return to_float<T>(from_float<T>(v)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total.
// `scratch` is 32 floats of shared memory, reusable after the call.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? scratch[threadIdx.x] : 0.f;
  if (warp == 0) v = warp_sum(v);
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  const float total = scratch[0];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

// Blocks of `threads` for a grid-stride loop over n elements: enough to fill any current GPU
// several times over; the loop covers the rest.
inline unsigned grid_stride_blocks(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

}  // namespace c2c::kernels::detail
#endif
