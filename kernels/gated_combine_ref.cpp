// CPU reference of the gated combine (see gated_combine_ref.h and gated_combine.cuh for the math).
// Gate and sigmoid in T, dot products and the per-group gate gradient summed in double.
#include "kernels/gated_combine_ref.h"

#include <cmath>
#include <vector>

namespace c2c::kernels {
namespace {

template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
T gate_value(const T* logit, int64_t s, const T* u, int64_t u_off, const T* tau, bool hard) {
  if (!logit) return T(1);  // no gate
  if (hard) return logit[s] > T(0) ? T(1) : T(0);
  T gumbel = 0;
  if (u) gumbel = -std::log(-std::log(u[u_off] + T(1e-20)) + T(1e-20));
  return sigmoid<T>((logit[s] + gumbel) / tau[s]);
}

// Calls f(row, s, offset of w/u row, offset of target row, offset of p row) for every row.
template <typename F>
void for_rows(const GatedCombineShape& sh, const GatedCombineStrides& st, F&& f) {
  int64_t row = 0;
  for (int64_t s = 0; s < sh.S; ++s)
    for (int64_t b = 0; b < sh.B; ++b)
      for (int64_t h = 0; h < sh.H; ++h)
        for (int64_t n = 0; n < sh.N; ++n, ++row) {
          const int64_t ow = s * st.w[0] + b * st.w[1] + h * st.w[2] + n * st.w[3];
          const int64_t ou = s * st.u[0] + b * st.u[1] + h * st.u[2] + n * st.u[3];
          const int64_t ot = s * st.target[0] + b * st.target[1] + h * st.target[2] + n * st.target[3];
          const int64_t op = s * st.p[0] + b * st.p[1] + h * st.p[2] + n * st.p[3];
          f(row, s, ow, ou, ot, op);
        }
}

}  // namespace

template <typename T>
void gated_combine_forward_ref(const T* target, const T* w_logit, const T* p, const T* gate_logit,
                               const T* u, const T* tau, bool hard, T* out,
                               const GatedCombineShape& sh, const GatedCombineStrides& st) {
  for_rows(sh, st, [&](int64_t row, int64_t s, int64_t ow, int64_t ou, int64_t ot, int64_t op) {
    const T ga = gate_value<T>(gate_logit, s, u, ou, tau, hard) * sigmoid<T>(w_logit[ow]);
    for (int64_t d = 0; d < sh.D; ++d) {
      const T base = target ? target[ot + d * st.target[4]] : T(0);
      out[row * sh.D + d] = base + ga * p[op + d * st.p[4]];
    }
  });
}

template <typename T>
void gated_combine_backward_ref(const T* d_out, const T* w_logit, const T* p, const T* gate_logit,
                                const T* u, const T* tau, bool hard, T* d_p, T* d_w,
                                T* d_gate_logit, const GatedCombineShape& sh,
                                const GatedCombineStrides& st) {
  std::vector<double> gate_acc(static_cast<size_t>(sh.S), 0.0);
  for_rows(sh, st, [&](int64_t row, int64_t s, int64_t ow, int64_t ou, int64_t, int64_t op) {
    const T g = gate_value<T>(gate_logit, s, u, ou, tau, hard);
    const T alpha = sigmoid<T>(w_logit[ow]);
    double dot = 0;
    for (int64_t d = 0; d < sh.D; ++d) {
      const T go = d_out[row * sh.D + d];
      dot += static_cast<double>(go) * p[op + d * st.p[4]];
      d_p[row * sh.D + d] = g * alpha * go;
    }
    d_w[row] = static_cast<T>(dot * g * alpha * (1 - static_cast<double>(alpha)));
    if (!hard && gate_logit) gate_acc[s] += dot * alpha * g * (1 - static_cast<double>(g)) / tau[s];
  });
  if (gate_logit)
    for (int64_t s = 0; s < sh.S; ++s) d_gate_logit[s] = static_cast<T>(gate_acc[s]);
}

#define C2C_INSTANTIATE(T)                                                                     \
  template void gated_combine_forward_ref<T>(const T*, const T*, const T*, const T*, const T*, \
                                             const T*, bool, T*, const GatedCombineShape&,     \
                                             const GatedCombineStrides&);                      \
  template void gated_combine_backward_ref<T>(const T*, const T*, const T*, const T*,          \
                                              const T*, const T*, bool, T*, T*, T*,            \
                                              const GatedCombineShape&,                        \
                                              const GatedCombineStrides&);
C2C_INSTANTIATE(float)
C2C_INSTANTIATE(double)
#undef C2C_INSTANTIATE

}  // namespace c2c::kernels
