// CPU reference of the gated combine kernels (gated_combine.cuh): the same arguments without the
// stream and the scratch buffer, in float or double (gate logit, tau and u in T too). Plain
// loops. gate_logit == nullptr: no gate (g = 1, d_gate_logit untouched).
#pragma once
#include "kernels/kernel_types.h"

namespace c2c::kernels {

template <typename T>
void gated_combine_forward_ref(const T* target, const T* w_logit, const T* p, const T* gate_logit,
                               const T* u, const T* tau, bool hard, T* out,
                               const GatedCombineShape& shape, const GatedCombineStrides& strides);

template <typename T>
void gated_combine_backward_ref(const T* d_out, const T* w_logit, const T* p, const T* gate_logit,
                                const T* u, const T* tau, bool hard, T* d_p, T* d_w,
                                T* d_gate_logit, const GatedCombineShape& shape,
                                const GatedCombineStrides& strides);

}  // namespace c2c::kernels
