// Plain shape/stride structs shared by the CUDA launchers (*.cuh) and the CPU references
// (*_ref.h); no CUDA or LibTorch here, so both tiers and the CPU-only build can include it.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define C2C_HOST_DEVICE __host__ __device__
#else
#define C2C_HOST_DEVICE
#endif

namespace c2c::kernels {

// The gated combine works on (S, B, H, N, D): S gate groups (2 branches x Lf layers merged),
// B batch, H receiver KV heads, N tokens, D head dim.
struct GatedCombineShape {
  int64_t S = 1, B = 1, H = 1, N = 1, D = 1;
  C2C_HOST_DEVICE int64_t rows() const { return S * B * H * N; }  // one gate and head weight per row
};

// Element strides of the inputs, so permuted views (the fuser's token-major p and w) are read in
// place: target and p index (S, B, H, N, D); w_logit and u index (S, B, H, N).
// The outputs (out, d_p, d_w) are always contiguous in (S, B, H, N[, D]).
struct GatedCombineStrides {
  int64_t target[5] = {0, 0, 0, 0, 0};
  int64_t p[5] = {0, 0, 0, 0, 0};
  int64_t w[4] = {0, 0, 0, 0};
  int64_t u[4] = {0, 0, 0, 0};
};

// Contiguous strides for a (S, B, H, N, D) shape, for callers without views.
inline GatedCombineStrides contiguous_strides(const GatedCombineShape& s) {
  GatedCombineStrides st;
  const int64_t five[5] = {s.B * s.H * s.N * s.D, s.H * s.N * s.D, s.N * s.D, s.D, 1};
  const int64_t four[4] = {s.B * s.H * s.N, s.H * s.N, s.N, 1};
  for (int i = 0; i < 5; ++i) st.target[i] = st.p[i] = five[i];
  for (int i = 0; i < 4; ++i) st.w[i] = st.u[i] = four[i];
  return st;
}

// Counter-based uniform numbers for dropout: element i of a call seeded `seed` keeps its value
// when counter_uniform(seed, i) >= p. A pure function of (seed, i) (splitmix64 finaliser applied
// twice), identical on the host and the device, so the backward regenerates the mask instead of
// storing it and the CPU reference and the CUDA kernel draw the same mask.
C2C_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// In [0, 1) on a 2^-24 grid (exact in float).
C2C_HOST_DEVICE inline float counter_uniform(uint64_t seed, uint64_t i) {
  return static_cast<float>(mix64(seed ^ mix64(i)) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace c2c::kernels
