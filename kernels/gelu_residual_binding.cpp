// LibTorch binding of the GELU + residual CUDA launchers (see bindings.h); CUDA LibTorch only.
#include "kernels/binding_util.h"
#include "kernels/bindings.h"
#include "kernels/gelu_residual.cuh"

namespace c2c::kernels::cuda {
using namespace detail;

torch::Tensor gelu_residual_forward(const torch::Tensor& x_in, const torch::Tensor& a_in) {
  check_cuda(a_in, "gelu_residual", "a");
  check_float_or_bf16(a_in, "gelu_residual", "a");
  if (x_in.defined()) {
    check_same(a_in, x_in, "gelu_residual", "x");
    C2C_CHECK(x_in.sizes() == a_in.sizes(), "gelu_residual: x and a differ in shape");
  }
  const c10::cuda::CUDAGuard guard(a_in.device());
  auto a = a_in.contiguous();
  auto x = x_in.defined() ? x_in.contiguous() : torch::Tensor();
  auto y = torch::empty_like(a);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(a.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::gelu_residual_forward<S>(ptr<S>(x), ptr<S>(a), ptr<S>(y), a.numel(), stream);
  });
  return y;
}

torch::Tensor gelu_residual_backward(const torch::Tensor& dy_in, const torch::Tensor& a_in) {
  check_cuda(dy_in, "gelu_residual backward", "grad");
  check_same(a_in, dy_in, "gelu_residual backward", "grad");
  const c10::cuda::CUDAGuard guard(a_in.device());
  auto a = a_in.contiguous(), dy = dy_in.contiguous();
  auto da = torch::empty_like(a);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(a.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::gelu_residual_backward<S>(ptr<S>(dy), ptr<S>(a), ptr<S>(da), a.numel(), stream);
  });
  return da;
}

}  // namespace c2c::kernels::cuda
