// CPU reference of y = gelu_erf(a + bias) and its backward (see gelu_ref.h); math in double.
#include "kernels/gelu_ref.h"

#include <cmath>

namespace c2c::kernels {
namespace {

// Calls f(i, v) for every element i with v = a[i] + bias of its (group, column).
template <typename T, typename F>
void for_biased(const T* a, const T* bias, int64_t groups, int64_t rows, int64_t m, F&& f) {
  int64_t i = 0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < m; ++c, ++i)
        f(i, static_cast<double>(a[i]) + (bias ? static_cast<double>(bias[g * m + c]) : 0.0));
}

}  // namespace

template <typename T>
void gelu_forward_ref(const T* a, const T* bias, T* y, int64_t groups, int64_t rows, int64_t m) {
  for_biased(a, bias, groups, rows, m, [&](int64_t i, double v) {
    y[i] = static_cast<T>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
  });
}

template <typename T>
void gelu_backward_ref(const T* dy, const T* a, const T* bias, T* da, int64_t groups,
                       int64_t rows, int64_t m) {
  for_biased(a, bias, groups, rows, m, [&](int64_t i, double v) {
    const double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
    const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    da[i] = static_cast<T>(dy[i] * (cdf + v * pdf));
  });
}

#define C2C_INSTANTIATE(T)                                                                  \
  template void gelu_forward_ref<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);     \
  template void gelu_backward_ref<T>(const T*, const T*, const T*, T*, int64_t, int64_t,    \
                                     int64_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(double)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
