// CPU reference of y = x + a * keep/(1-p) (see dropout_residual_ref.h).
#include "kernels/dropout_residual_ref.h"

#include "kernels/kernel_types.h"

namespace c2c::kernels {

template <typename T>
void dropout_scale_ref(T* scale, int64_t n, double p, uint64_t seed, int64_t first) {
  const float pf = static_cast<float>(p);  // the threshold the kernel compares in float
  const T s = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i)
    scale[i] = counter_uniform(seed, static_cast<uint64_t>(first + i)) >= pf ? s : T(0);
}

template <typename T>
void dropout_residual_forward_ref(const T* x, const T* a, T* y, int64_t n, double p,
                                  uint64_t seed, int64_t first) {
  const float pf = static_cast<float>(p);
  const T s = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] + (counter_uniform(seed, static_cast<uint64_t>(first + i)) >= pf ? a[i] * s : T(0));
}

template <typename T>
void dropout_residual_backward_ref(const T* dy, T* da, int64_t n, double p, uint64_t seed,
                                   int64_t first) {
  const float pf = static_cast<float>(p);
  const T s = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i)
    da[i] = counter_uniform(seed, static_cast<uint64_t>(first + i)) >= pf ? dy[i] * s : T(0);
}

#define C2C_INSTANTIATE(T)                                                                    \
  template void dropout_scale_ref<T>(T*, int64_t, double, uint64_t, int64_t);                 \
  template void dropout_residual_forward_ref<T>(const T*, const T*, T*, int64_t, double,      \
                                                uint64_t, int64_t);                           \
  template void dropout_residual_backward_ref<T>(const T*, T*, int64_t, double, uint64_t,     \
                                                 int64_t);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(double)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
