// Helpers of the LibTorch CUDA bindings (*_binding.cpp): tensor checks that name the argument,
// and the fp32/bf16 dispatch to a launcher template. Included only where CUDA LibTorch exists.
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <torch/torch.h>

#include <string>

#include "modules/common/error.h"

namespace c2c::kernels::cuda::detail {

inline void check_cuda(const torch::Tensor& t, const char* op, const char* name) {
  C2C_CHECK(t.defined(), op, ": '", name, "' is undefined");
  C2C_CHECK(t.is_cuda(), op, ": '", name, "' must be a CUDA tensor, got one on ", t.device().str());
}

inline void check_float_or_bf16(const torch::Tensor& t, const char* op, const char* name) {
  C2C_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16, op, ": '",
            name, "' has dtype ", std::string(c10::toString(t.scalar_type())),
            "; the CUDA kernels take float32 or bfloat16\nHINT: cast with .to(torch::kFloat32)");
}

inline void check_same(const torch::Tensor& a, const torch::Tensor& b, const char* op,
                       const char* name) {
  C2C_CHECK(a.scalar_type() == b.scalar_type(), op, ": '", name, "' has dtype ",
            std::string(c10::toString(b.scalar_type())), ", expected ",
            std::string(c10::toString(a.scalar_type())));
  C2C_CHECK(a.device() == b.device(), op, ": '", name, "' is on ", b.device().str(),
            ", expected ", a.device().str());
}

// Typed pointer of a fp32 or bf16 tensor for launcher element type T (float or __nv_bfloat16);
// nullptr for an undefined tensor.
template <typename T>
T* ptr(const torch::Tensor& t) {
  if (!t.defined()) return nullptr;
  return reinterpret_cast<T*>(t.data_ptr());
}

// Calls f(T{}) with T = float or __nv_bfloat16 by the tensor's dtype.
template <typename F>
void dispatch_float_bf16(torch::ScalarType st, F&& f) {
  if (st == torch::kFloat32) {
    f(float{});
  } else {
    C2C_ASSERT(st == torch::kBFloat16);
    f(__nv_bfloat16{});
  }
}

}  // namespace c2c::kernels::cuda::detail
