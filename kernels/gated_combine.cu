// Gated combine kernels: one warp per (s, b, h, n) row of D elements, so the gate, sigmoid(w) and
// the backward's dot product <d_out, p> are computed once per row; reads go through strides, so
// the fuser's permuted (token-major) p and w need no copy. The per-layer gate gradient is reduced
// by a second kernel over the per-row terms in a fixed order.
#include "kernels/gated_combine.cuh"

#include "kernels/cuda_common.cuh"

namespace c2c::kernels {
namespace {
using namespace detail;

constexpr int kThreads = 256, kRowsPerBlock = kThreads / 32;

struct RowIndex {
  int64_t s, b, h, n;
};

__device__ __forceinline__ RowIndex split_row(int64_t row, const GatedCombineShape& sh) {
  RowIndex r;
  r.n = row % sh.N;
  int64_t t = row / sh.N;
  r.h = t % sh.H;
  t /= sh.H;
  r.b = t % sh.B;
  r.s = t / sh.B;
  return r;
}

__device__ __forceinline__ int64_t offset4(const RowIndex& r, const int64_t* st) {
  return r.s * st[0] + r.b * st[1] + r.h * st[2] + r.n * st[3];
}

__device__ __forceinline__ float gate_value(const float* logit, int64_t s, const float* u,
                                            int64_t u_off, const float* tau, bool hard) {
  if (!logit) return 1.f;  // no gate
  if (hard) return logit[s] > 0.f ? 1.f : 0.f;
  float gumbel = 0.f;
  if (u) gumbel = -logf(-logf(u[u_off] + 1e-20f) + 1e-20f);
  return sigmoidf_((logit[s] + gumbel) / tau[s]);
}

template <typename T, typename O>
__global__ void gated_combine_forward_kernel(const O* __restrict__ target,
                                             const T* __restrict__ w, const T* __restrict__ p,
                                             const float* __restrict__ gate_logit,
                                             const float* __restrict__ u, const float* __restrict__ tau, bool hard,
                                             O* __restrict__ out, GatedCombineShape sh,
                                             GatedCombineStrides st) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= sh.rows()) return;  // warp-uniform
  const RowIndex r = split_row(row, sh);
  const float g = gate_value(gate_logit, r.s, u, u ? offset4(r, st.u) : 0, tau, hard);
  const float ga = g * sigmoidf_(to_float(w[offset4(r, st.w)]));
  const T* pr = p + offset4(r, st.p);
  O* orow = out + row * sh.D;
  if (target) {
    const O* tr = target + offset4(r, st.target);
    for (int64_t d = lane; d < sh.D; d += 32)
      orow[d] = from_float<O>(to_float(tr[d * st.target[4]]) + ga * to_float(pr[d * st.p[4]]));
  } else {
    for (int64_t d = lane; d < sh.D; d += 32) orow[d] = from_float<O>(ga * to_float(pr[d * st.p[4]]));
  }
}

template <typename T>
__global__ void gated_combine_backward_kernel(const T* __restrict__ d_out,
                                              const T* __restrict__ w, const T* __restrict__ p,
                                              const float* __restrict__ gate_logit,
                                              const float* __restrict__ u, const float* __restrict__ tau, bool hard,
                                              T* __restrict__ d_p, T* __restrict__ d_w,
                                              float* __restrict__ row_scratch,
                                              GatedCombineShape sh, GatedCombineStrides st) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= sh.rows()) return;  // warp-uniform, so the shuffles below see full warps
  const RowIndex r = split_row(row, sh);
  const float g = gate_value(gate_logit, r.s, u, u ? offset4(r, st.u) : 0, tau, hard);
  const float alpha = sigmoidf_(to_float(w[offset4(r, st.w)]));
  const float ga = g * alpha;
  const T* pr = p + offset4(r, st.p);
  const T* dor = d_out + row * sh.D;
  T* dpr = d_p + row * sh.D;
  float dot = 0.f;
  for (int64_t d = lane; d < sh.D; d += 32) {
    const float go = to_float(dor[d]);
    dot += go * to_float(pr[d * st.p[4]]);
    dpr[d] = from_float<T>(ga * go);
  }
  dot = warp_sum(dot);
  if (lane == 0) {
    d_w[row] = from_float<T>(dot * g * alpha * (1.f - alpha));
    row_scratch[row] = hard || !gate_logit ? 0.f : dot * alpha * g * (1.f - g) / tau[r.s];
  }
}

// grid S, block kThreads: d_gate_logit[s] = sum of row_scratch over group s, fixed order.
__global__ void sum_groups_kernel(const float* __restrict__ rows_in, float* __restrict__ out,
                                  int64_t per_group) {
  __shared__ float scratch[32];
  const float* src = rows_in + static_cast<int64_t>(blockIdx.x) * per_group;
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < per_group; i += blockDim.x) acc += src[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

unsigned blocks_for(int64_t rows) {
  return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

template <typename T, typename O>
void gated_combine_forward(const O* target, const T* w_logit, const T* p, const float* gate_logit,
                           const float* u, const float* tau, bool hard, O* out,
                           const GatedCombineShape& shape, const GatedCombineStrides& strides,
                           cudaStream_t stream) {
  if (shape.rows() == 0 || shape.D == 0) return;
  gated_combine_forward_kernel<T, O><<<blocks_for(shape.rows()), kThreads, 0, stream>>>(
      target, w_logit, p, gate_logit, u, tau, hard, out, shape, strides);
  C2C_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void gated_combine_backward(const T* d_out, const T* w_logit, const T* p, const float* gate_logit,
                            const float* u, const float* tau, bool hard, T* d_p, T* d_w,
                            float* d_gate_logit, float* row_scratch,
                            const GatedCombineShape& shape, const GatedCombineStrides& strides,
                            cudaStream_t stream) {
  if (shape.S == 0) return;
  if (shape.rows() == 0) {
    if (!d_gate_logit) return;
    C2C_CUDA_CHECK(cudaMemsetAsync(d_gate_logit, 0, sizeof(float) * shape.S, stream));
    return;
  }
  gated_combine_backward_kernel<T><<<blocks_for(shape.rows()), kThreads, 0, stream>>>(
      d_out, w_logit, p, gate_logit, u, tau, hard, d_p, d_w, row_scratch, shape, strides);
  C2C_CUDA_CHECK(cudaGetLastError());
  if (!gate_logit) return;  // no gate, no gate gradient
  sum_groups_kernel<<<static_cast<unsigned>(shape.S), kThreads, 0, stream>>>(
      row_scratch, d_gate_logit, shape.rows() / shape.S);
  C2C_CUDA_CHECK(cudaGetLastError());
}

#define C2C_INSTANTIATE_FORWARD(T, O)                                                         \
  template void gated_combine_forward<T, O>(const O*, const T*, const T*, const float*,       \
                                            const float*, const float*, bool, O*,             \
                                            const GatedCombineShape&,                         \
                                            const GatedCombineStrides&, cudaStream_t);
C2C_INSTANTIATE_FORWARD(float, float)
C2C_INSTANTIATE_FORWARD(__nv_bfloat16, __nv_bfloat16)
C2C_INSTANTIATE_FORWARD(__nv_bfloat16, float)  // a bf16 fuser's delta or sum kept in fp32
#undef C2C_INSTANTIATE_FORWARD
#define C2C_INSTANTIATE(T)                                                                    \
  template void gated_combine_backward<T>(const T*, const T*, const T*, const float*,         \
                                          const float*, const float*, bool, T*, T*, float*,   \
                                          float*,                                             \
                                          const GatedCombineShape&,                           \
                                          const GatedCombineStrides&, cudaStream_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(__nv_bfloat16)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
