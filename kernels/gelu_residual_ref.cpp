// CPU reference of y = x + gelu_erf(a) and its backward (see gelu_residual_ref.h).
#include "kernels/gelu_residual_ref.h"

#include <cmath>

namespace c2c::kernels {

template <typename T>
void gelu_residual_forward_ref(const T* x, const T* a, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = a[i];
    const double g = 0.5 * v * (1.0 + std::erf(v * M_SQRT1_2));
    y[i] = static_cast<T>((x ? static_cast<double>(x[i]) : 0.0) + g);
  }
}

template <typename T>
void gelu_residual_backward_ref(const T* dy, const T* a, T* da, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = a[i];
    const double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
    const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    da[i] = static_cast<T>(dy[i] * (cdf + v * pdf));
  }
}

template void gelu_residual_forward_ref<float>(const float*, const float*, float*, int64_t);
template void gelu_residual_forward_ref<double>(const double*, const double*, double*, int64_t);
template void gelu_residual_backward_ref<float>(const float*, const float*, float*, int64_t);
template void gelu_residual_backward_ref<double>(const double*, const double*, double*, int64_t);

}  // namespace c2c::kernels
