// CPU reference of RMSNorm forward/backward (see rms_norm_ref.h); the oracle for the CUDA kernels
// and the CPU path of c2c::kernels::rms_norm.
#include "kernels/rms_norm_ref.h"

#include <cmath>
#include <vector>

namespace c2c::kernels {

template <typename T>
void rms_norm_forward_ref(const T* x, const T* w, T* y, T* rstd, int64_t groups, int64_t rows,
                          int64_t h, double eps) {
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t row = g * rows + t;
      const T* xr = x + row * h;
      double ss = 0;
      for (int64_t i = 0; i < h; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const double r = 1.0 / std::sqrt(ss / static_cast<double>(h) + eps);
      rstd[row] = static_cast<T>(r);
      for (int64_t i = 0; i < h; ++i) y[row * h + i] = static_cast<T>(xr[i] * r * w[g * h + i]);
    }
  }
}

template <typename T>
void rms_norm_backward_ref(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw,
                           int64_t groups, int64_t rows, int64_t h) {
  std::vector<double> acc(static_cast<size_t>(h));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t i = 0; i < h; ++i) acc[i] = 0;
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t row = g * rows + t;
      const double r = rstd[row];
      double dot = 0;
      for (int64_t i = 0; i < h; ++i)
        dot += static_cast<double>(dy[row * h + i]) * w[g * h + i] * x[row * h + i] * r;
      const double mean_dot = dot / static_cast<double>(h);
      for (int64_t i = 0; i < h; ++i) {
        const double xhat = x[row * h + i] * r;
        dx[row * h + i] = static_cast<T>(r * (dy[row * h + i] * static_cast<double>(w[g * h + i]) -
                                              xhat * mean_dot));
        acc[i] += dy[row * h + i] * xhat;
      }
    }
    for (int64_t i = 0; i < h; ++i) dw[g * h + i] = static_cast<T>(acc[i]);
  }
}

template void rms_norm_forward_ref<float>(const float*, const float*, float*, float*, int64_t,
                                          int64_t, int64_t, double);
template void rms_norm_forward_ref<double>(const double*, const double*, double*, double*,
                                           int64_t, int64_t, int64_t, double);
template void rms_norm_backward_ref<float>(const float*, const float*, const float*, const float*,
                                           float*, float*, int64_t, int64_t, int64_t);
template void rms_norm_backward_ref<double>(const double*, const double*, const double*,
                                            const double*, double*, double*, int64_t, int64_t,
                                            int64_t);

}  // namespace c2c::kernels
